"""SQL for messages, threads, reactions and search.

Every read returns messages with their reaction counts and the viewer's own reactions, computed
in the same statement (one round trip per page, never one per message). Queries bind
$1 = workspace and $2 = the viewing user (or NULL) first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from cariosan.db.mutes import MUTED_AUTHORS_SQL
from cariosan.db.pool import REFUSED_VALUES, note_event, refused_value
from cariosan.errors import ValidationFailed

T = TypeVar("T")


@dataclass(frozen=True)
class MessageRow:
    id: uuid.UUID
    channel_id: str
    user_id: str
    text: str
    parent_id: uuid.UUID | None
    reply_count: int
    mentions: list[str]
    attachment_ids: list[uuid.UUID]
    data: dict[str, Any]
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    reactions: dict[str, int]
    # The viewing user's reaction types, in the order it added them.
    own_reactions: list[str]
    # {id, filename, content_type, size} of each attachment, in the order the message gave them.
    attachments: list[dict[str, Any]]
    # Sent under a shadow ban: shown to its author only (domain/bans.py).
    shadow: bool = False
    # The viewing user mutes the author (db/mutes.py); False without a viewer.
    muted: bool = False
    # Pins (issue 14): when and by whom (None: not pinned; pinned_by None: by the backend).
    pinned_at: datetime | None = None
    pinned_by: str | None = None


@dataclass(frozen=True)
class Position:
    """Where a message sits: enough to check a cursor or a parent and to page from it."""

    id: uuid.UUID
    channel_id: str
    parent_id: uuid.UUID | None
    created_at: datetime
    deleted_at: datetime | None


_COLUMNS = """
    m.workspace_id, m.id, m.channel_id, m.user_id, m.text, m.parent_id, m.reply_count,
    m.mentions, m.attachment_ids, m.data, m.created_at, m.edited_at, m.deleted_at, m.shadow,
    m.pinned_at, m.pinned_by
"""

# Hides shadow-banned messages from everyone but their author ($2) and the backend ($2 NULL).
_VISIBLE = "(NOT m.shadow OR $2::text IS NULL OR m.user_id = $2::text)"


def _with_reactions(order: str) -> str:
    """Select the rows of CTE `page` with their reactions, ordered by `order`."""
    return f"""
        SELECT p.*, coalesce(rx.counts, '{{}}'::jsonb) AS reactions,
               coalesce(rx.own, '{{}}'::text[]) AS own_reactions,
               coalesce(ax.files, '[]'::jsonb) AS attachments,
               p.user_id = ANY({MUTED_AUTHORS_SQL}) AS muted
        FROM page p
        LEFT JOIN LATERAL (
            SELECT jsonb_object_agg(t.type, t.n) AS counts,
                   array_agg(t.type ORDER BY t.mine_at, t.type)
                       FILTER (WHERE t.mine_at IS NOT NULL) AS own
            FROM (
                SELECT r.type, count(*) AS n,
                       min(r.created_at) FILTER (WHERE r.user_id = $2::text) AS mine_at
                FROM reactions r
                WHERE r.workspace_id = p.workspace_id AND r.message_id = p.id
                GROUP BY r.type
            ) t
        ) rx ON true
        LEFT JOIN LATERAL (
            SELECT jsonb_agg(
                       jsonb_build_object('id', a.id, 'filename', a.filename,
                                          'content_type', a.content_type, 'size', a.size)
                       ORDER BY array_position(p.attachment_ids, a.id)
                   ) AS files
            FROM attachments a
            WHERE a.workspace_id = p.workspace_id AND a.id = ANY(p.attachment_ids)
        ) ax ON cardinality(p.attachment_ids) > 0
        ORDER BY {order}
    """  # noqa: S608 (constant SQL fragments, values are parameters)


_OLDEST_FIRST = _with_reactions("p.created_at, p.id")
_NEWEST_FIRST = _with_reactions("p.created_at DESC, p.id DESC")


def _row(r: asyncpg.Record) -> MessageRow:
    return MessageRow(
        r["id"],
        r["channel_id"],
        r["user_id"],
        r["text"],
        r["parent_id"],
        r["reply_count"],
        list(r["mentions"]),
        list(r["attachment_ids"]),
        msgspec.json.decode(r["data"]),
        r["created_at"],
        r["edited_at"],
        r["deleted_at"],
        msgspec.json.decode(r["reactions"]),
        list(r["own_reactions"]),
        msgspec.json.decode(r["attachments"]),
        r["shadow"],
        r["muted"],
        r["pinned_at"],
        r["pinned_by"],
    )


def _json(value: dict[str, Any]) -> str:
    # msgspec, not json.dumps: no Python recursion on nested client data.
    return msgspec.json.encode(value).decode()


async def _storing(action: Callable[[], Awaitable[T]]) -> T:
    """Run a write; values PostgreSQL refuses to store are the client's mistake (422)."""
    try:
        return await action()
    except REFUSED_VALUES as exc:
        raise ValidationFailed(
            f"the message cannot be stored: {refused_value(exc).message}"
        ) from None


