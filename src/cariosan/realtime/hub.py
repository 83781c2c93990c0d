"""The live hub of one server process: a dispatcher per workspace with connected users.

A dispatcher keeps a cursor into its workspace's event log and, on each wake-up (a notice from
a sequencer that numbered new events, in this process or another through the bus) or every
`POLL_SECONDS`, reads the new events: one page per wake-up per workspace, however many
connections. Each event is encoded once and handed to the local connections of its audience
(domain/live.py decides who). Live delivery and catch-up read the same log, so a lost notice
only delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from cariosan.db.events import EventRow
from cariosan.db.pool import Database
from cariosan.domain import live
from cariosan.domain.events import encode, wire_event
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics
from cariosan.realtime.bus import Bus
from cariosan.realtime.connection import GOING_AWAY, LiveConnection

log = get_logger("cariosan.realtime")

POLL_SECONDS = 1.0
# A workspace's dispatcher stops this long after its last connection left.
LINGER_SECONDS = 30.0


class Dispatcher:
    """Reads one workspace's log and fans its events out to this process's connections."""

    def __init__(self, hub: Hub, workspace_id: uuid.UUID) -> None:
        self.hub = hub
        self.workspace_id = workspace_id
        self.cursor = 0
        self.audience = live.Audience()
        self.users: dict[str, set[LiveConnection]] = {}
        self.ready = asyncio.Event()
        self.joining = 0
        self._wake = asyncio.Event()
        self._idle_since = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def add(self, connection: LiveConnection) -> int:
        """Register a connection; it receives every event after the returned seq."""
        self.users.setdefault(connection.user_id, set()).add(connection)
        connection.start_at(self.cursor)
        return self.cursor

    def remove(self, connection: LiveConnection) -> None:
        conns = self.users.get(connection.user_id)
        if conns is not None:
            conns.discard(connection)
            if not conns:
                del self.users[connection.user_id]
        if not self.users:
            self._idle_since = time.monotonic()

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                self.cursor, self.audience = await live.open_stream(
                    self.hub.database(), self.workspace_id
                )
                break
            except Exception as exc:
                log.warning("dispatcher_start_failed", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.ready.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            if self._should_stop():
                return
            try:
                await self.pump()
            except Exception as exc:
                log.warning("dispatcher_read_failed", error=exc.__class__.__name__, exc_info=exc)
                await asyncio.sleep(POLL_SECONDS)

    def _should_stop(self) -> bool:
        idle = not self.users and self.joining == 0
        if idle and time.monotonic() - self._idle_since > LINGER_SECONDS:
            self.hub.forget(self)
            return True
        return False

    async def pump(self) -> None:
        """Fan out every event after the cursor, page by page, in order."""
        while True:
            page = await live.read_stream(
                self.hub.database(), self.workspace_id, self.cursor, self.hub.page_size
            )
            for row in page.events:
                self.fan_out(row)
            self.cursor = max(self.cursor, page.last_seq)
            if not page.full:
                return

    def fan_out(self, row: EventRow) -> None:
        text: str | None = None
        created = row.created_at.timestamp()
        for user_id in self.audience.recipients(row):
            conns = self.users.get(user_id)
            if not conns:
                continue
            if text is None:
                text = encode(wire_event(row))
            for connection in list(conns):
                connection.deliver(row.seq, text, created)
        self.cursor = row.seq

    def send_ephemeral(
        self, frame: dict[str, Any], channel_id: str | None, user_ids: list[str] | None
    ) -> None:
        """A frame without seq to the members of `channel_id`, to `user_ids`, or (neither
        given) to the users who share a channel with the frame's `user_id` (presence)."""
        targets: set[str] = set(user_ids or ())
        if channel_id is not None:
            targets |= self.audience.members.get(channel_id, set())
        elif user_ids is None and isinstance(frame.get("user_id"), str):
            targets = self.audience.co_members(frame["user_id"])
        text: str | None = None
        for user_id in targets:
            for connection in list(self.users.get(user_id, ())):
                text = text or encode(frame)
                connection.send_frame(text)


