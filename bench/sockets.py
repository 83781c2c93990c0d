"""The client side of bench.fanout: one process holding many WebSockets on its own event loop.

bench.fanout starts several of these (multiprocessing, "spawn"), because one Python process
cannot read tens of thousands of deliveries per second and would measure itself, not the
server. Each talks to its parent over a pipe: it connects, then answers commands until told to
finish. This module imports nothing of Cariosan, so a spawned child starts in a fraction of a
second.

Once every socket is open it sends ("connected", sockets, seconds, reconnects after 1013).
Commands (tuples sent by the parent) and replies:
    ("frames",)            -> ("frames", frames not message.new, sockets closed, why closed)
    ("start",)             -> ("started",)             (a round begins: CPU counted from here)
    ("expect", seqs, wait) -> ("round", RoundReport)   (waits up to `wait` s for every seq)
    ("finish",)            -> ("finished",)            (closes the sockets; the process ends)
On any failure the reply is ("error", text) and the process ends.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import os
import re
import resource
import signal
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast
from urllib.parse import urlsplit

import uvloop

# bench.fanout posts texts "fanout <seq> <time.monotonic() just before the POST>".
STAMP = re.compile(rb'"text":"fanout (\d+) ([0-9.]+)"')
# Connections opened at once per process: more only queues handshakes in the server's backlog.
CONNECT_BATCH = 50
TRY_AGAIN_LATER = 1013
CONNECT_RETRIES = 5
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


@dataclass
class RoundReport:
    """What one process saw of one round: latencies (seconds, as array('d') bytes, because a
    pipe carries a few MB of them faster than a list of floats), and how every socket fared."""

    latencies: bytes
    last_receipt: float
    cpu_seconds: float
    sockets: int
    incomplete_sockets: int
    missing: int
    duplicates: int
    unexpected: int
    closed: int
    close_reasons: dict[str, int]


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame from a client: masked, as RFC 6455 requires."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
    return head + mask + masked


class _Socket(asyncio.Protocol):
    """One WebSocket, read straight from its transport.

    The websockets library spends a task switch and a queue per message: at tens of thousands
    of deliveries per second that client CPU is the server's loss on a shared machine. Here a
    read parses whole frames from the bytes received (the server neither masks nor fragments),
    stamps them with the time of the read, and hands text frames to the holder.
    """

    def __init__(self, holder: _Holder, url: str, deflate: bool) -> None:
        self.holder = holder
        self.url = urlsplit(url)
        self.deflate = deflate
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.inflater: Any = None
        self.first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.seqs: list[int] = []
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        extensions = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if self.deflate
            else ""
        )
        transport.write(
            (
                f"GET {self.url.path}?{self.url.query} HTTP/1.1\r\nHost: {self.url.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded and not self._upgrade():
            return
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if second == 126:
                if size - pos < 4:
                    break
                second, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif second == 127:
                if size - pos < 10:
                    break
                second, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            end = pos + head + second
            if end > size:
                break
            payload = bytes(buffer[pos + head : end])
            pos = end
            opcode = first & 0x0F
            if opcode == TEXT:
                if first & 0x40:  # RSV1: compressed (permessage-deflate)
                    payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
                if self.first.done():
                    self.holder.on_text(self, payload, now)
                else:
                    self.first.set_result(payload)
            elif opcode == PING:
                self.send(PONG, payload)
            elif opcode == CLOSE:
                self._closed_by_server(payload)
                break
        del buffer[:pos]

    def _upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        if not head.startswith("HTTP/1.1 101"):
            self._fail(RuntimeError(f"no upgrade: {head.splitlines()[0]!r}"))
            return False
        if "permessage-deflate" in head.lower():
            # A decompressor for the whole stream (context takeover); 15 bits read any window.
            self.inflater = zlib.decompressobj(-15)
        self.upgraded = True
        return True

    def _closed_by_server(self, payload: bytes) -> None:
        if len(payload) >= 2:
            self.close_code = int.from_bytes(payload[:2], "big")
            self.close_reason = payload[2:].decode(errors="replace")
        self.send(CLOSE, payload[:2])
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        if not self.first.done():
            self.first.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before a frame ({self.close_code})"))
            return
        if not self.closed:
            self.closed = True
            self.holder.on_closed(self)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def close(self) -> None:
        self.send(CLOSE, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()


class _Holder:
    def __init__(self) -> None:
        self.sockets: list[_Socket] = []
        self.latencies = array.array("d")
        self.last_receipt = 0.0
        self.other_frames = 0
        self.closed = 0
        self.close_reasons: Counter[str] = Counter()
        self.target: int | None = None
        self.complete = 0
        self.done = asyncio.Event()

    def on_text(self, socket: _Socket, payload: bytes, now: float) -> None:
        found = STAMP.search(payload)
        if found is None:
            self.other_frames += 1
            return
        self.latencies.append(now - float(found.group(2)))
        if now > self.last_receipt:
            self.last_receipt = now
        socket.seqs.append(int(found.group(1)))
        if len(socket.seqs) == self.target:
            self.complete += 1
            self._check()

    def on_closed(self, socket: _Socket) -> None:
        self.closed += 1
        self.close_reasons[f"{socket.close_code} {socket.close_reason}"] += 1
        self._check()

    def expect(self, count: int) -> None:
        """From now on `done` is set once every open socket has `count` messages."""
        self.target = count
        self.complete = sum(len(s.seqs) >= count for s in self.sockets)
        self.done.clear()
        self._check()

    def _check(self) -> None:
        # Counted, not scanned: this runs on every delivery.
        if self.target is not None and self.complete >= len(self.sockets) - self.closed:
            self.done.set()

    def report(self, expected: set[int], cpu_seconds: float) -> RoundReport:
        incomplete = missing = duplicates = unexpected = 0
        for socket in self.sockets:
            got = set(socket.seqs)
            lost = len(expected - got)
            missing += lost
            incomplete += lost > 0
            duplicates += len(socket.seqs) - len(got)
            unexpected += len(got - expected)
        return RoundReport(
            latencies=self.latencies.tobytes(),
            last_receipt=self.last_receipt,
            cpu_seconds=cpu_seconds,
            sockets=len(self.sockets),
            incomplete_sockets=incomplete,
            missing=missing,
            duplicates=duplicates,
            unexpected=unexpected,
            closed=self.closed,
            close_reasons=dict(self.close_reasons),
        )

    def next_round(self) -> None:
        self.target = None
        self.latencies = array.array("d")
        self.last_receipt = 0.0
        for socket in self.sockets:
            socket.seqs = []


def raise_open_file_limit() -> int:
    """Every socket is a file: the soft limit (often 1,024) goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _open(holder: _Holder, url: str, deflate: bool) -> tuple[_Socket, int]:
    """A socket whose `connection.ready` has arrived, and how often the server said "try
    again later" (1013) first: it does that when it cannot authenticate in time, and a real
    client reconnects, so the bench does too and reports how often."""
    retries = 0
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    while True:
        _, socket = await loop.create_connection(
            lambda: _Socket(holder, url, deflate), parts.hostname or "127.0.0.1", parts.port or 80
        )
        try:
            first = await asyncio.wait_for(socket.first, 60)
        except ConnectionError:
            if socket.close_code != TRY_AGAIN_LATER or retries >= CONNECT_RETRIES:
                raise
            retries += 1
            await asyncio.sleep(0.2 * retries)
            continue
        if b'"connection.ready"' not in first:
            raise RuntimeError(f"the first frame was not connection.ready: {first[:200]!r}")
        return socket, retries


