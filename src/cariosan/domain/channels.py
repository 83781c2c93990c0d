"""Channels and their members: create (one dm per pair), list, read, change, delete, join and
leave. Every change writes its event in the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cariosan.config import Limits
from cariosan.db import channels as rows
from cariosan.db import users as user_rows
from cariosan.db.events import append_event
from cariosan.db.pool import Database
from cariosan.domain import audit, bans, cursors, mutes, send_rules
from cariosan.domain.access import MEMBER, OWNER, channel_access
from cariosan.domain.auth import Caller
from cariosan.domain.custom_data import storable_text, valid_data
from cariosan.domain.ids import customer_id
from cariosan.domain.permissions import CHANNEL_ROLES, Action
from cariosan.domain.views import AttachmentRef, ChannelView, MemberView, MessageView, to_payload
from cariosan.errors import Conflict, NotFound, ValidationFailed

DM, GROUP, PUBLIC = "dm", "group", "public"
TYPES = (DM, GROUP, PUBLIC)
MAX_NAME = 200
MAX_MEMBERS = 1000
DEFAULT_PAGE, MAX_PAGE = 25, 100
# Joins the two ids of a dm pair; ids never contain it (see domain/ids.py).
_DM_KEY_SEPARATOR = "\n"


def member_view(row: rows.MemberRow) -> MemberView:
    return MemberView(user_id=row.user_id, role=row.role, joined_at=row.joined_at)


def _last_message_view(channel_id: str, row: rows.LastMessageRow) -> MessageView:
    # The same message as history shows it (the list is where clients render it first).
    return MessageView(
        id=str(row.id),
        channel_id=channel_id,
        user_id=row.user_id,
        text=row.text,
        parent_id=None,
        reply_count=row.reply_count,
        attachments=[AttachmentRef(**a) for a in row.attachments],
        mentions=row.mentions,
        reactions=row.reactions,
        own_reactions=row.own_reactions,
        data=row.data,
        created_at=row.created_at,
        edited_at=row.edited_at,
        deleted_at=None,
        muted=row.muted,
        pinned_at=row.pinned_at,
        pinned_by=row.pinned_by,
    )


def channel_view(row: rows.ChannelRow, members: list[rows.MemberRow] | None = None) -> ChannelView:
    return ChannelView(
        id=row.id,
        type=row.type,
        name=row.name,
        data=row.data,
        created_by=row.created_by,
        member_count=row.member_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        last_message=None
        if row.last_message is None
        else _last_message_view(row.id, row.last_message),
        last_message_at=row.last_message_at,
        unread_count=row.unread_count,
        members=None if members is None else [member_view(m) for m in members],
        muted=row.muted,
        cooldown_seconds=row.cooldown_seconds,
        frozen=row.frozen,
    )


def _shared(view: ChannelView, *, with_members: bool) -> dict[str, Any]:
    """A channel for an event payload: without the acting user's own unread count, and without
    its last message (events never copy a message's content: it could be edited or deleted
    later, see domain/events.py)."""
    return to_payload(
        msgspec.structs.replace(
            view,
            unread_count=0,
            members=view.members if with_members else None,
            last_message=None,
            muted=False,
        )
    )


async def _load(conn: asyncpg.Connection, caller: Caller, channel_id: str) -> ChannelView:
    """The channel with its members, as the caller sees it."""
    row = await rows.get_channel(conn, caller.workspace_id, channel_id, caller.user_id)
    if row is None:
        raise NotFound(f"no such channel: {channel_id}")
    return channel_view(row, await rows.members(conn, caller.workspace_id, channel_id))


def user_list(field: str, user_ids: list[str]) -> list[str]:
    """Valid user ids, each once, sorted."""
    if len(user_ids) > MAX_MEMBERS:
        raise ValidationFailed(f"{field} may name at most {MAX_MEMBERS} users")
    return sorted({customer_id(field, user_id) for user_id in user_ids})


async def _require_users(conn: asyncpg.Connection, caller: Caller, user_ids: list[str]) -> None:
    found = await user_rows.existing_user_ids(conn, caller.workspace_id, user_ids)
    missing = [user_id for user_id in user_ids if user_id not in found]
    if missing:
        raise ValidationFailed(f"no such users: {', '.join(missing[:20])}")


def _validate_name(name: str | None) -> None:
    if name is not None and len(name) > MAX_NAME:
        raise ValidationFailed(f"name must have at most {MAX_NAME} characters")
    if name is not None:
        storable_text("name", name)


def _first_members(
    caller: Caller, type: str, members: list[str]
) -> tuple[list[str], list[str], str | None]:
    """A new channel's members (the caller included), their roles, and the dm pair key."""
    creator = set() if caller.user_id is None else {caller.user_id}
    member_ids = sorted({*user_list("members", members), *creator})
    if type != DM:
        roles = [OWNER if m == caller.user_id else MEMBER for m in member_ids]
        return member_ids, roles, None
    if len(member_ids) != 2:
        raise ValidationFailed("a dm has exactly two distinct members, the caller included")
    return member_ids, [MEMBER, MEMBER], _DM_KEY_SEPARATOR.join(member_ids)