class Hub:
    """Every dispatcher and live connection of this process."""

    def __init__(
        self,
        database: Callable[[], Database],
        bus: Bus,
        metrics: Metrics,
        *,
        send_queue_size: int = 1000,
        page_size: int = live.STREAM_PAGE,
    ) -> None:
        # A page is fanned out without a pause: a queue smaller than a page could overflow for
        # a client that keeps up.
        self.database = database
        self.bus = bus
        self.metrics = metrics
        self.send_queue_size = send_queue_size
        self.page_size = page_size
        self.dispatchers: dict[uuid.UUID, Dispatcher] = {}
        self.connections: set[LiveConnection] = set()

    def start(self) -> None:
        self.bus.start(self.wake, self.on_ephemeral, self.wake_all)

    def wake(self, workspace_id: uuid.UUID) -> None:
        dispatcher = self.dispatchers.get(workspace_id)
        if dispatcher is not None:
            dispatcher.wake()

    def wake_all(self) -> None:
        for dispatcher in self.dispatchers.values():
            dispatcher.wake()

    def on_ephemeral(
        self,
        workspace_id: uuid.UUID,
        frame: dict[str, Any],
        channel_id: str | None,
        user_ids: list[str] | None,
    ) -> None:
        dispatcher = self.dispatchers.get(workspace_id)
        if dispatcher is not None and dispatcher.ready.is_set():
            dispatcher.send_ephemeral(frame, channel_id, user_ids)

    def new_connection(self, workspace_id: uuid.UUID, user_id: str) -> LiveConnection:
        return LiveConnection(
            workspace_id, user_id, queue_size=self.send_queue_size, on_overflow=self._overflowed
        )

    def _overflowed(self, connection: LiveConnection) -> None:
        self.metrics.ws_slow_consumers.inc()
        log.info("ws_slow_consumer_dropped", user_id=connection.user_id)

    async def join(
        self, connection: LiveConnection, first_frame: Callable[[int], str] | None = None
    ) -> int:
        """Register a connection with its workspace's dispatcher; returns its `latest_seq`.

        `first_frame(latest_seq)` is queued before anything else can reach the connection.
        """
        dispatcher = self.dispatchers.get(connection.workspace_id)
        if dispatcher is None:
            dispatcher = Dispatcher(self, connection.workspace_id)
            self.dispatchers[connection.workspace_id] = dispatcher
            dispatcher.task = asyncio.create_task(
                dispatcher.run(), name=f"cariosan-dispatch-{connection.workspace_id}"
            )
        dispatcher.joining += 1
        try:
            await dispatcher.ready.wait()
        finally:
            dispatcher.joining -= 1
        self.connections.add(connection)
        self.metrics.ws_connections.set(len(self.connections))
        latest = dispatcher.add(connection)
        if first_frame is not None:
            connection.send_frame(first_frame(latest))
        return latest

    def leave(self, connection: LiveConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.metrics.ws_connections.set(len(self.connections))
        dispatcher = self.dispatchers.get(connection.workspace_id)
        if dispatcher is not None:
            dispatcher.remove(connection)

    def forget(self, dispatcher: Dispatcher) -> None:
        if self.dispatchers.get(dispatcher.workspace_id) is dispatcher:
            del self.dispatchers[dispatcher.workspace_id]

    async def close_connections(self, wait_seconds: float = 3.0) -> None:
        """Ask every connection to close (clients reconnect elsewhere and resume); wait a bit."""
        for connection in list(self.connections):
            connection.close(GOING_AWAY, "server shutting down: reconnect and resume")
        for _ in range(int(wait_seconds / 0.05)):
            if not self.connections:
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        tasks = [d.task for d in self.dispatchers.values() if d.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.dispatchers.clear()
        await self.bus.close()
