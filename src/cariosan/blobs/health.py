"""Whether the attachment store answers, asked at most every few seconds.

Presigning needs no network, so without this check a dead store would still hand out URLs that
cannot work; with it, attachment calls answer 503 UNAVAILABLE while chat keeps working.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from cariosan.errors import Unavailable

OK_FOR_SECONDS = 5.0
DOWN_FOR_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 5.0


def expiry(seconds: int) -> datetime:
    """When a URL signed now for `seconds` stops working (whole seconds, like the signature)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)


class HealthCache:
    def __init__(self, check: Callable[[], Awaitable[None]]) -> None:
        self._check = check
        self._ok_until = 0.0
        self._down_until = 0.0
        self._lock = asyncio.Lock()

    def failed(self) -> None:
        self._ok_until = 0.0
        self._down_until = time.monotonic() + DOWN_FOR_SECONDS

    async def ensure(self) -> None:
        now = time.monotonic()
        if now < self._ok_until:
            return
        if now < self._down_until:
            raise Unavailable("the attachment store is unavailable")
        async with self._lock:  # one probe at a time; the others reuse its answer
            now = time.monotonic()
            if now < self._ok_until:
                return
            try:
                await asyncio.wait_for(self._check(), timeout=CHECK_TIMEOUT_SECONDS)
            except Unavailable:
                self.failed()
                raise
            except Exception as exc:
                self.failed()
                raise Unavailable(
                    f"the attachment store is unavailable ({exc.__class__.__name__})"
                ) from None
            self._ok_until = time.monotonic() + OK_FOR_SECONDS
