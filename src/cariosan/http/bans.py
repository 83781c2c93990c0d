"""Bans (issue 14, point 2): `POST /v1/bans`, `GET /v1/bans`, `DELETE /v1/bans/{user_id}`.

Here the body's `user_id` is the user banned, so the backend names the moderator it acts as in
the query (`?user_id=`), never in the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.domain import bans
from cariosan.domain.auth import Caller
from cariosan.domain.bans import BanView
from cariosan.errors import ValidationFailed
from cariosan.http.auth import _identify, bearer_credential
from cariosan.services import Services


class BanIn(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    channel_id: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    shadow: bool = False


class BanPage(msgspec.Struct):
    bans: list[BanView]
    next_cursor: str | None


async def provide_moderator(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Caller:
    """The caller, acting as the query's `user_id` only (the body's names the banned user)."""
    # A user token naming another user is refused (403) by authentication, as everywhere.
    act_as = request.query_params.get("user_id")
    return await _identify(request, services, bearer_credential(request), act_as)


@post(
    "/v1/bans",
    status_code=201,
    tags=["moderation"],
    dependencies={"moderator": Provide(provide_moderator)},
)
async def create_ban(
    data: JSONBody[BanIn],
    moderator: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> BanView:
    """Ban a user from the workspace (no `channel_id`: workspace moderators) or from a channel
    (its moderators too); `shadow` hides what the user sends from everyone else. The backend
    acting as a moderator names it with `?user_id=`."""
    if data.expires_at is not None and data.expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must be an RFC 3339 time with a time zone")
    return await bans.ban_user(
        services.db,
        services.hub,
        moderator,
        user_id=data.user_id,
        channel_id=data.channel_id,
        reason=data.reason,
        expires_at=data.expires_at,
        shadow=data.shadow,
    )


@get("/v1/bans", tags=["moderation"])
async def list_bans(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    channel_id: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> BanPage:
    """Active bans, newest first: all of the workspace, or one channel's (`channel_id`)."""
    found, next_cursor = await bans.list_bans(
        services.db, caller, channel_id=channel_id, limit=limit, cursor=cursor
    )
    return BanPage(bans=found, next_cursor=next_cursor)


@delete("/v1/bans/{user_id:str}", status_code=204, tags=["moderation"])
async def delete_ban(
    user_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    channel_id: FromQuery[str | None] = None,
) -> None:
    """Lift the user's workspace ban, or its ban of `channel_id`."""
    await bans.unban_user(services.db, caller, user_id=user_id, channel_id=channel_id)


ROUTES = [create_ban, list_bans, delete_ban]
