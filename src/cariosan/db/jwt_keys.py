"""SQL for the JWT secrets servers were started with (by fingerprint), and which are retired."""

from __future__ import annotations

import asyncpg

# Any fixed 64-bit number: servers starting at once record their secrets one at a time.
JWT_KEYS_LOCK_KEY = 0x43415249_4A574B31  # "CARIJWK1"


async def register(conn: asyncpg.Connection, current: str, previous: str | None) -> None:
    """Record a starting server's secrets, and retire the older ones it no longer holds.

    A secret is retired only by a configuration whose current secret was first seen after it
    (and is not itself retired), so a node restarted with a stale configuration during a
    rolling deploy never retires the newer secret: it only finds its own secret refused.
    Naming a retired secret as the previous one brings it back (the operator keeps it for
    verification on purpose, e.g. to undo a rotation that logged everyone out).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", JWT_KEYS_LOCK_KEY)
        # The previous secret first: seen together for the first time, it is the older one.
        for fingerprint in ([previous] if previous else []) + [current]:
            await conn.execute(
                "INSERT INTO jwt_keys (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING",
                fingerprint,
            )
        if previous:
            await conn.execute(
                "UPDATE jwt_keys SET retired_at = NULL WHERE fingerprint = $1", previous
            )
        await conn.execute(
            """
            UPDATE jwt_keys k SET retired_at = clock_timestamp()
            FROM jwt_keys c
            WHERE c.fingerprint = $1 AND c.retired_at IS NULL
              AND k.retired_at IS NULL AND k.first_seen < c.first_seen
              AND k.fingerprint <> ALL($2::text[])
            """,
            current,
            [current, *([previous] if previous else [])],
        )


async def retired(conn: asyncpg.Connection) -> frozenset[str]:
    rows = await conn.fetch("SELECT fingerprint FROM jwt_keys WHERE retired_at IS NOT NULL")
    return frozenset(r["fingerprint"] for r in rows)
