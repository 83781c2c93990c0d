"""SQL for channels and their members: create, read with activity and unread counts, change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cariosan.db.mutes import ACTIVE, MUTED_AUTHORS_SQL
from cariosan.db.pool import refused_value
from cariosan.db.reads import UNREAD_COUNT_SQL
from cariosan.errors import ValidationFailed


@dataclass(frozen=True)
class LastMessageRow:
    id: uuid.UUID
    user_id: str
    text: str
    reply_count: int
    mentions: list[str]
    data: dict[str, Any]
    created_at: datetime
    edited_at: datetime | None
    # As message reads show them: counts per type, the viewer's own types (in the order it
    # added them), and {id, filename, content_type, size} of each attachment.
    reactions: dict[str, int]
    own_reactions: list[str]
    attachments: list[dict[str, Any]]
    # The viewer mutes the message's author.
    muted: bool = False
    pinned_at: datetime | None = None
    pinned_by: str | None = None


@dataclass(frozen=True)
class ChannelRow:
    id: str
    type: str
    name: str | None
    data: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_message_at: datetime | None
    # coalesce(last_message_at, created_at): the listing's sort key.
    activity: datetime
    member_count: int
    # For the viewing user (0 when it is not a member or there is none).
    unread_count: int
    last_message: LastMessageRow | None
    # The viewer muted the channel (and the mute has not run out).
    muted: bool = False
    # Slow mode (0: off) and freeze (issue 14).
    cooldown_seconds: int = 0
    frozen: bool = False


@dataclass(frozen=True)
class Moderation:
    """A channel's slow mode and freeze."""

    cooldown_seconds: int
    frozen: bool


@dataclass(frozen=True)
class MemberRow:
    user_id: str
    role: str
    joined_at: datetime


# Channels with their activity, member count, the viewer's unread count and the last message,
# for $1 workspace, $2 the viewing user (or NULL) and $3 the channel ids. Listing picks a page
# of ids first (_PAGE), so only those channels get a last message and counts.
_SELECT = f"""
    SELECT c.id, c.type, c.name, c.data, c.created_by, c.created_at, c.updated_at, c.deleted_at,
           c.last_message_at, coalesce(c.last_message_at, c.created_at) AS activity,
           (SELECT count(*) FROM channel_members n
            WHERE n.workspace_id = c.workspace_id AND n.channel_id = c.id) AS member_count,
           {UNREAD_COUNT_SQL} AS unread_count,
           lm.id AS lm_id, lm.user_id AS lm_user_id, lm.text AS lm_text,
           lm.reply_count AS lm_reply_count, lm.mentions AS lm_mentions, lm.data AS lm_data,
           lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at,
           lm.reactions AS lm_reactions, lm.own_reactions AS lm_own_reactions,
           lm.attachments AS lm_attachments, lm.pinned_at AS lm_pinned_at,
           lm.pinned_by AS lm_pinned_by, c.cooldown_seconds, c.frozen,
           coalesce(lm.user_id = ANY({MUTED_AUTHORS_SQL}), false) AS lm_muted,
           cm.user_id IS NOT NULL AS muted
    FROM channels c
    LEFT JOIN channel_members me
      ON me.workspace_id = c.workspace_id AND me.channel_id = c.id AND me.user_id = $2
    LEFT JOIN channel_mutes cm
      ON cm.workspace_id = c.workspace_id AND cm.user_id = $2 AND cm.channel_id = c.id
     AND {ACTIVE.format(alias="cm")}
    LEFT JOIN LATERAL (
        SELECT last.*,
               coalesce((
                   SELECT jsonb_object_agg(t.type, t.n)
                   FROM (
                       SELECT r.type, count(*) AS n FROM reactions r
                       WHERE r.workspace_id = last.workspace_id AND r.message_id = last.id
                       GROUP BY r.type
                   ) t
               ), '{{}}'::jsonb) AS reactions,
               coalesce((
                   SELECT array_agg(r.type ORDER BY r.created_at, r.type) FROM reactions r
                   WHERE r.workspace_id = last.workspace_id AND r.message_id = last.id
                     AND r.user_id = $2::text
               ), '{{}}'::text[]) AS own_reactions,
               coalesce((
                   SELECT jsonb_agg(
                              jsonb_build_object('id', a.id, 'filename', a.filename,
                                                 'content_type', a.content_type, 'size', a.size)
                              ORDER BY array_position(last.attachment_ids, a.id))
                   FROM attachments a
                   WHERE a.workspace_id = last.workspace_id AND a.id = ANY(last.attachment_ids)
               ), '[]'::jsonb) AS attachments
        FROM (
            SELECT m.workspace_id, m.id, m.user_id, m.text, m.reply_count, m.mentions, m.data,
                   m.created_at, m.edited_at, m.attachment_ids, m.pinned_at, m.pinned_by
            FROM messages m
            WHERE m.workspace_id = c.workspace_id AND m.channel_id = c.id
              AND m.parent_id IS NULL AND m.deleted_at IS NULL
              -- Shadow-banned messages: their author's last message only (domain/bans.py).
              AND (NOT m.shadow OR $2::text IS NULL OR m.user_id = $2::text)
            ORDER BY m.created_at DESC, m.id DESC LIMIT 1
        ) last
    ) lm ON true
    WHERE c.workspace_id = $1 AND c.deleted_at IS NULL AND c.id = ANY($3::text[])
"""  # noqa: S608 (constant SQL fragment, values are parameters)


