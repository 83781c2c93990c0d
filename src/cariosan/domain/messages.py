"""Messages: send (idempotent by id), read a channel's history or a thread, edit, delete.

Every change writes its event in the same transaction. On the send path the channel row is
updated last, so its lock is held only until the commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from cariosan.blobs import BlobStore
from cariosan.config import Limits
from cariosan.db import messages as rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import attachments, audit, bans, mutes, send_rules
from cariosan.domain.access import ChannelAccess, channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.custom_data import storable_text, valid_data
from cariosan.domain.ids import customer_id, server_id, time_ordered_id
from cariosan.domain.permissions import Action
from cariosan.domain.send_batch import SendBatcher
from cariosan.domain.views import AttachmentRef, MessageView, to_payload
from cariosan.errors import Conflict, NotFound, ValidationFailed

DEFAULT_PAGE, MAX_PAGE = 50, 200
MAX_MENTIONS = 100


@dataclass(frozen=True)
class Draft:
    """A message as a client sends it (ids still unparsed: they are validated here)."""

    text: str
    id: str | None = None
    parent_id: str | None = None
    attachment_ids: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    messages: list[MessageView]
    has_more: bool


def message_view(row: rows.MessageRow) -> MessageView:
    """The public shape; a deleted message keeps its place but loses its text and files."""
    deleted = row.deleted_at is not None
    return MessageView(
        id=str(row.id),
        channel_id=row.channel_id,
        user_id=row.user_id,
        text="" if deleted else row.text,
        parent_id=None if row.parent_id is None else str(row.parent_id),
        reply_count=row.reply_count,
        attachments=[] if deleted else [AttachmentRef(**a) for a in row.attachments],
        mentions=row.mentions,
        reactions=row.reactions,
        own_reactions=row.own_reactions,
        data=row.data,
        created_at=row.created_at,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
        muted=row.muted,
        pinned_at=row.pinned_at,
        pinned_by=row.pinned_by,
    )


def shared_payload(row: rows.MessageRow) -> dict[str, Any]:
    """A message for an event every member receives: no one's own reactions in it. Events store
    only the message's id; reads put this in (domain/events.resolve)."""
    view = message_view(row)
    view.own_reactions = []
    view.muted = False
    return {"message": to_payload(view)}


# ---- validation ----------------------------------------------------------------------------


def valid_text(text: str, limits: Limits, *, allow_empty: bool) -> str:
    if len(text) > limits.max_message_chars:
        raise ValidationFailed(f"text must have at most {limits.max_message_chars} characters")
    if not allow_empty and not text.strip():
        raise ValidationFailed("text must not be empty")
    storable_text("text", text)
    return text


def _valid_mentions(mentions: list[str]) -> list[str]:
    unique = list(dict.fromkeys(customer_id("mentions", m) for m in mentions))
    if len(unique) > MAX_MENTIONS:
        raise ValidationFailed(f"a message may mention at most {MAX_MENTIONS} users")
    return unique


def valid_limit(limit: int, maximum: int = MAX_PAGE) -> int:
    if not 1 <= limit <= maximum:
        raise ValidationFailed(f"limit must be between 1 and {maximum}")
    return limit


# ---- access to one message -----------------------------------------------------------------


async def message_access(
    conn: asyncpg.Connection,
    caller: Caller,
    message_id: str,
    *,
    moderation: bool = False,
) -> tuple[rows.MessageRow, ChannelAccess]:
    """A message and the caller's access to its channel; NOT_FOUND (naming only the message)
    when it does not exist or the caller may not see its channel."""
    key = server_id("message", message_id)
    row = await rows.get_message(conn, caller.workspace_id, caller.user_id, key)
    # Another user's shadow-banned message does not exist for the caller (domain/bans.py).
    hidden = row is not None and row.shadow and caller.user_id not in (None, row.user_id)
    if row is None or hidden:
        raise NotFound(f"no such message: {message_id}")
    try:
        access = await channel_access(conn, caller, row.channel_id, moderation=moderation)
    except NotFound:
        raise NotFound(f"no such message: {message_id}") from None
    return row, access


# ---- send ----------------------------------------------------------------------------------


