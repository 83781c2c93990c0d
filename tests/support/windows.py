"""Rate limits count in fixed windows (a minute from :00, a second from .000), like the server's
stores do. A test that needs N requests to land in one window starts them early in one."""

from __future__ import annotations

import asyncio
import time


async def fresh_window(needed: float, seconds: int = 60) -> None:
    """Return at once if `needed` seconds are left in the current window, else when the next
    one begins (so a burst is not split between two windows and counted as two half-bursts)."""
    left = seconds - time.time() % seconds
    if left < needed:
        await asyncio.sleep(left + 0.05)
