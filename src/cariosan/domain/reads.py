"""Read state: marking a channel read, and the unread totals a user sees."""

from __future__ import annotations

from cariosan.db import reads as rows
from cariosan.db import users as user_rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.db.users import UserRow
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.ids import server_id
from cariosan.errors import NotFound, ValidationFailed


async def mark_read(
    database: Database, caller: Caller, channel_id: str, message_id: str | None
) -> int:
    """Everything up to `message_id` (default: the latest message) is read; the unread count
    left. Writes `read.updated` (the channel's members see it: read receipts)."""
    async with database.transaction() as conn:
        # Access first: whoever may not see the channel learns nothing else about the request.
        await channel_access(conn, caller, channel_id)
        user_id = caller.require_user()
        if message_id is None:
            wanted = await rows.latest_message_id(conn, caller.workspace_id, channel_id)
        else:
            wanted = server_id("message_id", message_id, missing_is_not_found=False)
            if not await rows.message_in_channel(conn, caller.workspace_id, channel_id, wanted):
                raise ValidationFailed(f"message {wanted} is not a message of channel {channel_id}")
        unread = await rows.set_read_position(
            conn, caller.workspace_id, channel_id, user_id, wanted
        )
        if unread is None:
            raise NotFound(f"no such channel: {channel_id}")
        payload = {
            "user_id": user_id,
            "channel_id": channel_id,
            "last_read_message_id": None if wanted is None else str(wanted),
            "unread_count": unread,
        }
        await append_event(
            conn,
            caller.workspace_id,
            "read.updated",
            payload,
            channel_id=channel_id,
            user_id=user_id,
        )
    return unread


async def me(database: Database, caller: Caller) -> tuple[UserRow, int]:
    """The calling user and its unread messages over all its channels."""
    user_id = caller.require_user()
    async with database.connection() as conn:
        user = await user_rows.get_user(conn, caller.workspace_id, user_id)
        if user is None:
            raise NotFound(f"no such user: {user_id}")
        return user, await rows.total_unread(conn, caller.workspace_id, user_id)
