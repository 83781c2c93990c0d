"""What the event log shows its readers: never content a read of the message would not show now,
nothing of channels a reader left or that were deleted, nothing but history from before joining;
a position older than the kept log is told to resync; pages end at a byte budget; and a write
transaction held open elsewhere on the PostgreSQL server does not hold events back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from cariosan.config import Limits, Settings
from cariosan.db import events as event_rows
from cariosan.domain.events import webhook_bodies
from cariosan.domain.workspaces import NewWorkspace
from cariosan.jobs.retention import trim
from tests.conftest import with_database
from tests.services.provision import PostgresService
from tests.support.chat import backend_client, make_user, user_client
from tests.support.live import live
from tests.support.server import RunningServer, start_server

SECRET = "my password is hunter2"


@pytest.fixture
async def own_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """For the tests marked `own_server`: limits high enough for the many messages some send in
    a row, webhooks to loopback allowed; others trim the event log of every workspace."""
    configured = settings.with_overrides(
        limits=Limits(user_messages_per_second=10_000, user_requests_per_minute=1_000_000),
        webhook_allow_private=True,
    )
    async with start_server(configured) as running:
        yield running


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


@pytest.fixture
async def people(server: RunningServer, workspace: NewWorkspace) -> dict[str, str]:
    return {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}


async def channel_of(server: RunningServer, token: str, members: list[str]) -> str:
    async with user_client(server, token) as http:
        created = await http.post("/v1/channels", json={"type": "group", "members": members})
        assert created.status_code == 201, created.text
        channel_id: str = created.json()["id"]
        return channel_id


async def send(server: RunningServer, token: str, channel: str, text: str) -> dict[str, Any]:
    async with user_client(server, token) as http:
        sent = await http.post(f"/v1/channels/{channel}/messages", json={"text": text})
        assert sent.status_code == 201, sent.text
        body: dict[str, Any] = sent.json()
        return body


async def numbered(server: RunningServer) -> None:
    await server.services.sequencer.drain()


async def catch_up(http: httpx.AsyncClient, after: int = 0, **params: Any) -> dict[str, Any]:
    response = await http.get("/v1/events", params={"after_seq": after, **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def everything(http: httpx.AsyncClient, after: int = 0) -> list[dict[str, Any]]:
    """Every event after `after`, page by page as a client pages."""
    found: list[dict[str, Any]] = []
    while True:
        page = await catch_up(http, after, limit=3)
        found += page["events"]
        after = page["latest_seq"]
        if not page["has_more"]:
            return found


async def replayed(server: RunningServer, token: str) -> list[dict[str, Any]]:
    """What a WebSocket `resume` from 0 sends: as many events as catch-up returns, no more."""
    async with user_client(server, token) as http:
        count = len(await everything(http))
    async with live(server.url, token, resume_from=0) as socket:
        frames = await socket.events(count)
        assert await socket.silent(0.5) == []
    return frames


def contents(events: list[dict[str, Any]]) -> str:
    return repr(events)


# ---- privacy -------------------------------------------------------------------------------


async def test_deleted_and_edited_messages_show_only_their_current_form(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await channel_of(server, people["alice"], ["bob"])
    gone = await send(server, people["alice"], channel, SECRET)
    edited = await send(server, people["alice"], channel, "first draft, with a typo")
    await react(server, people["bob"], gone["id"], "like")
    async with user_client(server, people["alice"]) as alice:
        assert (await alice.delete(f"/v1/messages/{gone['id']}")).status_code == 204
        fixed = await alice.patch(f"/v1/messages/{edited['id']}", json={"text": "final text"})
        assert fixed.status_code == 200, fixed.text
    await numbered(server)
    async with user_client(server, people["bob"]) as bob:
        events = await everything(bob)
    for stream in (events, await replayed(server, people["bob"])):
        assert SECRET not in contents(stream) and "typo" not in contents(stream)
        about_gone = [e for e in stream if e.get("message", {}).get("id") == gone["id"]]
        assert [e["type"] for e in about_gone] == ["message.new", "reaction.new", "message.deleted"]
        assert all(e["message"]["deleted_at"] and e["message"]["text"] == "" for e in about_gone)
        about_edit = [e for e in stream if e.get("message", {}).get("id") == edited["id"]]
        assert [e["message"]["text"] for e in about_edit] == ["final text", "final text"]


async def react(server: RunningServer, token: str, message_id: str, kind: str) -> None:
    async with user_client(server, token) as http:
        done = await http.put(f"/v1/messages/{message_id}/reactions/{kind}")
        assert done.status_code == 200, done.text


async def test_a_hard_deleted_users_content_is_gone_from_every_event(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    channel = await channel_of(server, people["alice"], ["bob", "carol"])
    mine = await send(server, people["carol"], channel, SECRET)
    await react(server, people["alice"], mine["id"], "wow")
    theirs = await send(server, people["alice"], channel, "hello")
    await react(server, people["carol"], theirs["id"], "carols-reaction")
    async with backend_client(server, workspace) as backend:
        deleted = await backend.delete("/v1/users/carol", params={"mode": "hard"})
        assert deleted.status_code == 204, deleted.text
        await numbered(server)
        seen_by_backend = await everything(backend)
    async with user_client(server, people["bob"]) as bob:
        seen_by_bob = await everything(bob)
    for stream in (seen_by_backend, seen_by_bob, await replayed(server, people["bob"])):
        assert SECRET not in contents(stream)
        assert "carols-reaction" not in contents(stream)
        assert mine["id"] not in contents(stream)
        assert any(e.get("message", {}).get("id") == theirs["id"] for e in stream)


async def test_members_who_left_or_whose_channel_was_deleted_read_nothing_more_of_it(
    server: RunningServer, people: dict[str, str]
) -> None:
    left = await channel_of(server, people["alice"], ["bob"])
    await send(server, people["alice"], left, "before bob left")
    async with user_client(server, people["bob"]) as bob:
        assert (await bob.delete(f"/v1/channels/{left}/members/bob")).status_code == 204
    await send(server, people["alice"], left, "after bob left")
    closed = await channel_of(server, people["alice"], ["bob"])
    await send(server, people["alice"], closed, SECRET)
    async with user_client(server, people["alice"]) as alice:
        assert (await alice.delete(f"/v1/channels/{closed}")).status_code == 204
    await numbered(server)
    async with user_client(server, people["bob"]) as bob:
        events = await everything(bob)
    for stream in (events, await replayed(server, people["bob"])):
        of_left = [e for e in stream if e.get("channel_id") == left]
        assert [e["type"] for e in of_left] == ["member.removed"], of_left
        of_closed = [e for e in stream if e.get("channel_id") == closed]
        assert [e["type"] for e in of_closed] == ["channel.deleted"]
        assert SECRET not in contents(stream) and "bob left" not in contents(stream)


async def test_a_member_who_joins_later_reads_history_but_not_earlier_goings_on(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await channel_of(server, people["alice"], ["bob"])
    first = await send(server, people["alice"], channel, "history")
    async with user_client(server, people["alice"]) as alice:
        renamed = await alice.patch(f"/v1/channels/{channel}", json={"name": "old name"})
        assert renamed.status_code == 200, renamed.text
        read = await alice.post(f"/v1/channels/{channel}/read", json={})
        assert read.status_code == 200, read.text
        added = await alice.post(f"/v1/channels/{channel}/members", json={"user_ids": ["carol"]})
        assert added.status_code == 200, added.text
    await numbered(server)
    async with user_client(server, people["carol"]) as carol:
        events = await everything(carol)
        history = await carol.get(f"/v1/channels/{channel}/messages")
    assert [m["id"] for m in history.json()["messages"]] == [first["id"]]
    assert [(e["type"], e.get("message", {}).get("id")) for e in events] == [
        ("message.new", first["id"]),
        ("member.added", None),
    ]
    assert "old name" not in contents(events)


@pytest.mark.own_server
async def test_a_pending_webhook_body_shows_a_message_deleted_before_delivery_as_deleted(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    async with backend_client(server, workspace) as backend:
        # Nobody listens there: the delivery stays pending, retried later.
        hook = await backend.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["message.new"]}
        )
        assert hook.status_code == 201, hook.text
        channel = await channel_of(server, people["alice"], ["bob"])
        sent = await send(server, people["alice"], channel, SECRET)
        async with user_client(server, people["alice"]) as alice:
            assert (await alice.delete(f"/v1/messages/{sent['id']}")).status_code == 204
        await numbered(server)
        listed = await backend.get(f"/v1/webhooks/{hook.json()['id']}/deliveries")
        seqs = [d["seq"] for d in listed.json()["deliveries"]]
    assert len(seqs) == 1
    # What the worker sends on its next attempt.
    bodies = await webhook_bodies(server.services.db, [(workspace.id, seqs[0])])
    body = json.loads(bodies[workspace.id, seqs[0]])
    assert SECRET not in bodies[workspace.id, seqs[0]]
    assert body["message"]["id"] == sent["id"] and body["message"]["deleted_at"]


# ---- bounded log ---------------------------------------------------------------------------


@pytest.mark.own_server
async def test_a_position_older_than_the_kept_log_is_told_to_resync(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await channel_of(server, people["alice"], ["bob"])
    for n in range(3):
        await send(server, people["alice"], channel, f"old {n}")
    await numbered(server)
    # Everything so far is older than the retention (as if 31 days had passed).
    later = datetime.now(UTC) + timedelta(days=31)
    done = await trim(server.services.db, server.services.settings, now=later)
    assert done.events == 4
    kept = await send(server, people["alice"], channel, "new")
    await numbered(server)
    async with user_client(server, people["bob"]) as bob:
        expired = await bob.get("/v1/events", params={"after_seq": 1})
        assert expired.status_code == 410, expired.text
        error = expired.json()["error"]
        assert error["code"] == "EVENTS_EXPIRED"
        latest = error["latest_seq"]
        assert latest == 5
        zero = await bob.get("/v1/events", params={"after_seq": 0})
        assert zero.status_code == 410
        current = await catch_up(bob, 4)
        assert [e["message"]["id"] for e in current["events"]] == [kept["id"]]
        assert current == {**current, "latest_seq": 5, "has_more": False}
    async with live(server.url, people["bob"], resume_from=2) as socket:
        assert await socket.next() == {"type": "resync.required", "latest_seq": 5}
        await send(server, people["alice"], channel, "live again")
        (event,) = await socket.events(1)
        assert event["seq"] == 6 and event["message"]["text"] == "live again"


@pytest.mark.own_server
async def test_retention_keeps_recent_events_and_unfinished_deliveries(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    async with backend_client(server, workspace) as backend:
        hook = await backend.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]}
        )
        assert hook.status_code == 201
        channel = await channel_of(server, people["alice"], ["bob"])
        await send(server, people["alice"], channel, "recent")
        await numbered(server)
        done = await trim(server.services.db, server.services.settings)
        assert done == type(done)(0, 0)
        # A month on, events are gone but the pending deliveries are not (only finished ones).
        later = datetime.now(UTC) + timedelta(days=31)
        done = await trim(server.services.db, server.services.settings, now=later)
        assert done.events == 2 and done.deliveries == 0
        listed = await backend.get(f"/v1/webhooks/{hook.json()['id']}/deliveries")
        assert len(listed.json()["deliveries"]) == 2


@pytest.mark.own_server
async def test_a_page_ends_at_its_byte_budget_and_says_there_is_more(
    server: RunningServer, workspace: NewWorkspace, people: dict[str, str]
) -> None:
    budget = server.services.settings.limits.events_page_bytes
    channel = await channel_of(server, people["alice"], ["bob"])
    big = "x" * 9000
    count = budget // 9000 + 5
    for _ in range(count):
        await send(server, people["alice"], channel, big)
    await numbered(server)
    async with user_client(server, people["bob"]) as bob:
        first = await catch_up(bob, 0, limit=1000)
        assert first["has_more"] is True
        assert len(json.dumps(first["events"], separators=(",", ":"))) <= budget
        assert 0 < len(first["events"]) < count
        assert first["latest_seq"] == first["events"][-1]["seq"]
        rest = await everything(bob, first["latest_seq"])
    assert len(first["events"]) + len(rest) == count + 1  # the messages and channel.created


@pytest.mark.own_server
async def test_both_ways_of_reading_a_users_events_agree(
    server: RunningServer,
    workspace: NewWorkspace,
    people: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Few active channels are read channel by channel, many by one walk of the log."""
    channels = [await channel_of(server, people["alice"], ["bob"]) for _ in range(4)]
    other = await channel_of(server, people["alice"], ["carol"])
    for n in range(12):
        await send(server, people["alice"], channels[n % 4], f"m{n}")
        await send(server, people["alice"], other, f"not for bob {n}")
    async with user_client(server, people["bob"]) as bob:
        assert (await bob.post(f"/v1/channels/{channels[0]}/read", json={})).status_code == 200
    await numbered(server)
    async with user_client(server, people["bob"]) as bob:
        by_channel = await everything(bob)
        monkeypatch.setattr(event_rows, "FEW_CHANNELS", 1)
        by_log = await everything(bob)
        # A walk that may look at only 1 event per event of the page (3 + 1 here) ends pages
        # early on carol's channel, where nothing is bob's: more pages, the same events.
        monkeypatch.setattr(event_rows, "WALK_PER_EVENT", 1)
        pages: list[dict[str, Any]] = []
        after = 0
        while not pages or pages[-1]["has_more"]:
            pages.append(await catch_up(bob, after, limit=3))
            after = pages[-1]["latest_seq"]
        by_short_walks = [e for page in pages for e in page["events"]]
    assert by_channel == by_log == by_short_walks
    assert any(0 < len(p["events"]) < 3 and p["has_more"] for p in pages)
    assert all(p["latest_seq"] >= max((e["seq"] for e in p["events"]), default=0) for p in pages)
    texts = [e["message"]["text"] for e in by_channel if e["type"] == "message.new"]
    assert texts == [f"m{n}" for n in range(12)]
    assert [e["type"] for e in by_channel].count("read.updated") == 1
    assert [e["type"] for e in by_channel].count("channel.created") == 4