def _json(value: dict[str, Any]) -> str:
    # msgspec, not json.dumps: no Python recursion on deeply nested client data.
    return msgspec.json.encode(value).decode()


def _last_message(r: asyncpg.Record) -> LastMessageRow | None:
    if r["lm_id"] is None:
        return None
    return LastMessageRow(
        r["lm_id"],
        r["lm_user_id"],
        r["lm_text"],
        r["lm_reply_count"],
        list(r["lm_mentions"]),
        msgspec.json.decode(r["lm_data"]),
        r["lm_created_at"],
        r["lm_edited_at"],
        msgspec.json.decode(r["lm_reactions"]),
        list(r["lm_own_reactions"]),
        msgspec.json.decode(r["lm_attachments"]),
        r["lm_muted"],
        r["lm_pinned_at"],
        r["lm_pinned_by"],
    )


def _row(r: asyncpg.Record) -> ChannelRow:
    return ChannelRow(
        r["id"],
        r["type"],
        r["name"],
        msgspec.json.decode(r["data"]),
        r["created_by"],
        r["created_at"],
        r["updated_at"],
        r["deleted_at"],
        r["last_message_at"],
        r["activity"],
        r["member_count"],
        r["unread_count"],
        _last_message(r),
        r["muted"],
        r["cooldown_seconds"],
        r["frozen"],
    )


async def get_channel(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, viewer: str | None
) -> ChannelRow | None:
    """A live channel as `viewer` sees it (its unread count); None if there is none."""
    r = await conn.fetchrow(_SELECT, workspace_id, viewer, [channel_id])
    return None if r is None else _row(r)


_ORDER = "coalesce(c.last_message_at, c.created_at) DESC, c.id DESC"

# The ids of a page of live channels, newest activity first, below the keyset cursor ($4, $5):
# the viewer's ($2), and public ones if asked ($3), or every channel when there is no viewer.
_PAGE = f"""
    SELECT c.id FROM channels c
    WHERE c.workspace_id = $1 AND c.deleted_at IS NULL
      AND ($2::text IS NULL OR ($3 AND c.type = 'public') OR EXISTS (
          SELECT 1 FROM channel_members me
          WHERE me.workspace_id = $1 AND me.channel_id = c.id AND me.user_id = $2
      ))
      AND ($4::timestamptz IS NULL
           OR (coalesce(c.last_message_at, c.created_at), c.id) < ($4, $5::text))
    ORDER BY {_ORDER}
    LIMIT $6
"""  # noqa: S608 (constant SQL fragment, values are parameters)

