"""Mutes and blocks (issue 14): a user's own, private choices.

- A member mutes a channel, for good or until `expires_at`: the channel no longer counts in its
  `total_unread` and is `muted` in its channel list.
- A user mutes another: the other's messages carry `muted: true` for it (for every other
  reader `muted` is false): in reads, catch-up, and live events (realtime/hub.py).
- A user blocks another: no new dm between the two (whichever of them, or the backend, starts
  it), and the blocked user's mentions of the blocker are dropped from its messages (the
  message is still sent: the blocked user is not told, as on Slack, Discord or X).

Nobody else learns of them: no event, no audit entry, no webhook. A mute that ran out is as if
it were not there: reads compare with now(), nothing has to run at its end.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import msgspec

from cariosan.db import mutes as rows
from cariosan.db import users as user_rows
from cariosan.db.events import EventRow
from cariosan.db.pool import Database
from cariosan.domain import cursors
from cariosan.domain.access import channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.ids import customer_id
from cariosan.domain.permissions import Action
from cariosan.errors import Forbidden, NotFound, ValidationFailed

DEFAULT_PAGE, MAX_PAGE = 50, 200


class MuteListener(Protocol):
    """The live sockets of every server node (realtime/hub.py): told after a commit, so that
    live message events carry the user's new mutes."""

    def mutes_changed(self, workspace_id: uuid.UUID, user_id: str) -> None: ...


class Block(msgspec.Struct):
    user_id: str
    created_at: datetime


def valid_expiry(expires_at: datetime | None) -> datetime | None:
    """A mute's end: None (until unmuted), or a moment with a time zone, still ahead."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationFailed("expires_at needs a time zone (e.g. 2030-01-01T00:00:00Z)")
    if expires_at <= datetime.now(UTC):
        raise ValidationFailed("expires_at must be in the future (omit it to mute until unmuted)")
    return expires_at


# ---- channels ------------------------------------------------------------------------------


async def mute_channel(
    database: Database, caller: Caller, channel_id: str, expires_at: datetime | None
) -> None:
    """Mute a channel the caller is a member of (again: the new expiry replaces the old)."""
    expires_at = valid_expiry(expires_at)
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id)
        access.require(Action.CHANNEL_MUTE)
        user_id = caller.require_user()
        await rows.mute_channel(conn, caller.workspace_id, user_id, access.channel_id, expires_at)


async def unmute_channel(database: Database, caller: Caller, channel_id: str) -> None:
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id)
        access.require(Action.CHANNEL_MUTE)
        user_id = caller.require_user()
        await rows.unmute_channel(conn, caller.workspace_id, user_id, access.channel_id)


# ---- users ---------------------------------------------------------------------------------


async def _other_user(
    conn: asyncpg.Connection, caller: Caller, target: str, doing: str
) -> tuple[str, str]:
    """(the caller's user id, the other user's id): VALIDATION_FAILED for the caller itself,
    NOT_FOUND for a user that does not exist (or was deleted)."""
    user_id = caller.require_user()
    target = customer_id("user_id", target)
    if target == user_id:
        raise ValidationFailed(f"a user cannot {doing} itself")
    if target not in await user_rows.existing_user_ids(conn, caller.workspace_id, [target]):
        raise NotFound(f"no such user: {target}")
    return user_id, target


async def mute_user(
    database: Database,
    sessions: MuteListener,
    caller: Caller,
    target: str,
    expires_at: datetime | None,
) -> None:
    """Mute another user (again: the new expiry replaces the old)."""
    expires_at = valid_expiry(expires_at)
    async with database.transaction() as conn:
        user_id, target = await _other_user(conn, caller, target, "mute")
        await rows.mute_user(conn, caller.workspace_id, user_id, target, expires_at)
    sessions.mutes_changed(caller.workspace_id, user_id)


async def unmute_user(
    database: Database, sessions: MuteListener, caller: Caller, target: str
) -> None:
    async with database.transaction() as conn:
        user_id, target = await _other_user(conn, caller, target, "unmute")
        await rows.unmute_user(conn, caller.workspace_id, user_id, target)
    sessions.mutes_changed(caller.workspace_id, user_id)


async def block_user(database: Database, caller: Caller, target: str) -> None:
    async with database.transaction() as conn:
        user_id, target = await _other_user(conn, caller, target, "block")
        await rows.block_user(conn, caller.workspace_id, user_id, target)


async def unblock_user(database: Database, caller: Caller, target: str) -> None:
    async with database.transaction() as conn:
        user_id, target = await _other_user(conn, caller, target, "unblock")
        await rows.unblock_user(conn, caller.workspace_id, user_id, target)


async def list_blocks(
    database: Database, caller: Caller, *, limit: int, cursor: str | None
) -> tuple[list[Block], str | None]:
    """The users the caller blocks, newest block first, and the cursor of the next page."""
    user_id = caller.require_user()
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    before = None if not cursor else cursors.decode(cursor)
    async with database.connection() as conn:
        found = await rows.blocks(
            conn, caller.workspace_id, user_id, before=before, limit=limit + 1
        )
    page = found[:limit]
    more = len(found) > limit
    next_cursor = cursors.encode(page[-1].created_at, page[-1].user_id) if more else None
    return [Block(user_id=b.user_id, created_at=b.created_at) for b in page], next_cursor


# ---- what the rest of the chat asks --------------------------------------------------------


async def dm_allowed(conn: asyncpg.Connection, caller: Caller, pair: list[str]) -> None:
    """FORBIDDEN when one of a new dm's two users blocks the other."""
    first, second = pair
    if await rows.blocked_between(conn, caller.workspace_id, first, second):
        raise Forbidden(f"no new dm between {first} and {second}: one of them blocks the other")


async def unblocked_mentions(
    conn: asyncpg.Connection, caller: Caller, sender: str, mentions: list[str]
) -> list[str]:
    """`mentions` without the users who block `sender`: their mention would reach them."""
    if not mentions:
        return mentions
    blockers = await rows.blockers_among(conn, caller.workspace_id, sender, mentions)
    return [m for m in mentions if m not in blockers]


async def mark_muted_authors(
    conn: asyncpg.Connection, caller: Caller, found: list[EventRow]
) -> list[EventRow]:
    """The events, with `muted` set on each message whose author the reading user mutes:
    catch-up shows them as history does. Event payloads are shared by every reader; the
    mark goes on a copy, for this reader only."""
    if caller.user_id is None or not any("message" in r.payload for r in found):
        return found
    muted = await rows.muted_authors(conn, caller.workspace_id, caller.user_id)
    if not muted:
        return found
    marked: list[EventRow] = []
    for row in found:
        message = row.payload.get("message")
        if isinstance(message, dict) and message.get("user_id") in muted:
            row = replace(row, payload={**row.payload, "message": {**message, "muted": True}})
        marked.append(row)
    return marked
