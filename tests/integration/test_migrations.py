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


NO_TX = schema.NO_TRANSACTION_MARKER


async def test_a_concurrent_index_migration_does_not_block_writes(database_url: str) -> None:
    """`CREATE INDEX CONCURRENTLY` in a no-transaction file: while it waits for an older
    transaction, inserts into the table still go through; then it finishes and is recorded."""
    build = Migration(
        9003,
        "events_by_type",
        f"{NO_TX}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS events_type_idx ON events (type);\n",
    )
    old_reader = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    try:
        # An open transaction that wrote to the table: the build waits for it whatever else
        # runs on the server. (One that only read would be waited for only when its snapshot
        # is older than the build's, which another database's long transaction can prevent.)
        await old_reader.execute("BEGIN")
        await old_reader.execute(
            "INSERT INTO events (workspace_id, seq, type, payload) "
            "VALUES (gen_random_uuid(), -2, 'test.before', '{}')"
        )
        migrating = asyncio.create_task(_migrate(database_url, [*schema.load_migrations(), build]))
        # The build is under way (and waiting for the old reader) once it holds its lock.
        while not await writer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%'"
            " AND datname = current_database()"
        ):
            await asyncio.sleep(0.05)
        await asyncio.wait_for(
            writer.execute(
                "INSERT INTO events (workspace_id, seq, type, payload) "
                "VALUES (gen_random_uuid(), -1, 'test.during', '{}')"
            ),
            timeout=30,
        )
        if migrating.done():
            raise AssertionError(f"the build ended before the writer could write: {migrating!r}")
        await old_reader.execute("COMMIT")
        report = await asyncio.wait_for(migrating, timeout=60)
    finally:
        await old_reader.close()
        await writer.close()
    assert [m.version for m in report.applied_now] == [9003]
    assert (9003, build.checksum) in await _applied(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'events_type_idx'"
        )
    finally:
        await conn.close()


async def test_an_interrupted_concurrent_build_is_repaired_on_the_next_run(
    database_url: str,
) -> None:
    unique = Migration(
        9004,
        "unique_names",
        f"{NO_TX}\nCREATE TABLE IF NOT EXISTS names (n text);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS names_n_idx ON names (n);\n",
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE names (n text); INSERT INTO names VALUES ('a'), ('a')")
        with pytest.raises(MigrationError, match="9004_unique_names.sql failed"):
            await _migrate(database_url, [*schema.load_migrations(), unique])
        # The failed build left an invalid index behind and nothing recorded.
        assert await conn.fetchval(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'names_n_idx'"
        )
        assert 9004 not in [v for v, _ in await _applied(database_url)]
        await conn.execute("DELETE FROM names WHERE ctid = (SELECT max(ctid) FROM names)")
        report = await _migrate(database_url, [*schema.load_migrations(), unique])
        assert [m.version for m in report.applied_now] == [9004]
        assert await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'names_n_idx'"
        )
    finally:
        await conn.close()
