"""Typing markers: kept with a TTL (Redis, or memory on a single node) and fanned out through
the bus. A start not refreshed within `TYPING_SECONDS` ends with a `typing.stop` sent by the
node that received the last start (compare-and-delete on the marker, so only that one does)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cariosan.domain.typing import TYPING_SECONDS
from cariosan.obs.logging import get_logger
from cariosan.realtime.bus import Bus

log = get_logger("cariosan.realtime")

_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Key = tuple[uuid.UUID, str, str]


class TypingRelay:
    def __init__(self, bus: Bus, redis: aioredis.Redis | None, prefix: str) -> None:
        self.bus = bus
        self.redis = redis
        self.prefix = prefix
        self._marks: dict[Key, tuple[str, float]] = {}
        self._timers: dict[Key, asyncio.Task[None]] = {}

    def _key(self, key: Key) -> str:
        return f"{self.prefix}typing:{key[0]}:{key[1]}:{key[2]}"

    async def start(self, workspace_id: uuid.UUID, channel_id: str, user_id: str) -> None:
        key = (workspace_id, channel_id, user_id)
        token = uuid.uuid4().hex
        await self._mark(key, token)
        self._publish(key, "typing.start")
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.create_task(self._expire(key, token))

    async def stop(self, workspace_id: uuid.UUID, channel_id: str, user_id: str) -> None:
        key = (workspace_id, channel_id, user_id)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        await self._unmark(key, None)
        self._publish(key, "typing.stop")

    def _publish(self, key: Key, kind: str) -> None:
        frame = {"type": kind, "channel_id": key[1], "user_id": key[2]}
        self.bus.publish(key[0], frame, channel_id=key[1])

    async def _expire(self, key: Key, token: str) -> None:
        await asyncio.sleep(TYPING_SECONDS)
        if self._timers.get(key) is asyncio.current_task():
            del self._timers[key]
        if await self._unmark(key, token):
            self._publish(key, "typing.stop")

    async def _mark(self, key: Key, token: str) -> None:
        if self.redis is None:
            self._marks[key] = (token, time.monotonic() + TYPING_SECONDS + 1)
            return
        try:
            await self.redis.set(self._key(key), token, ex=int(TYPING_SECONDS) + 1)
        except (RedisError, OSError) as exc:
            log.warning("typing_mark_failed", error=exc.__class__.__name__, exc_info=exc)

    async def _unmark(self, key: Key, token: str | None) -> bool:
        """Remove the marker (only if it still holds `token`, when given); True if removed."""
        if self.redis is None:
            mark = self._marks.get(key)
            if mark is None or (token is not None and mark[0] != token):
                return False
            del self._marks[key]
            return True
        try:
            if token is None:
                return bool(await self.redis.delete(self._key(key)))
            removed = await self.redis.eval(_DELETE_IF, 1, self._key(key), token)  # type: ignore[misc]
            return bool(removed)
        except (RedisError, OSError) as exc:
            log.warning("typing_unmark_failed", error=exc.__class__.__name__, exc_info=exc)
            return token is not None

    async def close(self) -> None:
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*timers, return_exceptions=True)
        self._timers.clear()
