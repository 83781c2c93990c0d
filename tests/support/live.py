"""A bare WebSocket client for `/v1/ws` in tests: frames as dicts, events by seq."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed


def ws_url(http_url: str, token: str) -> str:
    return http_url.replace("http://", "ws://", 1) + f"/v1/ws?token={token}"


class LiveClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ready: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        return frame

    async def events(
        self, count: int, *, timeout: float = 15.0, types: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """The next `count` frames with a seq (of `types`, when given), skipping the others."""
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"got {len(found)} of {count} events: {found[-3:]}")
            try:
                frame = await self.next(left)
            except TimeoutError:
                raise AssertionError(f"got {len(found)} of {count} events: {found[-3:]}") from None
            if "seq" in frame and (types is None or frame["type"] in types):
                found.append(frame)
        return found

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; the close code it sent (None: none)."""
        try:
            while True:
                await self.next(timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def silent(self, seconds: float) -> list[dict[str, Any]]:
        """Frames with a seq that arrive within `seconds` (expected: none)."""
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return found
            try:
                frame = await self.next(left)
            except TimeoutError:
                return found
            if "seq" in frame:
                found.append(frame)


@asynccontextmanager
async def live(
    http_url: str, token: str, *, resume_from: int | None = None, **options: Any
) -> AsyncIterator[LiveClient]:
    """Connect, read `connection.ready`, and resume (if asked) before live events flow."""
    async with websockets.connect(ws_url(http_url, token), **options) as socket:
        client = LiveClient(socket)
        client.ready = await client.next()
        assert client.ready["type"] == "connection.ready", client.ready
        if resume_from is not None:
            await client.send({"type": "resume", "after_seq": resume_from})
        else:
            # Any first frame starts live delivery; before it only frames without seq come.
            await client.send({"type": "ping"})
            while (frame := await client.next())["type"] != "pong":
                assert "seq" not in frame, frame
        yield client


class StuckClient:
    """A WebSocket client that completes the handshake and then never reads (a stuck phone).

    A small receive buffer keeps the kernel from absorbing megabytes on its behalf.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, http_url: str, token: str) -> StuckClient:
        import base64
        import os
        import socket

        host, port = http_url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # Stuck for real: asyncio would otherwise keep reading into the stream's buffer (up to
        # twice its limit) on this client's behalf.
        writer.transport.pause_reading()  # type: ignore[attr-defined]
        return cls(reader, writer)

    async def close_code(self, timeout: float = 30.0) -> int | None:
        """Read everything that was sent and return the close frame's code (None: no close)."""

        self.writer.transport.resume_reading()  # type: ignore[attr-defined]

        async def read() -> int | None:
            while True:
                try:
                    b0, b1 = await self.reader.readexactly(2)
                except asyncio.IncompleteReadError:
                    return None
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(await self.reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self.reader.readexactly(8), "big")
                payload = await self.reader.readexactly(length)
                if b0 & 0x0F == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

        try:
            return await asyncio.wait_for(read(), timeout)
        finally:
            self.writer.close()
