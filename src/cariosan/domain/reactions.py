"""Reactions: each user adds a type (an emoji name) to a message at most once."""

from __future__ import annotations

import re

from cariosan.db import messages as rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import bans, send_rules
from cariosan.domain.auth import Caller
from cariosan.domain.messages import message_access, message_view
from cariosan.domain.views import MessageView
from cariosan.errors import NotFound, ValidationFailed

_TYPE = re.compile(r"[A-Za-z0-9_+-]{1,32}")


def valid_type(type: str) -> str:
    if not _TYPE.fullmatch(type):
        raise ValidationFailed("reaction type must match [A-Za-z0-9_+-]{1,32}")
    return type


async def add_reaction(
    database: Database, caller: Caller, message_id: str, type: str
) -> MessageView:
    """Add the caller's reaction (again is a no-op: no second count, no second event)."""
    user_id = caller.require_user()
    valid_type(type)
    async with database.transaction() as conn:
        row, access = await message_access(conn, caller, message_id)
        if not access.is_member:
            raise NotFound(f"no such message: {message_id}")
        send_rules.check_not_frozen(access, "react")
        if row.deleted_at is not None:
            raise NotFound(f"no such message: {message_id}")
        bans.refuse_if_banned(access.ban)
        added_at = await rows.add_reaction(conn, caller.workspace_id, row.id, type, user_id)
        changed = await rows.get_message(conn, caller.workspace_id, user_id, row.id)
        if changed is None or changed.deleted_at is not None:
            raise NotFound(f"no such message: {message_id}")
        if added_at is not None:
            await append_event(
                conn,
                caller.workspace_id,
                "reaction.new",
                {
                    "reaction": {
                        "message_id": str(row.id),
                        "user_id": user_id,
                        "type": type,
                        "created_at": added_at.isoformat().replace("+00:00", "Z"),
                    },
                },
                channel_id=access.channel_id,
                message_id=row.id,
                actor_id=user_id,
            )
    return message_view(changed)


async def remove_reaction(
    database: Database, caller: Caller, message_id: str, type: str
) -> MessageView:
    """Remove the caller's reaction (absent already is a no-op without an event)."""
    user_id = caller.require_user()
    valid_type(type)
    async with database.transaction() as conn:
        row, access = await message_access(conn, caller, message_id)
        if not access.is_member:
            raise NotFound(f"no such message: {message_id}")
        send_rules.check_not_frozen(access, "react")
        removed = await rows.remove_reaction(conn, caller.workspace_id, row.id, type, user_id)
        changed = await rows.get_message(conn, caller.workspace_id, user_id, row.id)
        if changed is None:
            raise NotFound(f"no such message: {message_id}")
        if removed:
            await append_event(
                conn,
                caller.workspace_id,
                "reaction.deleted",
                {
                    "reaction": {"message_id": str(row.id), "user_id": user_id, "type": type},
                },
                channel_id=access.channel_id,
                message_id=row.id,
                actor_id=user_id,
            )
    return message_view(changed)
