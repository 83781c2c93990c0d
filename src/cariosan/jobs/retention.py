"""Keeps the event log and the webhook outbox bounded.

Every `retention_interval_seconds`, one server of the deployment (an advisory lock decides
which) removes events older than `CARIOS_EVENT_RETENTION` and finished webhook deliveries older
than `CARIOS_WEBHOOK_DELIVERY_RETENTION`, in small batches so that no statement holds many row
locks or runs for long. A client whose position falls behind the removed events is told to
resync (`EVENTS_EXPIRED`, `resync.required`).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cariosan.config import Settings
from cariosan.db import events as event_rows
from cariosan.db import locks
from cariosan.db import webhooks as webhook_rows
from cariosan.db.pool import Database
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics

log = get_logger("cariosan.events")

BATCH = 1000


@dataclass(frozen=True)
class Trimmed:
    events: int
    deliveries: int


async def trim(database: Database, settings: Settings, now: datetime | None = None) -> Trimmed:
    """One retention run; nothing when another server holds the lock."""
    now = now or datetime.now(UTC)
    events_before = now - timedelta(seconds=settings.event_retention_seconds)
    deliveries_before = now - timedelta(seconds=settings.webhook_delivery_retention_seconds)
    events = deliveries = 0
    async with database.connection() as conn:
        if not await locks.try_lock(conn, locks.RETENTION):
            return Trimmed(0, 0)
        try:
            for workspace_id in await event_rows.workspaces_with_events(conn):
                while True:
                    removed = await event_rows.trim_events(conn, workspace_id, events_before, BATCH)
                    events += removed
                    if removed < BATCH:
                        break
            while True:
                removed = await webhook_rows.trim_deliveries(conn, deliveries_before, BATCH)
                deliveries += removed
                if removed < BATCH:
                    break
        finally:
            await locks.unlock(conn, locks.RETENTION)
    return Trimmed(events, deliveries)


class RetentionJob:
    def __init__(self, database: Database, settings: Settings, metrics: Metrics) -> None:
        self._database = database
        self._settings = settings
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cariosan-retention")

    async def _run(self) -> None:
        interval = self._settings.retention_interval_seconds
        while True:
            # Spread out, so that servers started together do not all try at the same moment.
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            try:
                done = await trim(self._database, self._settings)
            except Exception as exc:  # an outage: try again next time
                log.warning("retention_failed", error=exc.__class__.__name__, exc_info=True)
                continue
            self._metrics.events_trimmed.labels("event").inc(done.events)
            self._metrics.events_trimmed.labels("webhook_delivery").inc(done.deliveries)
            if done.events or done.deliveries:
                log.info("retention_trimmed", events=done.events, deliveries=done.deliveries)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
