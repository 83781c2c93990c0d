"""The pool's release: only a connection that took session state pays for a reset, and that
reset drops what a job left behind (a session advisory lock it never released)."""

from __future__ import annotations

import asyncpg

from cariosan.db import locks
from cariosan.db.pool import Database

KEY = 0x43415249_54455354  # "CARITEST": no job of the server uses it


async def _backend_pid(database: Database) -> int:
    async with database.connection() as conn:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def test_a_session_lock_left_behind_is_dropped_when_the_connection_goes_back(
    database_url: str,
) -> None:
    database = await Database.open(database_url, min_size=1, max_size=1)
    other = await asyncpg.connect(database_url)
    try:
        async with database.connection() as conn:
            assert await locks.try_lock(conn, KEY)
            # The job dies here without unlocking: the lock is still held by the session.
            assert not await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        # Back in the pool (one connection: the same session), the lock is gone.
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)
        # The reset was for that one checkout: the next ones run no reset query.
        async with database.connection() as conn:
            assert not conn.session_state
    finally:
        await other.close()
        await database.close()


async def test_a_transaction_left_open_is_rolled_back_and_the_connection_kept(
    database_url: str,
) -> None:
    database = await Database.open(database_url, min_size=1, max_size=1)
    try:
        pid = await _backend_pid(database)
        async with database.connection() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (n int)")
        async with database.connection() as conn:
            assert not await conn.fetchval(
                "SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL"
            )
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
        assert await _backend_pid(database) == pid
    finally:
        await database.close()
