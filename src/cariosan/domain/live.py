"""Who receives which live event, and the reads the WebSocket gateway needs.

The gateway (realtime/) delivers; the rules live here: a user receives the persisted events of
the channels it belongs to, plus the events about itself (`user_id` on the event, e.g. its own
`read.updated` or its `member.removed`). Membership is tracked by applying the membership
events of the log in order, so a change takes effect at exactly its point in the stream.

Events for the moderators' audience (flags) go to the workspace's moderators and admins. Every
node tracks who they are the same way: the set read when its stream starts, then the role
changes of the log (the `audit.recorded` entries `user.role_changed` and `user.deleted`, written
in the transaction of the change), so a demoted moderator stops receiving flags at exactly
that point, on every node, without a query per event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from cariosan.db import bans as ban_rows
from cariosan.db import events as event_rows
from cariosan.db import mutes as mute_rows
from cariosan.db import realtime as live_rows
from cariosan.db.events import MODERATORS, EventRow
from cariosan.db.pool import Database
from cariosan.domain import audit, bans, events, permissions, tokens
from cariosan.domain.auth import Caller, authenticate
from cariosan.domain.token_checks import TokenChecks
from cariosan.domain.workspaces import SECRET_PREFIX
from cariosan.errors import Unauthorized

# Presence changes are sent to the members of channels up to this size.
PRESENCE_MAX_MEMBERS = 100
# Events read per query when a workspace's stream catches up.
STREAM_PAGE = 500


@dataclass
class Audience:
    """Channel membership of one workspace, as of the last event applied."""

    members: dict[str, set[str]] = field(default_factory=dict)
    # Users whose workspace role is moderator or admin.
    moderators: set[str] = field(default_factory=set)

    @classmethod
    def from_rows(
        cls, rows: list[tuple[str, str]], moderators: list[str] | None = None
    ) -> Audience:
        audience = cls(moderators=set(moderators or ()))
        for channel_id, user_id in rows:
            audience.members.setdefault(channel_id, set()).add(user_id)
        return audience

    def _apply_role_change(self, event: EventRow) -> None:
        entry = event.payload.get("entry")
        if not isinstance(entry, dict) or not isinstance(entry.get("target"), str):
            return
        kind, _, user_id = entry["target"].partition(":")
        if kind != "user" or not user_id:
            return
        if entry.get("action") == audit.ROLE_CHANGED:
            data = entry.get("data")
            role = data.get("to") if isinstance(data, dict) else None
            if role in (permissions.MODERATOR, permissions.ADMIN):
                self.moderators.add(user_id)
            else:
                self.moderators.discard(user_id)
        elif entry.get("action") == audit.USER_DELETED:
            self.moderators.discard(user_id)

    def recipients(self, event: EventRow) -> set[str]:
        """Apply the event's membership (or role) change, then return who receives it."""
        if event.type == "audit.recorded":
            self._apply_role_change(event)
        if event.audience == MODERATORS:
            return set(self.moderators)
        channel = event.channel_id
        if channel is not None:
            if event.type == "channel.created":
                self.members[channel] = _channel_members(event.payload)
            elif event.type == "member.added" and event.user_id is not None:
                self.members.setdefault(channel, set()).add(event.user_id)
            elif event.type == "member.removed":
                # A hard-deleted user's removals name it in the payload only (domain/users.py).
                removed = event.user_id or event.payload.get("user_id")
                if isinstance(removed, str):
                    self.members.get(channel, set()).discard(removed)
        users = set(self.members.get(channel, ())) if channel is not None else set()
        if event.user_id is not None:
            users.add(event.user_id)
        if event.type == "channel.deleted" and channel is not None:
            self.members.pop(channel, None)
        return users

    def co_members(self, user_id: str) -> set[str]:
        """Users who see `user_id`'s presence: those sharing a channel of at most
        `PRESENCE_MAX_MEMBERS` members with it (in large channels presence would cost N² frames
        as everyone connects)."""
        found: set[str] = set()
        for users in self.members.values():
            if user_id in users and len(users) <= PRESENCE_MAX_MEMBERS:
                found |= users
        found.discard(user_id)
        return found


