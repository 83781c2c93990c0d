"""Waiting with a deadline in tasks that are stopped by cancelling them.

Not `asyncio.wait_for`: on Python 3.11 it awaits in a task of its own, and a cancel that
arrives just as that wait completes is lost (wait_for returns normally). A background loop
stopped by `task.cancel()` then runs on, and the shutdown that awaits its end waits for ever.
`asyncio.timeout` waits in the caller's own task, so the cancel always gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True if it was set in time."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
        return True
    return False


async def wait_done(awaitable: Awaitable[object], seconds: float) -> bool:
    """Await `awaitable` for at most `seconds` (it is cancelled then); True if it finished."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await awaitable
        return True
    return False
