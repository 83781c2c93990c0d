"""The group commit of the common send (domain/send_batch.py), with a fake store: when batches
form, who gets which row, and what a failed statement does to its senders."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import uvloop

from cariosan.db.messages import MessageRow, PlainSend
from cariosan.domain.send_batch import SendBatcher, Stored
from cariosan.errors import Unavailable, ValidationFailed

WORKSPACE = uuid.uuid4()


class FakeDatabase:
    def __init__(self) -> None:
        self.open = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        self.open += 1
        try:
            yield object()
        finally:
            self.open -= 1


def _row(send: PlainSend) -> MessageRow:
    now = datetime.now(UTC)
    return MessageRow(
        send.message_id, send.channel_id, send.user_id, send.text, None, 0, [], [], {}, now,
        None, None, {}, [], [],
    )  # fmt: skip


class FakeStore:
    """Stores every send whose user is not "refused"; holds each statement until released."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[PlainSend]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, conn: Any, sends: list[PlainSend]) -> Stored:
        self.batches.append(sends)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        stored: Stored = {}
        for send in sends:
            key = (send.workspace_id, send.message_id)
            if send.user_id != "refused" and key not in stored:
                stored[key] = _row(send)
        return stored


def _send(
    user: str = "bob", message_id: uuid.UUID | None = None, channel: str = "general"
) -> PlainSend:
    return PlainSend(WORKSPACE, message_id or uuid.uuid4(), channel, user, "hi", {})


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_send_goes_out_at_once_and_busy_slots_batch_the_rest() -> None:
    store, database = FakeStore(), FakeDatabase()
    batcher = SendBatcher(lambda: database, store=store, in_flight=2, max_batch=3, patience=0)
    sends = [_send(channel=f"c{i}") for i in range(7)]
    tasks = [asyncio.create_task(batcher.send(s)) for s in sends]
    await _settle()
    # Two slots: the first two sends went out alone, the other five wait.
    assert [len(b) for b in store.batches] == [1, 1]
    store.release.set()
    rows = await asyncio.gather(*tasks)
    assert [len(b) for b in store.batches] == [1, 1, 3, 2]
    assert [r.id if r else None for r in rows] == [s.message_id for s in sends]
    assert database.open == 0


async def test_sends_wait_for_the_statement_in_flight_until_it_has_been_slow() -> None:
    store, database = FakeStore(), FakeDatabase()
    batcher = SendBatcher(lambda: database, store=store, in_flight=4, patience=0.3)
    first = asyncio.create_task(batcher.send(_send(channel="a")))
    await _settle()
    later = [asyncio.create_task(batcher.send(_send(channel=c))) for c in "bcd"]
    await asyncio.sleep(0.1)
    # Slots are free, but the statement in flight is young: the others wait for it.
    assert [[s.channel_id for s in b] for b in store.batches] == [["a"]]
    await asyncio.sleep(0.4)
    # It has run past the patience (a lock wait, say): the waiting sends go out without it.
    assert [[s.channel_id for s in b] for b in store.batches] == [["a"], ["b", "c", "d"]]
    store.release.set()
    assert all(r is not None for r in await asyncio.gather(first, *later))


async def test_once_the_statement_in_flight_is_done_the_waiting_sends_go_out_together() -> None:
    store, database = FakeStore(), FakeDatabase()
    batcher = SendBatcher(lambda: database, store=store, in_flight=4, patience=30)
    first = asyncio.create_task(batcher.send(_send(channel="a")))
    await _settle()
    later = [asyncio.create_task(batcher.send(_send(channel=c))) for c in "bcd"]
    await _settle()
    store.release.set()
    assert all(r is not None for r in await asyncio.gather(first, *later))
    assert [[s.channel_id for s in b] for b in store.batches] == [["a"], ["b", "c", "d"]]


async def test_a_channel_in_flight_waits_and_its_sends_then_go_out_together() -> None:
    store, database = FakeStore(), FakeDatabase()
    batcher = SendBatcher(lambda: database, store=store, in_flight=4, patience=0)
    first = asyncio.create_task(batcher.send(_send(channel="hot")))
    await _settle()
    hot = [asyncio.create_task(batcher.send(_send(channel="hot"))) for _ in range(3)]
    other = asyncio.create_task(batcher.send(_send(channel="quiet")))
    await _settle()
    # Slots are free, but "hot" is in the first statement (whose row lock the others would
    # only wait on): "quiet" went out, the hot sends wait.
    assert [[s.channel_id for s in b] for b in store.batches] == [["hot"], ["quiet"]]
    store.release.set()
    rows = await asyncio.gather(first, *hot, other)
    assert [[s.channel_id for s in b] for b in store.batches] == [
        ["hot"],
        ["quiet"],
        ["hot", "hot", "hot"],
    ]
    assert all(r is not None for r in rows)


async def test_a_send_that_does_not_qualify_gets_none_and_a_repeated_id_only_once() -> None:
    store = FakeStore()
    store.release.set()
    batcher = SendBatcher(FakeDatabase, store=store, in_flight=1)
    first = _send()
    blocker = asyncio.create_task(batcher.send(_send()))
    repeated = _send("alice", first.message_id)
    results = await asyncio.gather(
        batcher.send(first), batcher.send(repeated), batcher.send(_send("refused"))
    )
    await blocker
    assert results[0] is not None and results[0].user_id == "bob"
    assert list(results[1:]) == [None, None]


@pytest.mark.parametrize(
    "failure", [ValidationFailed("NUL in text"), asyncpg.DeadlockDetectedError("deadlock")]
)
async def test_a_refused_or_deadlocked_statement_sends_everyone_to_the_general_path(
    failure: Exception,
) -> None:
    store = FakeStore(failure)
    store.release.set()
    batcher = SendBatcher(FakeDatabase, store=store)
    assert list(await asyncio.gather(batcher.send(_send()), batcher.send(_send()))) == [
        None,
        None,
    ]


async def test_an_unavailable_database_fails_every_sender_and_frees_the_slot() -> None:
    store = FakeStore(Unavailable("PostgreSQL is unavailable"))
    store.release.set()
    batcher = SendBatcher(FakeDatabase, store=store, in_flight=1)
    outcomes = await asyncio.gather(
        batcher.send(_send()), batcher.send(_send()), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes)
    store.fail = None
    assert await batcher.send(_send()) is not None


def test_sends_arriving_just_before_a_slot_opens_are_served_on_uvloop() -> None:
    # uvloop turns a timer under half a millisecond into a plain Handle, without `when()`: the
    # wake-up for a slot about to open must not rely on it (a 500 and a 4500 close, once).
    async def scenario() -> list[MessageRow | None]:
        store, database = FakeStore(), FakeDatabase()
        batcher = SendBatcher(lambda: database, store=store, in_flight=4, patience=0.0003)
        sends = [asyncio.create_task(batcher.send(_send(channel=f"c{i}"))) for i in range(6)]
        await asyncio.sleep(0.01)
        store.release.set()
        return await asyncio.gather(*sends)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert all(row is not None for row in runner.run(scenario()))
