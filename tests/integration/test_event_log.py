"""The catch-up log under concurrent writers and concurrent sequencers: a reader polling with its
cursor sees every event exactly once, in seq order, although transactions commit in a different
order than they started and several servers number events at once."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from cariosan.db import events
from cariosan.domain.workspaces import create_workspace
from tests.support.server import RunningServer

WRITERS = 12
EVENTS_PER_WRITER = 40
# Sequencers of other "servers" numbering concurrently with the test server's own.
SEQUENCERS = 3


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here writes and reads the events of workspaces of its own, and its extra
    sequencers number whatever is pending as another server's would: one server serves them all."""
    return shared_server


async def numbered(conn: asyncpg.Connection) -> None:
    """Number whatever is pending (what a server's sequencer does after a commit)."""
    while (await events.sequence_pending(conn, 1000)).count:
        pass


async def test_reader_never_misses_an_event_of_concurrent_writers(server: RunningServer) -> None:
    workspace = await create_workspace(server.services.db, "hammer")
    dsn = server.services.settings.database_url
    assert dsn
    pool = await asyncpg.create_pool(
        dsn, min_size=WRITERS + SEQUENCERS + 1, max_size=WRITERS + SEQUENCERS + 2
    )
    done = asyncio.Event()
    rng = random.Random(7)

    async def writer(n: int) -> None:
        for i in range(EVENTS_PER_WRITER):
            async with pool.acquire() as conn, conn.transaction():
                # Hold the transaction open for a random while, sometimes writing two events,
                # so commits interleave out of seq order.
                await events.append_event(
                    conn, workspace.id, "test.event", {"w": n, "i": i, "part": 0}, channel_id="c"
                )
                await asyncio.sleep(rng.random() * 0.01)
                if i % 5 == 0:
                    await events.append_event(
                        conn,
                        workspace.id,
                        "test.event",
                        {"w": n, "i": i, "part": 1},
                        channel_id="c",
                    )

    seen: list[int] = []
    writing = asyncio.Event()

    async def sequencer() -> None:
        async with pool.acquire() as conn:
            while not done.is_set():
                await numbered(conn)
                await asyncio.sleep(rng.random() * 0.005)
            await numbered(conn)
        writing.set()

    async def reader() -> None:
        cursor = 0
        async with pool.acquire() as conn:
            while True:
                finished = writing.is_set() and done.is_set()
                page = await events.events_for_workspace(conn, workspace.id, cursor, 50)
                for row in page:
                    assert row.seq > cursor, "a reader must never be handed an older event"
                    seen.append(row.seq)
                    cursor = row.seq
                if finished and not page:
                    return
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    sequencing = [asyncio.create_task(sequencer()) for _ in range(SEQUENCERS)]
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done.set()
    await asyncio.gather(*sequencing)
    await asyncio.wait_for(reading, timeout=60)

    async with pool.acquire() as conn:
        stored = [
            r["seq"]
            for r in await conn.fetch(
                "SELECT seq FROM events WHERE workspace_id = $1 ORDER BY seq", workspace.id
            )
        ]
    await pool.close()
    expected = WRITERS * (EVENTS_PER_WRITER + EVENTS_PER_WRITER // 5)
    assert len(stored) == expected
    assert seen == stored, "the reader missed or repeated events"
    assert len(set(seen)) == len(seen)
    assert stored == list(range(1, expected + 1)), "a workspace's seqs count up from 1"


async def test_rolled_back_events_never_appear(server: RunningServer) -> None:
    workspace = await create_workspace(server.services.db, "rollback")
    dsn = server.services.settings.database_url
    assert dsn
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await events.append_event(conn, workspace.id, "test.lost", {}, channel_id="c")
        await tx.rollback()
        async with conn.transaction():
            await events.append_event(conn, workspace.id, "test.kept", {}, channel_id="c")
        await numbered(conn)
        page = await events.events_for_workspace(conn, workspace.id, 0, 10)
        latest = await events.latest_seq(conn, workspace.id)
    finally:
        await conn.close()
    assert [(r.type, r.seq) for r in page] == [("test.kept", 1)]
    assert latest == 1


async def test_other_workspace_events_are_invisible(server: RunningServer) -> None:
    mine = await create_workspace(server.services.db, "mine")
    theirs = await create_workspace(server.services.db, "theirs")
    dsn = server.services.settings.database_url
    assert dsn
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await events.append_event(conn, theirs.id, "test.secret", {"x": 1}, channel_id="c")
        await numbered(conn)
        page = await events.events_for_workspace(conn, mine.id, 0, 10)
        user_page = await events.events_for_reader(conn, mine.id, "someone", 0, 10, 10)
        latest = await events.latest_seq(conn, mine.id)
    finally:
        await conn.close()
    assert page == [] and user_page.events == [] and user_page.channels == {}
    assert latest == 0
