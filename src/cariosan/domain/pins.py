"""Pins: a channel's moderators pin top-level messages for everyone to find
(GET /v1/channels/{id}/pins). Each change fires `message.pinned` or `message.unpinned` to the
channel's members and is recorded in the audit log, both in its own transaction.

Only live top-level messages are pinned: a reply is refused (VALIDATION_FAILED, it lives in its
thread), a deleted message is NOT_FOUND, and deleting a pinned message unpins it. A channel
holds at most MAX_PINS; one more is a CONFLICT until one is unpinned. Pinning a pinned message
or unpinning one that is not pinned changes nothing and fires nothing.
"""

from __future__ import annotations

from cariosan.db import messages as rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import audit
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.messages import message_access, message_view
from cariosan.domain.permissions import Action
from cariosan.domain.views import MessageView
from cariosan.errors import Conflict, NotFound, ValidationFailed

MAX_PINS = 100


async def set_pinned(
    database: Database, caller: Caller, message_id: str, *, pinned: bool
) -> MessageView:
    """Pin or unpin a message (domain/permissions.py: the channel's moderators); the message."""
    async with database.transaction() as conn:
        row, access = await message_access(conn, caller, message_id, moderation=True)
        access.require(Action.MESSAGE_PIN)
        if pinned:
            if row.deleted_at is not None:
                raise NotFound(f"no such message: {message_id}")
            if row.parent_id is not None:
                raise ValidationFailed(
                    "only top-level messages can be pinned, not replies in a thread"
                )
        await rows.lock_pins(conn, caller.workspace_id, access.channel_id)
        adding = pinned and row.pinned_at is None
        if (
            adding
            and await rows.pin_count(conn, caller.workspace_id, access.channel_id) >= MAX_PINS
        ):
            raise Conflict(f"the channel has {MAX_PINS} pinned messages already: unpin one first")
        changed = await rows.set_pin(
            conn, caller.workspace_id, row.id, pinned=pinned, by=caller.user_id
        )
        now = await rows.get_message(conn, caller.workspace_id, caller.user_id, row.id)
        if now is None:
            raise NotFound(f"no such message: {message_id}")
        if changed:
            kind = "message.pinned" if pinned else "message.unpinned"
            await append_event(
                conn,
                caller.workspace_id,
                kind,
                {},
                channel_id=access.channel_id,
                message_id=row.id,
                actor_id=caller.user_id,
            )
            await audit.record(
                conn,
                caller.workspace_id,
                actor=audit.actor_of(caller),
                action=audit.MESSAGE_PINNED if pinned else audit.MESSAGE_UNPINNED,
                target=f"message:{row.id}",
                data={"channel_id": access.channel_id, "author": row.user_id},
            )
    return message_view(now)


async def list_pins(database: Database, caller: Caller, channel_id: str) -> list[MessageView]:
    """The channel's pinned messages, most recently pinned first (members of the channel)."""
    async with database.connection() as conn:
        await channel_access(conn, caller, channel_id)
        found = await rows.pins(
            conn, caller.workspace_id, caller.user_id, channel_id, limit=MAX_PINS
        )
    return [message_view(r) for r in found]
