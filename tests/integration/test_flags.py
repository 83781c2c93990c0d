"""Flags and the review queue (issue 14 point 4), and who receives `message.flagged`.

Members flag messages, users flag users; the workspace's moderators and admins (and the backend)
page the queue with each message in context and resolve flags; every flag is one event for the
moderators' audience: their sockets and catch-up, and webhooks, exactly once, and nobody else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import (
    ChatClient,
    Flag,
    FlagResolved,
    Forbidden,
    MessageFlagged,
    NotFound,
    ServerClient,
)
from cariosan_client.sync import ChatClient as SyncChatClient
from cariosan_client.sync import ServerClient as SyncServerClient
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import LiveClient, live, ws_url
from tests.support.server import RunningServer, start_server
from tests.support.webhook_receiver import Receiver

PEOPLE = {
    "alice": "user",  # channel owner
    "bob": "user",  # member, the reporter
    "carol": "user",  # member, writes the flagged message
    "dave": "user",  # not a member
    "mia": "moderator",  # workspace moderator, not a member
    "ada": "admin",  # workspace admin, not a member
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The webhook receiver runs on loopback (the test with it has a server of its own)."""
    return settings.with_overrides(webhook_allow_private=True, webhook_schedule=(0.0, 0.2, 0.2))


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
async def tokens(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    return {name: await make_user(server, workspace, name, role=r) for name, r in PEOPLE.items()}


@pytest.fixture
async def backend(
    server: RunningServer, workspace: NewWorkspace
) -> AsyncIterator[httpx.AsyncClient]:
    async with backend_client(server, workspace) as http:
        yield http


async def _channel(backend: httpx.AsyncClient, channel_id: str = "general") -> str:
    created = await backend.post(
        "/v1/channels",
        json={"id": channel_id, "type": "group", "members": ["bob", "carol"], "user_id": "alice"},
    )
    assert created.status_code == 201, created.text
    return channel_id


async def _send(backend: httpx.AsyncClient, channel: str, user: str, text: str) -> str:
    sent = await backend.post(
        f"/v1/channels/{channel}/messages", json={"text": text, "user_id": user}
    )
    assert sent.status_code == 201, sent.text
    message_id: str = sent.json()["id"]
    return message_id


async def _events(server: RunningServer, token: str, after: int = 0) -> list[dict[str, Any]]:
    async with user_client(server, token) as http:
        response = await http.get("/v1/events", params={"after_seq": after})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


async def test_a_member_flags_a_message_once_and_a_non_member_cannot(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    channel = await _channel(backend)
    message = await _send(backend, channel, "carol", "buy cheap pills")
    async with user_client(server, tokens["bob"]) as bob:
        flagged = await bob.post(f"/v1/messages/{message}/flag", json={"reason": "spam"})
        assert flagged.status_code == 201, flagged.text
        flag = flagged.json()
        assert flag["message"]["id"] == message and flag["message"]["text"] == "buy cheap pills"
        assert flag["message_id"] == message and flag["channel_id"] == channel
        assert flag["user_id"] == "carol" and flag["reporter_id"] == "bob"
        assert flag["reason"] == "spam" and flag["status"] == "open"
        assert flag["resolution"] is None and flag["created_at"].endswith("Z")
        # Again while open: the same flag, not a second one.
        again = await bob.post(f"/v1/messages/{message}/flag", json={"reason": "really"})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == flag["id"] and again.json()["reason"] == "spam"
        # No body at all is fine too (the reason is optional).
        async with user_client(server, tokens["alice"]) as alice:
            other = await alice.post(f"/v1/messages/{message}/flag")
        assert other.status_code == 201 and other.json()["id"] != flag["id"]
        assert other.json()["reason"] is None
        # Bad input: clear 4xx, never a 500.
        long = await bob.post(f"/v1/messages/{message}/flag", json={"reason": "x" * 1001})
        assert long.status_code == 422 and long.json()["error"]["code"] == "VALIDATION_FAILED"
        missing = await bob.post("/v1/messages/not-a-uuid/flag", json={})
        assert missing.status_code == 404
    for outsider in ("dave", "mia"):
        async with user_client(server, tokens[outsider]) as http:
            refused = await http.post(f"/v1/messages/{message}/flag", json={"reason": "x"})
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "NOT_FOUND"
    # The backend flags as itself (an automatic filter), reported as "backend".
    by_backend = await backend.post(f"/v1/messages/{message}/flag", json={"reason": "filter"})
    assert by_backend.status_code == 201 and by_backend.json()["reporter_id"] == "backend"
    queue = (await backend.get("/v1/moderation/flags")).json()["flags"]
    assert len(queue) == 3


async def test_a_user_flags_a_user_of_the_workspace(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    async with user_client(server, tokens["dave"]) as dave:
        flagged = await dave.post("/v1/users/carol/flag", json={"reason": "harassment"})
        assert flagged.status_code == 201, flagged.text
        flag = flagged.json()
        assert flag["user_id"] == "carol" and flag["reporter_id"] == "dave"
        assert flag["message"] is None and flag["message_id"] is None
        assert flag["channel_id"] is None and flag["status"] == "open"
        again = await dave.post("/v1/users/carol/flag", json={})
        assert again.status_code == 200 and again.json()["id"] == flag["id"]
        nobody = await dave.post("/v1/users/nobody/flag", json={"reason": "x"})
        assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "NOT_FOUND"
        bad = await dave.post("/v1/users/bad%20id/flag", json={})
        assert bad.status_code == 422
        itself = await dave.post("/v1/users/dave/flag", json={})
        assert itself.status_code == 422
    queue = (await backend.get("/v1/moderation/flags")).json()["flags"]
    assert [f["id"] for f in queue] == [flag["id"]]


async def test_moderators_page_the_queue_with_context_and_plain_users_are_refused(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    channel = await _channel(backend)
    ids = [await _send(backend, channel, "carol", f"m{i}") for i in range(7)]
    async with user_client(server, tokens["bob"]) as bob:
        for message in ids[1:6]:
            assert (await bob.post(f"/v1/messages/{message}/flag")).status_code == 201
        assert (await bob.post("/v1/users/carol/flag")).status_code == 201
    for name in ("mia", "ada"):
        async with user_client(server, tokens[name]) as mod:
            seen: list[dict[str, Any]] = []
            cursor = None
            pages = 0
            while True:
                params: dict[str, Any] = {"limit": 4}
                if cursor:
                    params["cursor"] = cursor
                response = await mod.get("/v1/moderation/flags", params=params)
                assert response.status_code == 200, response.text
                page = response.json()
                seen += page["flags"]
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        assert pages == 2 and len(seen) == 6 and len({f["id"] for f in seen}) == 6
        # Newest first: the user flag, then the messages from the last flagged back.
        assert seen[0]["message"] is None and seen[0]["user_id"] == "carol"
        assert [f["message"]["text"] for f in seen[1:]] == ["m5", "m4", "m3", "m2", "m1"]
        # Context: two messages each side, oldest first, the flagged one included.
        m3 = seen[3]
        assert [m["text"] for m in m3["context"]] == ["m1", "m2", "m3", "m4", "m5"]
        assert [m["text"] for m in seen[1]["context"]] == ["m3", "m4", "m5", "m6"]
        assert [m["text"] for m in seen[5]["context"]] == ["m0", "m1", "m2", "m3"]
        assert all(f["status"] == "open" for f in seen)
    for name in ("alice", "bob", "dave"):
        async with user_client(server, tokens[name]) as http:
            refused = await http.get("/v1/moderation/flags")
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "FORBIDDEN"
            resolve = await http.post(
                f"/v1/moderation/flags/{seen[0]['id']}/resolve", json={"action": "dismiss"}
            )
            assert resolve.status_code == 403
    for params in ({"status": "closed"}, {"limit": 0}, {"limit": 101}, {"cursor": "garbage"}):
        bad = await backend.get("/v1/moderation/flags", params=params)
        assert bad.status_code == 422, (params, bad.text)
    resolved = (await backend.get("/v1/moderation/flags", params={"status": "resolved"})).json()
    assert resolved == {"flags": [], "next_cursor": None}


async def test_resolving_dismiss_and_delete_message_closes_flags_with_audit_entries(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    channel = await _channel(backend)
    keep = await _send(backend, channel, "carol", "harmless")
    bad = await _send(backend, channel, "carol", "abusive text")
    async with user_client(server, tokens["bob"]) as bob:
        keep_flag = (await bob.post(f"/v1/messages/{keep}/flag", json={"reason": "?"})).json()
        bad_flag = (await bob.post(f"/v1/messages/{bad}/flag", json={"reason": "abuse"})).json()
        user_flag = (await bob.post("/v1/users/carol/flag", json={"reason": "x"})).json()
    async with user_client(server, tokens["mia"]) as mia:
        dismissed = await mia.post(
            f"/v1/moderation/flags/{keep_flag['id']}/resolve",
            json={"action": "dismiss", "reason": "fine"},
        )
        assert dismissed.status_code == 200, dismissed.text
        assert dismissed.json()["status"] == "resolved"
        assert dismissed.json()["resolution"] == "dismiss"
        assert dismissed.json()["resolution_reason"] == "fine"
        assert dismissed.json()["resolved_by"] == "mia" and dismissed.json()["resolved_at"]
        deleted = await mia.post(
            f"/v1/moderation/flags/{bad_flag['id']}/resolve",
            json={"action": "delete_message", "reason": "abuse confirmed"},
        )
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["resolution"] == "delete_message"
        assert deleted.json()["message"]["deleted_at"] is not None
        assert deleted.json()["message"]["text"] == ""
        # Resolved once only.
        twice = await mia.post(
            f"/v1/moderation/flags/{bad_flag['id']}/resolve", json={"action": "dismiss"}
        )
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "CONFLICT"
        # A user flag has no message to delete; ban_user bans the flagged user workspace-wide.
        no_message = await mia.post(
            f"/v1/moderation/flags/{user_flag['id']}/resolve", json={"action": "delete_message"}
        )
        assert no_message.status_code == 422
        ban = await mia.post(
            f"/v1/moderation/flags/{user_flag['id']}/resolve",
            json={"action": "ban_user", "reason": "repeated abuse"},
        )
        assert ban.status_code == 200, ban.text
        assert (ban.json()["status"], ban.json()["resolution"]) == ("resolved", "ban_user")
    bans = (await backend.get("/v1/bans")).json()["bans"]
    assert [(b["user_id"], b["channel_id"], b["reason"]) for b in bans] == [
        ("carol", None, "repeated abuse")
    ]
    refused = await backend.post(
        f"/v1/channels/{channel}/messages", json={"text": "again", "user_id": "carol"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "BANNED"
    async with user_client(server, tokens["mia"]) as mia:
        for body in ({"action": "nuke"}, {}, {"action": "dismiss", "reason": "r" * 1001}):
            refused = await mia.post(f"/v1/moderation/flags/{user_flag['id']}/resolve", json=body)
            assert refused.status_code in (400, 422), (body, refused.text)
        unknown = await mia.post(
            "/v1/moderation/flags/00000000-0000-0000-0000-000000000000/resolve",
            json={"action": "dismiss"},
        )
        assert unknown.status_code == 404
        queue = (await mia.get("/v1/moderation/flags")).json()["flags"]
        assert queue == [], "refused resolutions changed nothing"
        done = (await mia.get("/v1/moderation/flags", params={"status": "resolved"})).json()
        resolved = {f["id"] for f in done["flags"]}
        assert resolved == {keep_flag["id"], bad_flag["id"], user_flag["id"]}
    # The message is deleted for everyone who reads it.
    async with user_client(server, tokens["bob"]) as bob:
        history = (await bob.get(f"/v1/channels/{channel}/messages")).json()["messages"]
    by_id = {m["id"]: m for m in history}
    assert by_id[bad]["deleted_at"] is not None and by_id[bad]["text"] == ""
    assert by_id[keep]["text"] == "harmless"
    entries = (await backend.get("/v1/audit", params={"action": "flag.resolved"})).json()
    resolutions = {e["target"]: e for e in entries["entries"]}
    assert resolutions[f"flag:{keep_flag['id']}"]["data"]["action"] == "dismiss"
    assert resolutions[f"flag:{keep_flag['id']}"]["reason"] == "fine"
    assert resolutions[f"flag:{bad_flag['id']}"]["data"]["action"] == "delete_message"
    assert resolutions[f"flag:{bad_flag['id']}"]["actor"] == "mia"
    assert resolutions[f"flag:{user_flag['id']}"]["data"]["action"] == "ban_user"
    assert len(resolutions) == 3
    banned = (await backend.get("/v1/audit", params={"action": "user.banned"})).json()
    assert [(e["actor"], e["target"]) for e in banned["entries"]] == [("mia", "user:carol")]
    removal = (await backend.get("/v1/audit", params={"action": "message.deleted"})).json()
    assert [e["target"] for e in removal["entries"]] == [f"message:{bad}"]
    assert removal["entries"][0]["reason"] == "abuse confirmed"


@pytest.mark.own_server  # its webhook receiver is on loopback (webhook_allow_private)
async def test_message_flagged_reaches_moderators_and_webhooks_once_and_nobody_else(
    server: RunningServer,
    tokens: dict[str, str],
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    hook = await backend.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["message.flagged"]}
    )
    assert hook.status_code == 201, hook.text
    channel = await _channel(backend)
    message = await _send(backend, channel, "carol", "flag me")
    start = max(e["seq"] for e in await _events(server, tokens["bob"]))
    async with (
        live(server.url, tokens["mia"]) as mia,
        live(server.url, tokens["ada"]) as ada,
        live(server.url, tokens["bob"]) as bob,
        live(server.url, tokens["carol"]) as carol,
        live(server.url, tokens["alice"]) as alice,
    ):
        async with user_client(server, tokens["bob"]) as http:
            flag = (await http.post(f"/v1/messages/{message}/flag", json={"reason": "r"})).json()
            # Flagging again while open fires nothing more.
            assert (await http.post(f"/v1/messages/{message}/flag")).status_code == 200
        # A marker after the flag: members see it, so they have read past the flag.
        marker = await _send(backend, channel, "alice", "after the flag")
        for moderator in (mia, ada):
            [event] = await moderator.events(1, types=("message.flagged",))
            assert event["flag"]["id"] == flag["id"] and event["flag"]["reason"] == "r"
            assert event["message"]["id"] == message and event["message"]["text"] == "flag me"
            assert "channel_id" not in event, "not a channel event"
        for member in (bob, carol, alice):
            # The first event after the flag's is the marker: the flag was not delivered.
            [first] = await member.events(1)
            assert first["type"] == "message.new" and first["message"]["id"] == marker
            assert all(f["type"] != "message.flagged" for f in await member.silent(0.3))
        assert await mia.silent(0.3) == []
    # Catch-up: the moderators read it, the reporter and the members do not.
    for name in ("mia", "ada"):
        flagged = [
            e for e in await _events(server, tokens[name], start) if e["type"] == "message.flagged"
        ]
        assert [e["flag"]["id"] for e in flagged] == [flag["id"]]
    for name in ("bob", "carol", "alice", "dave"):
        types = [e["type"] for e in await _events(server, tokens[name], start)]
        assert "message.flagged" not in types, (name, types)
    # The backend reads every event.
    everything = (await backend.get("/v1/events", params={"after_seq": start})).json()["events"]
    assert [e["type"] for e in everything].count("message.flagged") == 1
    # The webhook: exactly one delivery.
    await receiver.wait_for_async(lambda got: len(got) >= 1)
    await asyncio.sleep(1.0)
    bodies = [json.loads(r.body) for r in receiver.requests()]
    assert len(bodies) == 1, bodies
    assert bodies[0]["type"] == "message.flagged" and bodies[0]["flag"]["id"] == flag["id"]
    assert bodies[0]["message"]["text"] == "flag me"


async def test_a_demoted_moderator_stops_receiving_flags_and_a_promoted_user_starts(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    async with live(server.url, tokens["mia"]) as mia, live(server.url, tokens["dave"]) as dave:
        demoted = await backend.put("/v1/users/mia", json={"role": "user"})
        promoted = await backend.put("/v1/users/dave", json={"role": "moderator"})
        assert demoted.status_code == 200 and promoted.status_code == 200
        async with user_client(server, tokens["bob"]) as bob:
            flag = (await bob.post("/v1/users/carol/flag", json={"reason": "r"})).json()
        [event] = await dave.events(1, types=("message.flagged",))
        assert event["flag"]["id"] == flag["id"] and event["flag"]["user_id"] == "carol"
        assert "message" not in event
        assert await mia.silent(0.5) == []
    assert not [e for e in await _events(server, tokens["mia"]) if e["type"] == "message.flagged"]
    caught_up = await _events(server, tokens["dave"])
    assert [e["flag"]["id"] for e in caught_up if e["type"] == "message.flagged"] == [flag["id"]]


async def test_resolution_is_the_moderators_event_flag_resolved(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    channel = await _channel(backend)
    message = await _send(backend, channel, "carol", "meh")
    async with user_client(server, tokens["bob"]) as bob:
        flag = (await bob.post(f"/v1/messages/{message}/flag")).json()
    async with live(server.url, tokens["ada"]) as ada, live(server.url, tokens["bob"]) as bob_live:
        resolved = await backend.post(
            f"/v1/moderation/flags/{flag['id']}/resolve", json={"action": "dismiss"}
        )
        assert resolved.status_code == 200 and resolved.json()["resolved_by"] == "backend"
        [event] = await ada.events(1, types=("flag.resolved",))
        assert event["flag"]["id"] == flag["id"] and event["flag"]["resolution"] == "dismiss"
        assert await bob_live.silent(0.5) == []
    assert "flag.resolved" not in [e["type"] for e in await _events(server, tokens["bob"])]


async def test_flags_stay_in_their_workspace(
    server: RunningServer,
    workspace: NewWorkspace,
    other_workspace: NewWorkspace,
    tokens: dict[str, str],
    backend: httpx.AsyncClient,
) -> None:
    channel = await _channel(backend)
    message = await _send(backend, channel, "carol", "ours")
    async with user_client(server, tokens["bob"]) as bob:
        flag = (await bob.post(f"/v1/messages/{message}/flag")).json()
    async with backend_client(server, other_workspace) as theirs:
        assert (await theirs.get("/v1/moderation/flags")).json()["flags"] == []
        resolve = await theirs.post(
            f"/v1/moderation/flags/{flag['id']}/resolve", json={"action": "dismiss"}
        )
        assert resolve.status_code == 404
        assert (await theirs.post(f"/v1/messages/{message}/flag")).status_code == 404
        assert (await theirs.post("/v1/users/carol/flag")).status_code == 404
        events = (await theirs.get("/v1/events")).json()["events"]
        assert "message.flagged" not in [e["type"] for e in events]
    other_mod = await make_user(server, other_workspace, "mia", role="moderator")
    assert "message.flagged" not in [e["type"] for e in await _events(server, other_mod)]
    queue = (await backend.get("/v1/moderation/flags")).json()["flags"]
    assert [f["id"] for f in queue] == [flag["id"]]


async def test_the_sdks_flag_list_and_resolve(
    server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]
) -> None:
    async with (
        ServerClient(server.url, workspace.api_secret) as backend,
        ChatClient(server.url, token=tokens["bob"]) as bob,
        ChatClient(server.url, token=tokens["mia"]) as mia,
    ):
        alice = backend.as_user("alice")
        channel = await alice.create_channel("group", ["bob", "carol"], id="sdk")
        sent = [await alice.send(channel.id, f"s{i}") for i in range(3)]
        flag = await bob.flag_message(sent[1].id, reason="spam")
        assert isinstance(flag, Flag) and flag.message is not None
        assert flag.message.text == "s1" and flag.reporter_id == "bob" and flag.status == "open"
        assert (await bob.flag_message(sent[1].id)).id == flag.id
        user_flag = await bob.flag_user("carol", reason="rude")
        assert user_flag.message is None and user_flag.user_id == "carol"
        with pytest.raises(NotFound):
            await bob.flag_user("nobody")
        with pytest.raises(Forbidden):
            await bob.list_flags()
        page = await mia.list_flags(limit=1)
        assert len(page.flags) == 1 and page.next_cursor is not None
        queued = [f async for f in mia.iter_flags(page_size=1)]
        assert [f.id for f in queued] == [user_flag.id, flag.id]
        assert [m.text for m in queued[1].context or []] == ["s0", "s1", "s2"]
        deleted = await mia.resolve_flag(flag.id, "delete_message", reason="spam indeed")
        assert deleted.resolution == "delete_message" and deleted.status == "resolved"
        assert deleted.message is not None and deleted.message.deleted_at is not None
        banned = await backend.resolve_flag(user_flag.id, "ban_user", reason="rude")
        assert banned.resolution == "ban_user"
        assert [b.user_id async for b in backend.iter_bans()] == ["carol"]
        assert {f.id async for f in backend.iter_flags("resolved")} == {flag.id, user_flag.id}
        # The typed events, from catch-up.
        caught_up = [e async for e in mia.iter_events()]
        flagged = [e for e in caught_up if isinstance(e, MessageFlagged)]
        assert [e.flag.id for e in flagged] == [flag.id, user_flag.id]
        assert flagged[0].message is not None and flagged[0].message.id == sent[1].id
        resolved = [e for e in caught_up if isinstance(e, FlagResolved)]
        assert [e.flag.resolution for e in resolved] == ["delete_message", "ban_user"]

    def blocking() -> list[str]:
        with SyncServerClient(server.url, workspace.api_secret) as sync_backend:
            dave = sync_backend.as_user("dave")
            made = dave.flag_user("alice", reason="sync")
            again = sync_backend.as_user("alice").flag_message(sent[0].id, reason="sync")
            assert again.reporter_id == "alice"
            listed = sync_backend.list_flags()
            assert {made.id, again.id} <= {f.id for f in listed.flags}
            done = sync_backend.resolve_flag(made.id, "dismiss")
            assert done.resolution == "dismiss"
            with SyncChatClient(server.url, token=tokens["ada"]) as ada:
                return [f.id for f in ada.iter_flags("open", page_size=1)]

    still_open = await asyncio.to_thread(blocking)
    assert flag.id not in still_open and user_flag.id not in still_open


async def test_a_socket_opened_as_moderator_replays_no_flags_after_a_demotion(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    async with user_client(server, tokens["bob"]) as bob:
        assert (await bob.post("/v1/users/carol/flag")).status_code == 201
    async with websockets.connect(ws_url(server.url, tokens["ada"])) as socket:
        ada = LiveClient(socket)
        assert (await ada.next())["type"] == "connection.ready"
        assert (await backend.put("/v1/users/ada", json={"role": "user"})).status_code == 200
        # Catch-up reads the role as it is now, not as it was when the socket opened.
        await ada.send({"type": "resume", "after_seq": 0})
        replayed = await ada.silent(1.0)
    assert "message.flagged" not in [f["type"] for f in replayed], replayed


async def test_flags_reach_moderators_on_every_node(
    settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    shared = settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    async with start_server(shared) as one, start_server(shared) as two:
        workspace = await create_workspace(one.services.db, "nodes")
        mods = {n: await make_user(one, workspace, n, role="moderator") for n in ("mia", "max")}
        bob = await make_user(one, workspace, "bob")
        await make_user(one, workspace, "carol")
        async with live(two.url, mods["mia"]) as mia, live(two.url, mods["max"]) as max_:
            async with backend_client(one, workspace) as backend:
                # A role change made on node one is applied by node two's stream.
                demoted = await backend.put("/v1/users/max", json={"role": "user"})
                assert demoted.status_code == 200
            async with user_client(one, bob) as http:
                flag = (await http.post("/v1/users/carol/flag", json={"reason": "x"})).json()
            [event] = await mia.events(1, types=("message.flagged",))
            assert event["flag"]["id"] == flag["id"]
            assert await max_.silent(0.5) == []


async def test_a_hard_delete_takes_the_users_reports_and_the_flags_about_it(
    server: RunningServer, tokens: dict[str, str], backend: httpx.AsyncClient
) -> None:
    channel = await _channel(backend)
    message = await _send(backend, channel, "carol", "reported")
    async with user_client(server, tokens["bob"]) as bob:
        by_bob = (await bob.post(f"/v1/messages/{message}/flag", json={"reason": "b0b"})).json()
    async with user_client(server, tokens["alice"]) as alice:
        about_dave = (await alice.post("/v1/users/dave/flag", json={"reason": "a1"})).json()
    assert (await backend.delete("/v1/users/bob", params={"mode": "hard"})).status_code == 204
    assert (await backend.delete("/v1/users/dave", params={"mode": "hard"})).status_code == 204
    queue = (await backend.get("/v1/moderation/flags")).json()["flags"]
    assert by_bob["id"] not in [f["id"] for f in queue]
    assert about_dave["id"] not in [f["id"] for f in queue]
    events = (await backend.get("/v1/events")).json()["events"]
    flagged = [e["flag"]["id"] for e in events if e["type"] == "message.flagged"]
    assert by_bob["id"] not in flagged, "the reporter's report left the log with it"
    assert about_dave["id"] not in flagged, "so did the flag about the deleted user"
