"""Group commit for the common send (db/messages.send_plain_batch).

Up to IN_FLIGHT batch statements run at once per process. A send that finds a free slot goes
out at once, alone: an idle server adds no wait. Sends that arrive while every slot is busy
queue, and the next free slot takes them all (up to MAX_BATCH) in one statement and one
commit. So batches form exactly when PostgreSQL is the bottleneck: many sends into one hot
channel share one commit instead of taking turns on its row lock, and a busy pool pays one
round trip for many sends. Each sender is still answered only after its own row committed.

A channel is in at most one statement in flight per process. The statement locks the channel's
row until it commits, so a second statement for the same channel would only wait on the first
while holding a slot and a connection; its sends wait in the queue instead, and go out together
once the first has committed. With 32 clients posting into one hot channel (2 workers), that
took the server from 974-1,116 to 1,498-1,740 messages/s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import asyncpg

from cariosan.db import messages as rows
from cariosan.errors import ValidationFailed
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.send")

# Statements in flight per process; the pool keeps its other connections for everything else.
IN_FLIGHT = 4
# Sends per statement: bounded, so that one statement stays short.
MAX_BATCH = 128

Stored = dict[tuple[uuid.UUID, uuid.UUID], rows.MessageRow]
Store = Callable[[asyncpg.Connection, list[rows.PlainSend]], Awaitable[Stored]]


class Connections(Protocol):
    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


class SendBatcher:
    def __init__(
        self,
        database: Callable[[], Connections],
        *,
        store: Store = rows.send_plain_batch,
        in_flight: int = IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._database = database
        self._store = store
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[rows.PlainSend, asyncio.Future[rows.MessageRow | None]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # (workspace, channel) of every send in a statement in flight.
        self._busy: set[tuple[uuid.UUID, str]] = set()

    async def send(self, send: rows.PlainSend) -> rows.MessageRow | None:
        """The stored message, once committed and numbered; None when the send did not qualify
        (nothing was written: the caller takes the general path)."""
        stored: asyncio.Future[rows.MessageRow | None] = asyncio.get_running_loop().create_future()
        self._queue.append((send, stored))
        self._start_if_free()
        return await stored

    def _start_if_free(self) -> None:
        while self._queue and self._running < self._in_flight:
            batch: list[tuple[rows.PlainSend, asyncio.Future[rows.MessageRow | None]]] = []
            waiting: list[tuple[rows.PlainSend, asyncio.Future[rows.MessageRow | None]]] = []
            for queued in self._queue:
                send = queued[0]
                if len(batch) < self._max_batch and _channel(send) not in self._busy:
                    batch.append(queued)
                else:
                    waiting.append(queued)
            if not batch:
                return  # every queued send's channel is in a statement in flight
            self._queue = waiting
            channels = {_channel(send) for send, _ in batch}
            self._busy |= channels
            self._running += 1
            task = asyncio.create_task(self._run(batch, channels), name="cariosan-send-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _statement_done(self, channels: set[tuple[uuid.UUID, str]]) -> None:
        self._running -= 1
        self._busy -= channels
        self._start_if_free()

    async def _run(
        self,
        batch: list[tuple[rows.PlainSend, asyncio.Future[rows.MessageRow | None]]],
        channels: set[tuple[uuid.UUID, str]],
    ) -> None:
        freed = False
        stored: Stored = {}
        try:
            # The connection block waits, after the commit, for the sequencer round that numbers
            # the events (db/pool.py): the slot is freed before that wait, not after.
            async with self._database().connection() as conn:
                try:
                    stored = await self._store(conn, [send for send, _ in batch])
                except (ValidationFailed, asyncpg.DeadlockDetectedError) as exc:
                    # A value PostgreSQL refuses fails the whole statement, and a deadlock with
                    # a concurrent writer rolls it back: nothing was written, and each send
                    # takes the general path, which answers it alone.
                    log.debug("send_batch_fell_back", error=exc.__class__.__name__)
                freed = True
                self._statement_done(channels)
        except BaseException as exc:
            if not freed:
                self._statement_done(channels)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for send, future in batch:
            # A repeated id within the batch: its first send got the row, the others fall back
            # (and find that row as the original).
            row = stored.pop((send.workspace_id, send.message_id), None)
            if not future.done():
                future.set_result(row)


def _channel(send: rows.PlainSend) -> tuple[uuid.UUID, str]:
    return send.workspace_id, send.channel_id