# The same for a viewer without public channels: its memberships drive, not the workspace's
# channels. The cursor is ($3, $4), the limit $5.
_MEMBER_PAGE = f"""
    SELECT c.id FROM channel_members me
    JOIN channels c ON c.workspace_id = me.workspace_id AND c.id = me.channel_id
    WHERE me.workspace_id = $1 AND me.user_id = $2 AND c.deleted_at IS NULL
      AND ($3::timestamptz IS NULL
           OR (coalesce(c.last_message_at, c.created_at), c.id) < ($3, $4::text))
    ORDER BY {_ORDER}
    LIMIT $5
"""  # noqa: S608 (constant SQL fragment, values are parameters)


async def list_channels(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    viewer: str | None,
    *,
    include_public: bool,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[ChannelRow]:
    """Live channels newest activity first: the viewer's (and public ones if asked), or every
    channel of the workspace when there is no viewer; keyset-paged below `before`."""
    when, after_id = (None, None) if before is None else before
    if viewer is None or include_public:
        ids = await conn.fetch(_PAGE, workspace_id, viewer, include_public, when, after_id, limit)
    else:
        ids = await conn.fetch(_MEMBER_PAGE, workspace_id, viewer, when, after_id, limit)
    if not ids:
        return []
    rows = await conn.fetch(
        _SELECT + f" ORDER BY {_ORDER}", workspace_id, viewer, [r["id"] for r in ids]
    )
    return [_row(r) for r in rows]


async def insert_channel(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    *,
    type: str,
    name: str | None,
    data: dict[str, Any],
    created_by: str | None,
    dm_key: str | None,
) -> bool:
    """Insert a channel; False if its id (or, for a dm, its pair) is taken. A concurrent insert
    of the same pair waits for the other transaction, so the loser can then find the winner."""
    try:
        inserted = await conn.fetchval(
            """
            INSERT INTO channels (workspace_id, id, type, name, data, created_by, dm_key)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
            ON CONFLICT DO NOTHING
            RETURNING true
            """,
            workspace_id,
            channel_id,
            type,
            name,
            _json(data),
            created_by,
            dm_key,
        )
    except asyncpg.exceptions.DataError as exc:
        raise ValidationFailed(f"the channel cannot be stored: {_reason(exc)}") from None
    return inserted is True


async def dm_channel_id(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, dm_key: str
) -> str | None:
    value = await conn.fetchval(
        "SELECT id FROM channels WHERE workspace_id = $1 AND dm_key = $2 AND deleted_at IS NULL",
        workspace_id,
        dm_key,
    )
    return value if isinstance(value, str) else None


async def channel_type(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str
) -> str | None:
    """The type of a live channel, None if there is none."""
    value = await conn.fetchval(
        "SELECT type FROM channels WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        channel_id,
    )
    return value if isinstance(value, str) else None


async def update_channel(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    *,
    name: str | None,
    data: dict[str, Any] | None,
    cooldown_seconds: int | None = None,
    frozen: bool | None = None,
    fields_set: frozenset[str],
) -> Moderation | None:
    """Change the fields named in `fields_set`; the slow mode and freeze from before the change
    (the row is locked first, so concurrent changes see each other), None if the channel is
    gone."""
    try:
        r = await conn.fetchrow(
            """
            WITH before AS (
                SELECT cooldown_seconds, frozen FROM channels
                WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
                FOR UPDATE
            )
            UPDATE channels SET
                name = CASE WHEN $3 THEN $4 ELSE name END,
                data = CASE WHEN $5 THEN $6::jsonb ELSE data END,
                cooldown_seconds = CASE WHEN $7 THEN $8 ELSE channels.cooldown_seconds END,
                frozen = CASE WHEN $9 THEN $10 ELSE channels.frozen END,
                updated_at = now()
            FROM before
            WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
            RETURNING before.cooldown_seconds, before.frozen
            """,
            workspace_id,
            channel_id,
            "name" in fields_set,
            name,
            "data" in fields_set and data is not None,
            None if data is None else _json(data),
            "cooldown_seconds" in fields_set and cooldown_seconds is not None,
            cooldown_seconds,
            "frozen" in fields_set and frozen is not None,
            frozen,
        )
    except asyncpg.exceptions.DataError as exc:
        raise ValidationFailed(f"the channel cannot be stored: {_reason(exc)}") from None
    return None if r is None else Moderation(r["cooldown_seconds"], r["frozen"])


async def soft_delete_channel(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str
) -> datetime | None:
    """Mark the channel deleted (rows stay for export); its time, None if already gone.

    A deleted dm gives up its pair key so that the two users can start a new one.
    """
    value = await conn.fetchval(
        """
        UPDATE channels SET deleted_at = now(), updated_at = now(), dm_key = NULL
        WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
        RETURNING deleted_at
        """,
        workspace_id,
        channel_id,
    )
    return value if isinstance(value, datetime) else None


async def members(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str
) -> list[MemberRow]:
    rows = await conn.fetch(
        "SELECT user_id, role, joined_at FROM channel_members "
        "WHERE workspace_id = $1 AND channel_id = $2 ORDER BY joined_at, user_id",
        workspace_id,
        channel_id,
    )
    return [MemberRow(r["user_id"], r["role"], r["joined_at"]) for r in rows]


async def add_members(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    user_ids: list[str],
    roles: list[str],
) -> list[MemberRow]:
    """Add users with their roles, skipping those already in; the rows actually added.

    Callers pass ids sorted, so concurrent additions lock index entries in one order.
    """
    rows = await conn.fetch(
        """
        INSERT INTO channel_members (workspace_id, channel_id, user_id, role)
        SELECT $1, $2, t.user_id, t.role
        FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(user_id, role, n)
        ORDER BY t.n
        ON CONFLICT DO NOTHING
        RETURNING user_id, role, joined_at
        """,
        workspace_id,
        channel_id,
        user_ids,
        roles,
    )
    added = [MemberRow(r["user_id"], r["role"], r["joined_at"]) for r in rows]
    return sorted(added, key=lambda m: m.user_id)


async def remove_member(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, user_id: str
) -> MemberRow | None:
    r = await conn.fetchrow(
        """
        DELETE FROM channel_members
        WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
        RETURNING user_id, role, joined_at
        """,
        workspace_id,
        channel_id,
        user_id,
    )
    if r is not None:
        # A mute is the member's: it ends with the membership (rejoining starts unmuted).
        await conn.execute(
            "DELETE FROM channel_mutes "
            "WHERE workspace_id = $1 AND user_id = $2 AND channel_id = $3",
            workspace_id,
            user_id,
            channel_id,
        )
    return None if r is None else MemberRow(r["user_id"], r["role"], r["joined_at"])


def _reason(exc: asyncpg.exceptions.DataError) -> str:
    # Our words, not PostgreSQL's: its error text never reaches a client.
    return refused_value(exc).message


async def member_role(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, user_id: str
) -> str | None:
    """The member's role, locked until the transaction ends; None if it is not a member."""
    role: str | None = await conn.fetchval(
        """
        SELECT role FROM channel_members
        WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
        FOR UPDATE
        """,
        workspace_id,
        channel_id,
        user_id,
    )
    return role


async def set_member_role(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, user_id: str, role: str
) -> MemberRow | None:
    r = await conn.fetchrow(
        """
        UPDATE channel_members SET role = $4
        WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
        RETURNING user_id, role, joined_at
        """,
        workspace_id,
        channel_id,
        user_id,
        role,
    )
    return None if r is None else MemberRow(r["user_id"], r["role"], r["joined_at"])
