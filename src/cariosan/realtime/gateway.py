"""`GET /v1/ws`: one WebSocket per client, delivering its live events (API.md, "WebSocket").

The gateway authenticates the socket, registers it with the hub and pumps frames both ways; the
rules (who may connect, who receives what, who may signal typing) come from domain/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from cariosan.domain import live
from cariosan.domain import typing as typing_rules
from cariosan.domain.events import MAX_PAGE, encode, events_since
from cariosan.domain.ids import MAX_SEQ
from cariosan.errors import Banned, CariosanError, EventsExpired, RateLimited, Unauthorized
from cariosan.obs.logging import get_logger
from cariosan.realtime.connection import (
    BANNED,
    INTERNAL_ERROR,
    RATE_LIMITED,
    TOO_MANY_SOCKETS,
    TRY_AGAIN_LATER,
    UNAUTHORIZED,
    LiveConnection,
)
from cariosan.realtime.wire import FRAME_WRITER, FrameWriterProtocol
from cariosan.services import Services

log = get_logger("cariosan.realtime")

# Live events wait this long for a first client frame (a `resume`) before they start flowing.
RESUME_GRACE_SECONDS = 1.0
# Client frames: a burst of this many, refilled at this rate per second; beyond it: 4008.
FRAME_BURST = 40
FRAMES_PER_SECOND = 10.0
MAX_FRAME_CHARS = 4096
JOIN_TIMEOUT_SECONDS = 15.0


def _credential(socket: WebSocket[Any, Any, Any]) -> str:
    token = socket.query_params.get("token")
    if isinstance(token, str) and token:
        return token
    header = socket.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class _Bucket:
    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One connected socket: a sender, a receiver, and the timers around them."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        services: Services,
        user: live.LiveCaller,
        connection: LiveConnection,
    ) -> None:
        self.socket = socket
        self.services = services
        self.user = user
        self.connection = connection
        self.bucket = _Bucket(FRAME_BURST, FRAMES_PER_SECOND)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # Timers, not tasks: a task per timer was a coroutine, a future and a context more per
        # socket for the collector to walk (cariosan.heap).
        timers = [
            loop.call_later(max(0.0, self.user.expires_at - time.time()), self._expire),
            loop.call_later(RESUME_GRACE_SECONDS, self._grace),
        ]
        tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        try:
            await self.connection.closed.wait()
        finally:
            for timer in timers:
                timer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self) -> None:
        """Write the frames that were queued (the socket was busy), in order."""
        metrics = self.services.metrics
        connection = self.connection
        queue = connection.queue
        try:
            while True:
                text, created = await queue.get()
                writer = connection.writer
                if writer is None:
                    await self.socket.send_text(text)
                elif not await connection.write_queued(writer, text):
                    connection.close(1000, "")  # the socket closed while the frame waited
                    return
                if created is not None:
                    metrics.ws_events_sent.labels("event").inc()
                    metrics.ws_fanout_latency.observe(max(0.0, time.time() - created))
                else:
                    metrics.ws_events_sent.labels("other").inc()
        except (WebSocketDisconnect, OSError, RuntimeError):
            connection.close(1000, "")

    async def _receive(self) -> None:
        connection = self.connection
        try:
            while True:
                raw = await self.socket.receive_data("text")
                if not self.bucket.take():
                    connection.close(RATE_LIMITED, "rate limited: too many frames")
                    return
                await self._handle(raw)
                if connection.holding and not self._resuming:
                    connection.release()
        except (WebSocketDisconnect, OSError, RuntimeError):
            connection.close(1000, "")
        except Exception:
            # Never a socket left open and deaf: the client reconnects and resumes.
            log.exception("ws_receive_failed", user_id=self.user.user_id)
            connection.close(INTERNAL_ERROR, "internal error: reconnect and resume")

    _resuming = False

    async def _handle(self, raw: str | bytes) -> None:
        try:
            if len(raw) > MAX_FRAME_CHARS:
                raise ValueError("frame too large")
            frame = json.loads(raw)
            kind = frame["type"]
        except (ValueError, TypeError, KeyError, RecursionError):
            self._error("VALIDATION_FAILED", "frames are JSON objects with a 'type'")
            return
        if kind == "ping":
            self.connection.send_frame('{"type":"pong"}')
        elif kind == "resume":
            after = frame.get("after_seq")
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_SEQ:
                self._error(
                    "VALIDATION_FAILED", f"after_seq must be an integer from 0 to {MAX_SEQ}"
                )
                return
            await self._resume(after)
        elif kind in ("typing.start", "typing.stop"):
            channel_id = frame.get("channel_id")
            if not isinstance(channel_id, str):
                self._error("VALIDATION_FAILED", "channel_id is required")
                return
            try:
                await typing_rules.set_typing(
                    self.services.db,
                    self.services.typing,
                    self.user.caller,
                    channel_id,
                    "start" if kind == "typing.start" else "stop",
                )
            except CariosanError as exc:
                self._error(exc.code, exc.message)
        else:
            self._error("VALIDATION_FAILED", f"unknown frame type: {str(kind)[:64]}")

    async def _resume(self, after_seq: int) -> None:
        caller = self.user.caller
        database = self.services.db
        page_bytes = self.services.settings.limits.events_page_bytes

        async def pages(after: int) -> AsyncIterator[list[tuple[int, str]]]:
            while True:
                page = await events_since(database, caller, after, MAX_PAGE, page_bytes)
                if page.events:
                    yield [(int(e["seq"]), t) for e, t in zip(page.events, page.texts, strict=True)]
                after = page.latest_seq
                if not page.has_more:
                    return

        self._resuming = True
        try:
            try:
                await self.connection.replay(after_seq, pages)
            except EventsExpired as exc:
                # Too far behind the kept log: the client refetches state and goes on from here.
                self.connection.send_frame(
                    encode({"type": "resync.required", "latest_seq": exc.latest_seq})
                )
                await self.connection.replay(exc.latest_seq, pages)
        except CariosanError as exc:
            log.warning("ws_resume_failed", error=exc.code)
            self.connection.close(TRY_AGAIN_LATER, "catch-up failed: reconnect and resume")
        finally:
            self._resuming = False

    def _error(self, code: str, message: str) -> None:
        self.connection.send_frame(encode({"type": "error", "code": code, "message": message}))

    def _expire(self) -> None:
        self.connection.close(UNAUTHORIZED, "the token has expired")

    def _grace(self) -> None:
        if not self._resuming:
            self.connection.release()


@websocket("/v1/ws")
async def live_socket(
    socket: WebSocket[Any, Any, Any], services: NamedDependency[Services]
) -> None:
    """Live events for the token's user (see API.md for frames and close codes)."""
    await socket.accept()
    try:
        await _authenticate_and_serve(socket, services)
    except Exception:
        # Never Litestar's bare 4500: logged, and the client reconnects and resumes.
        log.exception("ws_failed")
        await _close(socket, INTERNAL_ERROR, "internal error: reconnect and resume")


