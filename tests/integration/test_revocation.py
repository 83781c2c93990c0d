"""Revocation takes effect at once (issue 11, point 3), on one node: `revoke-tokens`, deleting a
user (both modes) and a recreated user, over REST and the WebSocket.

The tests that see a socket closed run on servers of their own that never run their periodic
check of open sockets (it is set to an hour), so a socket closed there was closed by the
revocation itself, not by that backstop; the one test of the backstop turns it on. The others
share one server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cariosan.config import Settings
from cariosan.domain import users
from cariosan.domain.jwt_keys import KeyRing
from cariosan.domain.workspaces import NewWorkspace
from tests.conftest import JWT_SECRET
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import live, ws_url
from tests.support.server import RunningServer, start_server

NEVER = 3600.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(revocation_check_seconds=NEVER)


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
async def people(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    return {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}


async def _channel(server: RunningServer, token: str, members: list[str]) -> str:
    async with user_client(server, token) as http:
        created = await http.post("/v1/channels", json={"type": "group", "members": members})
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        return channel_id


async def _send(server: RunningServer, token: str, channel_id: str, text: str) -> None:
    async with user_client(server, token) as http:
        sent = await http.post(f"/v1/channels/{channel_id}/messages", json={"text": text})
        assert sent.status_code == 201, sent.text


async def _me_status(server: RunningServer, token: str) -> tuple[int, str | None]:
    async with user_client(server, token) as http:
        response = await http.get("/v1/me")
    code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
    return response.status_code, code


async def _mint(server: RunningServer, workspace: NewWorkspace, user_id: str) -> str:
    async with backend_client(server, workspace) as backend:
        minted = await backend.post(f"/v1/users/{user_id}/token")
        assert minted.status_code == 200, minted.text
        token: str = minted.json()["token"]
        return token


async def _ws_refused(server: RunningServer, token: str) -> int | None:
    """The close code a new socket with `token` gets before any frame (None: it got a frame)."""
    async with websockets.connect(ws_url(server.url, token)) as socket:
        try:
            await socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


@pytest.mark.own_server  # a socket closed by the revocation, not by a periodic check
async def test_revoke_tokens_refuses_older_tokens_on_rest_and_websocket_and_accepts_new_ones(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["bob"], ["alice"])
    old = people["alice"]
    async with live(server.url, old) as alice_live:
        async with backend_client(server, workspace) as backend:
            revoked = await backend.post("/v1/users/alice/revoke-tokens")
            assert revoked.status_code == 204, revoked.text
        assert await alice_live.close_code() == 4001

    assert await _me_status(server, old) == (401, "UNAUTHORIZED")
    assert await _ws_refused(server, old) == 4001
    # Bob's token was not revoked.
    assert (await _me_status(server, people["bob"]))[0] == 200

    new = await _mint(server, workspace, "alice")
    assert (await _me_status(server, new))[0] == 200
    async with live(server.url, new) as alice_live:
        await _send(server, people["bob"], channel, "after the revoke")
        [event] = await alice_live.events(1, types=("message.new",))
        assert event["message"]["text"] == "after the revoke"


async def test_revoke_tokens_needs_the_api_secret_and_an_existing_user(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    async with user_client(server, people["alice"]) as http:
        own = await http.post("/v1/users/alice/revoke-tokens")
        assert own.status_code == 403, own.text
    async with backend_client(server, workspace) as backend:
        missing = await backend.post("/v1/users/nobody/revoke-tokens")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
        bad = await backend.post("/v1/users/bad%20id/revoke-tokens")
        assert bad.status_code == 422
    assert (await _me_status(server, people["alice"]))[0] == 200


def _iat(token: str) -> int:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return int(claims["iat"])


async def test_a_token_minted_in_the_same_second_is_refused_before_the_revoke_and_works_after(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    """Whole-second issue times cannot tell these two apart; the server must."""
    async with backend_client(server, workspace) as backend:
        for _ in range(50):
            before = await _mint(server, workspace, "alice")
            assert (await backend.post("/v1/users/alice/revoke-tokens")).status_code == 204
            after = await _mint(server, workspace, "alice")
            if _iat(before) == _iat(after):
                break
        assert _iat(before) == _iat(after), "could not mint both tokens within one second"
    assert await _me_status(server, before) == (401, "UNAUTHORIZED")
    assert (await _me_status(server, after))[0] == 200


@pytest.mark.own_server  # a socket closed by the deletion, not by a periodic check
async def test_anonymizing_a_user_closes_its_socket_and_a_recreated_user_inherits_no_token(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    await _channel(server, people["bob"], ["alice"])
    old = people["alice"]
    async with live(server.url, old) as alice_live:
        async with backend_client(server, workspace) as backend:
            deleted = await backend.delete("/v1/users/alice")
            assert deleted.status_code == 204, deleted.text
        assert await alice_live.close_code() == 4001
    assert await _me_status(server, old) == (401, "UNAUTHORIZED")

    async with backend_client(server, workspace) as backend:
        again = await backend.put("/v1/users/alice", json={"name": "Alice again"})
        assert again.status_code == 200
    assert await _me_status(server, old) == (401, "UNAUTHORIZED")
    assert await _ws_refused(server, old) == 4001
    assert (await _me_status(server, await _mint(server, workspace, "alice")))[0] == 200


@pytest.mark.own_server  # a socket closed by the deletion, not by a periodic check
async def test_a_hard_delete_closes_the_socket_and_tells_the_remaining_members(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    channel = await _channel(server, people["bob"], ["alice", "carol"])
    other = await _channel(server, people["alice"], ["carol"])
    old = people["alice"]
    async with (
        live(server.url, people["bob"]) as bob,
        live(server.url, people["carol"]) as carol,
        live(server.url, old) as alice_live,
    ):
        async with backend_client(server, workspace) as backend:
            deleted = await backend.delete("/v1/users/alice", params={"mode": "hard"})
            assert deleted.status_code == 204, deleted.text
        assert await alice_live.close_code() == 4001

        [to_bob] = await bob.events(1, types=("member.removed",))
        assert (to_bob["channel_id"], to_bob["member"]["user_id"]) == (channel, "alice")
        to_carol = await carol.events(2, types=("member.removed",))
        assert sorted(e["channel_id"] for e in to_carol) == sorted([channel, other])
        assert {e["member"]["user_id"] for e in to_carol} == {"alice"}

        # The same id again is a new user: no old token, no old channel.
        async with backend_client(server, workspace) as backend:
            assert (await backend.put("/v1/users/alice", json={})).status_code == 200
            members = await backend.get(f"/v1/channels/{channel}", params={"user_id": "bob"})
            assert "alice" not in [m["user_id"] for m in members.json()["members"]]
        assert await _me_status(server, old) == (401, "UNAUTHORIZED")
        assert await _ws_refused(server, old) == 4001
        new_token = await _mint(server, workspace, "alice")
        async with live(server.url, new_token) as new_alice:
            await _send(server, people["bob"], channel, "alice is gone")
            [seen] = await carol.events(1, types=("message.new",))
            assert seen["message"]["text"] == "alice is gone"
            assert await new_alice.silent(1.0) == []
        # Nor does it read the former user's removals in its catch-up.
        async with user_client(server, new_token) as http:
            caught_up = (await http.get("/v1/events", params={"after_seq": 0})).json()
        assert caught_up["events"] == []
        # Carol's catch-up has them, as live delivery did.
        async with user_client(server, people["carol"]) as http:
            carols = (await http.get("/v1/events", params={"after_seq": 0})).json()["events"]
        assert sorted(e["channel_id"] for e in carols if e["type"] == "member.removed") == sorted(
            [channel, other]
        )


class _NoNotice:
    """Sessions that are never told: as if the notice of another node was lost."""

    def revoked(self, workspace_id: uuid.UUID, user_id: str, valid_after_us: int) -> None:
        return


@pytest.fixture
async def checking_server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with start_server(settings.with_overrides(revocation_check_seconds=0.2)) as running:
        yield running


async def test_the_periodic_check_closes_sockets_whose_revocation_notice_was_lost(
    checking_server: RunningServer,
) -> None:
    from cariosan.domain.workspaces import create_workspace

    server = checking_server
    workspace = await create_workspace(server.services.db, "lost notices")
    alice = await make_user(server, workspace, "alice")
    bob = await make_user(server, workspace, "bob")
    async with live(server.url, alice) as alice_live, live(server.url, bob) as bob_live:
        await users.revoke_tokens(server.services.db, _NoNotice(), workspace.id, "alice")
        assert await alice_live.close_code() == 4001
        # Only the revoked user's socket goes.
        await bob_live.send({"type": "ping"})
        assert (await bob_live.next())["type"] == "pong"


@pytest.mark.own_server  # retires the JWT secret every server on its database signs with
async def test_a_newer_secret_retires_older_ones_but_a_stale_configuration_retires_nothing(
    server: RunningServer,
) -> None:
    database = server.services.db
    s1, s2, s3 = JWT_SECRET, "second-jwt-secret-" + "b" * 32, "third-jwt-secret-" + "c" * 32

    async def started(current: str, previous: str | None = None) -> KeyRing:
        ring = KeyRing(current, previous)
        await ring.register(database)
        return ring

    assert (await started(s1)).accepted() == [s1]
    # Step one of a rotation keeps the old secret: nothing retired.
    assert (await started(s2, s1)).accepted() == [s2, s1]
    # A node restarted with its stale configuration meanwhile does not retire the newer one.
    assert (await started(s1)).accepted() == [s1]
    assert (await started(s2, s1)).accepted() == [s2, s1]
    # Step two drops the old secret: every node now refuses it, stale ones too.
    assert (await started(s2)).accepted() == [s2]
    assert (await started(s1)).accepted() == []
    # A one-step change retires at once.
    assert (await started(s3)).accepted() == [s3]
    assert (await started(s2)).accepted() == []
    # Naming a retired secret as the previous one keeps it for verification again.
    assert (await started(s3, s2)).accepted() == [s3, s2]
    assert (await started(s2)).accepted() == [s2]


async def test_the_python_sdk_revokes_tokens(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    from cariosan_client import ChatClient, ServerClient, Unauthorized

    async with ServerClient(server.url, workspace.api_secret) as backend:
        await backend.upsert_user("erin")
        before = (await backend.create_token("erin")).token
        await backend.revoke_tokens("erin")
        after = (await backend.create_token("erin")).token
    async with ChatClient(server.url, token=before) as erin:
        with pytest.raises(Unauthorized):
            await erin.me()
    async with ChatClient(server.url, token=after) as erin:
        assert (await erin.me()).user.id == "erin"