async def _hold(ws_base: str, tokens: list[str], parent: Connection, deflate: bool) -> None:
    holder = _Holder()
    # Browsers and our SDK ask for permessage-deflate; the server agrees only when
    # CARIOS_WS_COMPRESSION is on (bench.fanout --deflate sets both).
    began = time.monotonic()
    retries = 0
    for start in range(0, len(tokens), CONNECT_BATCH):
        batch = tokens[start : start + CONNECT_BATCH]
        opened = await asyncio.gather(*(_open(holder, ws_base + t, deflate) for t in batch))
        holder.sockets += [socket for socket, _ in opened]
        retries += sum(r for _, r in opened)
    # The server holds live events back until a socket's first frame (or a 1 s grace): a ping
    # releases them at once.
    for socket in holder.sockets:
        socket.send(TEXT, b'{"type":"ping"}')
    parent.send(("connected", len(holder.sockets), time.monotonic() - began, retries))
    cpu_at_start = time.process_time()
    try:
        while True:
            command: tuple[Any, ...] = await asyncio.to_thread(parent.recv)
            if command[0] == "frames":
                parent.send(
                    ("frames", holder.other_frames, holder.closed, dict(holder.close_reasons))
                )
            elif command[0] == "start":
                holder.next_round()
                cpu_at_start = time.process_time()
                parent.send(("started",))
            elif command[0] == "expect":
                expected, wait = set(command[1]), float(command[2])
                holder.expect(len(expected))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(holder.done.wait(), wait)
                cpu = time.process_time() - cpu_at_start
                parent.send(("round", holder.report(expected, cpu)))
            elif command[0] == "finish":
                break
            else:
                raise ValueError(f"unknown command {command[0]!r}")
    finally:
        # A close frame each, then the transports close; the process ends right after.
        for socket in holder.sockets:
            socket.close()
        await asyncio.sleep(0.1)
    parent.send(("finished",))


def hold(ws_base: str, tokens: list[str], parent: Connection, deflate: bool = False) -> None:
    """Entry point of one client process: `tokens` are the users whose sockets it holds."""
    # Ctrl-C reaches the whole process group: the parent tells its children to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        files = raise_open_file_limit()
        if files < len(tokens) + 50:
            raise RuntimeError(
                f"open-file limit {files} is too low for {len(tokens)} sockets in one process: "
                "use more client processes or raise the hard limit (ulimit -Hn)"
            )
        # uvloop, as the server: a client process reads thousands of frames per second.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_hold(ws_base, tokens, parent, deflate))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            parent.send(("error", f"{exc.__class__.__name__}: {exc}"))
        raise
