"""Flags and the review queue: report a message or a user, list and resolve reports."""

from __future__ import annotations

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.domain import flags
from cariosan.domain.auth import Caller
from cariosan.domain.flags import FlagView
from cariosan.services import Services


class FlagIn(msgspec.Struct):
    reason: str | None = None
    user_id: str | None = None  # the backend acting as a user (http/auth.py)


class ResolveIn(msgspec.Struct):
    action: str
    reason: str | None = None
    user_id: str | None = None


class FlagPage(msgspec.Struct):
    flags: list[FlagView]
    next_cursor: str | None


_AGAIN = {
    200: ResponseSpec(
        data_container=FlagView,
        description="The caller's open flag of it already exists: that flag, not a second one",
    )
}


@post("/v1/messages/{message_id:str}/flag", status_code=201, tags=["moderation"], responses=_AGAIN)
async def flag_message(
    message_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[FlagIn | None] = None,
) -> Response[FlagView]:
    """Report a message to the workspace's moderators (members of its channel)."""
    reason = None if data is None else data.reason
    view, created = await flags.flag_message(services.db, caller, message_id, reason)
    return Response(view, status_code=201 if created else 200)


@post("/v1/users/{user_id:str}/flag", status_code=201, tags=["moderation"], responses=_AGAIN)
async def flag_user(
    user_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    data: JSONBody[FlagIn | None] = None,
) -> Response[FlagView]:
    """Report a user of the workspace to its moderators."""
    reason = None if data is None else data.reason
    view, created = await flags.flag_user(services.db, caller, user_id, reason)
    return Response(view, status_code=201 if created else 200)


@get("/v1/moderation/flags", tags=["moderation"])
async def list_flags(
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    status: FromQuery[str] = flags.OPEN,
    limit: FromQuery[int] = flags.DEFAULT_PAGE,
    cursor: FromQuery[str | None] = None,
) -> FlagPage:
    """The review queue (workspace moderators and admins, the backend), newest first; each
    message flag with the message as it is now and a few messages around it (`context`)."""
    found, next_cursor = await flags.list_flags(
        services.db, caller, status=status, limit=limit, cursor=cursor
    )
    return FlagPage(flags=found, next_cursor=next_cursor)


@post("/v1/moderation/flags/{flag_id:str}/resolve", status_code=200, tags=["moderation"])
async def resolve_flag(
    flag_id: FromPath[str],
    data: JSONBody[ResolveIn],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> FlagView:
    """Close a flag: `dismiss`, `delete_message` (soft, as a moderator) or `ban_user`."""
    return await flags.resolve_flag(
        services.db, services.hub, caller, flag_id, data.action, data.reason
    )


ROUTES = [flag_message, flag_user, list_flags, resolve_flag]
