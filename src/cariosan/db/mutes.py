"""SQL for mutes and blocks: a user's private choices about channels and other users.

A mute with an `expires_at` in the past is as if it were not there: every read compares with
now(), so nothing has to run when a mute runs out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# A mute row that holds now (the alias's expires_at is NULL or still ahead).
ACTIVE = "({alias}.expires_at IS NULL OR {alias}.expires_at > now())"

# The ids of the users the viewer $2 mutes now, as one array: an uncorrelated subquery that
# PostgreSQL runs once per statement (an InitPlan), however many messages it then tests.
MUTED_AUTHORS_SQL = f"""
    coalesce((
        SELECT array_agg(um.muted_id) FROM user_mutes um
        WHERE um.workspace_id = $1 AND um.user_id = $2::text AND {ACTIVE.format(alias="um")}
    ), '{{}}'::text[])
"""  # noqa: S608 (constant SQL fragment)


@dataclass(frozen=True)
class BlockRow:
    user_id: str
    created_at: datetime


async def mute_channel(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    channel_id: str,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO channel_mutes (workspace_id, user_id, channel_id, expires_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (workspace_id, user_id, channel_id)
        DO UPDATE SET expires_at = EXCLUDED.expires_at, created_at = now()
        """,
        workspace_id,
        user_id,
        channel_id,
        expires_at,
    )


async def unmute_channel(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, channel_id: str
) -> None:
    await conn.execute(
        "DELETE FROM channel_mutes WHERE workspace_id = $1 AND user_id = $2 AND channel_id = $3",
        workspace_id,
        user_id,
        channel_id,
    )


async def mute_user(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    muted_id: str,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO user_mutes (workspace_id, user_id, muted_id, expires_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (workspace_id, user_id, muted_id)
        DO UPDATE SET expires_at = EXCLUDED.expires_at, created_at = now()
        """,
        workspace_id,
        user_id,
        muted_id,
        expires_at,
    )


async def unmute_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, muted_id: str
) -> None:
    await conn.execute(
        "DELETE FROM user_mutes WHERE workspace_id = $1 AND user_id = $2 AND muted_id = $3",
        workspace_id,
        user_id,
        muted_id,
    )


async def muted_authors(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> frozenset[str]:
    """The users `user_id` mutes now."""
    value = await conn.fetchval(f"SELECT {MUTED_AUTHORS_SQL}", workspace_id, user_id)
    return frozenset(value or ())


async def mutes_of(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> dict[str, datetime | None]:
    """The users `user_id` mutes now, each with the end of its mute (None: until unmuted)."""
    rows = await conn.fetch(
        f"""
        SELECT muted_id, expires_at FROM user_mutes um
        WHERE um.workspace_id = $1 AND um.user_id = $2 AND {ACTIVE.format(alias="um")}
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        user_id,
    )
    return {r["muted_id"]: r["expires_at"] for r in rows}


async def block_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, blocked_id: str
) -> None:
    """Block; blocking again keeps the first block (and its place in the list)."""
    await conn.execute(
        """
        INSERT INTO user_blocks (workspace_id, user_id, blocked_id) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING
        """,
        workspace_id,
        user_id,
        blocked_id,
    )


async def unblock_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str, blocked_id: str
) -> None:
    await conn.execute(
        "DELETE FROM user_blocks WHERE workspace_id = $1 AND user_id = $2 AND blocked_id = $3",
        workspace_id,
        user_id,
        blocked_id,
    )


async def blocked_between(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, a: str, b: str
) -> bool:
    """Whether either of the two users blocks the other."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM user_blocks
        WHERE workspace_id = $1
          AND ((user_id = $2 AND blocked_id = $3) OR (user_id = $3 AND blocked_id = $2))
        LIMIT 1
        """,
        workspace_id,
        a,
        b,
    )
    return found is not None


async def blockers_among(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, blocked_id: str, user_ids: list[str]
) -> set[str]:
    """Those of `user_ids` who block `blocked_id`."""
    rows = await conn.fetch(
        """
        SELECT user_id FROM user_blocks
        WHERE workspace_id = $1 AND blocked_id = $2 AND user_id = ANY($3::text[])
        """,
        workspace_id,
        blocked_id,
        user_ids,
    )
    return {r["user_id"] for r in rows}


async def blocks(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    *,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[BlockRow]:
    """The users `user_id` blocks, newest block first, keyset-paged below `before`."""
    when, after_id = (None, None) if before is None else before
    rows = await conn.fetch(
        """
        SELECT blocked_id, created_at FROM user_blocks
        WHERE workspace_id = $1 AND user_id = $2
          AND ($3::timestamptz IS NULL OR (created_at, blocked_id) < ($3, $4::text))
        ORDER BY created_at DESC, blocked_id DESC
        LIMIT $5
        """,
        workspace_id,
        user_id,
        when,
        after_id,
        limit,
    )
    return [BlockRow(r["blocked_id"], r["created_at"]) for r in rows]
