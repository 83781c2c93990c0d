"""The event log as readers see it: catch-up pages, the wire form of an event, webhook bodies.

Events about a message store a reference to it, not a copy: every read resolves the reference
to the message as it is now, so catch-up, a WebSocket `resume` and a webhook body never show
text, files, mentions or data that reading the message would not show (an edited message only
in its current form, a deleted one as deleted, one whose author was hard-deleted not at all).
What a user may read of a channel's events follows its membership now: none of a channel it
left, only `channel.deleted` of a deleted one, and nothing but messages from before it joined.
Events for the moderators' audience (`message.flagged`, `flag.resolved`) are read by the users
whose workspace role is moderator or admin now, and by nobody else but the backend.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import msgspec

from cariosan.db import events as rows
from cariosan.db import messages as message_rows
from cariosan.db import users as user_rows
from cariosan.db.events import MODERATORS, EventRow, ReaderChannel
from cariosan.db.pool import Database
from cariosan.domain import mutes, permissions
from cariosan.domain.auth import Caller
from cariosan.domain.ids import MAX_SEQ
from cariosan.domain.messages import shared_payload
from cariosan.errors import EventsExpired, ValidationFailed

MAX_PAGE = 1000


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    # The same events as JSON text (the WebSocket sends these as they are).
    texts: list[str]
    # Where to continue from: every event up to it that the caller may see was returned.
    latest_seq: int
    has_more: bool


def wire_event(row: EventRow) -> dict[str, Any]:
    """An event as clients receive it: `{"type", "seq", "channel_id"?, ...payload}`."""
    event: dict[str, Any] = {"type": row.type, "seq": row.seq}
    if row.channel_id is not None:
        event["channel_id"] = row.channel_id
    event["created_at"] = row.created_at.isoformat().replace("+00:00", "Z")
    event.update(row.payload)
    return event


def encode(event: dict[str, Any]) -> str:
    return msgspec.json.encode(event).decode()


async def resolve(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, found: list[EventRow]
) -> list[EventRow]:
    """The events with each referenced message as it is now; events whose message no longer
    exists are left out."""
    ids = list({r.message_id for r in found if r.message_id is not None})
    messages = await message_rows.get_messages(conn, workspace_id, ids) if ids else {}
    resolved: list[EventRow] = []
    for row in found:
        if row.message_id is None:
            resolved.append(row)
            continue
        message = messages.get(row.message_id)
        if message is not None:
            payload = {**row.payload, **shared_payload(message)}
            visible_to = message.user_id if message.shadow else None
            resolved.append(replace(row, payload=payload, visible_to=visible_to))
    return resolved


def may_read(
    row: EventRow, user_id: str, channels: dict[str, ReaderChannel], *, moderator: bool = False
) -> bool:
    """Whether `user_id` may read this event of its own or of one of its `channels` (or, for a
    workspace `moderator`, of the moderators' audience)."""
    if row.audience == MODERATORS:
        return moderator
    if row.visible_to is not None and row.visible_to != user_id:
        return False  # about another user's shadow-banned message (domain/bans.py)
    if row.user_id == user_id:
        return True
    channel = channels.get(row.channel_id or "")
    if channel is None:
        return False
    if channel.deleted and row.type != "channel.deleted":
        return False
    # Messages from before joining are history the member may read; the rest is not its own.
    return row.message_id is not None or row.created_at >= channel.joined_at


def _valid_position(after_seq: int, limit: int) -> None:
    if not 0 <= after_seq <= MAX_SEQ:
        raise ValidationFailed(f"after_seq must be between 0 and {MAX_SEQ}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")


async def events_since(
    database: Database, caller: Caller, after_seq: int, limit: int, page_bytes: int
) -> EventPage:
    """Events after `after_seq` that the caller may read (every event of the workspace for the
    backend acting as itself), at most `limit` of them and about `page_bytes` of JSON.

    EVENTS_EXPIRED when the log no longer holds everything after `after_seq`.
    """
    _valid_position(after_seq, limit)
    workspace_id = caller.workspace_id
    async with database.connection() as conn:
        # Read first: the events read next include every one numbered up to it.
        at = await rows.positions(conn, workspace_id)
        if after_seq < at.trimmed_seq:
            raise EventsExpired(
                f"events after {after_seq} are no longer kept (the log starts after "
                f"{at.trimmed_seq}): refetch channels and history, then continue from "
                f"latest_seq {at.last_seq}",
                at.last_seq,
            )
        if after_seq >= at.last_seq:
            return EventPage([], [], at.last_seq, False)
        walked_to: int | None = None
        if caller.user_id is None:
            found = await rows.events_for_workspace(conn, workspace_id, after_seq, limit + 1)
            readable = found[:limit]
        else:
            user_id = caller.user_id
            # The role now: a socket's caller is as of its connect, and a demoted moderator's
            # `resume` must not replay flags.
            role = (
                caller.role
                if caller.is_server
                else await user_rows.auth_lookup(conn, workspace_id, user_id)
            )
            moderator = caller.is_server or role in (permissions.MODERATOR, permissions.ADMIN)
            page = await rows.events_for_reader(
                conn, workspace_id, user_id, after_seq, at.last_seq, limit + 1, moderator=moderator
            )
            found, walked_to = page.events, page.walked_to
            readable = [
                r for r in found[:limit] if may_read(r, user_id, page.channels, moderator=moderator)
            ]
        has_more = len(found) > limit or walked_to is not None
        found = found[:limit]
        resolved = await resolve(conn, workspace_id, readable)
        if caller.user_id is not None:
            # Only resolving tells which events are about shadow-banned messages.
            resolved = [r for r in resolved if r.visible_to in (None, caller.user_id)]
        resolved = await mutes.mark_muted_authors(conn, caller, resolved)
    if walked_to is not None:
        latest = walked_to  # the walk's bound ended the page: everything up to it was seen
    elif has_more:
        latest = found[-1].seq
    else:
        latest = max(at.last_seq, found[-1].seq if found else 0)
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    size = 0
    for row in resolved:
        event = wire_event(row)
        text = encode(event)
        if events and size + len(text) > page_bytes:
            # The budget ends the page here: continue after the last event sent.
            return EventPage(events, texts, events[-1]["seq"], True)
        size += len(text)
        events.append(event)
        texts.append(text)
    return EventPage(events, texts, latest, has_more)


async def webhook_bodies(
    database: Database, keys: list[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], str]:
    """The request body of each (workspace, seq) event, as reads show it now; an event that is
    gone (trimmed, or its content deleted) has none."""
    async with database.connection() as conn:
        found = await rows.events_by_seq(conn, keys)
        by_workspace: dict[uuid.UUID, list[EventRow]] = defaultdict(list)
        for (workspace_id, _), row in found.items():
            by_workspace[workspace_id].append(row)
        bodies: dict[tuple[uuid.UUID, int], str] = {}
        for workspace_id, events in by_workspace.items():
            for row in await resolve(conn, workspace_id, events):
                bodies[workspace_id, row.seq] = encode(wire_event(row))
    return bodies