async def _authenticate_and_serve(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    address = socket.client.host if socket.client is not None else "unknown"
    try:
        services.auth_failures.check(address)
        try:
            user = await live.authenticate_live(
                services.db, services.token_checks, services.jwt_secrets, _credential(socket)
            )
        except Unauthorized:
            await services.auth_failures.failed(address)
            raise
    except RateLimited as exc:
        await _close(socket, RATE_LIMITED, exc.message)
        return
    except Unauthorized as exc:
        await _close(socket, UNAUTHORIZED, exc.message)
        return
    except Banned as exc:
        await _close(socket, BANNED, exc.message)
        return
    except CariosanError as exc:
        log.warning("ws_auth_unavailable", error=exc.code, detail=exc.message)
        await _close(socket, TRY_AGAIN_LATER, "the server is busy: try again later")
        return
    workspace_id = user.caller.workspace_id
    if not services.sockets.acquire(workspace_id, user.user_id):
        limit = services.sockets.limit
        await _close(
            socket, TOO_MANY_SOCKETS, f"too many open sockets for this user (limit {limit})"
        )
        return
    try:
        await _serve(socket, services, user)
    finally:
        services.sockets.release(workspace_id, user.user_id)


async def _serve(
    socket: WebSocket[Any, Any, Any], services: Services, user: live.LiveCaller
) -> None:
    hub = services.hub
    connection = hub.new_connection(
        user.caller.workspace_id, user.user_id, issued_at_us=user.issued_at_us, key_id=user.key_id
    )

    writer = (socket.scope.get("extensions") or {}).get(FRAME_WRITER)
    if isinstance(writer, FrameWriterProtocol) and writer.frames_allowed():
        connection.writer = writer

    def ready(latest: int) -> str:
        return encode({"type": "connection.ready", "user_id": user.user_id, "latest_seq": latest})

    try:
        await asyncio.wait_for(hub.join(connection, ready), JOIN_TIMEOUT_SECONDS)
    except TimeoutError:
        hub.leave(connection)
        log.warning("ws_join_timeout", workspace_id=str(connection.workspace_id))
        await _close(socket, TRY_AGAIN_LATER, "the server is not ready: try again later")
        return
    await services.presence.connected(connection)
    try:
        await Session(socket, services, user, connection).run()
    finally:
        hub.leave(connection)
        await services.presence.disconnected(connection)
        await _close(socket, connection.close_code, connection.close_reason)


async def _close(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    # A stuck client must not hold the handler: the close handshake gets a few seconds.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(socket.close(code=code, reason=reason or None), 5)


ROUTES = [live_socket]