async def post_message(
    database: Database,
    sends: SendBatcher,
    blobs: BlobStore,
    limits: Limits,
    caller: Caller,
    channel_id: str,
    draft: Draft,
) -> tuple[MessageView, bool]:
    """Send a message as the caller; (message, created). The same client id again returns the
    original (created False), also when both requests race. The per-user burst limit on
    messages is counted with the request itself (`ratelimit.check_request`, `sends_message`),
    in the same round trip to the store."""
    user_id = caller.require_user()  # before any work: only users send
    customer_id("channel_id", channel_id)
    message_id = (
        time_ordered_id()
        if draft.id is None
        else server_id("id", draft.id, missing_is_not_found=False)
    )
    parent_id = (
        None
        if draft.parent_id is None
        else server_id("parent_id", draft.parent_id, missing_is_not_found=False)
    )
    text = valid_text(draft.text, limits, allow_empty=bool(draft.attachment_ids))
    mentions = _valid_mentions(draft.mentions)
    valid_data(draft.data, limits)
    if parent_id is None and not mentions and not draft.attachment_ids:
        # Most sends: one statement, shared with concurrent ones (domain/send_batch.py). When it
        # does not apply, nothing was written and the general path below answers.
        plain = await sends.send(
            rows.PlainSend(caller.workspace_id, message_id, channel_id, user_id, text, draft.data)
        )
        if plain is not None:
            return message_view(plain), True
    # The store is asked (and the files copied) first: no network call while the send holds
    # row locks. What the transaction did not use is removed after it, committed or not.
    seals = await attachments.seal_uploads(
        database, blobs, caller.workspace_id, channel_id, caller.user_id, draft.attachment_ids
    )
    committed = False
    try:
        sent = await _store_message(
            database,
            caller,
            channel_id,
            draft,
            message_id=message_id,
            parent_id=parent_id,
            text=text,
            mentions=mentions,
            seals=seals,
        )
        committed = True
    finally:
        await attachments.settle(blobs, seals, committed=committed)
    return sent


async def _store_message(
    database: Database,
    caller: Caller,
    channel_id: str,
    draft: Draft,
    *,
    message_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    text: str,
    mentions: list[str],
    seals: attachments.Seals,
) -> tuple[MessageView, bool]:
    """The send's transaction; (message, created)."""
    user_id = caller.require_user()
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id)
        if not access.is_member:
            raise NotFound(f"no such channel: {channel_id}")
        # Learnt by the membership query above: no round trip of its own.
        bans.refuse_if_banned(access.ban)
        shadow = access.ban is not None and access.ban.shadow
        if parent_id is not None:
            await _check_parent(conn, caller, channel_id, parent_id)
        if mentions:
            found = await rows.members_among(conn, caller.workspace_id, channel_id, mentions)
            missing = [m for m in mentions if m not in found]
            if missing:
                raise ValidationFailed(f"mentioned users are not members: {', '.join(missing)}")
            # Whoever blocks the sender is not mentioned by it (domain/mutes.py).
            mentions = await mutes.unblocked_mentions(conn, caller, user_id, mentions)
        # Before the channel row is touched, so that its lock is held the shortest time.
        files = await attachments.claim_for_message(
            conn,
            caller.workspace_id,
            channel_id,
            caller.user_id,
            message_id,
            draft.attachment_ids,
            seals,
        )
        row = await rows.insert_message(
            conn,
            caller.workspace_id,
            message_id,
            channel_id=channel_id,
            user_id=user_id,
            text=text,
            parent_id=parent_id,
            mentions=mentions,
            attachment_ids=[uuid.UUID(f.id) for f in files],
            data=draft.data,
            shadow=shadow,
        )
        if row is None:
            return await _original(conn, caller, channel_id, message_id), False
        await send_rules.check_send(conn, access, user_id)
        row = replace(row, attachments=[to_payload(f) for f in files])
        await append_event(
            conn,
            caller.workspace_id,
            "message.new",
            {},
            channel_id=channel_id,
            message_id=row.id,
            actor_id=user_id,
        )
        if shadow:
            # Others must not notice it: neither a reply count nor the channel's activity moves.
            pass
        elif parent_id is not None:
            await rows.count_reply(conn, caller.workspace_id, parent_id)
        else:
            # Replies stay in their thread: only top-level messages are the channel's activity.
            await rows.set_last_message(
                conn, caller.workspace_id, channel_id, row.id, row.created_at
            )
    return message_view(row), True


async def _check_parent(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, parent_id: uuid.UUID
) -> None:
    parent = await rows.position(conn, caller.workspace_id, parent_id)
    if parent is None or parent.channel_id != channel_id:
        raise ValidationFailed("parent_id must be a message of this channel")
    if parent.parent_id is not None:
        raise ValidationFailed("parent_id must be a top-level message (threads are one deep)")
    if parent.deleted_at is not None:
        raise ValidationFailed("parent_id names a deleted message")


async def _original(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, message_id: uuid.UUID
) -> MessageView:
    """The message a repeated send refers to; CONFLICT if the id was used for another one."""
    row = await rows.get_message(conn, caller.workspace_id, caller.user_id, message_id)
    if row is None or row.channel_id != channel_id or row.user_id != caller.user_id:
        raise Conflict(f"message id {message_id} is already used by another message")
    return message_view(row)


# ---- read ----------------------------------------------------------------------------------


async def _cursor(
    conn: asyncpg.Connection,
    caller: Caller,
    name: str,
    value: str | None,
    *,
    channel_id: str,
    parent_id: uuid.UUID | None,
) -> rows.Position | None:
    """A paging cursor: a message of the same channel (top-level) or thread, else 422."""
    if value is None:
        return None
    key = server_id(name, value, missing_is_not_found=False)
    found = await rows.position(conn, caller.workspace_id, key)
    if found is None or found.channel_id != channel_id or found.parent_id != parent_id:
        where = "this channel's top-level messages" if parent_id is None else "this thread"
        raise ValidationFailed(f"{name} must be one of {where}")
    return found


