"""Catch-up: the persisted events a caller missed, in order (the WebSocket's `resume` too)."""

from __future__ import annotations

from typing import Any

from cariosan.db import events as rows
from cariosan.db.pool import Database
from cariosan.domain.auth import Caller
from cariosan.errors import ValidationFailed

MAX_PAGE = 1000


def wire_event(row: rows.EventRow) -> dict[str, Any]:
    """An event as clients receive it: `{"type", "seq", "channel_id"?, ...payload}`."""
    event: dict[str, Any] = {"type": row.type, "seq": row.seq}
    if row.channel_id is not None:
        event["channel_id"] = row.channel_id
    event["created_at"] = row.created_at.isoformat().replace("+00:00", "Z")
    event.update(row.payload)
    return event


async def events_since(
    database: Database, caller: Caller, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Events after `after_seq` of the caller's channels (every event of the workspace for the
    backend acting as itself), and the seq to resume from next time."""
    if after_seq < 0:
        raise ValidationFailed("after_seq must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    async with database.connection() as conn:
        page, latest = await rows.read_page(
            conn, caller.workspace_id, caller.user_id, after_seq, limit
        )
    return [wire_event(row) for row in page], latest
