"""`ChatClient.connect()`: the WebSocket's events as an async iterator that never loses one.

async with chat.connect() as events:
    async for event in events:  # typed: MessageNew, TypingStart... (cariosan_client.events)
        print(event.type, event.seq)

It reconnects by itself with backoff, resumes from the last `seq` it handed out (so a dropped
connection, a restarted node or a "too slow" close costs nothing), skips an event it has already
given, and on close code 4001 asks the client's `token_provider` for a new token.

When the client was away longer than the server keeps events, the stream yields
`ResyncRequired(latest_seq=N)` and goes on from N: the application refetches its
channels (`list_channels`) and the history it shows (`list_messages`), since events before N
are not coming.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from cariosan_client.errors import Banned, Unauthorized
from cariosan_client.events import AnyEvent, ResyncRequired, decode_event
from cariosan_client.retry import backoff

__all__ = ["LiveEvents"]

# Close codes from the server (API.md).
UNAUTHORIZED = 4001
RATE_LIMITED = 4008
# Banned from the workspace (issue 14): reconnecting is refused while the ban lasts.
BANNED = 4003

FIRST_DELAY = 0.25
MAX_DELAY = 30.0
# Looked up at each pause, so that tests can make the pauses instant.
sleep = asyncio.sleep

# After close 4008 (too many messages) the server wants a real pause, not a quick retry.
RATE_LIMITED_DELAY = 2.0


class _Ready(msgspec.Struct):
    """The server's first frame, `connection.ready`."""

    latest_seq: int = 0


class LiveEvents:
    """Events of one user's WebSocket; iterate it, then `aclose()` (or use `async with`)."""

    def __init__(
        self,
        url: str,
        token: Callable[[], Awaitable[str]],
        refresh: Callable[[str], Awaitable[str]] | None,
        *,
        after_seq: int | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._refresh = refresh
        self.last_seq = after_seq
        self.reconnects = 0
        self._socket: ClientConnection | None = None
        self._failures = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> AnyEvent:
        while not self._closed:
            if self._socket is None:
                await self._connect()
                continue
            try:
                raw = await self._socket.recv()
            except ConnectionClosed as closed:
                await self._lost(closed.rcvd.code if closed.rcvd is not None else None)
                continue
            try:
                event = decode_event(raw)
            except msgspec.DecodeError:
                continue  # not an event: nothing to hand out
            if event.type == "pong":
                continue
            if isinstance(event, ResyncRequired):
                # The events before it are gone: continue (and resume later) from there.
                self.last_seq = event.latest_seq
                return event
            if event.seq is not None:
                if self.last_seq is not None and event.seq <= self.last_seq:
                    continue  # already handed out before a reconnect
                self.last_seq = event.seq
            return event
        raise StopAsyncIteration

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a client frame (`typing.start`/`typing.stop`); dropped while reconnecting."""
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._socket.send(msgspec.json.encode(frame).decode())

    async def aclose(self) -> None:
        self._closed = True
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def _connect(self) -> None:
        token = await self._token()
        try:
            socket = await websockets.connect(
                f"{self._url}?token={quote(token, safe='')}", open_timeout=10, max_size=2**24
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            if isinstance(exc, InvalidURI):
                raise
            await self._backoff()
            return
        try:
            ready = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 10), type=_Ready)
        except (ConnectionClosed, TimeoutError, msgspec.DecodeError) as exc:
            code = exc.rcvd.code if isinstance(exc, ConnectionClosed) and exc.rcvd else None
            await socket.close()
            await self._lost(code, token)
            return
        if self.last_seq is None:
            self.last_seq = ready.latest_seq
        # Resume at once: replays what was missed and starts live delivery without delay.
        try:
            resume = {"type": "resume", "after_seq": self.last_seq}
            await socket.send(msgspec.json.encode(resume).decode())
        except ConnectionClosed as closed:
            await self._lost(closed.rcvd.code if closed.rcvd is not None else None, token)
            return
        self._socket = socket
        self._failures = 0

    async def _lost(self, code: int | None, token: str | None = None) -> None:
        self._socket = None
        if self._closed:
            return
        self.reconnects += 1
        if code == BANNED:
            raise Banned("the WebSocket was closed: the user is banned from the workspace (4003)")
        if code == UNAUTHORIZED:
            if self._refresh is None:
                raise Unauthorized("the WebSocket was closed: the token is not valid (4001)")
            await self._refresh(token or await self._token())
            return
        await self._backoff(RATE_LIMITED_DELAY if code == RATE_LIMITED else 0.0)

    async def _backoff(self, at_least: float = 0.0) -> None:
        await sleep(max(at_least, backoff(self._failures, FIRST_DELAY, MAX_DELAY)))
        self._failures += 1