async def _page(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    channel_id: str,
    parent_id: uuid.UUID | None,
    limit: int,
    before: str | None,
    after: str | None,
) -> Page:
    valid_limit(limit)
    if before is not None and after is not None:
        raise ValidationFailed("give either before or after, not both")
    before_at = await _cursor(
        conn, caller, "before", before, channel_id=channel_id, parent_id=parent_id
    )
    after_at = await _cursor(
        conn, caller, "after", after, channel_id=channel_id, parent_id=parent_id
    )
    found = await rows.page(
        conn,
        caller.workspace_id,
        caller.user_id,
        channel_id=channel_id,
        parent_id=parent_id,
        before=before_at,
        after=after_at,
        limit=limit + 1,
    )
    has_more = len(found) > limit
    if has_more:
        # One row beyond the page proves there is more in the paging direction: the oldest
        # when walking back (latest/before), the newest when walking forward (after).
        found = found[:limit] if after_at is not None else found[1:]
    return Page([message_view(r) for r in found], has_more)


async def list_messages(
    database: Database,
    caller: Caller,
    channel_id: str,
    *,
    limit: int = DEFAULT_PAGE,
    before: str | None = None,
    after: str | None = None,
) -> Page:
    """A channel's top-level messages, oldest first: the latest `limit`, or the `limit` just
    before or after a message; `has_more` says whether more lie in that direction."""
    async with database.connection() as conn:
        await channel_access(conn, caller, channel_id)
        return await _page(
            conn,
            caller,
            channel_id=channel_id,
            parent_id=None,
            limit=limit,
            before=before,
            after=after,
        )


async def list_replies(
    database: Database,
    caller: Caller,
    message_id: str,
    *,
    limit: int = DEFAULT_PAGE,
    before: str | None = None,
    after: str | None = None,
) -> Page:
    """A thread's replies, oldest first, paged like a channel."""
    async with database.connection() as conn:
        parent, _ = await message_access(conn, caller, message_id)
        return await _page(
            conn,
            caller,
            channel_id=parent.channel_id,
            parent_id=parent.id,
            limit=limit,
            before=before,
            after=after,
        )


# ---- edit and delete -----------------------------------------------------------------------


async def edit_message(
    database: Database, limits: Limits, caller: Caller, message_id: str, text: str
) -> MessageView:
    """Replace a message's text (domain/permissions.py: its author, admins, the backend)."""
    async with database.transaction() as conn:
        row, access = await message_access(conn, caller, message_id, moderation=True)
        if row.deleted_at is not None:
            raise NotFound(f"no such message: {message_id}")
        access.require(Action.MESSAGE_EDIT, author_id=row.user_id)
        valid_text(text, limits, allow_empty=bool(row.attachment_ids))
        if not await rows.update_text(conn, caller.workspace_id, row.id, text):
            raise NotFound(f"no such message: {message_id}")
        edited = await rows.get_message(conn, caller.workspace_id, caller.user_id, row.id)
        assert edited is not None  # updated in this transaction
        await append_event(
            conn,
            caller.workspace_id,
            "message.updated",
            {},
            channel_id=access.channel_id,
            message_id=edited.id,
            actor_id=edited.user_id,
        )
    return message_view(edited)


async def delete_message(database: Database, caller: Caller, message_id: str) -> None:
    """Soft-delete a message (domain/permissions.py: its author or a moderator of the channel).
    Deleting it again changes nothing (and writes no second event)."""
    async with database.transaction() as conn:
        await delete_message_in(conn, caller, message_id)


async def delete_message_in(
    conn: asyncpg.Connection, caller: Caller, message_id: str, *, reason: str | None = None
) -> bool:
    """`delete_message` in the caller's transaction (a flag resolution deletes with it);
    whether this call deleted it. `reason` goes to the audit entry."""
    row, access = await message_access(conn, caller, message_id, moderation=True)
    access.require(Action.MESSAGE_DELETE, author_id=row.user_id)
    if not await rows.soft_delete(conn, caller.workspace_id, row.id):
        return False
    if row.user_id != caller.user_id:
        await audit.record(
            conn,
            caller.workspace_id,
            actor=audit.actor_of(caller),
            action=audit.MESSAGE_DELETED,
            target=f"message:{row.id}",
            reason=reason,
            data={"channel_id": access.channel_id, "author": row.user_id},
        )
    deleted = await rows.get_message(conn, caller.workspace_id, caller.user_id, row.id)
    assert deleted is not None  # updated in this transaction
    await append_event(
        conn,
        caller.workspace_id,
        "message.deleted",
        {},
        channel_id=access.channel_id,
        message_id=deleted.id,
        actor_id=deleted.user_id,
    )
    return True
