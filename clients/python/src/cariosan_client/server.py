"""`ServerClient`: the server-side endpoints of API.md, for the backend (workspace API secret).

async with ServerClient() as server:  # CARIOS_API_URL, CARIOS_API_SECRET
    await server.upsert_user("alice", name="Alice")
    token = await server.create_token("alice")
    await server.as_user("alice").send("general", "hi from the backend")
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from cariosan_client import _bans, _flags
from cariosan_client._http import Connection, Params, decode, segment
from cariosan_client.chat import ChatClient
from cariosan_client.models import (
    AuditEntry,
    AuditPage,
    Ban,
    BanPage,
    Delivery,
    DeliveryPage,
    Flag,
    FlagPage,
    Token,
    User,
    UserPage,
    Webhook,
    WebhookList,
)
from cariosan_client.retry import RetryPolicy

__all__ = ["ServerClient"]

URL_ENV = "CARIOS_API_URL"
SECRET_ENV = "CARIOS_API_SECRET"


class ServerClient:
    """The server-side API with the workspace API secret; `as_user` reaches the client API.
    Rate-limited and failed requests are retried as `retry` says (default: `RetryPolicy()`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        base_url = base_url or os.environ.get(URL_ENV)
        api_secret = api_secret or os.environ.get(SECRET_ENV)
        if not base_url:
            raise ValueError(f"ServerClient needs base_url= or the {URL_ENV} environment variable")
        if not api_secret:
            raise ValueError(
                f"ServerClient needs api_secret= or the {SECRET_ENV} environment variable"
            )
        self._api_secret = api_secret
        self._connection = Connection(base_url, timeout=timeout, transport=transport, retry=retry)

    @property
    def base_url(self) -> str:
        """The server's URL, for handing on to `ChatClient`s."""
        return str(self._connection.base_url).rstrip("/")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (shared with every `as_user` client)."""
        await self._connection.aclose()

    async def _request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> httpx.Response:
        return await self._connection.request(
            method, path, credential=self._api_secret, params=params, json=json
        )

    def as_user(self, user_id: str) -> ChatClient:
        """A `ChatClient` acting as `user_id` (sent as `?user_id=` on every request), sharing this
        client's connection and secret; closing it leaves this client open."""
        segment(user_id)  # the same check as for a path: a non-empty string
        return ChatClient._acting_as(self._connection, self._api_secret, user_id)

    # -- users -----------------------------------------------------------------------------------

    async def upsert_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        image_url: str | None = None,
        role: Literal["user", "moderator", "admin"] | None = None,
        data: dict[str, Any] | None = None,
    ) -> User:
        """Create the user or update it; fields left None are not sent (and stay unchanged)."""
        body = {
            key: value
            for key, value in {
                "name": name,
                "image_url": image_url,
                "role": role,
                "data": data,
            }.items()
            if value is not None
        }
        return decode(await self._request("PUT", f"/v1/users/{segment(user_id)}", json=body), User)

    async def get_user(self, user_id: str) -> User:
        return decode(await self._request("GET", f"/v1/users/{segment(user_id)}"), User)

    async def delete_user(
        self, user_id: str, mode: Literal["anonymize", "hard"] = "anonymize"
    ) -> None:
        """Delete a user: `anonymize` keeps their messages without identity, `hard` removes all."""
        await self._request("DELETE", f"/v1/users/{segment(user_id)}", params={"mode": mode})

    async def revoke_tokens(self, user_id: str) -> None:
        """Refuse every token of the user issued before now; its open sockets are closed (4001).
        Tokens from `create_token` afterwards work."""
        await self._request("POST", f"/v1/users/{segment(user_id)}/revoke-tokens")

    async def create_token(self, user_id: str, ttl_seconds: int | None = None) -> Token:
        """A user JWT for `ChatClient` (valid `ttl_seconds`, server default 3600)."""
        body = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        path = f"/v1/users/{segment(user_id)}/token"
        return decode(await self._request("POST", path, json=body), Token)

    # -- webhooks --------------------------------------------------------------------------------

    async def create_webhook(self, url: str, events: Sequence[str]) -> Webhook:
        """Register an endpoint for event types (or `["*"]`); keep the returned `secret`, it is
        shown only once."""
        names = [events] if isinstance(events, str) else list(events)
        body = {"url": url, "events": names}
        return decode(await self._request("POST", "/v1/webhooks", json=body), Webhook)

    async def list_webhooks(self) -> list[Webhook]:
        return decode(await self._request("GET", "/v1/webhooks"), WebhookList).webhooks

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._request("DELETE", f"/v1/webhooks/{segment(webhook_id)}")

    async def list_deliveries(
        self,
        webhook_id: str,
        status: Literal["pending", "succeeded", "failed"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """A page of an endpoint's deliveries; pass `next_cursor` back for the next one."""
        path = f"/v1/webhooks/{segment(webhook_id)}/deliveries"
        params = {"status": status, "limit": limit, "cursor": cursor}
        return decode(await self._request("GET", path, params=params), DeliveryPage)

    async def iter_deliveries(
        self,
        webhook_id: str,
        status: Literal["pending", "succeeded", "failed"] | None = None,
        *,
        page_size: int | None = None,
    ) -> AsyncIterator[Delivery]:
        """Every delivery of an endpoint (of one `status`, if given), a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_deliveries(webhook_id, status, limit=page_size, cursor=cursor)
            for delivery in page.deliveries:
                yield delivery
            if not page.next_cursor or not page.deliveries:
                return
            cursor = page.next_cursor

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditPage:
        """A page of the audit log, newest first; pass `next_cursor` back for the next one."""
        params = {"actor": actor, "action": action, "limit": limit, "cursor": cursor}
        return decode(await self._request("GET", "/v1/audit", params=params), AuditPage)

    async def iter_audit(
        self, *, actor: str | None = None, action: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[AuditEntry]:
        """Every audit entry (of one `actor` or `action`, if given), newest first."""
        cursor: str | None = None
        while True:
            page = await self.list_audit(actor=actor, action=action, limit=page_size, cursor=cursor)
            for entry in page.entries:
                yield entry
            if not page.next_cursor or not page.entries:
                return
            cursor = page.next_cursor

    async def replay_delivery(self, webhook_id: str, delivery_id: str) -> None:
        """Queue a delivery to be sent again."""
        path = f"/v1/webhooks/{segment(webhook_id)}/deliveries/{segment(delivery_id)}/replay"
        await self._request("POST", path)

    # -- bans (issue 14, point 2) ----------------------------------------------------------------

    async def ban_user(
        self,
        user_id: str,
        *,
        channel_id: str | None = None,
        reason: str | None = None,
        expires_at: datetime | str | None = None,
        shadow: bool = False,
    ) -> Ban:
        """Ban `user_id` from the workspace, or from `channel_id`, until `expires_at` (an aware
        `datetime` or RFC 3339 text; None: until unbanned). `shadow`: the user may still send,
        and nobody else sees what it sends. Workspace moderators ban workspace-wide; a channel's
        moderators in their channel."""
        return await _bans.ban_user(
            self._request,
            user_id,
            channel_id=channel_id,
            reason=reason,
            expires_at=expires_at,
            shadow=shadow,
        )

    async def unban_user(self, user_id: str, channel_id: str | None = None) -> None:
        """Lift `user_id`'s workspace ban (or its ban of `channel_id`); `NotFound` without one."""
        await _bans.unban_user(self._request, user_id, channel_id)

    async def list_bans(
        self, channel_id: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> BanPage:
        """A page of active bans, newest first (all, or `channel_id`'s); pass `next_cursor` back
        for the next one."""
        return await _bans.list_bans(self._request, channel_id, limit, cursor)

    def iter_bans(
        self, channel_id: str | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[Ban]:
        """Every active ban (all, or `channel_id`'s), a page at a time."""
        return _bans.iter_bans(self._request, channel_id, page_size)

    # -- flags and the review queue (issue 14 point 4) -------------------------------------------

    async def list_flags(
        self,
        status: Literal["open", "resolved"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> FlagPage:
        """A page of the review queue (workspace moderators and admins), newest first, each
        message flag with its message and `context`; pass `next_cursor` back for the next."""
        return await _flags.list_flags(self._request, status, limit, cursor)

    def iter_flags(
        self, status: Literal["open", "resolved"] | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[Flag]:
        """Every flag of `status` (default open), newest first, a page at a time."""
        return _flags.iter_flags(self._request, status, page_size)

    async def resolve_flag(
        self,
        flag_id: str,
        action: Literal["dismiss", "delete_message", "ban_user"],
        reason: str | None = None,
    ) -> Flag:
        """Close an open flag: dismiss it, delete the flagged message, or ban the user."""
        return await _flags.resolve_flag(self._request, flag_id, action, reason)

    # -- the user directory (issue 14, point 6) ----------------------------------------------------

    async def list_users(
        self, q: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> UserPage:
        """A page of the user directory, by id: every active user of the workspace. `q` keeps
        users whose id or name starts with it (ignoring case)."""
        params = {"q": q, "limit": limit, "cursor": cursor}
        return decode(await self._request("GET", "/v1/users", params=params), UserPage)

    async def search_users(self, q: str, limit: int | None = None) -> UserPage:
        """The first page of users whose id or name starts with `q` (ignoring case)."""
        return await self.list_users(q=q, limit=limit)

    async def iter_users(
        self, q: str | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[User]:
        """Every user of the directory (matching `q`), by id, a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_users(q=q, limit=page_size, cursor=cursor)
            for user in page.users:
                yield user
            if not page.next_cursor or not page.users:
                return
            cursor = page.next_cursor

    # -- privacy (issue 14, point 7) ---------------------------------------------------------------

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about the user as one JSON document (`user`, `memberships`,
        `messages`, `reactions`, `read_state`, `attachments` with `download_url`s valid 15
        minutes, `audit`, and sections later releases add). Recorded in the audit log."""
        path = f"/v1/users/{segment(user_id)}/export"
        return decode(await self._request("GET", path), dict[str, Any])
