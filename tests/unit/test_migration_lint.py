from __future__ import annotations

import pytest

from cariosan.db.schema import MigrationError, lint_migration, load_migrations


def test_shipped_migrations_are_additive() -> None:
    migrations = load_migrations()
    assert migrations, "the release ships no migration"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        assert lint_migration(migration.sql) == [], migration.filename


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE messages;",
        "drop index messages_idx;",
        "ALTER TABLE messages DROP COLUMN text;",
        "ALTER TABLE messages DROP CONSTRAINT messages_pkey;",
        "ALTER TABLE messages RENAME COLUMN text TO body;",
        "ALTER TABLE messages RENAME TO posts;",
        "ALTER TABLE messages ALTER COLUMN text TYPE varchar(10);",
        "ALTER TABLE messages ALTER COLUMN text SET DATA TYPE varchar(10);",
        "ALTER TABLE messages ALTER COLUMN text SET NOT NULL;",
        "ALTER TABLE messages ALTER COLUMN text DROP NOT NULL;",
        "ALTER TABLE messages ADD COLUMN flag boolean NOT NULL;",
        "TRUNCATE messages;",
    ],
)
def test_destructive_statements_are_refused(sql: str) -> None:
    assert lint_migration(sql), sql


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL);",
        "ALTER TABLE t ADD COLUMN note text;",
        "ALTER TABLE t ADD COLUMN flag boolean NOT NULL DEFAULT false;",
        "CREATE INDEX t_name_idx ON t (name);",
        "-- DROP TABLE t; is only a comment\nCREATE TABLE u (id int);",
        "/* RENAME in a block comment */ CREATE TABLE v (id int);",
    ],
)
def test_additive_statements_pass(sql: str) -> None:
    assert lint_migration(sql) == []


def test_misnamed_migration_file_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (id int);")
    (folder / "2_bad.sql").write_text("CREATE TABLE b (id int);")
    with pytest.raises(MigrationError, match="2_bad.sql"):
        load_migrations(folder)


def test_a_no_transaction_file_is_split_into_its_statements() -> None:
    from cariosan.db.schema import NO_TRANSACTION_MARKER, Migration

    migration = Migration(
        7,
        "indexes",
        f"{NO_TRANSACTION_MARKER}\n-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n    ON t (y);\n",
    )
    assert not migration.in_transaction
    assert migration.statements() == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n    ON t (y)",
    ]
    assert Migration(8, "plain", "CREATE TABLE t (x int);").in_transaction
    shipped = {m.version: m for m in load_migrations()}
    assert not shipped[6].in_transaction, "0006 builds its indexes concurrently"
