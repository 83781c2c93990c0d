"""SQL for workspaces and their API secrets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cariosan.errors import Conflict


@dataclass(frozen=True)
class WorkspaceRow:
    id: uuid.UUID
    name: str
    created_at: datetime


async def insert_workspace(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, name: str, secret_hash: bytes
) -> WorkspaceRow:
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
            workspace_id,
            name,
        )
        await conn.execute(
            "INSERT INTO api_secrets (workspace_id, secret_hash) VALUES ($1, $2)",
            workspace_id,
            secret_hash,
        )
    return WorkspaceRow(row["id"], row["name"], row["created_at"])


async def list_workspaces(conn: asyncpg.Connection) -> list[WorkspaceRow]:
    rows = await conn.fetch("SELECT id, name, created_at FROM workspaces ORDER BY created_at, id")
    return [WorkspaceRow(r["id"], r["name"], r["created_at"]) for r in rows]


async def get_workspace(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> WorkspaceRow | None:
    row = await conn.fetchrow(
        "SELECT id, name, created_at FROM workspaces WHERE id = $1", workspace_id
    )
    return None if row is None else WorkspaceRow(row["id"], row["name"], row["created_at"])


async def workspace_for_secret(conn: asyncpg.Connection, secret_hash: bytes) -> uuid.UUID | None:
    """The workspace whose current (or still-in-grace) API secret has this hash."""
    value = await conn.fetchval(
        "SELECT workspace_id FROM api_secrets "
        "WHERE secret_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
        secret_hash,
    )
    return value if isinstance(value, uuid.UUID) else None


async def rotate_secret(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    new_hash: bytes,
    grace_seconds: float,
) -> datetime | None:
    """Add a new secret; the current ones end now or after the grace period. Returns when the
    old ones stop working (None if they stopped at once)."""
    async with conn.transaction():
        ends: datetime | None = await conn.fetchval(
            """
            UPDATE api_secrets
            SET expires_at = CASE
                WHEN expires_at IS NULL OR expires_at > now() + make_interval(secs => $2)
                THEN now() + make_interval(secs => $2)
                ELSE expires_at END
            WHERE workspace_id = $1 AND (expires_at IS NULL OR expires_at > now())
            RETURNING expires_at
            """,
            workspace_id,
            float(grace_seconds),
        )
        try:
            await conn.execute(
                "INSERT INTO api_secrets (workspace_id, secret_hash) VALUES ($1, $2)",
                workspace_id,
                new_hash,
            )
        except asyncpg.exceptions.UniqueViolationError:
            raise Conflict("that API secret is already in use; choose another") from None
    return ends if grace_seconds > 0 else None