async def create_channel(
    database: Database,
    caller: Caller,
    *,
    channel_id: str | None,
    type: str,
    name: str | None,
    members: list[str],
    data: dict[str, Any],
    limits: Limits,
) -> tuple[ChannelView, bool]:
    """Create a channel with the caller (owner) and `members`; (channel, created).

    A dm between two users is one channel: asking again returns the existing one.
    """
    if type not in TYPES:
        raise ValidationFailed("type must be 'dm', 'group' or 'public'")
    channel_id = uuid.uuid4().hex if channel_id is None else customer_id("id", channel_id)
    _validate_name(name)
    valid_data(data, limits)
    member_ids, roles, dm_key = _first_members(caller, type, members)
    async with database.transaction() as conn:
        bans.refuse_if_banned(await bans.workspace_ban(conn, caller))
        await _require_users(conn, caller, member_ids)
        inserted = await rows.insert_channel(
            conn,
            caller.workspace_id,
            channel_id,
            type=type,
            name=name,
            data=data,
            created_by=caller.user_id,
            dm_key=dm_key,
        )
        if not inserted:
            # The pair's dm already exists (maybe just made by a concurrent request), else the id
            # is taken.
            if dm_key is not None and (
                existing := await rows.dm_channel_id(conn, caller.workspace_id, dm_key)
            ):
                return await _load(conn, caller, existing), False
            raise Conflict(f"a channel with id {channel_id} already exists")
        if dm_key is not None:
            # After the insert, so that an existing dm stays reachable (created False above),
            # and a refusal rolls the new one back.
            await mutes.dm_allowed(conn, caller, member_ids)
        await rows.add_members(conn, caller.workspace_id, channel_id, member_ids, roles)
        view = await _load(conn, caller, channel_id)
        payload = {"channel": _shared(view, with_members=True)}
        await append_event(
            conn, caller.workspace_id, "channel.created", payload, channel_id=view.id
        )
    return view, True


def _channel_cursor(cursor: str) -> tuple[datetime, str]:
    when, channel_id = cursors.decode(cursor)
    return when, customer_id("cursor", channel_id)


