"""Numbers committed events (db/events.sequence_pending) and wakes live delivery.

Every server process runs one. A commit in this process wakes it at once, and the request that
committed waits for the round that numbers its events (so that a write, once acknowledged, is in
what `GET /v1/events` returns); events committed by a process that died before numbering them
are found by the poll. The numbering rounds of all the
processes take turns under one advisory lock, so running several only costs idle polls. After a
round, the workspaces it numbered are announced on the bus, which wakes their dispatchers on
every node.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from cariosan.db import events as rows
from cariosan.db.pool import Database
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics
from cariosan.realtime.bus import Bus
from cariosan.waiting import wait_done, wait_set

log = get_logger("cariosan.events")

# Events numbered per round (one statement); a longer queue takes several rounds back to back.
BATCH = 2000
# How often an idle sequencer looks for events that nobody woke it for.
POLL_SECONDS = 0.25
# After a failure (PostgreSQL away), wait this long, doubling up to the cap.
RETRY_SECONDS, RETRY_CAP_SECONDS = 0.1, 5.0
# A committed write is acknowledged after at most this long even if numbering is held up (its
# events are numbered later, and delivered then).
ACK_WAIT_SECONDS = 5.0


class Sequencer:
    def __init__(self, database: Callable[[], Database], bus: Bus, metrics: Metrics) -> None:
        self._database = database
        self._bus = bus
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Writers whose commit happened before the next round starts; released after it.
        self._waiting: list[asyncio.Future[None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cariosan-sequencer")

    async def on_commit(self, workspace_ids: set[uuid.UUID]) -> None:
        """Database hook: a transaction of this process appended events and committed. Returns
        once a numbering round that started after the commit has finished."""
        if self._task is None:
            return
        numbered = asyncio.get_running_loop().create_future()
        self._waiting.append(numbered)
        self._wake.set()
        await wait_done(asyncio.shield(numbered), ACK_WAIT_SECONDS)

    async def _run(self) -> None:
        delay = RETRY_SECONDS
        while True:
            woken = await wait_set(self._wake, POLL_SECONDS)
            self._wake.clear()
            # Commits up to now are seen by the round below; later ones wait for the next.
            waiting, self._waiting = self._waiting, []
            try:
                await self.drain(check_first=not woken and not waiting)
                delay = RETRY_SECONDS
                _release(waiting)
            except Exception as exc:
                self._waiting = waiting + self._waiting
                log.warning("sequencer_failed", error=exc.__class__.__name__, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_SECONDS)
                self._wake.set()

    async def drain(self, *, check_first: bool = False) -> int:
        """Number every committed event now waiting; how many were numbered."""
        total = 0
        async with self._database().connection() as conn:
            if check_first and not await rows.has_pending(conn):
                return 0
            while True:
                numbered = await rows.sequence_pending(conn, BATCH)
                if numbered.count:
                    self._bus.notify_events(numbered.last_seqs)
                    self._metrics.events_sequenced.inc(numbered.count)
                total += numbered.count
                if numbered.count < BATCH:
                    return total

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        _release(self._waiting)
        self._waiting = []


def _release(waiting: list[asyncio.Future[None]]) -> None:
    for numbered in waiting:
        if not numbered.done():
            numbered.set_result(None)
