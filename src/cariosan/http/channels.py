"""Client endpoints for channels, their members, read state and typing, and `GET /v1/me`."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.domain import channels, reads
from cariosan.domain import typing as live_typing
from cariosan.domain.auth import Caller
from cariosan.domain.views import ChannelView, MemberView, UserView
from cariosan.http.users import user_out
from cariosan.services import Services

# Every body may name `user_id`: the backend (API secret) acts as that user (see http/auth.py).


class ChannelIn(msgspec.Struct):
    type: Literal["dm", "group", "public"]
    id: str | None = None
    name: str | None = None
    members: list[str] = msgspec.field(default_factory=list)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    user_id: str | None = None


class ChannelPatch(msgspec.Struct):
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    user_id: str | None = None
    # Slow mode in seconds (0 or null: off) and freeze (docs/moderation.md).
    cooldown_seconds: int | msgspec.UnsetType | None = msgspec.UNSET
    frozen: bool | msgspec.UnsetType | None = msgspec.UNSET


class ChannelPage(msgspec.Struct):
    channels: list[ChannelView]
    next_cursor: str | None


class MembersIn(msgspec.Struct):
    user_ids: list[str]
    user_id: str | None = None


class MemberRoleIn(msgspec.Struct):
    role: Literal["owner", "moderator", "member"]
    user_id: str | None = None


class ReadIn(msgspec.Struct):
    message_id: str | None = None
    user_id: str | None = None


class ReadOut(msgspec.Struct):
    unread_count: int


class TypingIn(msgspec.Struct):
    state: Literal["start", "stop"]
    user_id: str | None = None


class MeOut(msgspec.Struct):
    user: UserView
    total_unread: int


@post(
    "/v1/channels",
    status_code=201,
    tags=["channels"],
    responses={200: ResponseSpec(ChannelView, description="The existing dm of the same pair")},
)
async def create_channel(
    data: JSONBody[ChannelIn], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> Response[ChannelView]:
    """Create a channel (201); the dm of an existing pair is returned again with 200."""
    view, created = await channels.create_channel(
        services.db,
        caller,
        channel_id=data.id,
        type=data.type,
        name=data.name,
        members=data.members,
        data=data.data,
        limits=services.settings.limits,
    )
    return Response(view, status_code=201 if created else 200)


@get("/v1/channels", tags=["channels"])
async def list_channels(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    limit: FromQuery[int] = channels.DEFAULT_PAGE,
    cursor: FromQuery[str | None] = None,
    public: FromQuery[bool] = False,
) -> ChannelPage:
    """The caller's channels (and public ones with `public=true`), newest activity first."""
    page, next_cursor = await channels.list_channels(
        services.db, caller, limit=limit, cursor=cursor, include_public=public
    )
    return ChannelPage(channels=page, next_cursor=next_cursor)


@get("/v1/channels/{channel_id:str}", tags=["channels"])
async def get_channel(
    channel_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> ChannelView:
    return await channels.get_channel(services.db, caller, channel_id)


@patch("/v1/channels/{channel_id:str}", tags=["channels"])
async def update_channel(
    channel_id: FromPath[str],
    data: JSONBody[ChannelPatch],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> ChannelView:
    """Change the name, data, slow mode (`cooldown_seconds`) and/or freeze (`frozen`) (the
    channel's moderators, docs/moderation.md)."""
    names = ("name", "data", "cooldown_seconds", "frozen")
    fields = frozenset(f for f in names if getattr(data, f) is not msgspec.UNSET)
    return await channels.update_channel(
        services.db,
        caller,
        channel_id,
        name=None if data.name is msgspec.UNSET else data.name,
        data=None if data.data is msgspec.UNSET else data.data,
        cooldown_seconds=None if data.cooldown_seconds is msgspec.UNSET else data.cooldown_seconds,
        frozen=None if data.frozen is msgspec.UNSET else data.frozen,
        fields_set=fields,
        limits=services.settings.limits,
    )


@delete("/v1/channels/{channel_id:str}", status_code=204, tags=["channels"])
async def delete_channel(
    channel_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    """Soft-delete (the history stays for export)."""
    await channels.delete_channel(services.db, caller, channel_id)


@post("/v1/channels/{channel_id:str}/members", status_code=200, tags=["channels"])
async def add_members(
    channel_id: FromPath[str],
    data: JSONBody[MembersIn],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> ChannelView:
    """Add members (moderators of the channel; anyone may join a public channel)."""
    return await channels.add_members(services.db, caller, channel_id, data.user_ids)


@delete("/v1/channels/{channel_id:str}/members/{user_id:str}", status_code=204, tags=["channels"])
async def remove_member(
    channel_id: FromPath[str],
    user_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> None:
    """Remove a member (moderators of the channel), or leave (the member itself)."""
    await channels.remove_member(services.db, caller, channel_id, user_id)


@patch("/v1/channels/{channel_id:str}/members/{user_id:str}", tags=["channels"])
async def change_member_role(
    channel_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[MemberRoleIn],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> MemberView:
    """Change a member's role (moderators of the channel; see docs/moderation.md)."""
    return await channels.change_member_role(services.db, caller, channel_id, user_id, data.role)


@post("/v1/channels/{channel_id:str}/read", status_code=200, tags=["channels"])
async def mark_read(
    channel_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[ReadIn | None] = None,
) -> ReadOut:
    """Mark the channel read up to `message_id` (default: the latest message)."""
    message_id = None if data is None else data.message_id
    unread = await reads.mark_read(services.db, caller, channel_id, message_id)
    return ReadOut(unread_count=unread)


@post("/v1/channels/{channel_id:str}/typing", status_code=204, tags=["channels"])
async def typing(
    channel_id: FromPath[str],
    data: JSONBody[TypingIn],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> None:
    await live_typing.set_typing(services.db, services.typing, caller, channel_id, data.state)


@get("/v1/me", tags=["users"])
async def get_me(caller: NamedDependency[Caller], services: NamedDependency[Services]) -> MeOut:
    """The calling user and its unread messages over all its channels."""
    user, total = await reads.me(services.db, caller)
    return MeOut(user=user_out(user), total_unread=total)


ROUTES = [
    create_channel,
    list_channels,
    get_channel,
    update_channel,
    delete_channel,
    add_members,
    remove_member,
    change_member_role,
    mark_read,
    typing,
    get_me,
]
