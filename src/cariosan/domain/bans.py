"""Bans (issue 14, point 2): a user banned from the workspace or from one channel, with a reason
and an optional expiry, or shadow-banned.

A banned user cannot send, react, join channels or (banned from the workspace) create them:
BANNED (403), the message naming the reason and the expiry. Reading stays allowed. A ban
expires on its own: every check compares `expires_at` with the database clock, and listings
show active bans only.

A shadow ban refuses nothing: the user goes on sending, and what it sends while shadow-banned
is marked so (`messages.shadow`) and shown to its author only: not in others' history, channel
list (`last_message`, unread counts), search, live events or catch-up, and others reach it by id
as if it did not exist. The backend acting as itself sees everything, and webhooks receive the
events of such messages too (the backend decides what to do with them). The mark stays after
the ban ends: lifting a shadow ban does not publish what was hidden. So that others notice nothing,
such a message moves neither the channel's activity (`last_message_at`, the list's order) nor
its parent's `reply_count`, also as its author sees them.

A workspace ban (not a shadow one) closes the user's open sockets with 4003 on every node, and
new sockets are refused with 4003 while it lasts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import msgspec

from cariosan.db import bans as rows
from cariosan.db import users as user_rows
from cariosan.db.bans import ActiveBan
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import audit, cursors, permissions
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.custom_data import storable_text
from cariosan.domain.ids import customer_id, time_ordered_id
from cariosan.domain.permissions import Action
from cariosan.errors import Banned, NotFound, ValidationFailed

MAX_PAGE = 200
BANNED = "user.banned"
UNBANNED = "user.unbanned"


class BanView(msgspec.Struct):
    id: str
    user_id: str
    # None: banned from the whole workspace.
    channel_id: str | None
    reason: str | None
    expires_at: datetime | None
    shadow: bool
    # The moderator's user id, or "backend".
    created_by: str
    created_at: datetime


class Sessions(Protocol):
    """The live sockets of every server node (realtime/hub.py)."""

    def banned(self, workspace_id: uuid.UUID, user_id: str) -> None:
        """Close the user's sockets with 4003 here and on the other nodes."""


