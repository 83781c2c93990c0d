"""A connection broken by the server going away surfaces as UNAVAILABLE (503), never as a 500,
whichever asyncpg error the broken connection raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from cariosan.db.pool import Database
from cariosan.errors import Unavailable

# What asyncpg 0.29-0.32 raises on a pooled connection whose server sent its shutdown FATAL
# while the connection was idle (seen during a PostgreSQL restart under load).
BROKEN = "cannot switch to state 12; another operation (2) is in progress"


class _Connection:
    async def fetchval(self, query: str, *args: Any) -> Any:
        raise asyncpg.exceptions.InternalClientError(BROKEN)


class _Pool:
    """Hands out the broken connection; `fail_release`: the reset on release fails too."""

    def __init__(self, *, fail_release: bool) -> None:
        self.fail_release = fail_release

    @asynccontextmanager
    async def acquire(self, timeout: float) -> AsyncIterator[Any]:
        yield _Connection()
        if self.fail_release:
            raise asyncpg.exceptions.InternalClientError(BROKEN.replace("12", "15"))


async def test_a_query_on_a_connection_the_server_dropped_is_unavailable() -> None:
    database = Database(_Pool(fail_release=False))  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        await database.fetchval("SELECT 1")


async def test_a_failed_reset_when_the_connection_goes_back_is_unavailable() -> None:
    database = Database(_Pool(fail_release=True))  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        async with database.connection():
            pass  # the block succeeded; only the release saw the dropped connection
