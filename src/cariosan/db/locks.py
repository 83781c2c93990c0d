"""Session-level advisory locks: one server of a deployment at a time runs a background job.

A session lock outlives transactions, so the pooled connection that took it is marked
(`pool.holds_session_state`): the pool resets it before another request gets it, which also
drops the lock if the job died before releasing it."""

from __future__ import annotations

import asyncpg

from cariosan.db.pool import holds_session_state

# Any fixed 64-bit numbers, shared by every server of a deployment; migrations use another key
# (db/schema.py), on a connection of their own.
ATTACHMENT_CLEANUP = 0x43617269_6F736132
RETENTION = 0x43415249_5452494D  # "CARITRIM"


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the lock `key` for this session if no other session holds it."""
    holds_session_state(conn)
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
