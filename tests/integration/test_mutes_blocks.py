"""Mutes and blocks (issue 14, point 3), against a real server.

A member mutes a channel (for good or until a time): it leaves `total_unread` and is `muted` in
the channel list. A user mutes another: the other's messages carry `muted: true` for it, in
every read (history, replies, single reads, the channel list's last message, catch-up) and for
nobody else. A user blocks another: no new dm between the two, and the blocked user's mentions
of the blocker are dropped. All of it is private, per tenant, and refuses bad input with 4xx.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cariosan.config import Settings
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import ChatClient, Forbidden, NotFound, ServerClient, ValidationFailed
from cariosan_client import sync as sync_client
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import LiveClient, live
from tests.support.server import RunningServer, start_server


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


People = dict[str, str]


@pytest.fixture
async def people(server: RunningServer, workspace: NewWorkspace) -> People:
    names = ("alice", "bob", "carol", "dave")
    return {name: await make_user(server, workspace, name) for name in names}


async def _group(server: RunningServer, token: str, members: list[str], id: str) -> str:
    async with user_client(server, token) as http:
        body = {"type": "group", "id": id, "members": members}
        created = await http.post("/v1/channels", json=body)
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        return channel_id


async def _send(
    server: RunningServer, token: str, channel_id: str, text: str, **extra: Any
) -> dict[str, Any]:
    async with user_client(server, token) as http:
        sent = await http.post(f"/v1/channels/{channel_id}/messages", json={"text": text, **extra})
        assert sent.status_code == 201, sent.text
        message: dict[str, Any] = sent.json()
        return message


async def _get(server: RunningServer, token: str, path: str, **params: Any) -> Any:
    async with user_client(server, token) as http:
        response = await http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


async def _ok(response: Awaitable[httpx.Response], status: int = 204) -> None:
    answered = await response
    assert answered.status_code == status, answered.text


def _soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll `check` until it holds (short steps, no long fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(0.2)


async def _total_unread(server: RunningServer, token: str) -> int:
    me = await _get(server, token, "/v1/me")
    total: int = me["total_unread"]
    return total


async def _listed(server: RunningServer, token: str) -> dict[str, dict[str, Any]]:
    page = await _get(server, token, "/v1/channels")
    return {c["id"]: c for c in page["channels"]}


# ---- channel mutes ---------------------------------------------------------------------------


async def test_a_muted_channel_leaves_total_unread_and_is_marked_in_the_list(
    server: RunningServer, people: People
) -> None:
    loud = await _group(server, people["alice"], ["bob"], "loud")
    quiet = await _group(server, people["alice"], ["bob"], "quiet")
    for n in range(3):
        await _send(server, people["alice"], loud, f"loud {n}")
    for n in range(2):
        await _send(server, people["alice"], quiet, f"quiet {n}")
    assert await _total_unread(server, people["bob"]) == 5

    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put(f"/v1/channels/{loud}/mute"))
        # Again: still muted, nothing else changes.
        await _ok(bob.put(f"/v1/channels/{loud}/mute", json={}))
    assert await _total_unread(server, people["bob"]) == 2
    listed = await _listed(server, people["bob"])
    assert listed[loud]["muted"] is True and listed[quiet]["muted"] is False
    # The channel's own unread count still says what is unread there.
    assert listed[loud]["unread_count"] == 3
    single = await _get(server, people["bob"], f"/v1/channels/{loud}")
    assert single["muted"] is True
    # Alice did not mute it: hers is unmuted.
    assert (await _listed(server, people["alice"]))[loud]["muted"] is False
    assert (await _get(server, people["alice"], f"/v1/channels/{loud}"))["muted"] is False

    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.delete(f"/v1/channels/{loud}/mute"))
        await _ok(bob.delete(f"/v1/channels/{loud}/mute"))  # unmuting twice is fine
    assert await _total_unread(server, people["bob"]) == 5
    assert (await _listed(server, people["bob"]))[loud]["muted"] is False

    # Leaving ends the mute: rejoining starts unmuted.
    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put(f"/v1/channels/{loud}/mute"))
        await _ok(bob.delete(f"/v1/channels/{loud}/members/bob"))
    async with user_client(server, people["alice"]) as alice:
        added = await alice.post(f"/v1/channels/{loud}/members", json={"user_ids": ["bob"]})
        assert added.status_code == 200, added.text
    assert (await _listed(server, people["bob"]))[loud]["muted"] is False


async def test_a_channel_mute_with_expires_at_ends_on_its_own(
    server: RunningServer, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob"], "brief")
    await _send(server, people["alice"], channel, "hello")
    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put(f"/v1/channels/{channel}/mute", json={"expires_at": _soon(2)}))
    assert await _total_unread(server, people["bob"]) == 0
    assert (await _listed(server, people["bob"]))[channel]["muted"] is True

    async def counted_again() -> bool:
        return await _total_unread(server, people["bob"]) == 1

    await _until(counted_again)
    assert (await _listed(server, people["bob"]))[channel]["muted"] is False


async def test_the_backend_mutes_for_a_user_by_naming_it(
    server: RunningServer, workspace: NewWorkspace, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob"], "named")
    await _send(server, people["alice"], channel, "one")
    async with backend_client(server, workspace) as backend:
        await _ok(backend.put(f"/v1/channels/{channel}/mute", json={"user_id": "bob"}))
        assert await _total_unread(server, people["bob"]) == 0
        await _ok(backend.delete(f"/v1/channels/{channel}/mute", params={"user_id": "bob"}))
        assert await _total_unread(server, people["bob"]) == 1
        await _ok(backend.put("/v1/users/alice/mute", params={"user_id": "bob"}))
        history = await _get(server, people["bob"], f"/v1/channels/{channel}/messages")
        assert history["messages"][0]["muted"] is True
        await _ok(backend.put("/v1/users/alice/block", json={"user_id": "bob"}))
        blocks = (await backend.get("/v1/users/me/blocks", params={"user_id": "bob"})).json()
        assert [b["user_id"] for b in blocks["blocks"]] == ["alice"]
        # The backend for itself has nobody to mute for.
        refused = await backend.put(f"/v1/channels/{channel}/mute")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "FORBIDDEN"
        unnamed = await backend.put("/v1/users/alice/mute")
        assert unnamed.status_code == 422, unnamed.text


# ---- user mutes ------------------------------------------------------------------------------


async def test_a_muted_authors_messages_carry_muted_only_for_the_muter(
    server: RunningServer, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob", "carol"], "talk")
    top = await _send(server, people["alice"], channel, "from alice")
    reply = await _send(server, people["alice"], channel, "alice replies", parent_id=top["id"])
    await _send(server, people["carol"], channel, "carol replies", parent_id=top["id"])
    start = (await _get(server, people["bob"], "/v1/events", after_seq=0))["latest_seq"]
    last = await _send(server, people["alice"], channel, "alice again")
    own = await _send(server, people["carol"], channel, "from carol")

    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put("/v1/users/alice/mute"))

    def marks(messages: list[dict[str, Any]]) -> dict[str, bool]:
        return {m["text"]: m["muted"] for m in messages}

    history = await _get(server, people["bob"], f"/v1/channels/{channel}/messages")
    assert marks(history["messages"]) == {
        "from alice": True,
        "alice again": True,
        "from carol": False,
    }
    replies = await _get(server, people["bob"], f"/v1/messages/{top['id']}/replies")
    assert marks(replies["messages"]) == {"alice replies": True, "carol replies": False}
    # The channel list's last message: carol's is not muted; after another of alice's it is.
    assert (await _listed(server, people["bob"]))[channel]["last_message"]["muted"] is False
    await _send(server, people["alice"], channel, "alice last")
    assert (await _listed(server, people["bob"]))[channel]["last_message"]["muted"] is True
    single = await _get(server, people["bob"], f"/v1/channels/{channel}")
    assert single["last_message"]["muted"] is True
    # Catch-up (GET /v1/events, and the socket's resume, which reads the same pages).
    caught = await _get(server, people["bob"], "/v1/events", after_seq=start)
    news = {
        e["message"]["id"]: e["message"]["muted"]
        for e in caught["events"]
        if e["type"] == "message.new"
    }
    assert news[last["id"]] is True and news[own["id"]] is False
    # A single-message read: a reaction returns the message as the reader sees it.
    async with user_client(server, people["bob"]) as bob:
        reacted = await bob.put(f"/v1/messages/{reply['id']}/reactions/like")
        assert reacted.status_code == 200, reacted.text
        assert reacted.json()["muted"] is True

    # Nobody else sees the mark: carol's reads, alice's own, and the backend's.
    for reader in ("carol", "alice"):
        seen = await _get(server, people[reader], f"/v1/channels/{channel}/messages")
        assert not any(m["muted"] for m in seen["messages"])
        others = await _get(server, people[reader], "/v1/events", after_seq=start)
        assert not any(e.get("message", {}).get("muted") for e in others["events"])

    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.delete("/v1/users/alice/mute"))
    history = await _get(server, people["bob"], f"/v1/channels/{channel}/messages")
    assert not any(m["muted"] for m in history["messages"])


async def test_a_user_mute_with_expires_at_ends_on_its_own(
    server: RunningServer, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob"], "short")
    await _send(server, people["alice"], channel, "hi")
    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put("/v1/users/alice/mute", json={"expires_at": _soon(2)}))

    async def muted() -> bool:
        history = await _get(server, people["bob"], f"/v1/channels/{channel}/messages")
        return bool(history["messages"][0]["muted"])

    assert await muted()

    async def unmuted() -> bool:
        return not await muted()

    await _until(unmuted)


async def _live_message(client: LiveClient) -> dict[str, Any]:
    (event,) = await client.events(1, types=("message.new",))
    message: dict[str, Any] = event["message"]
    return message


async def test_live_message_events_carry_muted_only_for_the_muter(
    server: RunningServer, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob", "carol"], "live")
    async with live(server.url, people["bob"]) as bob, live(server.url, people["carol"]) as carol:
        await _send(server, people["alice"], channel, "before")
        assert (await _live_message(bob))["muted"] is False
        assert (await _live_message(carol))["muted"] is False

        async with user_client(server, people["bob"]) as http:
            await _ok(http.put("/v1/users/alice/mute"))
        await _send(server, people["alice"], channel, "muted")
        seen_by_bob = await _live_message(bob)
        assert (seen_by_bob["text"], seen_by_bob["muted"]) == ("muted", True)
        assert (await _live_message(carol))["muted"] is False
        # Carol's messages are not alice's: bob sees them unmuted.
        await _send(server, people["carol"], channel, "from carol")
        assert (await _live_message(bob))["muted"] is False
        await _live_message(carol)

        async with user_client(server, people["bob"]) as http:
            await _ok(http.delete("/v1/users/alice/mute"))
        await _send(server, people["alice"], channel, "unmuted")
        assert (await _live_message(bob))["muted"] is False
        await _live_message(carol)

        # A mute with an end: live marks stop at it, with nothing to tell the hub.
        async with user_client(server, people["bob"]) as http:
            await _ok(http.put("/v1/users/alice/mute", json={"expires_at": _soon(2)}))
        await _send(server, people["alice"], channel, "briefly muted")
        assert (await _live_message(bob))["muted"] is True
        await _live_message(carol)
        await asyncio.sleep(2.2)
        await _send(server, people["alice"], channel, "after the end")
        assert (await _live_message(bob))["muted"] is False

    # A socket opened while a mute holds knows it from the start.
    async with user_client(server, people["bob"]) as http:
        await _ok(http.put("/v1/users/alice/mute"))
    async with live(server.url, people["bob"]) as bob:
        await _send(server, people["alice"], channel, "on a new socket")
        assert (await _live_message(bob))["muted"] is True


async def test_a_mute_made_on_one_node_marks_live_events_on_another(
    settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    shared = settings.with_overrides(redis_url=redis_url, redis_prefix=redis_prefix)
    async with start_server(shared) as node_a, start_server(shared) as node_b:
        workspace = await create_workspace(node_a.services.db, "two nodes")
        alice = await make_user(node_a, workspace, "alice")
        bob = await make_user(node_a, workspace, "bob")
        channel = await _group(node_a, alice, ["bob"], "nodes")
        async with live(node_b.url, bob) as bob_live:
            async with user_client(node_a, bob) as http:
                await _ok(http.put("/v1/users/alice/mute"))
            # The notice crosses the bus while alice writes: within a few messages, node B
            # marks them, and from then on every one.
            marks = []
            for n in range(20):
                await _send(node_a, alice, channel, f"m{n}")
                marks.append((await _live_message(bob_live))["muted"])
                if marks[-1]:
                    break
                await asyncio.sleep(0.1)
            assert marks[-1] is True, marks
            await _send(node_a, alice, channel, "again")
            assert (await _live_message(bob_live))["muted"] is True
            async with user_client(node_a, bob) as http:
                await _ok(http.delete("/v1/users/alice/mute"))
            for n in range(20):
                await _send(node_a, alice, channel, f"u{n}")
                if not (await _live_message(bob_live))["muted"]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("node B kept marking alice's messages after the unmute")


# ---- blocks ----------------------------------------------------------------------------------


async def test_a_block_refuses_a_new_dm_in_both_directions(
    server: RunningServer, workspace: NewWorkspace, people: People
) -> None:
    async with user_client(server, people["alice"]) as alice:
        existing = await alice.post("/v1/channels", json={"type": "dm", "members": ["carol"]})
        assert existing.status_code == 201, existing.text
        await _ok(alice.put("/v1/users/bob/block"))
        await _ok(alice.put("/v1/users/carol/block"))
        refused = await alice.post("/v1/channels", json={"type": "dm", "members": ["bob"]})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "FORBIDDEN" and "blocks" in error["message"]
        # A dm that already existed stays, and asking for it again returns it.
        again = await alice.post("/v1/channels", json={"type": "dm", "members": ["carol"]})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == existing.json()["id"]
    async with user_client(server, people["bob"]) as bob:
        other_way = await bob.post("/v1/channels", json={"type": "dm", "members": ["alice"]})
        assert other_way.status_code == 403, other_way.text
        # A group with both is not a dm: blocks do not stop it.
        group = await bob.post("/v1/channels", json={"type": "group", "members": ["alice"]})
        assert group.status_code == 201, group.text
    async with backend_client(server, workspace) as backend:
        body = {"type": "dm", "members": ["alice", "bob"]}
        by_backend = await backend.post("/v1/channels", json=body)
        assert by_backend.status_code == 403, by_backend.text
    listed = await _listed(server, people["bob"])
    assert not any(c["type"] == "dm" for c in listed.values()), "no dm was left behind"

    async with user_client(server, people["alice"]) as alice:
        await _ok(alice.delete("/v1/users/bob/block"))
    async with user_client(server, people["bob"]) as bob:
        allowed = await bob.post("/v1/channels", json={"type": "dm", "members": ["alice"]})
        assert allowed.status_code == 201, allowed.text


async def test_the_blocked_users_mentions_do_not_reach_the_blocker(
    server: RunningServer, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob", "carol"], "mentions")
    async with user_client(server, people["alice"]) as alice:
        await _ok(alice.put("/v1/users/bob/block"))
    sent = await _send(
        server, people["bob"], channel, "@alice @carol look", mentions=["alice", "carol"]
    )
    # Sent, but without the mention of alice (bob is not told he is blocked).
    assert sent["mentions"] == ["carol"]
    history = await _get(server, people["alice"], f"/v1/channels/{channel}/messages")
    assert history["messages"][-1]["mentions"] == ["carol"]
    # The other way round is untouched: alice still mentions bob.
    back = await _send(server, people["alice"], channel, "@bob", mentions=["bob"])
    assert back["mentions"] == ["bob"]
    # Carol blocks nobody: bob mentions her.
    assert (await _send(server, people["bob"], channel, "@carol", mentions=["carol"]))[
        "mentions"
    ] == ["carol"]

    async with user_client(server, people["alice"]) as alice:
        await _ok(alice.delete("/v1/users/bob/block"))
    restored = await _send(server, people["bob"], channel, "@alice", mentions=["alice"])
    assert restored["mentions"] == ["alice"]


async def test_the_block_list_pages_newest_first(server: RunningServer, people: People) -> None:
    async with user_client(server, people["alice"]) as alice:
        for other in ("bob", "carol", "dave"):
            await _ok(alice.put(f"/v1/users/{other}/block"))
        await _ok(alice.put("/v1/users/bob/block"))  # again: keeps its first place
        first = (await alice.get("/v1/users/me/blocks", params={"limit": 2})).json()
        assert [b["user_id"] for b in first["blocks"]] == ["dave", "carol"]
        rest = await alice.get(
            "/v1/users/me/blocks", params={"limit": 2, "cursor": first["next_cursor"]}
        )
        assert [b["user_id"] for b in rest.json()["blocks"]] == ["bob"]
        assert rest.json()["next_cursor"] is None
    assert (await _get(server, people["bob"], "/v1/users/me/blocks"))["blocks"] == []


# ---- bad input and tenants -------------------------------------------------------------------


async def test_bad_input_gets_a_clear_4xx(server: RunningServer, people: People) -> None:
    mine = await _group(server, people["alice"], ["bob"], "mine")
    cases: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("PUT", "/v1/users/alice/mute", None, 422),
        ("PUT", "/v1/users/alice/block", None, 422),
        ("DELETE", "/v1/users/alice/block", None, 422),
        ("PUT", "/v1/users/nobody/mute", None, 404),
        ("PUT", "/v1/users/nobody/block", None, 404),
        ("DELETE", "/v1/users/nobody/mute", None, 404),
        ("PUT", "/v1/channels/nowhere/mute", None, 404),
        ("PUT", "/v1/users/bob/mute", {"expires_at": "yesterday"}, 422),
        ("PUT", "/v1/users/bob/mute", {"expires_at": "2020-01-01T00:00:00Z"}, 422),
        ("PUT", "/v1/users/bob/mute", {"expires_at": "2099-01-01T00:00:00"}, 422),
        ("PUT", f"/v1/channels/{mine}/mute", {"expires_at": 12}, 422),
        ("PUT", f"/v1/channels/{mine}/mute", {"expires_at": "2020-01-01T00:00:00Z"}, 422),
        ("PUT", "/v1/users/bad%20id/block", None, 422),
    ]
    async with user_client(server, people["alice"]) as alice:
        for method, path, body, status in cases:
            response = await alice.request(method, path, json=body)
            assert response.status_code == status, (method, path, body, response.text)
            assert response.json()["error"]["code"] in ("VALIDATION_FAILED", "NOT_FOUND")
        listing = await alice.get("/v1/users/me/blocks", params={"cursor": "nonsense"})
        assert listing.status_code == 422, listing.text
        listing = await alice.get("/v1/users/me/blocks", params={"limit": 0})
        assert listing.status_code == 422, listing.text
    # A channel one is not a member of is, to it, no channel.
    async with user_client(server, people["carol"]) as carol:
        outside = await carol.put(f"/v1/channels/{mine}/mute")
        assert outside.status_code == 404, outside.text
        outside = await carol.delete(f"/v1/channels/{mine}/mute")
        assert outside.status_code == 404, outside.text


async def test_mutes_and_blocks_stay_in_their_workspace(
    server: RunningServer,
    workspace: NewWorkspace,
    other_workspace: NewWorkspace,
    people: People,
) -> None:
    # The same user ids in another workspace.
    theirs = {name: await make_user(server, other_workspace, name) for name in ("alice", "bob")}
    ours = await _group(server, people["alice"], ["bob"], "ours")
    their_channel = await _group(server, theirs["alice"], ["bob"], "theirs")
    await _send(server, people["alice"], ours, "ours")
    await _send(server, theirs["alice"], their_channel, "theirs")
    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put(f"/v1/channels/{ours}/mute"))
        await _ok(bob.put("/v1/users/alice/mute"))
        await _ok(bob.put("/v1/users/alice/block"))
        # Another workspace's channel and users do not exist here.
        foreign = await bob.put(f"/v1/channels/{their_channel}/mute")
        assert foreign.status_code == 404, foreign.text
    await make_user(server, other_workspace, "zed")
    async with user_client(server, people["bob"]) as bob:
        foreign = await bob.put("/v1/users/zed/mute")
        assert foreign.status_code == 404, foreign.text
    # In the other workspace, its bob mutes and blocks nothing.
    assert await _total_unread(server, theirs["bob"]) == 1
    history = await _get(server, theirs["bob"], f"/v1/channels/{their_channel}/messages")
    assert history["messages"][0]["muted"] is False
    assert (await _get(server, theirs["bob"], "/v1/users/me/blocks"))["blocks"] == []
    async with user_client(server, theirs["bob"]) as their_bob:
        dm = await their_bob.post("/v1/channels", json={"type": "dm", "members": ["alice"]})
        assert dm.status_code == 201, dm.text
    assert await _total_unread(server, people["bob"]) == 0


async def test_a_hard_deleted_user_leaves_no_mute_or_block_behind(
    server: RunningServer, workspace: NewWorkspace, people: People
) -> None:
    channel = await _group(server, people["alice"], ["bob"], "gone")
    async with user_client(server, people["bob"]) as bob:
        await _ok(bob.put("/v1/users/alice/mute"))
        await _ok(bob.put("/v1/users/alice/block"))
    async with user_client(server, people["alice"]) as alice:
        await _ok(alice.put(f"/v1/channels/{channel}/mute"))
        await _ok(alice.put("/v1/users/carol/mute"))
        await _ok(alice.put("/v1/users/carol/block"))
    async with backend_client(server, workspace) as backend:
        await _ok(backend.delete("/v1/users/alice", params={"mode": "hard"}))
    async with server.services.db.connection() as conn:
        left = await conn.fetchval(
            """
            SELECT (SELECT count(*) FROM channel_mutes
                    WHERE workspace_id = $1 AND user_id = 'alice')
                 + (SELECT count(*) FROM user_mutes
                    WHERE workspace_id = $1 AND 'alice' IN (user_id, muted_id))
                 + (SELECT count(*) FROM user_blocks
                    WHERE workspace_id = $1 AND 'alice' IN (user_id, blocked_id))
            """,
            workspace.id,
        )
    assert left == 0
    assert (await _get(server, people["bob"], "/v1/users/me/blocks"))["blocks"] == []


# ---- SDKs ------------------------------------------------------------------------------------


async def test_the_python_sdk_mutes_and_blocks(
    server: RunningServer, workspace: NewWorkspace, people: People
) -> None:
    async with ServerClient(server.url, workspace.api_secret) as backend:
        alice = backend.as_user("alice")
        channel = await alice.create_channel("group", ["bob", "carol"], id="sdk")
        await alice.send(channel.id, "hello")
        async with ChatClient(server.url, token=people["bob"]) as bob:
            await bob.mute_channel(channel.id)
            assert (await bob.me()).total_unread == 0
            assert (await bob.get_channel(channel.id)).muted is True
            await bob.unmute_channel(channel.id)
            assert (await bob.me()).total_unread == 1
            await bob.mute_channel(channel.id, expires_at=datetime.now(UTC) + timedelta(hours=1))
            assert [c.muted for c in (await bob.list_channels()).channels] == [True]

            await bob.mute_user("alice", expires_at=datetime.now(UTC) + timedelta(hours=1))
            page = await bob.list_messages(channel.id)
            assert [m.muted for m in page.messages] == [True]
            await bob.unmute_user("alice")
            assert [m.muted for m in (await bob.list_messages(channel.id)).messages] == [False]

            await bob.block_user("alice")
            assert [b.user_id for b in (await bob.list_blocks()).blocks] == ["alice"]
            with pytest.raises(Forbidden):
                await alice.create_channel("dm", ["bob"])
            with pytest.raises(ValidationFailed):
                await bob.block_user("bob")
            with pytest.raises(NotFound):
                await bob.mute_user("nobody")
            await bob.unblock_user("alice")
            assert (await alice.create_channel("dm", ["bob"])).type == "dm"

    def blocking() -> None:
        with sync_client.ServerClient(server.url, workspace.api_secret) as sync_backend:
            carol = sync_backend.as_user("carol")
            carol.mute_user("alice")
            assert [m.muted for m in carol.list_messages("sdk").messages] == [True]
            carol.unmute_user("alice")
            carol.mute_channel("sdk")
            assert carol.get_channel("sdk").muted is True
            carol.unmute_channel("sdk")
            carol.block_user("dave")
            assert [b.user_id for b in carol.list_blocks().blocks] == ["dave"]
            carol.unblock_user("dave")
            assert carol.list_blocks().blocks == []

    failures: list[BaseException] = []

    def run() -> None:
        try:
            blocking()
        except BaseException as exc:  # reported in the test's own thread
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    await asyncio.to_thread(worker.join)
    assert not failures, failures