def ban_view(row: rows.BanRow) -> BanView:
    return BanView(
        id=str(row.id),
        user_id=row.user_id,
        channel_id=row.channel_id,
        reason=row.reason,
        expires_at=row.expires_at,
        shadow=row.shadow,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def banned_error(ban: ActiveBan, user_id: str | None = None) -> Banned:
    """BANNED for `ban`, naming the scope, the expiry and the reason (`user_id`: someone else's
    ban, e.g. a moderator adding a banned user)."""
    who = "you are" if user_id is None else f"user {user_id} is"
    scope = "this workspace" if ban.channel_id is None else f"channel {ban.channel_id}"
    until = "with no expiry" if ban.expires_at is None else f"until {_time(ban.expires_at)}"
    reason = f"reason: {ban.reason}" if ban.reason else "no reason given"
    return Banned(f"{who} banned from {scope} {until} ({reason})")


def refuse_if_banned(ban: ActiveBan | None) -> None:
    """BANNED when a ban that refuses applies (a shadow ban refuses nothing)."""
    if ban is not None and not ban.shadow:
        raise banned_error(ban)


async def workspace_ban(conn: asyncpg.Connection, caller: Caller) -> ActiveBan | None:
    """The caller's user's active workspace ban (a hard or shadow one), if any."""
    if caller.user_id is None:
        return None
    return await rows.applying(conn, caller.workspace_id, caller.user_id, None)


async def refuse_banned_members(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, user_ids: list[str]
) -> None:
    """BANNED when one of `user_ids`, about to join or be added to the channel, is banned from
    the workspace or from it (shadow bans are not refused: they must not show)."""
    found = await rows.hard_bans_among(conn, caller.workspace_id, channel_id, user_ids)
    for user_id in user_ids:
        if user_id in found:
            raise banned_error(found[user_id], None if user_id == caller.user_id else user_id)


async def _require(conn: asyncpg.Connection, caller: Caller, channel_id: str | None) -> None:
    if channel_id is None:
        permissions.require(Action.BAN_WORKSPACE, permissions.WORKSPACE, caller.capacities())
    else:
        access = await channel_access(conn, caller, channel_id, moderation=True)
        access.require(Action.BAN_CHANNEL)


def _valid_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must be an RFC 3339 time with a time zone")
    try:
        expires_at = expires_at.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00
        raise ValidationFailed("expires_at is out of range") from None
    if expires_at <= datetime.now(UTC):
        raise ValidationFailed("expires_at must be in the future")
    return expires_at


async def _event(conn: asyncpg.Connection, caller: Caller, type: str, view: BanView) -> None:
    """`user.banned`/`user.unbanned`: a channel ban to the channel's members (and the user), a
    workspace ban to the user; a shadow ban to nobody but the backend and webhooks."""
    payload: dict[str, Any] = {"user_id": view.user_id, "ban": msgspec.to_builtins(view)}
    if view.shadow:
        await append_event(conn, caller.workspace_id, type, payload, actor_id=caller.user_id)
        return
    await append_event(
        conn,
        caller.workspace_id,
        type,
        payload,
        channel_id=view.channel_id,
        user_id=view.user_id,
        actor_id=caller.user_id,
    )


async def ban_user_in(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    user_id: str,
    channel_id: str | None = None,
    reason: str | None = None,
    expires_at: datetime | None = None,
    shadow: bool = False,
) -> BanView:
    """Ban `user_id` from the workspace (`channel_id` None) or from a channel, in the caller's
    transaction `conn`, with its `user.banned` event and audit entry. A ban of the same scope is
    replaced. Who may: domain/permissions.py (BAN_WORKSPACE, BAN_CHANNEL), checked here.

    After the transaction commits, call `after_ban(sessions, caller, ban)`: a workspace ban
    closes the user's open sockets (on every node), which must not happen for a ban that rolls
    back.
    """
    customer_id("user_id", user_id)
    if channel_id is not None:
        customer_id("channel_id", channel_id)
    reason = audit.valid_reason(reason)
    if reason is not None:
        storable_text("reason", reason)
    expires_at = _valid_expiry(expires_at)
    await _require(conn, caller, channel_id)
    if user_id == caller.user_id:
        raise ValidationFailed("a user cannot ban itself")
    if await user_rows.auth_lookup(conn, caller.workspace_id, user_id) is None:
        raise NotFound(f"no such user: {user_id}")
    row = await rows.ban(
        conn,
        caller.workspace_id,
        time_ordered_id(),
        user_id=user_id,
        channel_id=channel_id,
        reason=reason,
        expires_at=expires_at,
        shadow=shadow,
        created_by=audit.actor_of(caller),
    )
    view = ban_view(row)
    await _event(conn, caller, BANNED, view)
    await audit.record(
        conn,
        caller.workspace_id,
        actor=audit.actor_of(caller),
        action=audit.USER_BANNED,
        target=f"user:{user_id}",
        reason=reason,
        data={
            "channel_id": channel_id,
            "expires_at": None if expires_at is None else _time(expires_at),
            "shadow": shadow,
        },
    )
    return view


def after_ban(sessions: Sessions, caller: Caller, ban: BanView) -> None:
    """After the ban's transaction committed: a workspace ban (not a shadow one) closes the
    user's sockets with 4003 on every node."""
    if ban.channel_id is None and not ban.shadow:
        sessions.banned(caller.workspace_id, ban.user_id)


async def ban_user(
    database: Database,
    sessions: Sessions,
    caller: Caller,
    *,
    user_id: str,
    channel_id: str | None = None,
    reason: str | None = None,
    expires_at: datetime | None = None,
    shadow: bool = False,
) -> BanView:
    """`POST /v1/bans`: ban in a transaction of its own, then close the sockets."""
    async with database.transaction() as conn:
        view = await ban_user_in(
            conn,
            caller,
            user_id=user_id,
            channel_id=channel_id,
            reason=reason,
            expires_at=expires_at,
            shadow=shadow,
        )
    after_ban(sessions, caller, view)
    return view


async def unban_user(
    database: Database, caller: Caller, *, user_id: str, channel_id: str | None = None
) -> None:
    """Lift the user's active ban of the scope (NOT_FOUND when there is none), with its
    `user.unbanned` event and audit entry."""
    customer_id("user_id", user_id)
    if channel_id is not None:
        customer_id("channel_id", channel_id)
    async with database.transaction() as conn:
        await _require(conn, caller, channel_id)
        row = await rows.unban(conn, caller.workspace_id, user_id, channel_id)
        if row is None:
            where = "the workspace" if channel_id is None else f"channel {channel_id}"
            raise NotFound(f"user {user_id} has no active ban of {where}")
        view = ban_view(row)
        await _event(conn, caller, UNBANNED, view)
        await audit.record(
            conn,
            caller.workspace_id,
            actor=audit.actor_of(caller),
            action=audit.USER_UNBANNED,
            target=f"user:{user_id}",
            reason=row.reason,
            data={"channel_id": channel_id, "shadow": row.shadow},
        )


async def list_bans(
    database: Database,
    caller: Caller,
    *,
    channel_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[BanView], str | None]:
    """Active bans, newest first: every ban of the workspace (workspace moderators), or those of
    one channel (its moderators)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    if channel_id is not None:
        customer_id("channel_id", channel_id)
    before = cursors.decode_with_uuid(cursor) if cursor else None
    async with database.connection() as conn:
        await _require(conn, caller, channel_id)
        found = await rows.page(
            conn, caller.workspace_id, channel_id=channel_id, before=before, limit=limit + 1
        )
    page = found[:limit]
    more = len(found) > limit
    next_cursor = cursors.encode(page[-1].created_at, str(page[-1].id)) if more else None
    return [ban_view(r) for r in page], next_cursor
