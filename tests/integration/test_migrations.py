"""Migrations run once, under the advisory lock, and refuse a tampered history."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cariosan.db import schema
from cariosan.db.schema import Migration, MigrationError


async def _applied(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        return [(r["version"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def _migrate(dsn: str, known: list[Migration] | None = None) -> schema.MigrationReport:
    conn = await asyncpg.connect(dsn)
    try:
        return await schema.migrate(conn, known)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    reports = await asyncio.gather(*(_migrate(empty_database_url) for _ in range(4)))
    shipped = schema.load_migrations()
    applied_now = sorted(m.version for r in reports for m in r.applied_now)
    assert applied_now == [m.version for m in shipped]
    assert await _applied(empty_database_url) == [(m.version, m.checksum) for m in shipped]


async def test_second_run_applies_nothing(empty_database_url: str) -> None:
    await _migrate(empty_database_url)
    report = await _migrate(empty_database_url)
    assert report.applied_now == []
    assert report.schema_version == max(m.version for m in schema.load_migrations())


async def test_changed_checksum_stops_with_a_clear_error(empty_database_url: str) -> None:
    await _migrate(empty_database_url)
    first = schema.load_migrations()[0]
    tampered = [Migration(first.version, first.name, first.sql + "\n-- edited\n")]
    with pytest.raises(MigrationError, match=f"{first.filename} was changed after it was applied"):
        await _migrate(empty_database_url, tampered)


async def test_unknown_future_migration_is_reported_not_refused(database_url: str) -> None:
    future = Migration(9001, "future_feature", "CREATE TABLE future_things (id bigint);")
    await _migrate(database_url, [*schema.load_migrations(), future])
    report = await _migrate(database_url)
    assert [a.version for a in report.ahead] == [9001]
    assert report.applied_now == []


async def test_failed_migration_leaves_nothing_half_applied(empty_database_url: str) -> None:
    broken = [
        *schema.load_migrations(),
        Migration(9002, "broken", "CREATE TABLE half (id int); SELECT no_such_function();"),
    ]
    with pytest.raises(MigrationError, match="9002_broken.sql failed"):
        await _migrate(empty_database_url, broken)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert (
            await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9002") == 0
        )
    finally:
        await conn.close()