def _channel_members(payload: dict[str, Any]) -> set[str]:
    channel = payload.get("channel")
    found: set[str] = set()
    if isinstance(channel, dict):
        for member in channel.get("members") or ():
            if isinstance(member, dict) and isinstance(member.get("user_id"), str):
                found.add(member["user_id"])
    return found


async def open_stream(database: Database, workspace_id: uuid.UUID) -> tuple[int, Audience]:
    """Where a workspace's live stream starts, and its membership at that point."""
    async with database.connection() as conn:
        latest, rows, moderators = await live_rows.stream_start(conn, workspace_id)
    return latest, Audience.from_rows(rows, moderators)


@dataclass(frozen=True)
class StreamPage:
    # The events to fan out, each message in its current form (see domain/events.py).
    events: list[EventRow]
    # The stream's position after this page (events whose message is gone are skipped).
    last_seq: int
    # The page was full: more may follow at once.
    full: bool


async def read_stream(
    database: Database, workspace_id: uuid.UUID, after_seq: int, limit: int = STREAM_PAGE
) -> StreamPage:
    """The workspace's published events after `after_seq`, in order (never one below it
    later)."""
    async with database.connection() as conn:
        found = await event_rows.events_for_workspace(conn, workspace_id, after_seq, limit)
        resolved = await events.resolve(conn, workspace_id, found)
    return StreamPage(resolved, found[-1].seq if found else after_seq, len(found) == limit)


@dataclass(frozen=True)
class LiveCaller:
    caller: Caller
    user_id: str
    expires_at: int
    # The token's issue time and secret: a revocation or a retired secret closes the socket.
    issued_at_us: int = 0
    key_id: str = ""


async def authenticate_live(
    database: Database, token_checks: TokenChecks, jwt_secrets: list[str], token: str
) -> LiveCaller:
    """A WebSocket's user, from its JWT; UNAUTHORIZED for anything else (API secrets too)."""
    if not token or token.startswith(SECRET_PREFIX):
        raise Unauthorized("the WebSocket needs a user token")
    claims = tokens.verify(token, jwt_secrets)
    caller = await authenticate(database, token_checks, jwt_secrets, token, None)
    async with database.connection() as conn:
        # A socket is refused while a workspace ban lasts (BANNED: close code 4003).
        bans.refuse_if_banned(await bans.workspace_ban(conn, caller))
    return LiveCaller(
        caller, caller.require_user(), claims.expires_at, claims.issued_at_us, claims.key_id
    )


async def revoked_sessions(
    database: Database, workspace_id: uuid.UUID, sessions: list[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Of (user_id, token issued_at_us) pairs, those whose token no longer authenticates: the
    user is gone or deleted, or its tokens were revoked after this one was minted."""
    async with database.connection() as conn:
        floors = await live_rows.token_floors(
            conn, workspace_id, sorted({user for user, _ in sessions})
        )
    refused: set[tuple[str, int]] = set()
    for user_id, issued in sessions:
        if user_id not in floors:
            refused.add((user_id, issued))
            continue
        floor = floors[user_id]
        if floor is not None and issued < tokens.micros(floor):
            refused.add((user_id, issued))
    return refused


async def banned_users(
    database: Database, workspace_id: uuid.UUID, user_ids: list[str]
) -> set[str]:
    """Of `user_ids`, those banned from the workspace now (shadow bans do not count: the user
    must not notice them)."""
    async with database.connection() as conn:
        found = await ban_rows.hard_bans_among(conn, workspace_id, None, user_ids)
    return set(found)


async def mark_active(database: Database, workspace_id: uuid.UUID, user_ids: list[str]) -> None:
    """Persist `last_active_at` for users seen live."""
    if user_ids:
        async with database.connection() as conn:
            await live_rows.touch_last_active(conn, workspace_id, user_ids)


async def muted_authors(
    database: Database, workspace_id: uuid.UUID, user_id: str
) -> dict[str, float | None]:
    """The authors `user_id` mutes now, each with the end of its mute as a POSIX time (None:
    until unmuted): live message events from them carry `muted: true` for it."""
    async with database.connection() as conn:
        found = await mute_rows.mutes_of(conn, workspace_id, user_id)
    return {author: None if end is None else end.timestamp() for author, end in found.items()}
