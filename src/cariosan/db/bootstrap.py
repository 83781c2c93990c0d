"""Bringing the database up for a process: wait for PostgreSQL, migrate, open the pool."""

from __future__ import annotations

from dataclasses import dataclass

from cariosan.db import schema
from cariosan.db.pool import Database, connect, wait_for_database


@dataclass
class Prepared:
    database: Database
    report: schema.MigrationReport
    pending: int


async def prepare_database(
    dsn: str, wait_seconds: float, *, pool_min: int = 2, pool_max: int = 20
) -> Prepared:
    """Raises DatabaseUnreachable or MigrationError with a one-line reason."""
    await wait_for_database(dsn, wait_seconds)
    conn = await connect(dsn)
    try:
        report = await schema.migrate(conn)
        pending = await schema.pending_migrations(conn)
    finally:
        await conn.close()
    database = await Database.open(dsn, min_size=pool_min, max_size=pool_max)
    return Prepared(database=database, report=report, pending=len(pending))
