"""Bans (issue 14, point 2): workspace and channel bans refuse sending, reacting, joining and
creating with 403 BANNED naming the reason and the expiry; they expire on their own; shadow bans
hide what the user sends from everyone else; a workspace ban closes the user's sockets (4003);
unban, paging, audit entries and who receives the events.

The tests that see a socket closed run on a server of their own whose periodic check of open
sockets is set to an hour, so a socket closed there was closed by the ban itself; the others
share one server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import live
from tests.support.server import RunningServer

NEVER = 3600.0
PEOPLE = {"alice": "user", "bob": "user", "carol": "user", "mod": "moderator"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(revocation_check_seconds=NEVER)


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
async def tokens(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    return {name: await make_user(server, workspace, name, role=r) for name, r in PEOPLE.items()}


async def _channel(
    server: RunningServer, token: str, members: list[str], *, type: str = "group", id: str = ""
) -> str:
    body: dict[str, Any] = {"type": type, "members": members}
    if id:
        body["id"] = id
    async with user_client(server, token) as http:
        created = await http.post("/v1/channels", json=body)
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        return channel_id


async def _send(http: httpx.AsyncClient, channel: str, text: str) -> httpx.Response:
    return await http.post(f"/v1/channels/{channel}/messages", json={"text": text})


async def _ban(server: RunningServer, token: str, **body: Any) -> dict[str, Any]:
    async with user_client(server, token) as http:
        banned = await http.post("/v1/bans", json=body)
        assert banned.status_code == 201, banned.text
        ban: dict[str, Any] = banned.json()
        return ban


def _banned(response: httpx.Response, *needles: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "BANNED", error
    for needle in needles:
        assert needle in error["message"], (needle, error["message"])


def _later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_a_workspace_ban_refuses_send_react_join_and_create_naming_reason_and_expiry(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    group = await _channel(server, tokens["bob"], ["alice"])
    public = await _channel(server, tokens["bob"], [], type="public")
    async with user_client(server, tokens["bob"]) as bob:
        message = (await _send(bob, group, "react to this")).json()["id"]
    until = _later(3600)
    ban = await _ban(server, tokens["mod"], user_id="alice", reason="spam links", expires_at=until)
    assert (ban["user_id"], ban["channel_id"], ban["shadow"]) == ("alice", None, False)
    assert ban["created_by"] == "mod"
    expiry = until[:19]  # the message names the expiry (to the second at least)
    async with user_client(server, tokens["alice"]) as alice:
        _banned(await _send(alice, group, "buy now"), "spam links", expiry, "workspace")
        _banned(await alice.put(f"/v1/messages/{message}/reactions/like"), "spam links", expiry)
        joined = await alice.post(f"/v1/channels/{public}/members", json={"user_ids": ["alice"]})
        _banned(joined, "spam links", expiry)
        created = await alice.post("/v1/channels", json={"type": "group", "members": ["bob"]})
        _banned(created, "spam links", expiry)
        # Reading stays allowed.
        history = await alice.get(f"/v1/channels/{group}/messages")
        assert history.status_code == 200
    # A moderator cannot add the banned user either.
    async with user_client(server, tokens["bob"]) as bob:
        other = await _channel(server, tokens["bob"], ["carol"])
        refused = await bob.post(f"/v1/channels/{other}/members", json={"user_ids": ["alice"]})
        _banned(refused, "user alice", "spam links")
    # A ban without reason or expiry says so.
    await _ban(server, tokens["mod"], user_id="carol")
    async with user_client(server, tokens["carol"]) as carol:
        _banned(await _send(carol, other, "x"), "no expiry", "no reason given")


async def test_a_channel_ban_refuses_only_in_its_channel(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    banned_from = await _channel(server, tokens["bob"], ["alice"])
    elsewhere = await _channel(server, tokens["bob"], ["alice"])
    public = await _channel(server, tokens["bob"], [], type="public")
    other_public = await _channel(server, tokens["bob"], [], type="public")
    async with user_client(server, tokens["bob"]) as bob:
        message = (await _send(bob, banned_from, "hello")).json()["id"]
    # Bob owns the channels: a channel moderator bans in its own channel.
    for channel in (banned_from, public):
        ban = await _ban(
            server, tokens["bob"], user_id="alice", channel_id=channel, reason="off topic"
        )
        assert ban["channel_id"] == channel
    async with user_client(server, tokens["alice"]) as alice:
        _banned(await _send(alice, banned_from, "x"), "off topic", f"channel {banned_from}")
        _banned(await alice.put(f"/v1/messages/{message}/reactions/like"), "off topic")
        join = {"user_ids": ["alice"]}
        _banned(await alice.post(f"/v1/channels/{public}/members", json=join), "off topic")
        # Everywhere else alice does as she likes.
        assert (await _send(alice, elsewhere, "fine here")).status_code == 201
        joined = await alice.post(f"/v1/channels/{other_public}/members", json=join)
        assert joined.status_code == 200, joined.text
        created = await alice.post("/v1/channels", json={"type": "group", "members": ["bob"]})
        assert created.status_code == 201, created.text
    # Bob owns `banned_from` but not carol's channel: no ban there, and no workspace ban.
    carols = await _channel(server, tokens["carol"], ["bob", "alice"])
    async with user_client(server, tokens["bob"]) as bob:
        refused = await bob.post("/v1/bans", json={"user_id": "alice", "channel_id": carols})
        assert refused.status_code == 403, refused.text
        workspace_wide = await bob.post("/v1/bans", json={"user_id": "alice"})
        assert workspace_wide.status_code == 403, workspace_wide.text


async def test_a_ban_expires_on_its_own(server: RunningServer, tokens: dict[str, str]) -> None:
    channel = await _channel(server, tokens["bob"], ["alice"])
    await _ban(server, tokens["mod"], user_id="alice", expires_at=_later(1.5), reason="cool off")
    async with (
        user_client(server, tokens["alice"]) as alice,
        user_client(server, tokens["mod"]) as mod,
    ):
        _banned(await _send(alice, channel, "too soon"), "cool off")
        listed = (await mod.get("/v1/bans")).json()["bans"]
        assert [b["user_id"] for b in listed] == ["alice"]
        # Polled, not slept: the first send after the expiry goes through.
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            sent = await _send(alice, channel, "back again")
            if sent.status_code == 201:
                break
            _banned(sent, "cool off")
            assert asyncio.get_running_loop().time() < deadline, "the ban never expired"
            await asyncio.sleep(0.2)
        assert (await mod.get("/v1/bans")).json()["bans"] == []
        # An expired ban is no ban: unbanning finds nothing.
        assert (await mod.delete("/v1/bans/alice")).status_code == 404
        # A ban must end in the future.
        past = await mod.post("/v1/bans", json={"user_id": "alice", "expires_at": _later(-5)})
        assert past.status_code == 422, past.text


async def test_a_shadow_ban_hides_the_users_messages_from_everyone_else(
    server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]
) -> None:
    channel = await _channel(server, tokens["bob"], ["alice", "carol"])
    async with user_client(server, tokens["carol"]) as carol:
        seen = (await carol.get("/v1/events")).json()["latest_seq"]
    async with (
        live(server.url, tokens["carol"]) as carol_live,
        live(server.url, tokens["alice"]) as alice_live,
    ):
        await _ban(server, tokens["mod"], user_id="alice", shadow=True, reason="troll")
        async with user_client(server, tokens["alice"]) as alice:
            sent = await _send(alice, channel, "shadowmarker nobody sees this")
            assert sent.status_code == 201, sent.text  # the user notices nothing
            hidden = sent.json()["id"]
            reply = await alice.post(
                f"/v1/channels/{channel}/messages", json={"text": "x", "parent_id": hidden}
            )
            assert reply.status_code == 201
            hidden_reply = reply.json()["id"]
        async with user_client(server, tokens["bob"]) as bob:
            visible = (await _send(bob, channel, "bob speaks")).json()["id"]
        # Live: alice gets her own message, carol only bob's.
        alice_got = await alice_live.events(3, types=("message.new",))
        assert [e["message"]["id"] for e in alice_got] == [hidden, hidden_reply, visible]
        [carol_got] = await carol_live.events(1, types=("message.new",))
        assert carol_got["message"]["id"] == visible
        assert await carol_live.silent(0.5) == []
    async with (
        user_client(server, tokens["carol"]) as carol,
        user_client(server, tokens["alice"]) as alice,
        backend_client(server, workspace) as backend,
    ):
        # History and a read by id.
        carol_history = (await carol.get(f"/v1/channels/{channel}/messages")).json()["messages"]
        assert [m["id"] for m in carol_history] == [visible]
        alice_history = (await alice.get(f"/v1/channels/{channel}/messages")).json()["messages"]
        assert [m["id"] for m in alice_history] == [hidden, visible]
        hidden_react = await carol.put(f"/v1/messages/{hidden}/reactions/like")
        assert hidden_react.status_code == 404
        replies = await carol.get(f"/v1/messages/{hidden}/replies")
        assert replies.status_code == 404
        # Search.
        found = (await carol.get("/v1/search", params={"q": "shadowmarker"})).json()["messages"]
        assert found == []
        own = (await alice.get("/v1/search", params={"q": "shadowmarker"})).json()["messages"]
        assert [m["id"] for m in own] == [hidden]
        # Catch-up.
        events = (await carol.get("/v1/events", params={"after_seq": seen})).json()["events"]
        news = [e["message"]["id"] for e in events if e["type"] == "message.new"]
        assert news == [visible]
        mine = (await alice.get("/v1/events", params={"after_seq": seen})).json()["events"]
        assert hidden in [e["message"]["id"] for e in mine if e["type"] == "message.new"]
        # The channel list: carol's last message is bob's, and nothing of alice is unread.
        async with user_client(server, tokens["bob"]) as bob:
            await bob.post(f"/v1/channels/{channel}/read")
        await alice.post(f"/v1/channels/{channel}/messages", json={"text": "after bob"})
        listed = (await carol.get("/v1/channels")).json()["channels"]
        [item] = [c for c in listed if c["id"] == channel]
        assert item["last_message"]["id"] == visible
        assert item["unread_count"] == 1  # bob's message only
        alice_items = (await alice.get("/v1/channels")).json()["channels"]
        [alice_item] = [c for c in alice_items if c["id"] == channel]
        assert alice_item["last_message"]["text"] == "after bob"
        # The backend acting as itself sees everything (webhooks get these events too).
        all_of_it = (await backend.get(f"/v1/channels/{channel}/messages")).json()["messages"]
        assert hidden in [m["id"] for m in all_of_it]


@pytest.mark.own_server  # sockets closed by the ban, not by a periodic check
async def test_a_workspace_ban_closes_open_sockets_with_4003_and_refuses_new_ones(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    async with (
        live(server.url, tokens["alice"]) as alice_live,
        live(server.url, tokens["bob"]) as bob_live,
    ):
        await _ban(server, tokens["mod"], user_id="alice")
        assert await alice_live.close_code(timeout=5) == 4003
        # Bob's socket is not touched.
        await bob_live.send({"type": "ping"})
        assert (await bob_live.next())["type"] == "pong"
    refused = await _ws_code(server, tokens["alice"])
    assert refused == 4003
    # A channel ban or a shadow ban closes nothing.
    channel = await _channel(server, tokens["bob"], ["carol"])
    async with live(server.url, tokens["carol"]) as carol_live:
        await _ban(server, tokens["mod"], user_id="carol", channel_id=channel)
        await _ban(server, tokens["mod"], user_id="carol", shadow=True)
        await carol_live.send({"type": "ping"})
        while (frame := await carol_live.next())["type"] != "pong":
            assert frame["type"] == "user.banned", frame
    # Unbanned: the socket opens again.
    async with user_client(server, tokens["mod"]) as mod:
        assert (await mod.delete("/v1/bans/alice")).status_code == 204
    async with live(server.url, tokens["alice"]) as again:
        assert again.ready["user_id"] == "alice"


async def _ws_code(server: RunningServer, token: str) -> int | None:
    import websockets
    from websockets.exceptions import ConnectionClosed

    from tests.support.live import ws_url

    async with websockets.connect(ws_url(server.url, token)) as socket:
        try:
            await socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


async def test_unban_lifts_each_kind_of_ban(server: RunningServer, tokens: dict[str, str]) -> None:
    channel = await _channel(server, tokens["bob"], ["alice"])
    await _ban(server, tokens["mod"], user_id="alice")
    await _ban(server, tokens["bob"], user_id="alice", channel_id=channel)
    async with (
        user_client(server, tokens["alice"]) as alice,
        user_client(server, tokens["mod"]) as mod,
        user_client(server, tokens["bob"]) as bob,
    ):
        _banned(await _send(alice, channel, "x"), "workspace")
        assert (await mod.delete("/v1/bans/alice")).status_code == 204
        # The channel ban still holds.
        _banned(await _send(alice, channel, "x"), f"channel {channel}")
        unban = await bob.delete("/v1/bans/alice", params={"channel_id": channel})
        assert unban.status_code == 204
        assert (await _send(alice, channel, "free")).status_code == 201
        again = await bob.delete("/v1/bans/alice", params={"channel_id": channel})
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "NOT_FOUND"


async def test_bans_are_listed_newest_first_page_by_page(
    server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]
) -> None:
    channel = await _channel(server, tokens["bob"], ["alice"])
    async with backend_client(server, workspace) as backend:
        for n in range(5):
            await make_user(server, workspace, f"spammer{n}")
            made = await backend.post("/v1/bans", json={"user_id": f"spammer{n}"})
            assert made.status_code == 201, made.text
        # The backend acting as a user names it in the query: the body's user_id is the banned.
        as_bob = await backend.post(
            "/v1/bans", params={"user_id": "bob"}, json={"user_id": "carol", "channel_id": channel}
        )
        assert as_bob.status_code == 201, as_bob.text
        assert as_bob.json()["created_by"] == "bob"
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await backend.get("/v1/bans", params=params)).json()
            assert len(page["bans"]) <= 2
            seen += [b["user_id"] for b in page["bans"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["carol", "spammer4", "spammer3", "spammer2", "spammer1", "spammer0"]
        bad = await backend.get("/v1/bans", params={"cursor": "nonsense"})
        assert bad.status_code == 422
        assert (await backend.get("/v1/bans", params={"limit": 0})).status_code == 422
    async with user_client(server, tokens["bob"]) as bob:
        own = (await bob.get("/v1/bans", params={"channel_id": channel})).json()
        assert [b["user_id"] for b in own["bans"]] == ["carol"]
        assert (await bob.get("/v1/bans")).status_code == 403
    async with user_client(server, tokens["alice"]) as alice:
        member = await alice.get("/v1/bans", params={"channel_id": channel})
        assert member.status_code == 403


async def test_bad_ban_requests_get_clear_errors(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    async with user_client(server, tokens["mod"]) as mod:
        for body, status in [
            ({"user_id": "nobody"}, 404),
            ({"user_id": "mod"}, 422),
            ({"user_id": "bad id"}, 422),
            ({"user_id": "alice", "channel_id": "nope"}, 404),
            ({"user_id": "alice", "reason": "x" * 1001}, 422),
            ({"user_id": "alice", "reason": "nul\x00"}, 422),
            ({"user_id": "alice", "expires_at": "tomorrow"}, 400),
            ({"user_id": "alice", "expires_at": "2099-01-01T00:00:00"}, 422),
            ({"user_id": "alice", "expires_at": "9999-12-31T23:59:59-14:00"}, 422),
            ({}, 400),
        ]:
            response = await mod.post("/v1/bans", json=body)
            assert response.status_code in (status, 422 if status == 400 else status), (
                body,
                response.text,
            )
            assert response.status_code < 500
        assert (
            await mod.delete("/v1/bans/alice", params={"channel_id": "bad id"})
        ).status_code == 422


async def test_bans_and_unbans_are_in_the_audit_log(
    server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]
) -> None:
    channel = await _channel(server, tokens["bob"], ["alice"])
    until = _later(600)
    await _ban(server, tokens["mod"], user_id="alice", reason="rude", expires_at=until)
    await _ban(server, tokens["bob"], user_id="carol", channel_id=channel, shadow=True)
    async with user_client(server, tokens["mod"]) as mod:
        assert (await mod.delete("/v1/bans/alice")).status_code == 204
    async with backend_client(server, workspace) as backend:
        entries = (await backend.get("/v1/audit")).json()["entries"]
    relevant = [
        (e["actor"], e["action"], e["target"], e["reason"], e["data"].get("channel_id"))
        for e in entries
        if e["action"] in ("user.banned", "user.unbanned")
    ]
    assert relevant == [
        ("mod", "user.unbanned", "user:alice", "rude", None),
        ("bob", "user.banned", "user:carol", None, channel),
        ("mod", "user.banned", "user:alice", "rude", None),
    ]
    banned_alice = [e for e in entries if e["action"] == "user.banned"][-1]
    assert banned_alice["data"]["expires_at"].startswith(until[:19])


@pytest.mark.own_server  # a socket closed by the ban, not by a periodic check
async def test_ban_events_reach_only_those_concerned(
    server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]
) -> None:
    channel = await _channel(server, tokens["bob"], ["alice"])
    types = ("user.banned", "user.unbanned")
    async with backend_client(server, workspace) as backend:
        start = (await backend.get("/v1/events")).json()["latest_seq"]
        hooked = await backend.post(
            "/v1/webhooks", json={"url": "https://example.com/hook", "events": list(types)}
        )
        assert hooked.status_code == 201, hooked.text
        hook = hooked.json()["id"]
    async with (
        live(server.url, tokens["alice"]) as alice_live,
        live(server.url, tokens["bob"]) as bob_live,
        live(server.url, tokens["carol"]) as carol_live,
    ):
        # A channel ban: to the channel's members, with channel_id.
        await _ban(server, tokens["bob"], user_id="alice", channel_id=channel, reason="r1")
        for client in (alice_live, bob_live):
            [event] = await client.events(1, types=types)
            assert event["type"] == "user.banned"
            assert (event["channel_id"], event["user_id"]) == (channel, "alice")
            assert event["ban"]["reason"] == "r1"
        async with user_client(server, tokens["bob"]) as bob:
            unban = await bob.delete("/v1/bans/alice", params={"channel_id": channel})
            assert unban.status_code == 204
        for client in (alice_live, bob_live):
            [event] = await client.events(1, types=types)
            assert (event["type"], event["channel_id"]) == ("user.unbanned", channel)
        # A workspace ban of carol: to carol alone (and webhooks).
        await _ban(server, tokens["mod"], user_id="carol", reason="r2")
        assert await carol_live.close_code() == 4003
        # A shadow ban: to nobody's socket.
        await _ban(server, tokens["mod"], user_id="bob", shadow=True)
        assert [e for e in await alice_live.silent(0.5) if e["type"] in types] == []
        assert [e for e in await bob_live.silent(0.2) if e["type"] in types] == []
    async with user_client(server, tokens["carol"]) as carol:
        caught_up = (await carol.get("/v1/events", params={"after_seq": start})).json()["events"]
        assert [(e["type"], e.get("channel_id")) for e in caught_up if e["type"] in types] == [
            ("user.banned", None)
        ]
    async with user_client(server, tokens["alice"]) as alice:
        alice_events = (await alice.get("/v1/events", params={"after_seq": start})).json()
        assert [e["type"] for e in alice_events["events"] if e["type"] in types] == [
            "user.banned",
            "user.unbanned",
        ]
    async with backend_client(server, workspace) as backend:
        everything = (await backend.get("/v1/events", params={"after_seq": start})).json()
        assert [e["type"] for e in everything["events"] if e["type"] in types] == [
            "user.banned",
            "user.unbanned",
            "user.banned",
            "user.banned",
        ]
        # Webhooks receive every one of them, the shadow ban's too.
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            listed = await backend.get(f"/v1/webhooks/{hook}/deliveries", params={"limit": 50})
            hooked_types = sorted(d["event_type"] for d in listed.json()["deliveries"])
            if len(hooked_types) >= 4 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert hooked_types == ["user.banned"] * 3 + ["user.unbanned"]
