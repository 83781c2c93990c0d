"""SQL for read state: where a member stopped reading, and how many messages are unread."""

from __future__ import annotations

import uuid

import asyncpg

from cariosan.db.mutes import ACTIVE

# Unread counts stop at this: 100 means "100 or more" (apps show "99+"). Counting further would
# cost a member of a busy channel a scan of everything it has not read, on every channel list.
UNREAD_CAP = 100

# The unread count of member `me` (a channel_members row) in channel `c`: top-level messages by
# others, not deleted, after the member's read position by (created_at, id); all of them if it
# never read; at most UNREAD_CAP; 0 without a look at messages when the member's position is
# the channel's last message (most channels of a member of many). If the last-read message is
# gone (its author was hard-deleted), the time of the read stands in for its position.
UNREAD_COUNT_SQL = f"""
    CASE WHEN me.user_id IS NULL THEN 0
    -- Read up to the channel's last message (or it has none): nothing to count.
    WHEN c.last_message_id IS NULL OR c.last_message_id = me.last_read_message_id THEN 0
    ELSE (
        SELECT count(*) FROM (
            SELECT 1 FROM messages u
            WHERE u.workspace_id = c.workspace_id AND u.channel_id = c.id
              AND u.parent_id IS NULL
              -- One bound, no OR: the channel index walks from the read position on.
              AND (u.created_at, u.id) > (
                  coalesce(
                      (SELECT r.created_at FROM messages r
                       WHERE r.workspace_id = me.workspace_id
                         AND r.id = me.last_read_message_id),
                      me.last_read_at,
                      '-infinity'::timestamptz
                  ),
                  coalesce(me.last_read_message_id, '00000000-0000-0000-0000-000000000000'::uuid)
              )
              AND u.deleted_at IS NULL AND u.user_id <> me.user_id
              -- Others' shadow-banned messages are not shown, so not unread (domain/bans.py).
              AND NOT u.shadow
            ORDER BY u.created_at, u.id
            LIMIT {UNREAD_CAP}
        ) unread
    ) END
"""  # noqa: S608 (constant SQL fragment)


async def latest_message_id(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str
) -> uuid.UUID | None:
    """The channel's newest top-level message (deleted ones too: reading covers them)."""
    value = await conn.fetchval(
        """
        SELECT id FROM messages
        WHERE workspace_id = $1 AND channel_id = $2 AND parent_id IS NULL
        ORDER BY created_at DESC, id DESC LIMIT 1
        """,
        workspace_id,
        channel_id,
    )
    return value if isinstance(value, uuid.UUID) else None


async def message_in_channel(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, message_id: uuid.UUID
) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM messages WHERE workspace_id = $1 AND id = $2 AND channel_id = $3",
        workspace_id,
        message_id,
        channel_id,
    )
    return found is not None


async def set_read_position(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    user_id: str,
    message_id: uuid.UUID | None,
) -> int | None:
    """Move the member's read position; its unread count afterwards, None if not a member."""
    value = await conn.fetchval(
        f"""
        WITH moved AS (
            UPDATE channel_members
            SET last_read_message_id = $4, last_read_at = now()
            WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
            RETURNING workspace_id, channel_id, user_id, last_read_message_id, last_read_at
        )
        SELECT {UNREAD_COUNT_SQL}
        FROM moved me JOIN channels c ON c.workspace_id = me.workspace_id AND c.id = me.channel_id
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        channel_id,
        user_id,
        message_id,
    )
    return None if value is None else int(value)


async def total_unread(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> int:
    """Unread messages over all the user's channels that still exist and it does not mute."""
    value = await conn.fetchval(
        f"""
        SELECT coalesce(sum({UNREAD_COUNT_SQL}), 0)
        FROM channel_members me
        JOIN channels c ON c.workspace_id = me.workspace_id AND c.id = me.channel_id
        -- Muted channels do not count (a primary-key probe per membership).
        LEFT JOIN channel_mutes cm
          ON cm.workspace_id = me.workspace_id AND cm.user_id = me.user_id
         AND cm.channel_id = me.channel_id AND {ACTIVE.format(alias="cm")}
        WHERE me.workspace_id = $1 AND me.user_id = $2 AND c.deleted_at IS NULL
          AND cm.user_id IS NULL
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        user_id,
    )
    return int(value)
