"""Mutes and blocks (issue 14.3): a user's own choices, for itself. The backend (API secret)
acts as a user by naming `user_id` (in the body of a PUT, in the query of a DELETE)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.domain import mutes
from cariosan.domain.auth import Caller
from cariosan.domain.mutes import Block
from cariosan.services import Services


class MuteIn(msgspec.Struct):
    # Until when (with a time zone); omitted or null: until unmuted.
    expires_at: datetime | None = None
    user_id: str | None = None


class BlockPage(msgspec.Struct):
    blocks: list[Block]
    next_cursor: str | None


@put("/v1/channels/{channel_id:str}/mute", status_code=204, tags=["moderation"])
async def mute_channel(
    channel_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[MuteIn | None] = None,
) -> None:
    """Mute a channel the caller belongs to: it leaves `total_unread` and is `muted` in the
    channel list, until `expires_at` or until unmuted."""
    body = data or MuteIn()
    await mutes.mute_channel(services.db, caller, channel_id, body.expires_at)


@delete("/v1/channels/{channel_id:str}/mute", status_code=204, tags=["moderation"])
async def unmute_channel(
    channel_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    await mutes.unmute_channel(services.db, caller, channel_id)


@put("/v1/users/{user_id:str}/mute", status_code=204, tags=["moderation"])
async def mute_user(
    user_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[MuteIn | None] = None,
) -> None:
    """Mute another user: its messages carry `muted: true` for the caller, until `expires_at`
    or until unmuted."""
    body = data or MuteIn()
    await mutes.mute_user(services.db, services.hub, caller, user_id, body.expires_at)


@delete("/v1/users/{user_id:str}/mute", status_code=204, tags=["moderation"])
async def unmute_user(
    user_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    await mutes.unmute_user(services.db, services.hub, caller, user_id)


@put("/v1/users/{user_id:str}/block", status_code=204, tags=["moderation"])
async def block_user(
    user_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    """Block another user: no new dm between the two, and its mentions of the caller are
    dropped."""
    await mutes.block_user(services.db, caller, user_id)


@delete("/v1/users/{user_id:str}/block", status_code=204, tags=["moderation"])
async def unblock_user(
    user_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    await mutes.unblock_user(services.db, caller, user_id)


@get("/v1/users/me/blocks", tags=["moderation"])
async def list_blocks(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    limit: FromQuery[int] = mutes.DEFAULT_PAGE,
    cursor: FromQuery[str | None] = None,
) -> BlockPage:
    """The users the caller blocks, newest block first."""
    found, next_cursor = await mutes.list_blocks(services.db, caller, limit=limit, cursor=cursor)
    return BlockPage(blocks=found, next_cursor=next_cursor)


ROUTES = [
    mute_channel,
    unmute_channel,
    mute_user,
    unmute_user,
    block_user,
    unblock_user,
    list_blocks,
]
