"""The one-statement send (db/messages.send_plain_batch): a send that qualifies gets its message,
its event and its channel's last message written together; one that does not writes nothing
at all, so that the general path that then answers starts from an untouched database. Several
sends share the statement (group commit, domain/send_batch.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from cariosan.db import messages as rows
from cariosan.domain.ids import time_ordered_id
from cariosan.domain.workspaces import NewWorkspace
from cariosan.errors import ValidationFailed
from tests.support.chat import make_user, user_client
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    return shared_server


@dataclass
class Place:
    conn: asyncpg.Connection
    workspace_id: uuid.UUID


@pytest.fixture
async def place(server: RunningServer, workspace: NewWorkspace) -> AsyncIterator[Place]:
    """alice owns `general` with bob; carol is in the workspace but not in the channel."""
    tokens = {name: await make_user(server, workspace, name) for name in ("alice", "bob", "carol")}
    async with user_client(server, tokens["alice"]) as alice:
        made = await alice.post(
            "/v1/channels", json={"id": "general", "type": "group", "members": ["bob"]}
        )
        assert made.status_code == 201, made.text
    conn = await asyncpg.connect(server.services.settings.require_database())
    try:
        yield Place(conn, workspace.id)
    finally:
        await conn.close()


def _plain(
    place: Place, user_id: str, message_id: uuid.UUID | None = None, channel: str = "general"
) -> rows.PlainSend:
    return rows.PlainSend(
        place.workspace_id, message_id or time_ordered_id(), channel, user_id, "hello", {"k": 1}
    )


async def _send(place: Place, user_id: str, message_id: uuid.UUID | None = None) -> bool:
    return bool(await rows.send_plain_batch(place.conn, [_plain(place, user_id, message_id)]))


async def _state(place: Place) -> tuple[int, int, uuid.UUID | None]:
    """Messages and events in the channel, and its last message."""
    ws = place.workspace_id
    messages = await place.conn.fetchval(
        "SELECT count(*) FROM messages WHERE workspace_id = $1 AND channel_id = 'general'", ws
    )
    events = await place.conn.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND channel_id = 'general' "
        "AND type = 'message.new'",
        ws,
    )
    last = await place.conn.fetchval(
        "SELECT last_message_id FROM channels WHERE workspace_id = $1 AND id = 'general'", ws
    )
    return int(messages), int(events), last


async def test_a_member_s_plain_send_writes_message_event_and_last_message(place: Place) -> None:
    message_id = time_ordered_id()
    stored = await rows.send_plain_batch(place.conn, [_plain(place, "bob", message_id)])
    row = stored[place.workspace_id, message_id]
    assert (row.id, row.user_id, row.text, row.data) == (message_id, "bob", "hello", {"k": 1})
    assert (row.reactions, row.attachments, row.shadow, row.parent_id) == ({}, [], False, None)
    assert await _state(place) == (1, 1, message_id)
    event = await place.conn.fetchrow(
        "SELECT actor_id, user_id, payload FROM events WHERE workspace_id = $1 AND message_id = $2",
        place.workspace_id,
        message_id,
    )
    assert dict(event) == {"actor_id": "bob", "user_id": None, "payload": "{}"}


async def test_a_repeated_id_writes_nothing_and_keeps_the_original(place: Place) -> None:
    message_id = time_ordered_id()
    assert await _send(place, "bob", message_id)
    before = await _state(place)
    assert not await _send(place, "alice", message_id)
    assert await _state(place) == before
    author = await place.conn.fetchval(
        "SELECT user_id FROM messages WHERE workspace_id = $1 AND id = $2",
        place.workspace_id,
        message_id,
    )
    assert author == "bob"


@pytest.mark.parametrize(
    ("why", "setup"),
    [
        ("not a member", None),
        ("frozen", "UPDATE channels SET frozen = true WHERE workspace_id = $1"),
        ("slow mode", "UPDATE channels SET cooldown_seconds = 30 WHERE workspace_id = $1"),
        ("deleted channel", "UPDATE channels SET deleted_at = now() WHERE workspace_id = $1"),
        (
            "banned in the channel",
            "INSERT INTO bans (workspace_id, id, user_id, channel_id, created_by) "
            "VALUES ($1, gen_random_uuid(), 'bob', 'general', 'backend')",
        ),
        (
            "shadow-banned in the workspace",
            "INSERT INTO bans (workspace_id, id, user_id, shadow, created_by) "
            "VALUES ($1, gen_random_uuid(), 'bob', true, 'backend')",
        ),
    ],
)
async def test_anything_but_the_common_case_writes_nothing(
    place: Place, why: str, setup: str | None
) -> None:
    first = time_ordered_id()
    assert await _send(place, "bob", first)
    if setup is not None:
        await place.conn.execute(setup, place.workspace_id)
    user = "carol" if why == "not a member" else "bob"
    assert not await _send(place, user), why
    assert await _state(place) == (1, 1, first), why


async def test_an_expired_ban_no_longer_stops_the_common_send(place: Place) -> None:
    await place.conn.execute(
        "INSERT INTO bans (workspace_id, id, user_id, expires_at, created_by) "
        "VALUES ($1, gen_random_uuid(), 'bob', now() - interval '1 second', 'backend')",
        place.workspace_id,
    )
    assert await _send(place, "bob")
    assert (await _state(place))[:2] == (1, 1)


async def test_one_statement_stores_the_qualifying_sends_of_a_mixed_batch(place: Place) -> None:
    await place.conn.execute(
        "INSERT INTO channels (workspace_id, id, type) VALUES ($1, 'side', 'group')",
        place.workspace_id,
    )
    await place.conn.execute(
        "INSERT INTO channel_members (workspace_id, channel_id, user_id) "
        "VALUES ($1, 'side', 'bob')",
        place.workspace_id,
    )
    repeated = time_ordered_id()
    batch = [
        _plain(place, "bob", repeated),
        _plain(place, "alice", repeated),  # the same id again: only the first is stored
        _plain(place, "carol"),  # not a member
        _plain(place, "alice"),
        _plain(place, "bob", channel="side"),
        _plain(place, "alice", channel="side"),  # not a member of side
        _plain(place, "bob", channel="nowhere"),
    ]
    stored = await rows.send_plain_batch(place.conn, batch)
    assert set(stored) == {(place.workspace_id, batch[i].message_id) for i in (0, 3, 4)}
    assert stored[place.workspace_id, repeated].user_id == "bob"
    # One commit for all three: the same transaction wrote them.
    xids = await place.conn.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM messages WHERE workspace_id = $1",
        place.workspace_id,
    )
    assert xids == 1
    general = max((batch[0].message_id, batch[3].message_id))
    assert await _state(place) == (2, 2, general)
    side = await place.conn.fetchval(
        "SELECT last_message_id FROM channels WHERE workspace_id = $1 AND id = 'side'",
        place.workspace_id,
    )
    assert side == batch[4].message_id
    events = await place.conn.fetch(
        "SELECT channel_id, message_id, actor_id FROM events WHERE workspace_id = $1 "
        "AND type = 'message.new' ORDER BY seq DESC",
        place.workspace_id,
    )
    assert sorted((e["channel_id"], e["message_id"], e["actor_id"]) for e in events) == sorted(
        (batch[i].channel_id, batch[i].message_id, batch[i].user_id) for i in (0, 3, 4)
    )


async def test_a_value_postgresql_refuses_fails_the_whole_batch_and_writes_nothing(
    place: Place,
) -> None:
    bad = rows.PlainSend(place.workspace_id, time_ordered_id(), "general", "bob", "nul\x00", {})
    with pytest.raises(ValidationFailed):
        await rows.send_plain_batch(place.conn, [_plain(place, "bob"), bad])
    assert await _state(place) == (0, 0, None)
