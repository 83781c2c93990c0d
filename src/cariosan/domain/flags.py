"""Flags and the review queue: members report messages, users report users, the workspace's
moderators list open reports (each message with a few around it) and resolve them.

Every flag is the event `message.flagged` (also a flag of a user: `flag.message` is then null),
and every resolution the event `flag.resolved`, both for the moderators' audience
(db/events.MODERATORS): one event each, so webhooks get exactly one delivery, and users read
them only while their workspace role is moderator or admin (domain/events.py, domain/live.py).
Neither the reporter nor the flagged user nor the channel's members receive them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cariosan.db import flags as rows
from cariosan.db import messages as message_rows
from cariosan.db import users as user_rows
from cariosan.db.events import MODERATORS, append_event
from cariosan.db.pool import Database
from cariosan.domain import audit, bans, cursors, permissions
from cariosan.domain.auth import Caller
from cariosan.domain.custom_data import storable_text
from cariosan.domain.ids import customer_id, server_id, time_ordered_id
from cariosan.domain.messages import delete_message_in, message_access, message_view
from cariosan.domain.permissions import Action
from cariosan.domain.views import MessageView, to_payload
from cariosan.errors import Conflict, NotFound, ValidationFailed

OPEN, RESOLVED = "open", "resolved"
STATUSES = (OPEN, RESOLVED)
DISMISS, DELETE_MESSAGE, BAN_USER = "dismiss", "delete_message", "ban_user"
ACTIONS = (DISMISS, DELETE_MESSAGE, BAN_USER)
DEFAULT_PAGE, MAX_PAGE = 50, 100
# Messages shown before and after a flagged one in the queue.
CONTEXT_EACH_SIDE = 2


class FlagView(msgspec.Struct):
    id: str
    # The flagged message as it is now (null for a flag of a user, or in events, where it is
    # the event's top-level `message`).
    message: MessageView | None
    message_id: str | None
    channel_id: str | None
    # The user the flag is about: the flagged user, or the flagged message's author.
    user_id: str
    # A user id, or "backend" (the API secret acting as itself).
    reporter_id: str
    reason: str | None
    status: str
    created_at: datetime
    # Set once resolved: the action taken (dismiss, delete_message, ban_user), why, by whom.
    resolution: str | None = None
    resolution_reason: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    # In the queue: up to CONTEXT_EACH_SIDE messages before and after the flagged one, oldest
    # first, the flagged one included.
    context: list[MessageView] | None = None


def flag_view(
    row: rows.FlagRow,
    message: message_rows.MessageRow | None = None,
    context: list[message_rows.MessageRow] | None = None,
) -> FlagView:
    return FlagView(
        id=str(row.id),
        message=None if message is None else _shared(message),
        message_id=None if row.message_id is None else str(row.message_id),
        channel_id=row.channel_id,
        user_id=row.user_id,
        reporter_id=row.reporter_id,
        reason=row.reason,
        status=row.status,
        created_at=row.created_at,
        resolution=row.resolution,
        resolution_reason=row.resolution_reason,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        context=None if context is None else [_shared(m) for m in context],
    )


def _shared(row: message_rows.MessageRow) -> MessageView:
    view = message_view(row)
    view.own_reactions = []
    return view


def _event_payload(view: FlagView) -> dict[str, Any]:
    """The flag for an event: the message is not copied (reads put in the current one)."""
    payload = to_payload(view)
    payload.pop("message", None)
    payload.pop("context", None)
    return {"flag": payload}


def _valid_reason(reason: str | None) -> str | None:
    if reason is not None:
        storable_text("reason", reason)
    return audit.valid_reason(reason)


# ---- flagging ------------------------------------------------------------------------------


async def _file(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    message: message_rows.MessageRow | None,
    user_id: str,
    reason: str | None,
) -> tuple[FlagView, bool]:
    """The reporter's open flag (created False when it had one already) and, for a new one,
    its `message.flagged` event."""
    reporter = audit.actor_of(caller)
    message_id = None if message is None else message.id
    row = await rows.insert_flag(
        conn,
        caller.workspace_id,
        time_ordered_id(),
        message_id=message_id,
        channel_id=None if message is None else message.channel_id,
        user_id=user_id,
        reporter_id=reporter,
        reason=reason,
    )
    created = row is not None
    if row is None:
        row = await rows.open_flag_of(
            conn, caller.workspace_id, message_id=message_id, user_id=user_id, reporter_id=reporter
        )
        assert row is not None  # the insert met exactly this open flag
    view = flag_view(row, message)
    if created:
        await append_event(
            conn,
            caller.workspace_id,
            "message.flagged",
            _event_payload(view),
            message_id=message_id,
            # A hard delete of the reporter removes its report from the log.
            actor_id=caller.user_id,
            audience=MODERATORS,
        )
    return view, created


async def flag_message(
    database: Database, caller: Caller, message_id: str, reason: str | None
) -> tuple[FlagView, bool]:
    """A member (or the backend) flags a message; (flag, created). Flagging it again while the
    first flag is open returns that flag. Non-members get NOT_FOUND, as for any read."""
    reason = _valid_reason(reason)
    async with database.transaction() as conn:
        message, access = await message_access(conn, caller, message_id)
        if message.deleted_at is not None:
            raise NotFound(f"no such message: {message_id}")
        access.require(Action.FLAG_MESSAGE, author_id=message.user_id)
        return await _file(conn, caller, message=message, user_id=message.user_id, reason=reason)


async def flag_user(
    database: Database, caller: Caller, user_id: str, reason: str | None
) -> tuple[FlagView, bool]:
    """Any user (or the backend) flags a user of the workspace; (flag, created)."""
    customer_id("user_id", user_id)
    reason = _valid_reason(reason)
    if user_id == caller.user_id:
        raise ValidationFailed("a user cannot flag itself")
    async with database.transaction() as conn:
        user = await user_rows.get_user(conn, caller.workspace_id, user_id)
        if user is None or user.deleted_at is not None:
            raise NotFound(f"no such user: {user_id}")
        return await _file(conn, caller, message=None, user_id=user_id, reason=reason)


# ---- the review queue ----------------------------------------------------------------------


async def list_flags(
    database: Database, caller: Caller, *, status: str, limit: int, cursor: str | None
) -> tuple[list[FlagView], str | None]:
    """A page of flags of one status, newest first, each message flag with the message as it
    is now and its context; and the cursor of the next page."""
    permissions.require(Action.FLAG_REVIEW, permissions.WORKSPACE, caller.capacities())
    if status not in STATUSES:
        raise ValidationFailed("status must be one of " + ", ".join(STATUSES))
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    before = cursors.decode_with_uuid(cursor) if cursor else None
    async with database.connection() as conn:
        found = await rows.page(
            conn, caller.workspace_id, status=status, before=before, limit=limit + 1
        )
        page = found[:limit]
        ids = list({r.message_id for r in page if r.message_id is not None})
        messages = await message_rows.get_messages(conn, caller.workspace_id, ids) if ids else {}
        around = (
            await message_rows.context_of(conn, caller.workspace_id, ids, CONTEXT_EACH_SIDE)
            if ids
            else {}
        )
    views = []
    for r in page:
        message = None if r.message_id is None else messages.get(r.message_id)
        context = None
        if message is not None:
            nearby = around.get(message.id, [])
            context = sorted([*nearby, message], key=lambda m: (m.created_at, m.id))
        views.append(flag_view(r, message, context))
    more = len(found) > limit
    next_cursor = cursors.encode(page[-1].created_at, str(page[-1].id)) if more else None
    return views, next_cursor


# ---- resolution ----------------------------------------------------------------------------


async def ban_flagged_user(
    conn: asyncpg.Connection, caller: Caller, flag: rows.FlagRow, reason: str | None
) -> bans.BanView:
    """The `ban_user` resolution: a workspace ban of the flagged user (of the message's author
    for a message flag), in the resolution's transaction; its sockets close after the commit."""
    return await bans.ban_user_in(conn, caller, user_id=flag.user_id, reason=reason)