async def test_bad_positions_are_refused(server: RunningServer, people: dict[str, str]) -> None:
    async with user_client(server, people["bob"]) as bob:
        for bad in ("-1", "9223372036854775808", "abc"):
            response = await bob.get("/v1/events", params={"after_seq": bad})
            assert response.status_code in (400, 422), (bad, response.text)
            assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    async with live(server.url, people["bob"]) as socket:
        await socket.send({"type": "resume", "after_seq": 2**64})
        error = await socket.next()
        assert error["type"] == "error" and error["code"] == "VALIDATION_FAILED"
        await socket.send({"type": "ping"})
        assert await socket.next() == {"type": "pong"}


# ---- isolation from other transactions -----------------------------------------------------


@pytest.fixture
async def foreign_database(postgres_service: PostgresService) -> AsyncIterator[str]:
    """Another database on the same PostgreSQL server (another app, a batch job)."""
    import uuid

    name = f"cariosan_other_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_service.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(postgres_service.dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.mark.parametrize("where", ["another database", "same database, unrelated table"])
async def test_an_open_write_transaction_elsewhere_does_not_hold_events_back(
    server: RunningServer, people: dict[str, str], foreign_database: str, where: str
) -> None:
    channel = await channel_of(server, people["alice"], ["bob"])
    await numbered(server)
    dsn = foreign_database if where == "another database" else server.services.settings.database_url
    assert dsn
    blocker = await asyncpg.connect(dsn)
    try:
        # A write transaction that has taken its transaction id and stays open.
        await blocker.execute("BEGIN")
        await blocker.execute("CREATE TABLE batch_job_scratch (i int)")
        assert await blocker.fetchval("SELECT pg_current_xact_id() IS NOT NULL")
        async with live(server.url, people["bob"]) as socket:
            sent = await send(server, people["alice"], channel, "during the batch job")
            (event,) = await socket.events(1, timeout=20)
            assert event["message"]["id"] == sent["id"]
            async with user_client(server, people["bob"]) as bob:
                page = await catch_up(bob, socket.ready["latest_seq"])
            assert [e["message"]["id"] for e in page["events"]] == [sent["id"]]
        # Delivered while the other transaction was still open, not after it ended.
        assert await blocker.fetchval("SELECT txid_current_if_assigned() IS NOT NULL")
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()


