"""Blocking `ChatClient` and `ServerClient`, for scripts, Django/Flask views and notebooks.

from cariosan_client.sync import ChatClient, ServerClient

with ServerClient() as server:  # CARIOS_API_URL, CARIOS_API_SECRET
    token = server.create_token("alice").token
with ChatClient(server.base_url, token=token) as chat:
    chat.send("general", "hello")
    for channel in chat.iter_channels():
        print(channel.id, channel.unread_count)

Each method is the async client's own, run on a private event loop in a background thread (one
per client; `as_user` clients share their server client's): one implementation of the API,
retries and decoding, whichever style is used. Do not call a sync client from inside its own
`token_provider`. A client may be used from several threads at once.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import httpx

from cariosan_client import chat as aio_chat
from cariosan_client import live as aio_live
from cariosan_client import server as aio_server
from cariosan_client.events import AnyEvent
from cariosan_client.retry import RetryPolicy

__all__ = ["ChatClient", "LiveEvents", "ServerClient"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Portal:
    """An event loop running in a daemon thread; `call` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cariosan-client", daemon=True
        )
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, R]) -> R:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a sync Cariosan client was called from its own event loop")
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """The items of an async iterator, each fetched on the loop."""
        try:
            while True:
                done, item = self.call(_next(items))
                if done:
                    return
                yield cast(T, item)  # not done: an item
        finally:
            # Left early: let the async generator run its own cleanup (not from the loop's own
            # thread, where a garbage-collected iterator may be finalized, which would deadlock).
            close = getattr(items, "aclose", None)
            on_loop = threading.current_thread() is self._thread
            if close is not None and not on_loop and not self._loop.is_closed():
                self.call(close())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _next(items: AsyncIterator[T]) -> tuple[bool, T | None]:
    # A tuple rather than StopAsyncIteration, which should not cross a Future.
    try:
        return False, await anext(items)
    except StopAsyncIteration:
        return True, None


class _Facade:
    _portal: _Portal
    _async: Any