# ---- reading -------------------------------------------------------------------------------


async def get_message(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, viewer: str | None, message_id: uuid.UUID
) -> MessageRow | None:
    r = await conn.fetchrow(
        f"""
        WITH page AS (
            SELECT {_COLUMNS} FROM messages m WHERE m.workspace_id = $1 AND m.id = $3
        )
        {_OLDEST_FIRST}
        """,  # noqa: S608
        workspace_id,
        viewer,
        message_id,
    )
    return None if r is None else _row(r)


async def get_messages(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, message_ids: list[uuid.UUID]
) -> dict[uuid.UUID, MessageRow]:
    """Messages by id as every member sees them (no viewer), in one statement."""
    rows = await conn.fetch(
        f"""
        WITH page AS (
            SELECT {_COLUMNS} FROM messages m
            WHERE m.workspace_id = $1 AND m.id = ANY($3::uuid[])
        )
        {_OLDEST_FIRST}
        """,  # noqa: S608
        workspace_id,
        None,
        message_ids,
    )
    return {r["id"]: _row(r) for r in rows}


async def position(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> Position | None:
    r = await conn.fetchrow(
        "SELECT id, channel_id, parent_id, created_at, deleted_at FROM messages "
        "WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        message_id,
    )
    if r is None:
        return None
    return Position(r["id"], r["channel_id"], r["parent_id"], r["created_at"], r["deleted_at"])


# A page is one of: the latest `limit`, the `limit` just before a cursor, or just after it.
# $3 = the channel id (channel pages) or the parent id (thread pages), $4 = limit,
# $5/$6 = the cursor's created_at/id.
_SCOPES = {
    "channel": "m.channel_id = $3 AND m.parent_id IS NULL",
    "thread": "m.parent_id = $3::uuid",
}
_DIRECTIONS = {
    "latest": ("", "m.created_at DESC, m.id DESC"),
    "before": (
        "AND (m.created_at, m.id) < ($5::timestamptz, $6::uuid)",
        "m.created_at DESC, m.id DESC",
    ),
    "after": ("AND (m.created_at, m.id) > ($5::timestamptz, $6::uuid)", "m.created_at, m.id"),
}
_PAGES = {
    (scope, direction): f"""
        WITH page AS (
            SELECT {_COLUMNS} FROM messages m
            WHERE m.workspace_id = $1 AND {where} {condition} AND {_VISIBLE}
            ORDER BY {order} LIMIT $4
        )
        {_OLDEST_FIRST}
    """  # noqa: S608
    for scope, where in _SCOPES.items()
    for direction, (condition, order) in _DIRECTIONS.items()
}


async def page(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    viewer: str | None,
    *,
    channel_id: str | None = None,
    parent_id: uuid.UUID | None = None,
    before: Position | None = None,
    after: Position | None = None,
    limit: int,
) -> list[MessageRow]:
    """Up to `limit` top-level messages of a channel (or replies of a thread), oldest first:
    the latest ones, or those just before or just after a cursor."""
    scope, key = ("channel", channel_id) if parent_id is None else ("thread", parent_id)
    cursor = before or after
    direction = "before" if before else "after" if after else "latest"
    args: list[Any] = [workspace_id, viewer, key, limit]
    if cursor is not None:
        args += [cursor.created_at, cursor.id]
    rows = await conn.fetch(_PAGES[scope, direction], *args)
    return [_row(r) for r in rows]


async def search(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    viewer: str | None,
    query: str,
    *,
    channel_id: str | None,
    limit: int,
) -> list[MessageRow]:
    """Live messages matching `query` (words, `simple` configuration), newest first, in live
    channels: those `viewer` is a member of, or every channel when there is no viewer."""
    rows = await conn.fetch(
        f"""
        WITH page AS (
            SELECT {_COLUMNS} FROM messages m
            WHERE m.workspace_id = $1
              AND m.search @@ plainto_tsquery('simple', $3)
              AND m.deleted_at IS NULL
              AND {_VISIBLE}
              AND ($4::text IS NULL OR m.channel_id = $4)
              AND ($2::text IS NULL OR m.channel_id IN (
                  SELECT cm.channel_id FROM channel_members cm
                  WHERE cm.workspace_id = $1 AND cm.user_id = $2
              ))
              AND EXISTS (
                  SELECT 1 FROM channels c
                  WHERE c.workspace_id = $1 AND c.id = m.channel_id AND c.deleted_at IS NULL
              )
            ORDER BY m.created_at DESC, m.id DESC LIMIT $5
        )
        {_NEWEST_FIRST}
        """,  # noqa: S608
        workspace_id,
        viewer,
        query,
        channel_id,
        limit,
    )
    return [_row(r) for r in rows]


async def members_among(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, user_ids: list[str]
) -> set[str]:
    """Which of `user_ids` are members of the channel."""
    rows = await conn.fetch(
        "SELECT user_id FROM channel_members "
        "WHERE workspace_id = $1 AND channel_id = $2 AND user_id = ANY($3::text[])",
        workspace_id,
        channel_id,
        user_ids,
    )
    return {r["user_id"] for r in rows}


# ---- writing -------------------------------------------------------------------------------


async def insert_message(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    *,
    channel_id: str,
    user_id: str,
    text: str,
    parent_id: uuid.UUID | None,
    mentions: list[str],
    attachment_ids: list[uuid.UUID],
    data: dict[str, Any],
    shadow: bool = False,
) -> MessageRow | None:
    """Store a new message; None if one with this id exists already. A concurrent insert of the
    same id waits for the other transaction, so the loser then finds the winner's row."""
    r = await _storing(
        lambda: conn.fetchrow(
            f"""
            INSERT INTO messages AS m
                (workspace_id, id, channel_id, user_id, text, parent_id, mentions, data,
                 attachment_ids, shadow)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8::jsonb, $9::uuid[], $10)
            ON CONFLICT (workspace_id, id) DO NOTHING
            RETURNING {_COLUMNS}, '{{}}'::jsonb AS reactions, '{{}}'::text[] AS own_reactions,
                '[]'::jsonb AS attachments, false AS muted
            """,  # noqa: S608
            workspace_id,
            message_id,
            channel_id,
            user_id,
            text,
            parent_id,
            mentions,
            _json(data),
            attachment_ids,
            shadow,
        )
    )
    return None if r is None else _row(r)


@dataclass(frozen=True)
class PlainSend:
    """One common send (see send_plain_batch)."""

    workspace_id: uuid.UUID
    message_id: uuid.UUID
    channel_id: str
    user_id: str
    text: str
    data: dict[str, Any]


# The common send, several at once in one statement (the function cariosan_send_plain of
# migration 0015, which keeps one generic plan of it): a member without a ban posts a top-level
# message without mentions or attachments into a channel neither frozen nor in slow mode.
# Access, the messages, their events and the channels' last messages are one round trip and, as
# one statement, one implicit transaction: one commit for the lot, and each channel row locked
# only until that commit (a hot channel's senders queue on that lock). Channel rows are locked
# in key order, so that two batches over the same channels never deadlock on them. A send that
# does not qualify inserts nothing, and its caller takes the general path, which gives the
# exact answer (NOT_FOUND, FORBIDDEN, slow mode, the original of a repeated id).
_SEND_PLAIN = """
SELECT s.*, '{}'::jsonb AS reactions, '{}'::text[] AS own_reactions,
       '[]'::jsonb AS attachments, false AS muted
FROM cariosan_send_plain(
    $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]
) s
"""


async def send_plain_batch(
    conn: asyncpg.Connection, sends: list[PlainSend]
) -> dict[tuple[uuid.UUID, uuid.UUID], MessageRow]:
    """Store the common sends among `sends` in one statement, outside any transaction block
    (see _SEND_PLAIN): the stored messages by (workspace, message id). A send missing from the
    result wrote nothing. Of sends with the same id, only the first is offered: the statement
    orders its rows by id, so which of several equal ones it stored was not defined (a repeated
    send's row could be the later sender's)."""
    firsts: dict[tuple[uuid.UUID, uuid.UUID], PlainSend] = {}
    for send in sends:
        firsts.setdefault((send.workspace_id, send.message_id), send)
    sends = list(firsts.values())
    found = await _storing(
        lambda: conn.fetch(
            _SEND_PLAIN,
            [s.workspace_id for s in sends],
            [s.message_id for s in sends],
            [s.channel_id for s in sends],
            [s.user_id for s in sends],
            [s.text for s in sends],
            [_json(s.data) for s in sends],
        )
    )
    stored = {(r["workspace_id"], r["id"]): _row(r) for r in found}
    for workspace_id in {key[0] for key in stored}:
        note_event(workspace_id)
    return stored


async def count_reply(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, parent_id: uuid.UUID
) -> None:
    await conn.execute(
        "UPDATE messages SET reply_count = reply_count + 1 WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        parent_id,
    )


async def set_last_message(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    message_id: uuid.UUID,
    created_at: datetime,
) -> None:
    """Point the channel at its newest message (never back at an older one: concurrent sends
    may commit out of order)."""
    await conn.execute(
        """
        UPDATE channels SET last_message_id = $3, last_message_at = $4
        WHERE workspace_id = $1 AND id = $2
          AND (last_message_at IS NULL OR (last_message_at, last_message_id) < ($4, $3))
        """,
        workspace_id,
        channel_id,
        message_id,
        created_at,
    )


async def update_text(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, message_id: uuid.UUID, text: str
) -> bool:
    """Replace the text of a live message; False if it is gone or deleted."""
    result = await _storing(
        lambda: conn.execute(
            "UPDATE messages SET text = $3, edited_at = clock_timestamp() "
            "WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
            workspace_id,
            message_id,
            text,
        )
    )
    return bool(result != "UPDATE 0")


async def soft_delete(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> bool:
    """Mark a live message deleted (the row stays for export); False if it already was. A
    deleted message is no longer pinned: it has nothing left to show."""
    result = await conn.execute(
        "UPDATE messages SET deleted_at = clock_timestamp(), pinned_at = NULL, pinned_by = NULL "
        "WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        message_id,
    )
    return bool(result != "UPDATE 0")


async def add_reaction(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    type: str,
    user_id: str,
) -> datetime | None:
    """Add the user's reaction to a live message; its time, None if it was there already (or
    the message is deleted)."""
    value = await conn.fetchval(
        """
        INSERT INTO reactions (workspace_id, message_id, type, user_id)
        SELECT $1, $2, $3, $4
        WHERE EXISTS (
            SELECT 1 FROM messages WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
        )
        ON CONFLICT DO NOTHING
        RETURNING created_at
        """,
        workspace_id,
        message_id,
        type,
        user_id,
    )
    return value if isinstance(value, datetime) else None


async def remove_reaction(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    type: str,
    user_id: str,
) -> bool:
    result = await conn.execute(
        "DELETE FROM reactions "
        "WHERE workspace_id = $1 AND message_id = $2 AND type = $3 AND user_id = $4",
        workspace_id,
        message_id,
        type,
        user_id,
    )
    return bool(result != "DELETE 0")


# ---- context (the flags queue) -------------------------------------------------------------

# Neighbours of message t in its scope: its channel's top-level messages, or its thread.
_SCOPE_OF_T = {
    "channel": "t.parent_id IS NULL AND m.channel_id = t.channel_id AND m.parent_id IS NULL",
    "thread": "m.parent_id = t.parent_id",
}
_NEIGHBOURS = " UNION ALL ".join(
    f"""
    (SELECT m.* FROM messages m
     WHERE m.workspace_id = t.workspace_id AND {scope}
       AND (m.created_at, m.id) < (t.created_at, t.id)
     ORDER BY m.created_at DESC, m.id DESC LIMIT $4)
    UNION ALL
    (SELECT m.* FROM messages m
     WHERE m.workspace_id = t.workspace_id AND {scope}
       AND (m.created_at, m.id) > (t.created_at, t.id)
     ORDER BY m.created_at, m.id LIMIT $4)
    """  # noqa: S608 (constant SQL fragments, values are parameters)
    for scope in _SCOPE_OF_T.values()
)
_CONTEXT = f"""
    WITH page AS (
        SELECT {_COLUMNS}, t.id AS around
        FROM messages t
        CROSS JOIN LATERAL ({_NEIGHBOURS}) m
        WHERE t.workspace_id = $1 AND t.id = ANY($3::uuid[])
    )
    {_with_reactions("p.around, p.created_at, p.id")}
"""  # noqa: S608 (constant SQL fragments, values are parameters)


async def context_of(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, message_ids: list[uuid.UUID], each: int
) -> dict[uuid.UUID, list[MessageRow]]:
    """Up to `each` messages just before and `each` just after each message, in its channel
    (a top-level message) or its thread (a reply), oldest first; one statement for all."""
    rows = await conn.fetch(_CONTEXT, workspace_id, None, message_ids, each)
    found: dict[uuid.UUID, list[MessageRow]] = {m: [] for m in message_ids}
    for r in rows:
        found[r["around"]].append(_row(r))
    return found


# ---- pins ----------------------------------------------------------------------------------

# Any fixed 32-bit number: the first key of the per-channel advisory lock that serializes pins,
# so the per-channel cap holds under concurrent pins (the two-key form never meets the
# one-key locks of the sequencer and migrations).
PIN_LOCK_CLASS = 0x50494E53  # "PINS"


async def lock_pins(conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str) -> None:
    """Serialize pin changes of one channel until the transaction ends (sends never wait)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::text || '/' || $3::text))",
        PIN_LOCK_CLASS,
        str(workspace_id),
        channel_id,
    )


async def pin_count(conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM messages "
        "WHERE workspace_id = $1 AND channel_id = $2 AND pinned_at IS NOT NULL",
        workspace_id,
        channel_id,
    )
    return int(value or 0)


async def set_pin(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    *,
    pinned: bool,
    by: str | None,
) -> bool:
    """Pin a live message (or unpin a message); False if that changed nothing."""
    if pinned:
        result = await conn.execute(
            "UPDATE messages SET pinned_at = clock_timestamp(), pinned_by = $3 "
            "WHERE workspace_id = $1 AND id = $2 AND pinned_at IS NULL AND deleted_at IS NULL",
            workspace_id,
            message_id,
            by,
        )
    else:
        result = await conn.execute(
            "UPDATE messages SET pinned_at = NULL, pinned_by = NULL "
            "WHERE workspace_id = $1 AND id = $2 AND pinned_at IS NOT NULL",
            workspace_id,
            message_id,
        )
    return bool(result != "UPDATE 0")


_PINS = f"""
    WITH page AS (
        SELECT {_COLUMNS} FROM messages m
        WHERE m.workspace_id = $1 AND m.channel_id = $3 AND m.pinned_at IS NOT NULL
          AND m.deleted_at IS NULL
        ORDER BY m.pinned_at DESC, m.id DESC LIMIT $4
    )
    {_with_reactions("p.pinned_at DESC, p.id DESC")}
"""  # noqa: S608 (constant SQL fragments, values are parameters)


async def pins(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    viewer: str | None,
    channel_id: str,
    *,
    limit: int,
) -> list[MessageRow]:
    """A channel's pinned messages, most recently pinned first."""
    rows = await conn.fetch(_PINS, workspace_id, viewer, channel_id, limit)
    return [_row(r) for r in rows]