@pytest.mark.own_server
async def test_the_python_sdk_turns_an_expired_position_into_a_resync(
    server: RunningServer, people: dict[str, str]
) -> None:
    from cariosan_client import ChatClient, EventsExpired, MessageNew, ResyncRequired

    channel = await channel_of(server, people["alice"], ["bob"])
    await send(server, people["alice"], channel, "old")
    await numbered(server)
    later = datetime.now(UTC) + timedelta(days=31)
    await trim(server.services.db, server.services.settings, now=later)
    async with ChatClient(server.url, token=people["bob"]) as chat:
        with pytest.raises(EventsExpired) as expired:
            await chat.events(after_seq=0)
        assert expired.value.status == 410 and expired.value.latest_seq == 2
        page = await chat.events(after_seq=expired.value.latest_seq)
        assert page.events == [] and page.has_more is False and page.latest_seq == 2
        async with chat.connect(after_seq=1) as stream:
            iterator = aiter(stream)
            assert await anext(iterator) == ResyncRequired(latest_seq=2)
            assert stream.last_seq == 2
            sent = await send(server, people["alice"], channel, "after the resync")
            event = await asyncio.wait_for(anext(iterator), 15)
            assert isinstance(event, MessageNew)
            assert event.message.id == sent["id"] and event.seq == 3


@pytest.mark.own_server
async def test_unread_counts_stop_at_a_hundred(
    server: RunningServer, people: dict[str, str]
) -> None:
    channel = await channel_of(server, people["alice"], ["bob"])
    for n in range(103):
        await send(server, people["alice"], channel, f"m{n}")
    async with user_client(server, people["bob"]) as bob:
        listed = (await bob.get("/v1/channels")).json()["channels"]
        me = (await bob.get("/v1/me")).json()
        read = await bob.post(f"/v1/channels/{channel}/read", json={})
    assert [c["unread_count"] for c in listed] == [100]
    assert me["total_unread"] == 100
    assert read.json() == {"unread_count": 0}
