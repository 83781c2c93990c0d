"""`ChatClient`: the client endpoints of API.md, as one end user (or the backend acting as one).

async with ChatClient("https://chat.example.com", token=jwt) as chat:
    channel = await chat.create_channel("dm", ["alice", "bob"])
    await chat.send(channel.id, "hello")
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from cariosan_client import _bans, _flags
from cariosan_client._http import Connection, Params, decode, segment
from cariosan_client.errors import Unauthorized
from cariosan_client.events import AnyEvent, EventPage, RawEventPage
from cariosan_client.ids import new_message_id
from cariosan_client.live import LiveEvents
from cariosan_client.models import (
    Ban,
    BanPage,
    BlockPage,
    Channel,
    ChannelPage,
    Download,
    Flag,
    FlagPage,
    Me,
    Member,
    Message,
    MessageList,
    MessagePage,
    UnreadCount,
    Upload,
    User,
    UserPage,
)
from cariosan_client.retry import RetryPolicy

__all__ = ["ChatClient", "TokenProvider"]

TokenProvider = Callable[[], Awaitable[str]]

# Fetches a page of messages before or after a message id (one of them None).
PageFetch = Callable[[str | None, str | None], Awaitable[MessagePage]]


async def _walk(fetch: PageFetch, before: str | None, after: str | None) -> AsyncIterator[Message]:
    """Every message from a cursor on: forward, oldest first, from `after`; else backward, newest
    first, from `before` (or from the newest)."""
    if before is not None and after is not None:
        raise ValueError("give before= or after=, not both")
    while True:
        page = await fetch(before, after)
        yield_order = page.messages if after is not None else reversed(page.messages)
        for message in yield_order:
            yield message
        if not page.has_more or not page.messages:
            return
        if after is not None:
            after = page.messages[-1].id
        else:
            before = page.messages[0].id


def _read(path: os.PathLike[str]) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _expiry(expires_at: datetime | None) -> dict[str, Any]:
    if expires_at is None:
        return {}
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    return {"expires_at": expires_at.isoformat()}


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body with only the fields that were given."""
    return {key: value for key, value in fields.items() if value is not None}


