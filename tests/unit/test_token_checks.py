"""Token checks of concurrent requests share a statement (domain/token_checks.py), with a fake
check: when batches form, who gets which row, and what a failed statement does to its callers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cariosan.db.users import TokenCheck, UserKey
from cariosan.domain.token_checks import TokenChecks
from cariosan.errors import Unavailable

WORKSPACE = uuid.uuid4()


class FakeDatabase:
    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        yield object()


class FakeCheck:
    """Every user but "gone" exists, as a moderator if named so; holds each statement."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[UserKey]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, conn: Any, keys: list[UserKey]) -> dict[UserKey, TokenCheck]:
        self.batches.append(keys)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {
            key: TokenCheck("moderator" if key[1] == "mod" else "user", None)
            for key in keys
            if key[1] != "gone"
        }


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_check_goes_out_at_once_and_busy_slots_share_the_next_statement() -> None:
    check = FakeCheck()
    checks = TokenChecks(FakeDatabase, check=check, in_flight=1)
    first = asyncio.create_task(checks.check((WORKSPACE, "bob")))
    await _settle()
    assert check.batches == [[(WORKSPACE, "bob")]]
    users = ["alice", "mod", "gone", "alice"]
    later = [asyncio.create_task(checks.check((WORKSPACE, u))) for u in users]
    await _settle()
    assert len(check.batches) == 1  # the one slot is busy: the others wait together
    check.release.set()
    found = await asyncio.gather(first, *later)
    # One statement for the four waiting requests, each user asked once.
    assert check.batches[1] == [(WORKSPACE, "alice"), (WORKSPACE, "mod"), (WORKSPACE, "gone")]
    assert [f.role if f else None for f in found] == ["user", "user", "moderator", None, "user"]


async def test_a_failed_statement_fails_its_callers_and_frees_the_slot() -> None:
    check = FakeCheck(Unavailable("PostgreSQL is unavailable"))
    check.release.set()
    checks = TokenChecks(FakeDatabase, check=check, in_flight=1)
    outcomes = await asyncio.gather(
        checks.check((WORKSPACE, "bob")), checks.check((WORKSPACE, "eve")), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes)
    check.fail = None
    found = await checks.check((WORKSPACE, "bob"))
    assert found is not None and found.role == "user"


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_no_check_is_left_waiting(in_flight: int) -> None:
    check = FakeCheck()
    check.release.set()
    checks = TokenChecks(FakeDatabase, check=check, in_flight=in_flight, max_batch=3)
    found = await asyncio.gather(*(checks.check((WORKSPACE, f"u{i}")) for i in range(20)))
    assert all(f is not None for f in found)
    assert max(len(b) for b in check.batches) <= 3
