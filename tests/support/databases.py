"""Test databases cloned ahead of need. `CREATE DATABASE ... TEMPLATE` takes about 0.3 s on
the test machine (the copy is written and synced), which every test with a database paid in its
setup; a thread of each test process now keeps a few clones of each template ready, and drops
used ones, while tests run."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

# Clones kept ready per template and test process: enough to cover one test's setup while
# the next clone is made.
AHEAD = 2


class DatabaseStock:
    def __init__(self, admin_dsn: str, template: str, prefix: str = "cariosan_t_") -> None:
        self._admin_dsn = admin_dsn
        self._template = template
        self._prefix = prefix
        self._ready: queue.Queue[str] = queue.Queue(maxsize=AHEAD)
        self._drops: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"db-stock-{template}", daemon=True)
        self._thread.start()

    def take(self) -> str:
        """A fresh clone's name (made now if none is ready). Blocking: call it from a thread
        when an event loop runs."""
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            if self._failure is not None:
                raise RuntimeError(f"cloning {self._template} failed") from self._failure
            name: str = asyncio.run(self._run(self._create))
            return name

    def give_back(self, name: str) -> None:
        """The test is done with it: dropped in the background."""
        self._drops.put(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        leftover = []
        while not self._ready.empty():
            leftover.append(self._ready.get_nowait())
        while not self._drops.empty():
            leftover.append(self._drops.get_nowait())
        for name in leftover:
            asyncio.run(self._drop_now(name))

    def _work(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # reported by take(), which then clones by itself
            self._failure = exc

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            while not self._stop.is_set():
                busy = False
                while not self._drops.empty():
                    await self._drop(conn, self._drops.get_nowait())
                    busy = True
                if not self._ready.full():
                    self._ready.put_nowait(await self._create(conn))
                    busy = True
                if not busy:
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()

    async def _run(self, action: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            return await action(conn)
        finally:
            await conn.close()

    async def _create(self, conn: asyncpg.Connection) -> str:
        name = f"{self._prefix}{uuid.uuid4().hex[:12]}"
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return name

    async def _drop_now(self, name: str) -> None:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await self._drop(conn, name)
        finally:
            await conn.close()

    @staticmethod
    async def _drop(conn: asyncpg.Connection, name: str) -> None:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