async def resolve_flag(
    database: Database,
    sessions: bans.Sessions,
    caller: Caller,
    flag_id: str,
    action: str,
    reason: str | None,
) -> FlagView:
    """Close an open flag with an action, in one transaction with the action itself, its
    audit entry (`flag.resolved`) and its `flag.resolved` event. CONFLICT if already resolved."""
    permissions.require(Action.FLAG_RESOLVE, permissions.WORKSPACE, caller.capacities())
    key = server_id("flag", flag_id)
    if action not in ACTIONS:
        raise ValidationFailed("action must be one of " + ", ".join(ACTIONS))
    reason = _valid_reason(reason)
    ban: bans.BanView | None = None
    async with database.transaction() as conn:
        flag = await rows.get_flag(conn, caller.workspace_id, key, lock=True)
        if flag is None:
            raise NotFound(f"no such flag: {flag_id}")
        if flag.status != OPEN:
            raise Conflict(f"flag {flag_id} is already resolved ({flag.resolution})")
        if action == DELETE_MESSAGE:
            if flag.message_id is None:
                raise ValidationFailed("delete_message resolves flags of messages only")
            await delete_message_in(conn, caller, str(flag.message_id), reason=reason)
        elif action == BAN_USER:
            ban = await ban_flagged_user(conn, caller, flag, reason)
        resolved = await rows.resolve(
            conn,
            caller.workspace_id,
            key,
            resolution=action,
            reason=reason,
            resolved_by=audit.actor_of(caller),
        )
        assert resolved is not None  # locked and open above
        await audit.record(
            conn,
            caller.workspace_id,
            actor=audit.actor_of(caller),
            action=audit.FLAG_RESOLVED,
            target=f"flag:{resolved.id}",
            reason=reason,
            data={
                "action": action,
                "user_id": resolved.user_id,
                "message_id": None if resolved.message_id is None else str(resolved.message_id),
                "reporter_id": resolved.reporter_id,
            },
        )
        message = None
        if resolved.message_id is not None:
            message = await message_rows.get_message(
                conn, caller.workspace_id, None, resolved.message_id
            )
        view = flag_view(resolved, message)
        await append_event(
            conn,
            caller.workspace_id,
            "flag.resolved",
            _event_payload(view),
            message_id=resolved.message_id,
            # Goes with the report when the reporter is hard-deleted.
            actor_id=resolved.reporter_id,
            audience=MODERATORS,
        )
    if ban is not None:
        bans.after_ban(sessions, caller, ban)
    return view
