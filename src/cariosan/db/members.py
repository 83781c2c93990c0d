"""SQL for who belongs to which channel (the access question every channel endpoint asks)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from cariosan.db import bans
from cariosan.db.bans import ActiveBan


@dataclass(frozen=True)
class ChannelAccessRow:
    channel_id: str
    type: str
    # The asking user's role in the channel, or None when it is not a member.
    member_role: str | None
    # The active ban of the workspace or this channel that applies to the asking user.
    ban: ActiveBan | None = None


# The user's ban rides on the membership probe: the send path pays no extra round trip for it.
_CHANNEL_ACCESS = f"""
    SELECT c.id, c.type, m.role AS member_role, ban.*
    FROM channels c
    LEFT JOIN channel_members m
      ON m.workspace_id = c.workspace_id AND m.channel_id = c.id AND m.user_id = $3
    {bans.APPLYING_BAN_SQL.format(user="$3::text", channel="c.id")}
    WHERE c.workspace_id = $1 AND c.id = $2 AND c.deleted_at IS NULL
"""  # noqa: S608 (constant SQL fragments, values are parameters)


async def channel_access(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str, user_id: str | None
) -> ChannelAccessRow | None:
    """The channel (not deleted) and the user's membership in it; None if there is no channel."""
    row = await conn.fetchrow(
        _CHANNEL_ACCESS,
        workspace_id,
        channel_id,
        user_id,
    )
    if row is None:
        return None
    return ChannelAccessRow(row["id"], row["type"], row["member_role"], bans.applying_ban(row))


async def member_ids(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str
) -> list[str]:
    rows = await conn.fetch(
        "SELECT user_id FROM channel_members WHERE workspace_id = $1 AND channel_id = $2 "
        "ORDER BY joined_at, user_id",
        workspace_id,
        channel_id,
    )
    return [r["user_id"] for r in rows]
