"""SQL for who belongs to which channel (the access question every channel endpoint asks)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

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
    # Slow mode (0: off) and freeze: read with the access, so a send pays no extra round trip.
    cooldown_seconds: int = 0
    frozen: bool = False


# The user's ban rides on the membership probe: the send path pays no extra round trip for it.
_CHANNEL_ACCESS = f"""
    SELECT c.id, c.type, m.role AS member_role, c.cooldown_seconds, c.frozen, ban.*
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
    return ChannelAccessRow(
        row["id"],
        row["type"],
        row["member_role"],
        ban=bans.applying_ban(row),
        cooldown_seconds=row["cooldown_seconds"],
        frozen=row["frozen"],
    )


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


@dataclass(frozen=True)
class SendWait:
    """How long a member in slow mode still waits: seconds left, and the time it may send."""

    seconds: float
    allowed_at: datetime


async def take_send_slot(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    channel_id: str,
    user_id: str,
    cooldown_seconds: int,
) -> SendWait | None:
    """Slow mode: record a send now if the member's last one is at least `cooldown_seconds`
    old (on the database clock), else how long it still waits. The member row stays locked
    until the transaction ends, so two concurrent sends of one member take turns, and a send
    that rolls back leaves the previous time in place."""
    taken = await conn.fetchval(
        """
        UPDATE channel_members SET last_sent_at = clock_timestamp()
        WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
          AND (last_sent_at IS NULL
               OR last_sent_at <= clock_timestamp() - make_interval(secs => $4))
        RETURNING true
        """,
        workspace_id,
        channel_id,
        user_id,
        float(cooldown_seconds),
    )
    if taken:
        return None
    row = await conn.fetchrow(
        """
        SELECT last_sent_at + make_interval(secs => $4) AS allowed_at,
               extract(epoch FROM last_sent_at + make_interval(secs => $4) - clock_timestamp())
                   AS seconds
        FROM channel_members WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3
        """,
        workspace_id,
        channel_id,
        user_id,
        float(cooldown_seconds),
    )
    if row is None or row["allowed_at"] is None:
        return None  # the member left meanwhile: the send fails on its own
    return SendWait(max(0.0, float(row["seconds"])), row["allowed_at"])
