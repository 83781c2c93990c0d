"""SQL for flags: report a message or a user, page the review queue, resolve."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

_COLUMNS = """
    id, message_id, channel_id, user_id, reporter_id, reason, status, created_at,
    resolution, resolution_reason, resolved_by, resolved_at
"""


@dataclass(frozen=True)
class FlagRow:
    id: uuid.UUID
    message_id: uuid.UUID | None
    channel_id: str | None
    user_id: str
    reporter_id: str
    reason: str | None
    status: str
    created_at: datetime
    resolution: str | None
    resolution_reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None


def _row(r: asyncpg.Record) -> FlagRow:
    return FlagRow(
        r["id"],
        r["message_id"],
        r["channel_id"],
        r["user_id"],
        r["reporter_id"],
        r["reason"],
        r["status"],
        r["created_at"],
        r["resolution"],
        r["resolution_reason"],
        r["resolved_by"],
        r["resolved_at"],
    )


async def insert_flag(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    flag_id: uuid.UUID,
    *,
    message_id: uuid.UUID | None,
    channel_id: str | None,
    user_id: str,
    reporter_id: str,
    reason: str | None,
) -> FlagRow | None:
    """The new open flag; None when the reporter already has an open flag of this message (or
    user), also when two such requests race (the partial unique indexes decide)."""
    r = await conn.fetchrow(
        f"""
        INSERT INTO flags
            (workspace_id, id, message_id, channel_id, user_id, reporter_id, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT DO NOTHING
        RETURNING {_COLUMNS}
        """,  # noqa: S608 (constant SQL fragment, values are parameters)
        workspace_id,
        flag_id,
        message_id,
        channel_id,
        user_id,
        reporter_id,
        reason,
    )
    return None if r is None else _row(r)


async def open_flag_of(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    message_id: uuid.UUID | None,
    user_id: str,
    reporter_id: str,
) -> FlagRow | None:
    """The reporter's open flag of the message (or, without one, of the user)."""
    r = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM flags
        WHERE workspace_id = $1 AND reporter_id = $4 AND status = 'open'
          AND CASE WHEN $2::uuid IS NULL THEN message_id IS NULL AND user_id = $3
                   ELSE message_id = $2 END
        """,  # noqa: S608
        workspace_id,
        message_id,
        user_id,
        reporter_id,
    )
    return None if r is None else _row(r)


async def get_flag(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, flag_id: uuid.UUID, *, lock: bool = False
) -> FlagRow | None:
    r = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM flags WHERE workspace_id = $1 AND id = $2"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        workspace_id,
        flag_id,
    )
    return None if r is None else _row(r)


async def page(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    status: str,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[FlagRow]:
    """Flags of one status, newest first, after the `before` position of a cursor."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM flags
        WHERE workspace_id = $1 AND status = $2
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
        ORDER BY created_at DESC, id DESC
        LIMIT $5
        """,  # noqa: S608
        workspace_id,
        status,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [_row(r) for r in rows]


async def resolve(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    flag_id: uuid.UUID,
    *,
    resolution: str,
    reason: str | None,
    resolved_by: str,
) -> FlagRow | None:
    """Close an open flag; None when it is not open (any more)."""
    r = await conn.fetchrow(
        f"""
        UPDATE flags SET status = 'resolved', resolution = $3, resolution_reason = $4,
                         resolved_by = $5, resolved_at = clock_timestamp()
        WHERE workspace_id = $1 AND id = $2 AND status = 'open'
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        workspace_id,
        flag_id,
        resolution,
        reason,
        resolved_by,
    )
    return None if r is None else _row(r)


async def remove_flags_by(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> None:
    """The reports a user made (a hard delete; flags about the user go with its row)."""
    await conn.execute(
        "DELETE FROM flags WHERE workspace_id = $1 AND reporter_id = $2", workspace_id, user_id
    )