class ChatClient:
    """The client API as one user, authenticated by a user JWT.

    Give a `token`, a `token_provider` (an async function returning a fresh JWT), or both. Without
    a token the provider is called before the first request; on `401 UNAUTHORIZED` it is called
    once more and the request retried once. Without a provider a 401 raises `Unauthorized`.
    Rate-limited and failed requests are retried as `retry` says (default: `RetryPolicy()`).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("ChatClient needs a token or a token_provider")
        self._setup(
            Connection(base_url, timeout=timeout, transport=transport, retry=retry),
            owns_connection=True,
            token=token,
            token_provider=token_provider,
            acting_as=None,
        )

    @classmethod
    def _acting_as(cls, connection: Connection, api_secret: str, user_id: str) -> ChatClient:
        """A client on a `ServerClient`'s connection, sending `?user_id=` with every request."""
        client = cls.__new__(cls)
        client._setup(
            connection,
            owns_connection=False,
            token=api_secret,
            token_provider=None,
            acting_as=user_id,
        )
        return client

    def _setup(
        self,
        connection: Connection,
        *,
        owns_connection: bool,
        token: str | None,
        token_provider: TokenProvider | None,
        acting_as: str | None,
    ) -> None:
        self._connection = connection
        self._owns_connection = owns_connection
        self._token = token
        self._token_provider = token_provider
        self._token_lock = asyncio.Lock()
        self._acting_as_user = acting_as

    @property
    def user_id(self) -> str | None:
        """The user this client acts as when made by `ServerClient.as_user`, else None."""
        return self._acting_as_user

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
        """Close the connection pool (a client from `as_user` leaves the shared one open)."""
        if self._owns_connection:
            await self._connection.aclose()

    # -- plumbing --------------------------------------------------------------------------------

    async def _current_token(self) -> str:
        if self._token is None:
            async with self._token_lock:
                if self._token is None:
                    assert self._token_provider is not None
                    self._token = await self._token_provider()
        return self._token

    async def _fresh_token(self, rejected: str) -> str:
        """A new token from the provider, unless a concurrent request already replaced it."""
        assert self._token_provider is not None
        async with self._token_lock:
            if self._token == rejected:
                self._token = await self._token_provider()
            assert self._token is not None
            return self._token

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        if self._acting_as_user is not None:
            params = {**(params or {}), "user_id": self._acting_as_user}
        token = await self._current_token()
        try:
            return await self._connection.request(
                method, path, credential=token, params=params, json=json, idempotent=idempotent
            )
        except Unauthorized:
            if self._token_provider is None:
                raise
        token = await self._fresh_token(token)
        return await self._connection.request(
            method, path, credential=token, params=params, json=json, idempotent=idempotent
        )

    # -- me --------------------------------------------------------------------------------------

    async def me(self) -> Me:
        """The current user and their unread total across channels."""
        return decode(await self._request("GET", "/v1/me"), Me)

    # -- channels --------------------------------------------------------------------------------

    async def create_channel(
        self,
        type: Literal["dm", "group", "public"],
        members: Sequence[str],
        *,
        id: str | None = None,
        name: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Channel:
        """Create a channel (a dm between the same two users is returned again, not duplicated)."""
        body = _body(id=id, type=type, name=name, members=list(members), data=data)
        return decode(await self._request("POST", "/v1/channels", json=body), Channel)

    async def list_channels(
        self, limit: int | None = None, cursor: str | None = None, public: bool | None = None
    ) -> ChannelPage:
        """The caller's channels, newest activity first (`public=True` adds public channels)."""
        params = {"limit": limit, "cursor": cursor, "public": public}
        return decode(await self._request("GET", "/v1/channels", params=params), ChannelPage)

    async def iter_channels(
        self, *, page_size: int | None = None, public: bool | None = None
    ) -> AsyncIterator[Channel]:
        """Every channel of the caller, newest activity first, fetched a page at a time:
        `async for channel in chat.iter_channels(): ...`"""
        cursor: str | None = None
        while True:
            page = await self.list_channels(limit=page_size, cursor=cursor, public=public)
            for channel in page.channels:
                yield channel
            if not page.next_cursor or not page.channels:
                return
            cursor = page.next_cursor

    async def get_channel(self, id: str) -> Channel:
        """One channel, with its `members`."""
        return decode(await self._request("GET", f"/v1/channels/{segment(id)}"), Channel)

    async def update_channel(
        self,
        id: str,
        *,
        name: str | None = None,
        data: dict[str, Any] | None = None,
        cooldown_seconds: int | None = None,
        frozen: bool | None = None,
    ) -> Channel:
        """Change a channel's name, data, slow mode (`cooldown_seconds`, 0: off) and/or freeze
        (fields left None are not sent). Slow mode and freeze: the channel's moderators only."""
        body = _body(name=name, data=data, cooldown_seconds=cooldown_seconds, frozen=frozen)
        response = await self._request("PATCH", f"/v1/channels/{segment(id)}", json=body)
        return decode(response, Channel)

    async def delete_channel(self, id: str) -> None:
        """Soft-delete a channel (its history is kept for export)."""
        await self._request("DELETE", f"/v1/channels/{segment(id)}")

    async def add_members(self, channel_id: str, user_ids: Sequence[str]) -> Channel:
        path = f"/v1/channels/{segment(channel_id)}/members"
        response = await self._request("POST", path, json={"user_ids": list(user_ids)})
        return decode(response, Channel)

    async def set_member_role(
        self, channel_id: str, user_id: str, role: Literal["owner", "moderator", "member"]
    ) -> Member:
        """Change a member's role (moderators of the channel; see docs/moderation.md)."""
        path = f"/v1/channels/{segment(channel_id)}/members/{segment(user_id)}"
        return decode(await self._request("PATCH", path, json={"role": role}), Member)

    async def remove_member(self, channel_id: str, user_id: str) -> None:
        path = f"/v1/channels/{segment(channel_id)}/members/{segment(user_id)}"
        await self._request("DELETE", path)

    # -- messages --------------------------------------------------------------------------------

    async def list_messages(
        self,
        channel_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> MessagePage:
        """A page of a channel's messages, oldest first, before or after a message id."""
        params = {"limit": limit, "before": before, "after": after}
        path = f"/v1/channels/{segment(channel_id)}/messages"
        return decode(await self._request("GET", path, params=params), MessagePage)

    def iter_messages(
        self,
        channel_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Message]:
        """Every top-level message of a channel, a page at a time: with `after`, those after that
        message, oldest first, up to the newest; otherwise walking back in time from `before`
        (or from the newest message), newest first."""

        def fetch(before: str | None, after: str | None) -> Awaitable[MessagePage]:
            return self.list_messages(channel_id, limit=page_size, before=before, after=after)

        return _walk(fetch, before, after)

    async def send(
        self,
        channel_id: str,
        text: str,
        *,
        id: str | None = None,
        parent_id: str | None = None,
        attachment_ids: Sequence[str] | None = None,
        mentions: Sequence[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> Message:
        """Post a message (a reply when `parent_id` is set).

        The message id makes sending idempotent: without `id`, `send` makes a time-ordered one
        (UUIDv7) itself. After a network error or `503 UNAVAILABLE` it is sent again with the same
        id (as the client's `RetryPolicy` allows), so the server returns the original instead of
        storing a duplicate.
        """
        body = _body(
            id=id or new_message_id(),
            text=text,
            parent_id=parent_id,
            attachment_ids=None if attachment_ids is None else list(attachment_ids),
            mentions=None if mentions is None else list(mentions),
            data=data,
        )
        path = f"/v1/channels/{segment(channel_id)}/messages"
        response = await self._request("POST", path, json=body, idempotent=True)
        return decode(response, Message)

    async def edit_message(self, id: str, text: str) -> Message:
        """Replace a message's text (author or admin); sets `edited_at`."""
        response = await self._request("PATCH", f"/v1/messages/{segment(id)}", json={"text": text})
        return decode(response, Message)

    async def delete_message(self, id: str) -> None:
        """Soft-delete a message: `deleted_at` set, text and attachments gone from reads."""
        await self._request("DELETE", f"/v1/messages/{segment(id)}")

    async def replies(
        self,
        message_id: str,
        limit: int | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> MessagePage:
        """A page of a message's thread replies, oldest first: the latest `limit`, or those just
        before or after a reply id (`has_more`: more lie in that direction)."""
        path = f"/v1/messages/{segment(message_id)}/replies"
        params = {"limit": limit, "before": before, "after": after}
        return decode(await self._request("GET", path, params=params), MessagePage)

    def iter_replies(
        self,
        message_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Message]:
        """Every reply of a thread, a page at a time, in the order of `iter_messages`: forward
        from `after`, else backward from `before` (or from the newest reply)."""

        def fetch(before: str | None, after: str | None) -> Awaitable[MessagePage]:
            return self.replies(message_id, limit=page_size, before=before, after=after)

        return _walk(fetch, before, after)

    async def add_reaction(self, message_id: str, type: str) -> Message:
        path = f"/v1/messages/{segment(message_id)}/reactions/{segment(type)}"
        return decode(await self._request("PUT", path), Message)

    async def remove_reaction(self, message_id: str, type: str) -> Message:
        path = f"/v1/messages/{segment(message_id)}/reactions/{segment(type)}"
        return decode(await self._request("DELETE", path), Message)

    # -- pins ------------------------------------------------------------------------------------

    async def pin_message(self, message_id: str) -> Message:
        """Pin a top-level message (the channel's moderators); the message with `pinned_at`."""
        path = f"/v1/messages/{segment(message_id)}/pin"
        return decode(await self._request("PUT", path), Message)

    async def unpin_message(self, message_id: str) -> Message:
        path = f"/v1/messages/{segment(message_id)}/pin"
        return decode(await self._request("DELETE", path), Message)

    async def list_pins(self, channel_id: str) -> list[Message]:
        """The channel's pinned messages, most recently pinned first."""
        path = f"/v1/channels/{segment(channel_id)}/pins"
        return decode(await self._request("GET", path), MessageList).messages

    # -- read state and typing -------------------------------------------------------------------

    async def mark_read(self, channel_id: str, message_id: str | None = None) -> int:
        """Mark the channel read up to `message_id` (default: latest); returns its unread count."""
        path = f"/v1/channels/{segment(channel_id)}/read"
        response = await self._request("POST", path, json=_body(message_id=message_id))
        return decode(response, UnreadCount).unread_count

    async def typing(self, channel_id: str, state: Literal["start", "stop"]) -> None:
        path = f"/v1/channels/{segment(channel_id)}/typing"
        await self._request("POST", path, json={"state": state})

    # -- attachments -----------------------------------------------------------------------------

    async def create_upload(
        self, channel_id: str, filename: str, content_type: str, size: int
    ) -> Upload:
        """Reserve an attachment; PUT its bytes to `upload_url` with `upload_headers`."""
        body = {
            "channel_id": channel_id,
            "filename": filename,
            "content_type": content_type,
            "size": size,
        }
        return decode(await self._request("POST", "/v1/attachments", json=body), Upload)

    async def upload(
        self,
        channel_id: str,
        content: bytes | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Upload:
        """Upload a file in one call: reserve the attachment, then PUT the bytes to the presigned
        URL. Pass the result's `attachment_id` to `send(attachment_ids=[...])`.

        `content` is the bytes or a file's path; `filename` defaults to the path's name, and
        `content_type` to what the filename suggests (else `application/octet-stream`).
        """
        if isinstance(content, bytes):
            data = content
            if filename is None:
                raise ValueError("upload() of bytes needs a filename")
        else:
            data = await asyncio.to_thread(_read, content)
            filename = filename or os.path.basename(os.fspath(content))
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        upload = await self.create_upload(channel_id, filename, content_type, len(data))
        if upload.upload_method.upper() != "PUT":
            raise ValueError(f"the server asks for an upload by {upload.upload_method}, not PUT")
        await self._connection.request(
            "PUT",
            upload.upload_url,
            credential=None,
            content=data,
            headers={"Content-Type": content_type, **upload.upload_headers},
        )
        return upload

    async def get_attachment(self, id: str) -> Download:
        """A presigned download URL (valid 15 minutes) for an attachment."""
        return decode(await self._request("GET", f"/v1/attachments/{segment(id)}"), Download)

    # -- mutes and blocks (private to the caller) ------------------------------------------------

    async def mute_channel(self, channel_id: str, expires_at: datetime | None = None) -> None:
        """Mute a channel the caller belongs to, until `expires_at` (timezone-aware) or until
        `unmute_channel`: it no longer counts in `me().total_unread` and is `muted` in
        `list_channels`. Muting again replaces the expiry."""
        path = f"/v1/channels/{segment(channel_id)}/mute"
        await self._request("PUT", path, json=_expiry(expires_at))

    async def unmute_channel(self, channel_id: str) -> None:
        await self._request("DELETE", f"/v1/channels/{segment(channel_id)}/mute")

    async def mute_user(self, user_id: str, expires_at: datetime | None = None) -> None:
        """Mute another user, until `expires_at` or until `unmute_user`: its messages come with
        `muted=True` for the caller (for nobody else)."""
        path = f"/v1/users/{segment(user_id)}/mute"
        await self._request("PUT", path, json=_expiry(expires_at))

    async def unmute_user(self, user_id: str) -> None:
        await self._request("DELETE", f"/v1/users/{segment(user_id)}/mute")

    async def block_user(self, user_id: str) -> None:
        """Block another user: no new dm between the two (`Forbidden`), and its mentions of the
        caller are dropped from its messages."""
        await self._request("PUT", f"/v1/users/{segment(user_id)}/block")

    async def unblock_user(self, user_id: str) -> None:
        await self._request("DELETE", f"/v1/users/{segment(user_id)}/block")

    async def list_blocks(self, limit: int | None = None, cursor: str | None = None) -> BlockPage:
        """The users the caller blocks, newest block first."""
        params = {"limit": limit, "cursor": cursor}
        response = await self._request("GET", "/v1/users/me/blocks", params=params)
        return decode(response, BlockPage)

    # -- search and catch-up ---------------------------------------------------------------------

    async def search(
        self, q: str, channel_id: str | None = None, limit: int | None = None
    ) -> list[Message]:
        """Messages matching `q` in the caller's channels (or in one channel)."""
        params = {"q": q, "channel_id": channel_id, "limit": limit}
        return decode(await self._request("GET", "/v1/search", params=params), MessageList).messages

    def connect(self, after_seq: int | None = None) -> LiveEvents:
        """Live events over the WebSocket, as an async iterator that reconnects with backoff and
        resumes from the last `seq` by itself (from `after_seq` when given, else from now). On
        close code 4001 it gets a new token from `token_provider` (without one it raises
        `Unauthorized`)."""
        if self._acting_as_user is not None:
            raise ValueError("the WebSocket needs a user token, not the API secret")
        url = str(self._connection.base_url).rstrip("/")
        url = "ws" + url.removeprefix("http") + "/v1/ws"
        refresh = self._fresh_token if self._token_provider is not None else None
        return LiveEvents(url, self._current_token, refresh, after_seq=after_seq)

    async def events(self, after_seq: int | None = None, limit: int | None = None) -> EventPage:
        """Persisted events after `after_seq`, in order: the WebSocket's stream, for catch-up.
        Page on with `after_seq=page.latest_seq` while `page.has_more`. Raises `EventsExpired`
        when `after_seq` is older than the kept log: refetch channels and history, then go on
        from the error's `latest_seq`."""
        params = {"after_seq": after_seq, "limit": limit}
        response = await self._request("GET", "/v1/events", params=params)
        return decode(response, RawEventPage).decoded()

    async def iter_events(
        self, after_seq: int = 0, *, page_size: int | None = None
    ) -> AsyncIterator[AnyEvent]:
        """Every persisted event after `after_seq` as of now, oldest first, a page at a time (it
        ends when caught up; `connect()` goes on live). Raises `EventsExpired` like `events`."""
        while True:
            page = await self.events(after_seq=after_seq, limit=page_size)
            for event in page.events:
                yield event
            if not page.has_more or page.latest_seq <= after_seq:
                return
            after_seq = page.latest_seq

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

    async def flag_message(self, message_id: str, reason: str | None = None) -> Flag:
        """Report a message of one of the caller's channels to the workspace's moderators (the
        caller's open flag of it again, if there is one)."""
        path = f"/v1/messages/{segment(message_id)}/flag"
        return decode(await self._request("POST", path, json=_body(reason=reason)), Flag)

    async def flag_user(self, user_id: str, reason: str | None = None) -> Flag:
        """Report a user of the workspace to its moderators."""
        path = f"/v1/users/{segment(user_id)}/flag"
        return decode(await self._request("POST", path, json=_body(reason=reason)), Flag)

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
        """A page of the user directory, by id: the caller and the users it shares a channel
        with. `q` keeps users whose id or name starts with it (ignoring case)."""
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
