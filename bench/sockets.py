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
import contextlib
import re
import resource
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

# bench.fanout posts texts "fanout <seq> <time.monotonic() just before the POST>".
STAMP = re.compile(r'"text":"fanout (\d+) ([0-9.]+)"')
# Connections opened at once per process: more only queues handshakes in the server's backlog.
CONNECT_BATCH = 50
TRY_AGAIN_LATER = 1013
CONNECT_RETRIES = 5


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


@dataclass
class _Socket:
    connection: ClientConnection
    seqs: list[int] = field(default_factory=list)
    closed: bool = False


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

    async def read(self, socket: _Socket) -> None:
        try:
            async for raw in socket.connection:
                # The stamp is read before anything else so parsing the rest costs no latency.
                now = time.monotonic()
                found = STAMP.search(raw) if isinstance(raw, str) else None
                if found is None:
                    self.other_frames += 1
                    continue
                self.latencies.append(now - float(found.group(2)))
                self.last_receipt = max(self.last_receipt, now)
                socket.seqs.append(int(found.group(1)))
                if len(socket.seqs) == self.target:
                    self.complete += 1
                    self._check()
        except websockets.ConnectionClosed:
            pass
        socket.closed = True
        self.closed += 1
        connection = socket.connection
        self.close_reasons[f"{connection.close_code} {connection.close_reason}"] += 1
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


async def _open(url: str, compression: str | None) -> tuple[ClientConnection, int]:
    """A socket whose `connection.ready` has arrived, and how often the server said "try
    again later" (1013) first: it does that when it cannot authenticate in time, and a real
    client reconnects, so the bench does too and reports how often."""
    retries = 0
    while True:
        connection = await websockets.connect(
            url, open_timeout=60, compression=compression, max_queue=None
        )
        try:
            first = await asyncio.wait_for(connection.recv(), 60)
        except websockets.ConnectionClosed:
            if connection.close_code != TRY_AGAIN_LATER or retries >= CONNECT_RETRIES:
                raise
            retries += 1
            await asyncio.sleep(0.2 * retries)
            continue
        if not isinstance(first, str) or '"connection.ready"' not in first:
            raise RuntimeError(f"the first frame was not connection.ready: {first[:200]!r}")
        return connection, retries


async def _hold(ws_base: str, tokens: list[str], parent: Connection, deflate: bool) -> None:
    holder = _Holder()
    # The server accepts permessage-deflate (uvicorn's default), as browsers and our SDK ask
    # for it; it costs memory and CPU on both sides, so it is the caller's choice.
    compression = "deflate" if deflate else None
    began = time.monotonic()
    retries = 0
    for start in range(0, len(tokens), CONNECT_BATCH):
        batch = tokens[start : start + CONNECT_BATCH]
        opened = await asyncio.gather(*(_open(ws_base + t, compression) for t in batch))
        holder.sockets += [_Socket(c) for c, _ in opened]
        retries += sum(r for _, r in opened)
    readers = [asyncio.create_task(holder.read(s)) for s in holder.sockets]
    # The server holds live events back until a socket's first frame (or a 1 s grace): a ping
    # releases them at once.
    await asyncio.gather(*(s.connection.send('{"type":"ping"}') for s in holder.sockets))
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
        # A close handshake per socket while the server is busy may take long; the process
        # ends right after, and the kernel closes whatever is left.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(s.connection.close() for s in holder.sockets)), 10
            )
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
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
        asyncio.run(_hold(ws_base, tokens, parent, deflate))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            parent.send(("error", f"{exc.__class__.__name__}: {exc}"))
        raise
