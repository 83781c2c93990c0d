"""Waits with a deadline that never swallow a cancel (cariosan/waiting.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from cariosan.waiting import wait_done, wait_set

SRC = Path(__file__).resolve().parents[2] / "src" / "cariosan"


async def _loop(event: asyncio.Event) -> None:
    """A background loop as the sequencer, dispatchers and webhook worker run one."""
    while True:
        await wait_set(event, 10)
        event.clear()


async def test_a_loop_cancelled_as_its_event_is_set_stops() -> None:
    # With asyncio.wait_for on Python 3.11 this cancel is lost and the loop runs on: a
    # server's shutdown then waited for ever for its webhook worker.
    event = asyncio.Event()
    task = asyncio.create_task(_loop(event))
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task} and task.cancelled()


async def test_wait_set_says_whether_the_event_came_in_time() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5) is True


async def test_wait_done_cancels_what_did_not_finish_in_time() -> None:
    slow = asyncio.create_task(asyncio.sleep(10))
    assert await wait_done(slow, 0.01) is False
    assert slow.cancelled()
    assert await wait_done(asyncio.sleep(0), 5) is True
    # Shielded, the awaited work goes on after the deadline (the sequencer's acknowledgement).
    kept = asyncio.create_task(asyncio.sleep(0.05))
    assert await wait_done(asyncio.shield(kept), 0.01) is False
    await kept
    assert kept.done() and not kept.cancelled()


def test_no_event_wait_in_the_server_goes_through_wait_for() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"wait_for\([^)]*\.wait\(\)", line)
    ]
    assert offenders == []
