"""Every endpoint, called by someone who must not see or change the target, leaks and changes
nothing: another workspace's API secret, a user who is not a member, a member who is not the
author. Admin users and the backend may moderate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.support.chat import backend_client, bearer, make_user
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


@dataclass
class World:
    server: RunningServer
    workspace: NewWorkspace
    intruder_ws: NewWorkspace
    tokens: dict[str, str]
    channel: str
    message: str
    reply: str


@pytest.fixture
async def world(server: RunningServer, workspace: NewWorkspace) -> World:
    tokens = {
        name: await make_user(server, workspace, name, role="admin" if name == "dave" else "user")
        for name in ("alice", "bob", "carol", "dave")
    }
    async with server.client(headers=bearer(tokens["alice"])) as alice:
        created = await alice.post(
            "/v1/channels", json={"id": "secret-plans", "type": "group", "members": ["bob"]}
        )
        assert created.status_code == 201, created.text
        sent = await alice.post("/v1/channels/secret-plans/messages", json={"text": "the plan"})
        assert sent.status_code == 201, sent.text
        message = sent.json()["id"]
        reply = await alice.post(
            "/v1/channels/secret-plans/messages", json={"text": "detail", "parent_id": message}
        )
        assert reply.status_code == 201, reply.text
        await alice.put(f"/v1/messages/{message}/reactions/heart")
    intruder = await create_workspace(server.services.db, "intruder")
    return World(server, workspace, intruder, tokens, "secret-plans", message, reply.json()["id"])


def _calls(w: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, json body) for every endpoint that touches the channel or its messages."""
    c, m = w.channel, w.message
    return [
        ("GET", f"/v1/channels/{c}", None),
        ("PATCH", f"/v1/channels/{c}", {"name": "pwned"}),
        ("DELETE", f"/v1/channels/{c}", None),
        ("POST", f"/v1/channels/{c}/members", {"user_ids": ["carol"]}),
        ("DELETE", f"/v1/channels/{c}/members/bob", None),
        ("GET", f"/v1/channels/{c}/messages", None),
        ("POST", f"/v1/channels/{c}/messages", {"text": "injected"}),
        ("PATCH", f"/v1/messages/{m}", {"text": "pwned"}),
        ("DELETE", f"/v1/messages/{m}", None),
        ("GET", f"/v1/messages/{m}/replies", None),
        ("PUT", f"/v1/messages/{m}/reactions/skull", None),
        ("DELETE", f"/v1/messages/{m}/reactions/heart", None),
        ("POST", f"/v1/channels/{c}/read", {}),
        ("POST", f"/v1/channels/{c}/typing", {"state": "start"}),
    ]


async def _snapshot(w: World) -> dict[str, Any]:
    """Everything the calls could have changed, as the owning backend sees it."""
    async with backend_client(w.server, w.workspace) as http:
        channel = (await http.get(f"/v1/channels/{w.channel}")).json()
        messages = (await http.get(f"/v1/channels/{w.channel}/messages")).json()
        replies = (await http.get(f"/v1/messages/{w.message}/replies")).json()
        users = [(await http.get(f"/v1/users/{u}")).json() for u in w.tokens]
    channel.pop("updated_at", None)
    return {"channel": channel, "messages": messages, "replies": replies, "users": users}


async def _leaks(response: httpx.Response, w: World) -> bool:
    return "the plan" in response.text or "detail" in response.text


