"""Statements shared by concurrent callers: the slots, the queue and the answers.

Up to `in_flight` statements run at once per process. A call that finds a free slot goes out at
once, alone: an idle server adds no wait. Calls that arrive while every slot is busy queue, and
the next free slot takes them together (up to `max_batch`, and those `_take` admits) in one
statement. So batches form exactly when PostgreSQL is the bottleneck. A subclass says how a
batch runs and when its slot is free again; every caller gets its own item's answer.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Generic, Protocol, TypeVar

import asyncpg

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Connections(Protocol):
    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


class Waiting(Generic[Item, Answer]):
    __slots__ = ("answer", "item")

    def __init__(self, item: Item, answer: asyncio.Future[Answer]) -> None:
        self.item, self.answer = item, answer


class StatementBatcher(ABC, Generic[Item, Answer]):
    def __init__(self, *, in_flight: int, max_batch: int) -> None:
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._queue: list[Waiting[Item, Answer]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _submit(self, item: Item) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append(Waiting(item, answer))
        self._start_if_free()
        return await answer

    def _take(self) -> list[Waiting[Item, Answer]]:
        """The next batch, removed from the queue: the oldest calls, up to max_batch."""
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        return batch

    @abstractmethod
    async def _run(self, batch: list[Waiting[Item, Answer]]) -> None:
        """Run one batch's statement, call `_slot_free(batch)` exactly once (at the latest
        when done), and answer every caller of the batch."""

    def _slot_free(self, batch: list[Waiting[Item, Answer]]) -> None:
        self._running -= 1
        self._start_if_free()

    def _start_if_free(self) -> None:
        while self._queue and self._running < self._in_flight:
            batch = self._take()
            if not batch:
                return
            self._running += 1
            task = asyncio.create_task(self._run(batch), name=f"cariosan-{type(self).__name__}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def fail_all(batch: list[Waiting[Item, Answer]], exc: BaseException) -> None:
    for waiting in batch:
        if not waiting.answer.done():
            waiting.answer.set_exception(exc)
