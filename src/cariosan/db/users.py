"""SQL for users."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = "id, name, image_url, role, data, created_at, updated_at, deleted_at, last_active_at"


@dataclass(frozen=True)
class UserRow:
    id: str
    name: str | None
    image_url: str | None
    role: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_active_at: datetime | None


def _row(r: asyncpg.Record) -> UserRow:
    return UserRow(
        r["id"],
        r["name"],
        r["image_url"],
        r["role"],
        json.loads(r["data"]),
        r["created_at"],
        r["updated_at"],
        r["deleted_at"],
        r["last_active_at"],
    )


async def get_user(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> UserRow | None:
    r = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE workspace_id = $1 AND id = $2",  # noqa: S608
        workspace_id,
        user_id,
    )
    return None if r is None else _row(r)


async def upsert_user(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: str,
    *,
    name: str | None,
    image_url: str | None,
    role: str | None,
    data: dict[str, Any] | None,
    fields_set: frozenset[str],
) -> tuple[UserRow, bool]:
    """Create the user, or update the fields given; (row, created). Upserting a deleted
    (anonymized) user brings it back."""
    r = await conn.fetchrow(
        f"""
        INSERT INTO users (workspace_id, id, name, image_url, role, data)
        VALUES ($1, $2, $3, $4, coalesce($5, 'user'), coalesce($6::jsonb, '{{}}'))
        ON CONFLICT (workspace_id, id) DO UPDATE SET
            name = CASE WHEN $7 THEN EXCLUDED.name ELSE users.name END,
            image_url = CASE WHEN $8 THEN EXCLUDED.image_url ELSE users.image_url END,
            role = CASE WHEN $9 THEN EXCLUDED.role ELSE users.role END,
            data = CASE WHEN $10 THEN EXCLUDED.data ELSE users.data END,
            deleted_at = NULL,
            updated_at = now()
        RETURNING {_COLUMNS}, (xmax = 0) AS created
        """,  # noqa: S608
        workspace_id,
        user_id,
        name,
        image_url,
        role,
        None if data is None else json.dumps(data),
        "name" in fields_set,
        "image_url" in fields_set,
        "role" in fields_set and role is not None,
        "data" in fields_set and data is not None,
    )
    return _row(r), bool(r["created"])


async def existing_user_ids(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_ids: list[str]
) -> set[str]:
    rows = await conn.fetch(
        "SELECT id FROM users WHERE workspace_id = $1 AND id = ANY($2::text[]) "
        "AND deleted_at IS NULL",
        workspace_id,
        user_ids,
    )
    return {r["id"] for r in rows}


async def anonymize_user(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> bool:
    """Keep the id (messages still reference it), drop what identifies the person."""
    result = await conn.execute(
        "UPDATE users SET name = NULL, image_url = NULL, data = '{}', deleted_at = now(), "
        "updated_at = now() WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        user_id,
    )
    return bool(result != "UPDATE 0")


async def hard_delete_user(conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str) -> bool:
    """Remove the user with its messages, reactions and memberships."""
    await conn.execute(
        "DELETE FROM reactions WHERE workspace_id = $1 AND user_id = $2", workspace_id, user_id
    )
    await conn.execute(
        "DELETE FROM messages WHERE workspace_id = $1 AND user_id = $2", workspace_id, user_id
    )
    await conn.execute(
        "DELETE FROM channel_members WHERE workspace_id = $1 AND user_id = $2",
        workspace_id,
        user_id,
    )
    result = await conn.execute(
        "DELETE FROM users WHERE workspace_id = $1 AND id = $2", workspace_id, user_id
    )
    return bool(result != "DELETE 0")


async def auth_lookup(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: str
) -> str | None:
    """The role of an active (not deleted) user, for authentication; None if there is none."""
    role = await conn.fetchval(
        "SELECT role FROM users WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL",
        workspace_id,
        user_id,
    )
    return role if isinstance(role, str) else None
