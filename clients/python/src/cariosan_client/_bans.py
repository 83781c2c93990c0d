"""Bans (issue 14, point 2), shared by `ChatClient` (a moderator, or the backend acting as one)
and `ServerClient` (the backend itself)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from cariosan_client._http import Params, decode, segment
from cariosan_client.models import Ban, BanPage

# A client's `_request(method, path, params=..., json=...)`.
Request = Callable[..., Awaitable[httpx.Response]]


def _time(value: datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. datetime.now(UTC) + ...)")
        return value.isoformat()
    return value


async def ban_user(
    request: Request,
    user_id: str,
    *,
    channel_id: str | None,
    reason: str | None,
    expires_at: datetime | str | None,
    shadow: bool,
) -> Ban:
    body: dict[str, Any] = {"user_id": user_id, "shadow": shadow}
    for key, value in {
        "channel_id": channel_id,
        "reason": reason,
        "expires_at": _time(expires_at),
    }.items():
        if value is not None:
            body[key] = value
    return decode(await request("POST", "/v1/bans", json=body), Ban)


async def unban_user(request: Request, user_id: str, channel_id: str | None) -> None:
    params: Params = {"channel_id": channel_id}
    await request("DELETE", f"/v1/bans/{segment(user_id)}", params=params)


async def list_bans(
    request: Request, channel_id: str | None, limit: int | None, cursor: str | None
) -> BanPage:
    params: Params = {"channel_id": channel_id, "limit": limit, "cursor": cursor}
    return decode(await request("GET", "/v1/bans", params=params), BanPage)


async def iter_bans(
    request: Request, channel_id: str | None, page_size: int | None
) -> AsyncIterator[Ban]:
    cursor: str | None = None
    while True:
        page = await list_bans(request, channel_id, page_size, cursor)
        for ban in page.bans:
            yield ban
        if not page.next_cursor or not page.bans:
            return
        cursor = page.next_cursor
