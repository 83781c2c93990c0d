"""Smaller abuse findings: guessing credentials, rate-limit headers, probing channel ids."""

from __future__ import annotations

import dataclasses

import httpx
import jwt
import pytest
import websockets

from cariosan.config import Limits, Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.support.chat import bearer, make_user
from tests.support.live import LiveClient
from tests.support.server import RunningServer, start_server
from tests.support.windows import fresh_window


async def test_failed_authentication_is_rate_limited_per_address(settings: Settings) -> None:
    limits = Limits(auth_failures_per_minute=5)
    async with start_server(settings.with_overrides(limits=limits)) as running:
        workspace = await create_workspace(running.services.db, "guarded")
        forged = jwt.encode(
            {"sub": "alice", "ws": str(workspace.id), "exp": 4102444800, "iat": 0},
            "not-the-server-secret-0123456789abcdef",
            algorithm="HS256",
        )
        async with running.client() as http:
            await fresh_window(needed=10)
            statuses = []
            for credential in ["cs_wrong"] * 3 + [forged] * 3:
                response = await http.get("/v1/users/alice", headers=bearer(credential))
                statuses.append(response.status_code)
            assert statuses == [401] * 5 + [429], statuses
            assert response.json()["error"]["code"] == "RATE_LIMITED"
            assert int(response.headers["retry-after"]) >= 1
            # While limited, even the right secret is refused: guessing gains nothing.
            right = await http.get("/v1/users/alice", headers=bearer(workspace.api_secret))
            assert right.status_code == 429
        # The WebSocket counts the same failures and closes with 4008.
        url = running.url.replace("http://", "ws://") + f"/v1/ws?token={forged}"
        async with websockets.connect(url) as socket:
            assert await LiveClient(socket).close_code() == 4008


async def test_a_429_carries_one_set_of_rate_limit_headers(
    server: RunningServer, workspace: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A low limit: sends slowed down by a busy machine still reach it (1 s windows).
    settings = server.services.settings
    limits = dataclasses.replace(settings.limits, user_messages_per_second=2)
    monkeypatch.setattr(server.services, "settings", settings.with_overrides(limits=limits))
    token = await make_user(server, workspace, "alice")
    async with server.client(headers=bearer(token)) as http:
        created = await http.post("/v1/channels", json={"id": "c", "type": "group", "members": []})
        assert created.status_code == 201
        burst = server.services.settings.limits.user_messages_per_second
        limited: httpx.Response | None = None
        for n in range(burst * 3):
            response = await http.post("/v1/channels/c/messages", json={"text": str(n)})
            if response.status_code == 429:
                limited = response
                break
    assert limited is not None, "the message burst limit was never reached"
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        values = limited.headers.get_list(name)
        assert len(values) == 1 and "," not in values[0], (name, values)
    assert limited.headers["x-ratelimit-limit"] == str(burst)


async def test_creating_a_taken_channel_id_answers_the_same_visible_or_not(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    """A non-member learns that an id is taken (ids are unique per workspace), and nothing
    else: the answer is the same for a channel it can see and one it cannot."""
    alice = await make_user(server, workspace, "alice")
    mallory = await make_user(server, workspace, "mallory")
    async with server.client(headers=bearer(alice)) as http:
        for channel_id, kind in (("secret", "group"), ("open", "public")):
            made = await http.post(
                "/v1/channels",
                json={"id": channel_id, "type": kind, "name": "Plans", "members": []},
            )
            assert made.status_code == 201, made.text
    answers = []
    async with server.client(headers=bearer(mallory)) as http:
        assert (await http.get("/v1/channels/secret")).status_code == 404
        assert (await http.get("/v1/channels", params={"public": "true"})).json()["channels"]
        for channel_id in ("secret", "open"):
            taken = await http.post(
                "/v1/channels", json={"id": channel_id, "type": "group", "members": []}
            )
            error = taken.json()["error"]
            answers.append(
                (taken.status_code, error["code"], error["message"].replace(channel_id, "ID"))
            )
            assert "Plans" not in taken.text and "alice" not in taken.text
    assert answers[0] == answers[1] == (409, "CONFLICT", answers[0][2]), answers
