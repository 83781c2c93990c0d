"""Ephemeral state in Redis, shared by every server node.

Rate-limit counters are fixed windows (one Redis key per window and period). A round trip per
request would cost more CPU than the rest of a send (measured: docs/performance.md), so each
process counts locally while a caller is well under a limit and adds its counts to Redis in one
pipeline every `FLUSH_SECONDS`, learning the others' counts from the replies. From half of a
limit on, every request adds itself to Redis at once and is judged on the shared total, as
before. A burst spread over several processes within one flush can therefore pass a limit by
at most half of it per other process; a caller on one process is held exactly to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from cariosan.ephemeral.store import Window, WindowState
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.ratelimit")

# How often local counts go to Redis.
FLUSH_SECONDS = 0.1
# Below this share of a limit (in the count this process knows of), hits stay local until the
# next flush.
LOCAL_SHARE = 0.5
# Counters of ended windows are dropped once this many were added since the last sweep.
SWEEP_EVERY = 1024


@dataclass
class _Count:
    """One window period as this process sees it."""

    ends: int  # end of the period (POSIX seconds)
    known: int = 0  # the shared total at the last reply from Redis
    pending: int = 0  # hits of this process not yet added to Redis
    expires: bool = False  # this process has set the key's expiry


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, prefix: str = "cariosan:") -> None:
        self.prefix = prefix
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
        )
        self._counts: dict[str, _Count] = {}
        self._added = 0
        # One exchange of counts with Redis at a time, so that each reply is the total after
        # this process's own additions.
        self._exchange = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_failing = False

    async def ping(self) -> None:
        await self.client.ping()

    async def hit(self, windows: list[Window], now: float) -> list[WindowState]:
        counts: list[tuple[str, _Count]] = []
        for window in windows:
            start = int(now) // window.seconds * window.seconds
            key = f"{self.prefix}rl:{window.key}:{start}"
            counts.append((key, self._count(key, start + window.seconds, now)))
        local = all(
            count.known + count.pending + 1 <= window.limit * LOCAL_SHARE
            for window, (_, count) in zip(windows, counts, strict=True)
        )
        if local:
            for _, count in counts:
                count.pending += 1
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_later())
        else:
            await self._add(counts, extra=1)
        return [
            WindowState(window, count.known + count.pending, max(1, count.ends - int(now)))
            for window, (_, count) in zip(windows, counts, strict=True)
        ]

    def _count(self, key: str, ends: int, now: float) -> _Count:
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count(ends)
            self._added += 1
            if self._added >= SWEEP_EVERY:
                self._added = 0
                self._sweep(now)
        return count

    def _sweep(self, now: float) -> None:
        # An ended period's counts no longer matter, sent or not.
        for key in [k for k, c in self._counts.items() if c.ends < now]:
            del self._counts[key]

    async def _add(self, counts: list[tuple[str, _Count]], *, extra: int) -> None:
        """Add the pending hits of `counts` (plus `extra` each) to Redis; learn the totals."""
        async with self._exchange:
            taken = [count.pending for _, count in counts]
            pipe = self.client.pipeline(transaction=False)
            expiring = [not count.expires for _, count in counts]
            for (key, count), n, expire in zip(counts, taken, expiring, strict=True):
                count.pending -= n
                pipe.incrby(key, n + extra)
                if expire:
                    # Kept a second past the period's end (clocks of nodes differ a little).
                    pipe.expireat(key, count.ends + 1)
            try:
                results = iter(await pipe.execute())
            except BaseException:
                for (_, count), n in zip(counts, taken, strict=True):
                    count.pending += n
                raise
            for (_, count), expire in zip(counts, expiring, strict=True):
                count.known = int(next(results))
                if expire:
                    count.expires = bool(next(results))

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(FLUSH_SECONDS)
        finally:
            self._flusher = None
        await self.flush()

    async def flush(self) -> None:
        """Add every local count to Redis now."""
        pending = [(key, count) for key, count in self._counts.items() if count.pending]
        if not pending:
            return
        try:
            await self._add(pending, extra=0)
        except Exception as exc:
            # Throwaway counts: they wait for the next flush, or end with their period.
            if not self._flush_failing:
                log.warning("rate_limit_flush_failed", error=exc.__class__.__name__)
            self._flush_failing = True
        else:
            self._flush_failing = False

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.client.aclose()
