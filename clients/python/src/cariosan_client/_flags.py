"""The flags review queue (issue 14, point 4), shared by `ChatClient` (a workspace moderator or
admin) and `ServerClient` (the backend), as `_bans` is for bans."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from cariosan_client._bans import Request
from cariosan_client._http import decode, segment
from cariosan_client.models import Flag, FlagPage

Status = Literal["open", "resolved"]
Action = Literal["dismiss", "delete_message", "ban_user"]


async def list_flags(
    request: Request, status: Status | None, limit: int | None, cursor: str | None
) -> FlagPage:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return decode(await request("GET", "/v1/moderation/flags", params=params), FlagPage)


async def iter_flags(
    request: Request, status: Status | None, page_size: int | None
) -> AsyncIterator[Flag]:
    cursor: str | None = None
    while True:
        page = await list_flags(request, status, page_size, cursor)
        for flag in page.flags:
            yield flag
        if not page.next_cursor or not page.flags:
            return
        cursor = page.next_cursor


async def resolve_flag(request: Request, flag_id: str, action: Action, reason: str | None) -> Flag:
    path = f"/v1/moderation/flags/{segment(flag_id)}/resolve"
    body = {"action": action, **({"reason": reason} if reason is not None else {})}
    return decode(await request("POST", path, json=body), Flag)
