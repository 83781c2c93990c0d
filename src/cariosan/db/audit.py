"""SQL for the audit log: append an entry, read a page of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

_COLUMNS = "id, actor, action, target, reason, data, created_at"


@dataclass(frozen=True)
class AuditRow:
    id: uuid.UUID
    actor: str
    action: str
    target: str | None
    reason: str | None
    data: dict[str, Any]
    created_at: datetime


def _row(r: asyncpg.Record) -> AuditRow:
    return AuditRow(
        r["id"],
        r["actor"],
        r["action"],
        r["target"],
        r["reason"],
        msgspec.json.decode(r["data"]),
        r["created_at"],
    )


async def append(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    entry_id: uuid.UUID,
    *,
    actor: str,
    action: str,
    target: str | None,
    reason: str | None,
    data: dict[str, Any],
) -> AuditRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO audit_log (workspace_id, id, actor, action, target, reason, data)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        workspace_id,
        entry_id,
        actor,
        action,
        target,
        reason,
        msgspec.json.encode(data).decode(),
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return _row(row)


async def page(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    *,
    actor: str | None,
    action: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditRow]:
    """Entries newest first, after the `before` position of a cursor."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM audit_log
        WHERE workspace_id = $1
          AND ($2::text IS NULL OR actor = $2)
          AND ($3::text IS NULL OR action = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
        ORDER BY created_at DESC, id DESC
        LIMIT $6
        """,  # noqa: S608
        workspace_id,
        actor,
        action,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [_row(r) for r in rows]
