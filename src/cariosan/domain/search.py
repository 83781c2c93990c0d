"""Full-text search over the messages of the caller's channels."""

from __future__ import annotations

from cariosan.db import messages as rows
from cariosan.db.pool import Database
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.messages import message_view, valid_limit
from cariosan.domain.views import MessageView
from cariosan.errors import ValidationFailed

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_QUERY = 500


async def search_messages(
    database: Database,
    caller: Caller,
    q: str,
    *,
    channel_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[MessageView]:
    """Live messages (replies too) matching every word of `q`, newest first, from the channels
    the caller belongs to (every channel of the workspace for the backend acting as itself)."""
    if not q.strip():
        raise ValidationFailed("q must not be empty")
    if len(q) > MAX_QUERY or "\x00" in q:
        raise ValidationFailed(f"q must have at most {MAX_QUERY} characters, without NUL")
    valid_limit(limit, MAX_LIMIT)
    async with database.connection() as conn:
        if channel_id is not None:
            # Members only (NOT_FOUND otherwise); the backend acting as itself sees all.
            await channel_access(conn, caller, channel_id)
        found = await rows.search(
            conn, caller.workspace_id, caller.user_id, q, channel_id=channel_id, limit=limit
        )
    return [message_view(r) for r in found]
