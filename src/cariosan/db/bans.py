"""SQL for bans: ban (or ban again), unban, the active ban that applies to a user, a page of them.

A ban is active while `expires_at` is NULL or after now(); expired rows are no bans and stay
until the same scope is banned again or unbanned (nothing has to sweep them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

_COLUMNS = (
    "b.id, b.user_id, b.channel_id, b.reason, b.expires_at, b.shadow, b.created_by, b.created_at"
)
_ACTIVE = "(b.expires_at IS NULL OR b.expires_at > now())"

# The ban that applies to user $U in channel c (a workspace ban or one of that channel), the
# hard one before a shadow one and the workspace's before the channel's: a LATERAL join for the
# membership query of db/members.py, so a send learns it in the round trip it makes anyway.
# Format with the user parameter and the channel expression. The same rule (which bans apply)
# is written out in the function cariosan_send_plain (migration 0015), which cannot use this
# fragment: a change to the rule goes to both, the function under a new name.
APPLYING_BAN_SQL = """
    LEFT JOIN LATERAL (
        SELECT b.reason AS ban_reason, b.expires_at AS ban_expires_at, b.shadow AS ban_shadow,
               b.channel_id AS ban_channel_id
        FROM bans b
        WHERE b.workspace_id = c.workspace_id AND b.user_id = {user}
          AND coalesce(b.channel_id, '') IN ('', {channel})
          AND (b.expires_at IS NULL OR b.expires_at > now())
        ORDER BY b.shadow, b.channel_id NULLS FIRST
        LIMIT 1
    ) ban ON {user} IS NOT NULL
"""


@dataclass(frozen=True)
class BanRow:
    id: uuid.UUID
    user_id: str
    # None: the whole workspace.
    channel_id: str | None
    reason: str | None
    expires_at: datetime | None
    shadow: bool
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class ActiveBan:
    """What a check needs of the ban that applies to a user."""

    channel_id: str | None
    reason: str | None
    expires_at: datetime | None
    shadow: bool


def applying_ban(r: asyncpg.Record) -> ActiveBan | None:
    """The ban columns of APPLYING_BAN_SQL in a row, if a ban applies."""
    if r["ban_shadow"] is None:
        return None
    return ActiveBan(r["ban_channel_id"], r["ban_reason"], r["ban_expires_at"], r["ban_shadow"])


def _row(r: asyncpg.Record) -> BanRow:
    return BanRow(
        r["id"],
        r["user_id"],
        r["channel_id"],
        r["reason"],
        r["expires_at"],
        r["shadow"],
        r["created_by"],
        r["created_at"],
    )


def _active(row: BanRow) -> ActiveBan:
    return ActiveBan(row.channel_id, row.reason, row.expires_at, row.shadow)


async def ban(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    ban_id: uuid.UUID,
    *,
    user_id: str,
    channel_id: str | None,
    reason: str | None,
    expires_at: datetime | None,
    shadow: bool,
    created_by: str,
) -> BanRow:
    """Ban the user in the scope; a ban of the same scope (active or expired) is replaced."""
    r = await conn.fetchrow(
        f"""
        INSERT INTO bans AS b
            (workspace_id, id, user_id, channel_id, reason, expires_at, shadow, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (workspace_id, user_id, (coalesce(channel_id, ''))) DO UPDATE SET
            id = EXCLUDED.id, reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at,
            shadow = EXCLUDED.shadow, created_by = EXCLUDED.created_by,
            created_at = clock_timestamp()
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        workspace_id,
        ban_id,
        user_id,
        channel_id,
        reason,
        expires_at,
        shadow,
        created_by,
    )
    assert r is not None  # an upsert returns its row
    return _row(r)


async def unban(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, channel_id: str | None
) -> BanRow | None:
    """Remove the user's ban of the scope; the ban if it was still active (an expired one goes
    too, but was no ban)."""
    r = await conn.fetchrow(
        f"""
        DELETE FROM bans b
        WHERE b.workspace_id = $1 AND b.user_id = $2 AND coalesce(b.channel_id, '') = $3
        RETURNING {_COLUMNS}, {_ACTIVE} AS active
        """,  # noqa: S608
        workspace_id,
        user_id,
        channel_id or "",
    )
    return None if r is None or not r["active"] else _row(r)


async def applying(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, channel_id: str | None
) -> ActiveBan | None:
    """The active ban that applies to the user: of the workspace, or of `channel_id` if given
    (a hard ban before a shadow one)."""
    r = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM bans b
        WHERE b.workspace_id = $1 AND b.user_id = $2
          AND coalesce(b.channel_id, '') IN ('', $3) AND {_ACTIVE}
        ORDER BY b.shadow, b.channel_id NULLS FIRST
        LIMIT 1
        """,  # noqa: S608
        workspace_id,
        user_id,
        channel_id or "",
    )
    return None if r is None else _active(_row(r))


async def hard_bans_among(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, channel_id: str | None, user_ids: list[str]
) -> dict[str, ActiveBan]:
    """Of `user_ids`, those with an active ban (not a shadow one) of the workspace or of
    `channel_id`."""
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT ON (b.user_id) {_COLUMNS} FROM bans b
        WHERE b.workspace_id = $1 AND b.user_id = ANY($2::text[])
          AND coalesce(b.channel_id, '') IN ('', $3) AND NOT b.shadow AND {_ACTIVE}
        ORDER BY b.user_id, b.channel_id NULLS FIRST
        """,  # noqa: S608
        workspace_id,
        user_ids,
        channel_id or "",
    )
    return {r["user_id"]: _active(_row(r)) for r in rows}


async def page(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    channel_id: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[BanRow]:
    """Active bans newest first (every scope, or one channel's), after a cursor's position."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM bans b
        WHERE b.workspace_id = $1
          AND ($2::text IS NULL OR b.channel_id = $2)
          AND ($3::timestamptz IS NULL OR (b.created_at, b.id) < ($3, $4))
          AND {_ACTIVE}
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT $5
        """,  # noqa: S608
        workspace_id,
        channel_id,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [_row(r) for r in rows]