async def test_another_workspace_secret_reaches_nothing(world: World) -> None:
    before = await _snapshot(world)
    await make_user(world.server, world.intruder_ws, "alice")
    async with backend_client(world.server, world.intruder_ws) as http:
        for method, path, body in _calls(world):
            # Acting as a user of its own workspace, everything of the other one is NOT_FOUND.
            response = await http.request(method, path, json=body, params={"user_id": "alice"})
            assert response.status_code == 404, (method, path, response.text)
            assert not await _leaks(response, world)
            # Acting as itself, calls that need a user may say so first; nothing else.
            response = await http.request(method, path, json=body)
            assert response.status_code in (404, 422), (method, path, response.text)
            assert not await _leaks(response, world)
        for method, path in [
            ("GET", "/v1/users/bob"),
            ("DELETE", "/v1/users/bob"),
            ("POST", "/v1/users/bob/token"),
        ]:
            assert (await http.request(method, path)).status_code == 404, path
        events = (await http.get("/v1/events")).json()
        assert events["events"] == []
        found = await http.get("/v1/search", params={"q": "plan"})
        assert found.status_code == 200 and found.json()["messages"] == []
        listed = (await http.get("/v1/channels")).json()
        assert listed["channels"] == []
    assert await _snapshot(world) == before


async def test_a_user_token_of_another_workspace_is_refused(world: World) -> None:
    token = await make_user(world.server, world.intruder_ws, "alice")
    async with world.server.client(headers=bearer(token)) as http:
        for method, path, body in _calls(world):
            response = await http.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)


async def test_non_member_reaches_nothing(world: World) -> None:
    before = await _snapshot(world)
    async with world.server.client(headers=bearer(world.tokens["carol"])) as http:
        for method, path, body in _calls(world):
            response = await http.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert not await _leaks(response, world)
        assert (await http.get("/v1/search", params={"q": "plan"})).json()["messages"] == []
        assert (await http.get("/v1/events")).json()["events"] == []
        assert (await http.get("/v1/channels")).json()["channels"] == []
        # Server-side endpoints are refused to every user token.
        assert (await http.get("/v1/users/alice")).status_code == 403
        assert (await http.post("/v1/users/carol/token")).status_code == 403
    # The backend acting as carol is bound by carol's membership too.
    async with backend_client(world.server, world.workspace) as http:
        response = await http.get(
            f"/v1/channels/{world.channel}/messages", params={"user_id": "carol"}
        )
        assert response.status_code == 404
    assert await _snapshot(world) == before


async def test_member_who_is_not_the_author_cannot_change_others_things(world: World) -> None:
    before = await _snapshot(world)
    forbidden = [
        ("PATCH", f"/v1/messages/{world.message}", {"text": "pwned"}),
        ("DELETE", f"/v1/messages/{world.message}", None),
        ("PATCH", f"/v1/channels/{world.channel}", {"name": "pwned"}),
        ("DELETE", f"/v1/channels/{world.channel}", None),
        ("POST", f"/v1/channels/{world.channel}/members", {"user_ids": ["carol"]}),
        ("DELETE", f"/v1/channels/{world.channel}/members/alice", None),
    ]
    async with world.server.client(headers=bearer(world.tokens["bob"])) as http:
        for method, path, body in forbidden:
            response = await http.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"
        # A user token cannot act as another user.
        impersonate = await http.get(
            f"/v1/channels/{world.channel}/messages", params={"user_id": "alice"}
        )
        assert impersonate.status_code == 403
    assert await _snapshot(world) == before


async def test_admin_user_and_backend_may_moderate(world: World) -> None:
    async with world.server.client(headers=bearer(world.tokens["dave"])) as admin:
        edited = await admin.patch(f"/v1/messages/{world.message}", json={"text": "moderated"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["text"] == "moderated"
        added = await admin.post(
            f"/v1/channels/{world.channel}/members", json={"user_ids": ["carol"]}
        )
        assert added.status_code == 200, added.text
    async with backend_client(world.server, world.workspace) as backend:
        removed = await backend.delete(f"/v1/channels/{world.channel}/members/carol")
        assert removed.status_code == 204, removed.text
        deleted = await backend.delete(f"/v1/messages/{world.reply}")
        assert deleted.status_code == 204, deleted.text
        replies = (await backend.get(f"/v1/messages/{world.message}/replies")).json()
    assert replies["messages"][0]["deleted_at"] is not None
    assert replies["messages"][0]["text"] == ""
