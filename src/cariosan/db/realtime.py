"""SQL for live delivery: the starting point of a workspace's event stream, and activity."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cariosan.db import events


async def stream_start(
    conn: asyncpg.Connection, workspace_id: uuid.UUID
) -> tuple[int, list[tuple[str, str]], list[str]]:
    """The latest readable seq, every (channel_id, user_id) membership and the workspace's
    moderators and admins, from one snapshot.

    Membership changes of transactions that were still running then come later in the log, so
    applying the events after the returned seq to this membership keeps it current.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        latest = await events.latest_seq(conn, workspace_id)
        rows = await conn.fetch(
            """
            SELECT m.channel_id, m.user_id FROM channel_members m
            JOIN channels c ON c.workspace_id = m.workspace_id AND c.id = m.channel_id
            WHERE m.workspace_id = $1 AND c.deleted_at IS NULL
            """,
            workspace_id,
        )
        moderators = await conn.fetch(
            "SELECT id FROM users WHERE workspace_id = $1 AND deleted_at IS NULL "
            "AND role IN ('moderator', 'admin')",
            workspace_id,
        )
    return latest, [(r["channel_id"], r["user_id"]) for r in rows], [r["id"] for r in moderators]


async def touch_last_active(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_ids: list[str]
) -> None:
    await conn.execute(
        "UPDATE users SET last_active_at = now() WHERE workspace_id = $1 AND id = ANY($2::text[])",
        workspace_id,
        user_ids,
    )


async def token_floors(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_ids: list[str]
) -> dict[str, datetime | None]:
    """`tokens_valid_after` of those users that exist and are not deleted (the others: absent)."""
    rows = await conn.fetch(
        "SELECT id, tokens_valid_after FROM users "
        "WHERE workspace_id = $1 AND id = ANY($2::text[]) AND deleted_at IS NULL",
        workspace_id,
        user_ids,
    )
    return {r["id"]: r["tokens_valid_after"] for r in rows}