async def list_channels(
    database: Database, caller: Caller, *, limit: int, cursor: str | None, include_public: bool
) -> tuple[list[ChannelView], str | None]:
    """A page of the caller's channels, newest activity first, and the cursor of the next."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    before = None if not cursor else _channel_cursor(cursor)
    async with database.connection() as conn:
        found = await rows.list_channels(
            conn,
            caller.workspace_id,
            caller.user_id,
            include_public=include_public,
            before=before,
            limit=limit + 1,
        )
    page = found[:limit]
    next_cursor = cursors.encode(page[-1].activity, page[-1].id) if len(found) > limit else None
    return [channel_view(row) for row in page], next_cursor


async def get_channel(database: Database, caller: Caller, channel_id: str) -> ChannelView:
    async with database.connection() as conn:
        await channel_access(conn, caller, channel_id)
        return await _load(conn, caller, channel_id)


async def update_channel(
    database: Database,
    caller: Caller,
    channel_id: str,
    *,
    name: str | None,
    data: dict[str, Any] | None,
    fields_set: frozenset[str],
    limits: Limits,
    cooldown_seconds: int | None = None,
    frozen: bool | None = None,
) -> ChannelView:
    """Change the name, data, slow mode (`cooldown_seconds`, 0 or None: off) and/or freeze
    (moderators of the channel, domain/permissions.py). A change of slow mode or freeze is
    recorded in the audit log with the values before and after."""
    _validate_name(name)
    if data is not None:
        valid_data(data, limits)
    cooldown = send_rules.valid_cooldown(cooldown_seconds)
    if "frozen" in fields_set and frozen is None:
        raise ValidationFailed("frozen must be true or false")
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id, moderation=True)
        access.require(Action.CHANNEL_UPDATE)
        before = await rows.update_channel(
            conn,
            caller.workspace_id,
            channel_id,
            name=name,
            data=data,
            cooldown_seconds=cooldown,
            frozen=frozen,
            fields_set=fields_set,
        )
        if before is None:
            raise NotFound(f"no such channel: {channel_id}")
        view = await _load(conn, caller, channel_id)
        payload = {"channel": _shared(view, with_members=False)}
        await append_event(
            conn, caller.workspace_id, "channel.updated", payload, channel_id=view.id
        )
        changes: dict[str, Any] = {}
        if before.cooldown_seconds != view.cooldown_seconds:
            changes["cooldown_seconds"] = {
                "from": before.cooldown_seconds,
                "to": view.cooldown_seconds,
            }
        if before.frozen != view.frozen:
            changes["frozen"] = {"from": before.frozen, "to": view.frozen}
        if changes:
            await audit.record(
                conn,
                caller.workspace_id,
                actor=audit.actor_of(caller),
                action=audit.CHANNEL_UPDATED,
                target=f"channel:{channel_id}",
                data={"channel_id": channel_id, **changes},
            )
    return view


async def delete_channel(database: Database, caller: Caller, channel_id: str) -> None:
    """Soft-delete: reads say NOT_FOUND from now on, the rows stay for export."""
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id, moderation=True)
        access.require(Action.CHANNEL_DELETE)
        view = await _load(conn, caller, channel_id)
        deleted_at = await rows.soft_delete_channel(conn, caller.workspace_id, channel_id)
        if deleted_at is None:
            raise NotFound(f"no such channel: {channel_id}")
        gone = msgspec.structs.replace(view, deleted_at=deleted_at, updated_at=deleted_at)
        payload = {"channel": _shared(gone, with_members=False)}
        await append_event(
            conn, caller.workspace_id, "channel.deleted", payload, channel_id=view.id
        )


async def _check_may_add(
    conn: asyncpg.Connection, caller: Caller, channel_id: str, user_ids: list[str]
) -> None:
    """Moderators add anyone; in a public channel any user may add itself (join)."""
    self_join = caller.user_id is not None and user_ids == [caller.user_id]
    try:
        access = await channel_access(conn, caller, channel_id, moderation=True)
    except NotFound:
        if self_join and await rows.channel_type(conn, caller.workspace_id, channel_id) == PUBLIC:
            return
        raise
    if self_join:
        access.require(Action.MEMBER_JOIN, subject_id=caller.user_id)
    else:
        access.require(Action.MEMBER_ADD)


async def add_members(
    database: Database, caller: Caller, channel_id: str, user_ids: list[str]
) -> ChannelView:
    """Add users (those already in are skipped); one `member.added` per user added."""
    wanted = user_list("user_ids", user_ids)
    if not wanted:
        raise ValidationFailed("user_ids must name at least one user")
    async with database.transaction() as conn:
        await _check_may_add(conn, caller, channel_id, wanted)
        await _require_users(conn, caller, wanted)
        await bans.refuse_banned_members(conn, caller, channel_id, wanted)
        added = await rows.add_members(
            conn, caller.workspace_id, channel_id, wanted, [MEMBER] * len(wanted)
        )
        for member in added:
            payload = {"member": to_payload(member_view(member)), "user_id": member.user_id}
            await append_event(
                conn,
                caller.workspace_id,
                "member.added",
                payload,
                channel_id=channel_id,
                user_id=member.user_id,
            )
        return await _load(conn, caller, channel_id)


async def remove_member(database: Database, caller: Caller, channel_id: str, user_id: str) -> None:
    """Moderators remove anyone; a member may remove itself (leave)."""
    customer_id("user_id", user_id)
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id, moderation=True)
        if user_id == caller.user_id:
            access.require(Action.MEMBER_LEAVE, subject_id=user_id)
        else:
            access.require(Action.MEMBER_REMOVE)
        removed = await rows.remove_member(conn, caller.workspace_id, channel_id, user_id)
        if removed is None:
            raise NotFound(f"{user_id} is not a member of {channel_id}")
        # The removed user is named on the event, so it still receives it.
        payload = {"member": to_payload(member_view(removed)), "user_id": user_id}
        await append_event(
            conn,
            caller.workspace_id,
            "member.removed",
            payload,
            channel_id=channel_id,
            user_id=user_id,
        )


async def change_member_role(
    database: Database, caller: Caller, channel_id: str, user_id: str, role: str
) -> MemberView:
    """Make a member `owner`, `moderator` or `member` (domain/permissions.py: moderators of the
    channel; owners only by owners and workspace moderators). Fires `member.updated`."""
    customer_id("user_id", user_id)
    if role not in CHANNEL_ROLES:
        raise ValidationFailed("role must be one of " + ", ".join(CHANNEL_ROLES))
    async with database.transaction() as conn:
        access = await channel_access(conn, caller, channel_id, moderation=True)
        access.require(Action.MEMBER_ROLE)
        current = await rows.member_role(conn, caller.workspace_id, channel_id, user_id)
        if current is None:
            raise NotFound(f"{user_id} is not a member of {channel_id}")
        if OWNER in (current, role):
            access.require(Action.MEMBER_OWNER)
        updated = await rows.set_member_role(conn, caller.workspace_id, channel_id, user_id, role)
        assert updated is not None  # locked by member_role in this transaction
        view = member_view(updated)
        if current == role:
            return view
        payload = {"member": to_payload(view), "user_id": user_id}
        await append_event(
            conn,
            caller.workspace_id,
            "member.updated",
            payload,
            channel_id=channel_id,
            user_id=user_id,
        )
        await audit.record(
            conn,
            caller.workspace_id,
            actor=audit.actor_of(caller),
            action=audit.MEMBER_ROLE_CHANGED,
            target=f"user:{user_id}",
            data={"channel_id": channel_id, "from": current, "to": role},
        )
    return view