def _blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_Facade, P], R]:
    """The async client's `method`, as a blocking method of the facade."""

    @functools.wraps(method)
    def call(self: _Facade, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._portal.call(method(self._async, *args, **kwargs))

    return call


def _blocking_iter(
    method: Callable[Concatenate[Any, P], AsyncIterator[R]],
) -> Callable[Concatenate[_Facade, P], Iterator[R]]:
    """The async client's `async for` iterator `method`, as a blocking `for` iterator."""

    @functools.wraps(method)
    def call(self: _Facade, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._portal.iterate(method(self._async, *args, **kwargs))

    return call


class LiveEvents:
    """`ChatClient.connect()`'s live events, as a blocking iterator; `close()` when done (or use
    `with`). Each `next()` waits for the next event, reconnecting and resuming by itself."""

    def __init__(self, portal: _Portal, live: aio_live.LiveEvents) -> None:
        self._portal = portal
        self._live = live

    @property
    def last_seq(self) -> int | None:
        return self._live.last_seq

    @property
    def reconnects(self) -> int:
        return self._live.reconnects

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> AnyEvent:
        done, event = self._portal.call(_next(self._live))
        if done or event is None:
            raise StopIteration
        return event

    def send(self, frame: dict[str, Any]) -> None:
        """Send a client frame (`typing.start`/`typing.stop`); dropped while reconnecting."""
        self._portal.call(self._live.send(frame))

    def close(self) -> None:
        self._portal.call(self._live.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ChatClient(_Facade):
    """The client API as one user, blocking; see `cariosan_client.ChatClient` for each method.

    `token_provider` is a plain function returning a fresh JWT (it runs in a worker thread).
    """

    _async: aio_chat.ChatClient

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: Callable[[], str] | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        provider = None
        if token_provider is not None:
            blocking_provider = token_provider

            async def provider() -> str:
                return await asyncio.to_thread(blocking_provider)

        client = aio_chat.ChatClient(
            base_url,
            token,
            token_provider=provider,
            timeout=timeout,
            transport=transport,
            retry=retry,
        )
        self._portal = _Portal()
        self._async = client
        self._owns_portal = True

    @classmethod
    def _sharing(cls, portal: _Portal, client: aio_chat.ChatClient) -> ChatClient:
        made = cls.__new__(cls)
        made._portal = portal
        made._async = client
        made._owns_portal = False
        return made

    @property
    def user_id(self) -> str | None:
        """The user this client acts as when made by `ServerClient.as_user`, else None."""
        return self._async.user_id

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the client's event loop thread."""
        if self._owns_portal:
            self._portal.call(self._async.aclose())
            self._portal.close()

    def connect(self, after_seq: int | None = None) -> LiveEvents:
        """Live events over the WebSocket, as a blocking iterator (see the async `connect`)."""
        return LiveEvents(self._portal, self._async.connect(after_seq))

    me = _blocking(aio_chat.ChatClient.me)
    create_channel = _blocking(aio_chat.ChatClient.create_channel)
    list_channels = _blocking(aio_chat.ChatClient.list_channels)
    iter_channels = _blocking_iter(aio_chat.ChatClient.iter_channels)
    get_channel = _blocking(aio_chat.ChatClient.get_channel)
    update_channel = _blocking(aio_chat.ChatClient.update_channel)
    delete_channel = _blocking(aio_chat.ChatClient.delete_channel)
    add_members = _blocking(aio_chat.ChatClient.add_members)
    remove_member = _blocking(aio_chat.ChatClient.remove_member)
    set_member_role = _blocking(aio_chat.ChatClient.set_member_role)
    list_messages = _blocking(aio_chat.ChatClient.list_messages)
    iter_messages = _blocking_iter(aio_chat.ChatClient.iter_messages)
    send = _blocking(aio_chat.ChatClient.send)
    edit_message = _blocking(aio_chat.ChatClient.edit_message)
    delete_message = _blocking(aio_chat.ChatClient.delete_message)
    replies = _blocking(aio_chat.ChatClient.replies)
    iter_replies = _blocking_iter(aio_chat.ChatClient.iter_replies)
    add_reaction = _blocking(aio_chat.ChatClient.add_reaction)
    remove_reaction = _blocking(aio_chat.ChatClient.remove_reaction)
    # Pins and slow mode (issue 14 point 5).
    pin_message = _blocking(aio_chat.ChatClient.pin_message)
    unpin_message = _blocking(aio_chat.ChatClient.unpin_message)
    list_pins = _blocking(aio_chat.ChatClient.list_pins)
    mark_read = _blocking(aio_chat.ChatClient.mark_read)
    typing = _blocking(aio_chat.ChatClient.typing)
    create_upload = _blocking(aio_chat.ChatClient.create_upload)
    upload = _blocking(aio_chat.ChatClient.upload)
    get_attachment = _blocking(aio_chat.ChatClient.get_attachment)
    search = _blocking(aio_chat.ChatClient.search)
    events = _blocking(aio_chat.ChatClient.events)
    iter_events = _blocking_iter(aio_chat.ChatClient.iter_events)
    # Bans (issue 14, point 2).
    ban_user = _blocking(aio_chat.ChatClient.ban_user)
    unban_user = _blocking(aio_chat.ChatClient.unban_user)
    list_bans = _blocking(aio_chat.ChatClient.list_bans)
    iter_bans = _blocking_iter(aio_chat.ChatClient.iter_bans)
    # Flags and the review queue (issue 14 point 4).
    flag_message = _blocking(aio_chat.ChatClient.flag_message)
    flag_user = _blocking(aio_chat.ChatClient.flag_user)
    list_flags = _blocking(aio_chat.ChatClient.list_flags)
    iter_flags = _blocking_iter(aio_chat.ChatClient.iter_flags)
    resolve_flag = _blocking(aio_chat.ChatClient.resolve_flag)
    # Mutes and blocks (issue 14.3).
    mute_channel = _blocking(aio_chat.ChatClient.mute_channel)
    unmute_channel = _blocking(aio_chat.ChatClient.unmute_channel)
    mute_user = _blocking(aio_chat.ChatClient.mute_user)
    unmute_user = _blocking(aio_chat.ChatClient.unmute_user)
    block_user = _blocking(aio_chat.ChatClient.block_user)
    unblock_user = _blocking(aio_chat.ChatClient.unblock_user)
    list_blocks = _blocking(aio_chat.ChatClient.list_blocks)
    # The user directory (issue 14, point 6).
    list_users = _blocking(aio_chat.ChatClient.list_users)
    search_users = _blocking(aio_chat.ChatClient.search_users)
    iter_users = _blocking_iter(aio_chat.ChatClient.iter_users)


class ServerClient(_Facade):
    """The server-side API, blocking; see `cariosan_client.ServerClient` for each method."""

    _async: aio_server.ServerClient

    def __init__(
        self,
        base_url: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        client = aio_server.ServerClient(
            base_url, api_secret, timeout=timeout, transport=transport, retry=retry
        )
        self._portal = _Portal()
        self._async = client

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the event loop thread (shared by `as_user` clients)."""
        self._portal.call(self._async.aclose())
        self._portal.close()

    def as_user(self, user_id: str) -> ChatClient:
        """A blocking `ChatClient` acting as `user_id`, sharing this client's connection."""
        return ChatClient._sharing(self._portal, self._async.as_user(user_id))

    upsert_user = _blocking(aio_server.ServerClient.upsert_user)
    get_user = _blocking(aio_server.ServerClient.get_user)
    delete_user = _blocking(aio_server.ServerClient.delete_user)
    revoke_tokens = _blocking(aio_server.ServerClient.revoke_tokens)
    create_token = _blocking(aio_server.ServerClient.create_token)
    create_webhook = _blocking(aio_server.ServerClient.create_webhook)
    list_webhooks = _blocking(aio_server.ServerClient.list_webhooks)
    delete_webhook = _blocking(aio_server.ServerClient.delete_webhook)
    list_deliveries = _blocking(aio_server.ServerClient.list_deliveries)
    iter_deliveries = _blocking_iter(aio_server.ServerClient.iter_deliveries)
    replay_delivery = _blocking(aio_server.ServerClient.replay_delivery)
    list_audit = _blocking(aio_server.ServerClient.list_audit)
    iter_audit = _blocking_iter(aio_server.ServerClient.iter_audit)
    # Bans (issue 14, point 2).
    ban_user = _blocking(aio_server.ServerClient.ban_user)
    unban_user = _blocking(aio_server.ServerClient.unban_user)
    list_bans = _blocking(aio_server.ServerClient.list_bans)
    iter_bans = _blocking_iter(aio_server.ServerClient.iter_bans)
    # Flags and the review queue (issue 14 point 4).
    list_flags = _blocking(aio_server.ServerClient.list_flags)
    iter_flags = _blocking_iter(aio_server.ServerClient.iter_flags)
    resolve_flag = _blocking(aio_server.ServerClient.resolve_flag)
    # Privacy and the user directory (issue 14, points 6 and 7).
    list_users = _blocking(aio_server.ServerClient.list_users)
    search_users = _blocking(aio_server.ServerClient.search_users)
    iter_users = _blocking_iter(aio_server.ServerClient.iter_users)
    export_user = _blocking(aio_server.ServerClient.export_user)
