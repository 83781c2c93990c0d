"""Bad input is a 4xx with a stable code, never a 500, and PostgreSQL's own words never reach a
client: each case sends exactly the input that once broke the server."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import httpx
import pytest

from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import bearer, make_user
from tests.support.live import live
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


# Words of PostgreSQL's (and asyncpg's) error messages that must never be shown to a client.
POSTGRES_WORDS = re.compile(
    r"invalid input for query argument|int64|unsupported Unicode escape|"
    r"invalid byte sequence|0x00|asyncpg|postgres|SQLSTATE",
    re.IGNORECASE,
)


def assert_client_error(response: httpx.Response, *codes: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] in codes, error
    assert not POSTGRES_WORDS.search(error["message"]), error
    return error


@pytest.fixture
async def seeded(server: RunningServer, workspace: NewWorkspace) -> str:
    """alice (returned: her token) and bob share the channel `general` with one message."""
    token = await make_user(server, workspace, "alice")
    await make_user(server, workspace, "bob")
    async with server.client(headers=bearer(token)) as http:
        created = await http.post(
            "/v1/channels", json={"id": "general", "type": "group", "members": ["bob"]}
        )
        assert created.status_code == 201, created.text
        sent = await http.post("/v1/channels/general/messages", json={"text": "hi"})
        assert sent.status_code == 201, sent.text
    return token


async def test_after_seq_out_of_range_is_422(server: RunningServer, seeded: str) -> None:
    async with server.client(headers=bearer(seeded)) as http:
        for after_seq in ["9223372036854775808", "18446744073709551616", "-1", "abc"]:
            response = await http.get("/v1/events", params={"after_seq": after_seq})
            assert_client_error(response, "VALIDATION_FAILED")


async def test_the_largest_after_seq_is_an_empty_page(server: RunningServer, seeded: str) -> None:
    async with server.client(headers=bearer(seeded)) as http:
        response = await http.get("/v1/events", params={"after_seq": str(2**63 - 1)})
    assert response.status_code == 200, response.text
    assert response.json()["events"] == []


def _body_operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                found.append((method.upper(), path))
    return found


def _concrete(path: str, message_id: str) -> str:
    values = {
        "user_id": "alice",
        "channel_id": "general",
        "message_id": message_id,
        "type": "like",
        "webhook_id": "00000000-0000-0000-0000-000000000000",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


NOT_UTF8 = [
    b'{"text": "caf\xc3',  # truncated UTF-8 sequence at the end
    b'{"text": "\xff\xfe bad", "name": "x"}',  # invalid UTF-8
    b'{"text": "\xed\xa0\x80"}',  # an encoded surrogate
    b'\xef\xbb\xbf{"text": "bom"}',  # a UTF-8 byte order mark
]


async def test_json_bodies_that_are_not_utf8_are_4xx_on_every_endpoint(
    server: RunningServer, workspace: NewWorkspace, seeded: str
) -> None:
    async with server.client() as http:
        schema = (await http.get("/openapi.json")).json()
        operations = _body_operations(schema)
        assert len(operations) >= 11, operations
        page = await http.get("/v1/channels/general/messages", headers=bearer(seeded))
        message_id = page.json()["messages"][0]["id"]
        for body, credential, (method, path) in itertools.product(
            NOT_UTF8, (workspace.api_secret, seeded), operations
        ):
            response = await http.request(
                method,
                _concrete(path, message_id),
                content=body,
                headers={**bearer(credential), "content-type": "application/json"},
            )
            assert response.status_code < 500, (method, path, body, response.text)
            assert "error" in response.json() or response.status_code < 300, response.text


NUL = "\u0000"


NUL_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v1/users/carol", {"name": f"a{NUL}b"}),
    ("PUT", "/v1/users/carol", {"image_url": f"https://x/{NUL}.png"}),
    ("PUT", "/v1/users/carol", {"data": {"k": f"v{NUL}"}}),
    ("PUT", "/v1/users/carol", {"data": {f"k{NUL}": "v"}}),
    ("POST", "/v1/channels", {"type": "group", "name": f"n{NUL}", "members": []}),
    ("POST", "/v1/channels", {"type": "group", "members": [], "data": {"x": NUL}}),
    ("PATCH", "/v1/channels/general", {"name": f"n{NUL}"}),
    ("PATCH", "/v1/channels/general", {"data": {"x": [NUL]}}),
    ("POST", "/v1/channels/general/messages", {"text": f"hi{NUL}"}),
    ("POST", "/v1/channels/general/messages", {"text": "hi", "data": {"x": NUL}}),
    ("POST", "/v1/webhooks", {"url": f"https://example.com/{NUL}", "events": ["*"]}),
]


async def test_a_nul_character_is_422(
    server: RunningServer, workspace: NewWorkspace, seeded: str
) -> None:
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        for method, path, body in NUL_BODIES:
            response = await http.request(
                method, path, params={"user_id": "alice"}, content=json.dumps(body)
            )
            assert_client_error(response, "VALIDATION_FAILED")
        # An attachment's file name is cleaned up rather than refused: never a 500 either.
        attachment = await http.post(
            "/v1/attachments",
            params={"user_id": "alice"},
            json={
                "channel_id": "general",
                "filename": f"a{NUL}.png",
                "content_type": "image/png",
                "size": 1,
            },
        )
        assert attachment.status_code < 500, attachment.text


async def test_a_nul_character_in_an_edit_and_a_search_is_422(
    server: RunningServer, seeded: str
) -> None:
    async with server.client(headers=bearer(seeded)) as http:
        page = await http.get("/v1/channels/general/messages")
        message_id = page.json()["messages"][0]["id"]
        edit = await http.patch(f"/v1/messages/{message_id}", json={"text": f"x{NUL}"})
        assert_client_error(edit, "VALIDATION_FAILED")
        search = await http.get("/v1/search", params={"q": f"x{NUL}"})
        assert search.status_code < 500, search.text


async def test_ids_with_a_trailing_newline_are_refused(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        response = await http.put("/v1/users/alice%0A", json={"name": "a"})
    assert_client_error(response, "VALIDATION_FAILED")


async def test_a_bad_resume_gets_an_error_frame_and_the_socket_lives(
    server: RunningServer, seeded: str
) -> None:
    async with live(server.url, seeded) as client:
        for after_seq in (2**64, 2**63, -1, 1.5, "1"):
            await client.send({"type": "resume", "after_seq": after_seq})
            error = await client.next()
            assert error["type"] == "error" and error["code"] == "VALIDATION_FAILED", error
            await client.send({"type": "ping"})
            assert (await client.next())["type"] == "pong"


ODD_FRAMES = [
    "[" * 3000 + "]" * 3000,
    '{"type": "ping", "x": ' + "[" * 1500 + "]" * 1500 + "}",
    '{"type": ' + "1" * 3000 + "}",
    '"just a string"',
    "NaN",
    '{"type": "typing.start", "channel_id": "gen\\u0000eral"}',
]


async def test_odd_frames_get_an_error_frame_and_the_socket_lives(
    server: RunningServer, seeded: str
) -> None:
    async with live(server.url, seeded) as client:
        for raw in ODD_FRAMES:
            await client.socket.send(raw)
            reply = await asyncio.wait_for(client.next(), 10)
            assert reply["type"] in ("error", "pong"), (raw[:80], reply)
            await client.send({"type": "ping"})
            while (reply := await client.next())["type"] != "pong":
                assert reply["type"] == "error", reply


async def test_huge_numbers_anywhere_are_4xx(
    server: RunningServer, workspace: NewWorkspace, seeded: str
) -> None:
    huge = 2**70
    async with server.client(headers=bearer(workspace.api_secret)) as backend:
        hook = await backend.post(
            "/v1/webhooks", json={"url": "https://example.com/h", "events": ["*"]}
        )
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        calls = [
            ("POST", "/v1/users/alice/token", {"json": {"ttl_seconds": huge}}),
            ("POST", "/v1/users/alice/token", {"json": {"ttl_seconds": -huge}}),
            ("GET", f"/v1/webhooks/{hook_id}/deliveries", {"params": {"limit": str(huge)}}),
            (
                "POST",
                "/v1/attachments",
                {
                    "params": {"user_id": "alice"},
                    "json": {
                        "channel_id": "general",
                        "filename": "a.png",
                        "content_type": "image/png",
                        "size": huge,
                    },
                },
            ),
        ]
        for method, path, options in calls:
            response = await backend.request(method, path, **options)  # type: ignore[arg-type]
            assert_client_error(response, "VALIDATION_FAILED", "PAYLOAD_TOO_LARGE")
    async with server.client(headers=bearer(seeded)) as http:
        for path in (
            "/v1/channels",
            "/v1/channels/general/messages",
            "/v1/search",
            "/v1/events",
        ):
            response = await http.get(path, params={"limit": str(huge), "q": "hi"})
            assert_client_error(response, "VALIDATION_FAILED")
