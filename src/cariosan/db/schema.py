"""Schema migrations: numbered SQL files applied once, in order, under an advisory lock.

Migrations are additive only (see `lint_migration`), so an older release runs on a newer schema:
versions it does not know are reported as "ahead", never an error. A migration whose text changed
after it was applied is an error, because the database no longer matches what the code expects.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import asyncpg

# Any fixed 64-bit number; every server uses the same one so only one migrates at a time.
MIGRATION_LOCK_KEY = 0x43415249_4F53414E  # "CARIOSAN"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# A migration whose first line is this runs outside a transaction, one statement at a time:
# `CREATE INDEX CONCURRENTLY` (which builds an index on a big, live table without blocking its
# writes) cannot run inside one. Every statement of such a file must be safe to run again
# (`IF NOT EXISTS`): a failure part-way leaves the earlier ones done, and the next boot repeats
# the file, which is recorded (with its checksum) only once all of it has run.
NO_TRANSACTION_MARKER = "-- cariosan: no-transaction"
# How often a server that waits for another one's migrations asks for the lock again.
LOCK_POLL_SECONDS = 0.5


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def in_transaction(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)

    def statements(self) -> list[str]:
        """The file's statements (split on `;` at line ends, comments dropped)."""
        text = _strip_comments(self.sql)
        return [part.strip() for part in re.split(r";\s*(?:\n|$)", text) if part.strip()]


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


@dataclass
class MigrationReport:
    applied_now: list[Migration] = field(default_factory=list)
    # Versions present in the database that this release does not ship (a newer release's).
    ahead: list[AppliedMigration] = field(default_factory=list)
    schema_version: int = 0


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations shipped with this release (or found in `directory`), in version order."""
    found: list[Migration] = []
    if directory is None:
        files = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in resources.files("cariosan.db").joinpath("migrations").iterdir()
            if entry.name.endswith(".sql")
        ]
    else:
        files = [(p.name, p.read_text(encoding="utf-8")) for p in directory.glob("*.sql")]
    for name, text in files:
        match = _FILE_NAME.match(name)
        if not match:
            raise MigrationError(f"migration file {name!r} is not named NNNN_name.sql")
        found.append(Migration(version=int(match.group(1)), name=match.group(2), sql=text))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_migrations(conn: asyncpg.Connection) -> list[AppliedMigration]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    )
    return [AppliedMigration(r["version"], r["name"], r["checksum"]) for r in rows]


def compare(
    known: list[Migration], applied: list[AppliedMigration]
) -> tuple[list[Migration], list[AppliedMigration]]:
    """(pending, ahead); raises MigrationError when an applied migration's file changed."""
    by_version = {a.version: a for a in applied}
    for migration in known:
        done = by_version.get(migration.version)
        if done is not None and done.checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was changed after it was applied "
                f"(database has checksum {done.checksum[:12]}, file has "
                f"{migration.checksum[:12]}): restore the original file; never edit an applied "
                "migration, add a new one"
            )
    known_versions = {m.version for m in known}
    pending = [m for m in known if m.version not in by_version]
    ahead = [a for a in applied if a.version not in known_versions]
    return pending, ahead


async def pending_migrations(
    conn: asyncpg.Connection, known: list[Migration] | None = None
) -> list[Migration]:
    known = load_migrations() if known is None else known
    pending, _ = compare(known, await applied_migrations(conn))
    return pending


async def migrate(
    conn: asyncpg.Connection, known: list[Migration] | None = None
) -> MigrationReport:
    """Apply every pending migration, each in its own transaction (or statement by statement,
    for a no-transaction file), holding the advisory lock.

    Servers started together all call this; the first takes the lock and migrates, the others
    wait for it and then find nothing left to do.
    """
    known = load_migrations() if known is None else known
    await _lock(conn)
    try:
        await conn.execute(_CREATE_TABLE)
        pending, ahead = compare(known, await applied_migrations(conn))
        report = MigrationReport(ahead=ahead)
        for migration in pending:
            try:
                if migration.in_transaction:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await _record(conn, migration)
                else:
                    for statement in migration.statements():
                        await _repair_invalid_index(conn, statement)
                        await conn.execute(statement)
                    await _record(conn, migration)
            except asyncpg.exceptions.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.filename} failed: {exc.__class__.__name__}: {exc}"
                ) from exc
            report.applied_now.append(migration)
        report.schema_version = await schema_version(conn)
        return report
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _lock(conn: asyncpg.Connection) -> None:
    """Take the migration lock, polling rather than blocking in `pg_advisory_lock`: a server
    waiting inside a statement holds a snapshot, and `CREATE INDEX CONCURRENTLY` run by the
    lock holder waits for every such snapshot to end (a deadlock)."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
            return
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _record(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )


_CONCURRENT_INDEX = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I
)


async def _repair_invalid_index(conn: asyncpg.Connection, statement: str) -> None:
    """An interrupted `CREATE INDEX CONCURRENTLY` leaves an invalid index of that name, which
    `IF NOT EXISTS` would then keep for good: drop it so that the build runs again."""
    match = _CONCURRENT_INDEX.match(statement)
    if match is None:
        return
    invalid = await conn.fetchval(
        """
        SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace
          AND NOT i.indisvalid
        """,
        match.group(1),
    )
    if invalid is not None:
        await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{invalid}"')


async def schema_version(conn: asyncpg.Connection) -> int:
    applied = await applied_migrations(conn)
    return max((a.version for a in applied), default=0)


# Statements that would break an older release still running on the schema, or lose data.
_FORBIDDEN = [
    (
        re.compile(r"\bDROP\s+(TABLE|COLUMN|INDEX|VIEW|SCHEMA|TYPE|SEQUENCE|CONSTRAINT)\b", re.I),
        "DROP",
    ),
    (re.compile(r"\bALTER\s+TABLE\b[^;]*\bDROP\b", re.I), "DROP"),
    (re.compile(r"\bRENAME\b", re.I), "RENAME"),
    (re.compile(r"\bALTER\s+COLUMN\b[^;]*\b(TYPE|SET\s+DATA\s+TYPE)\b", re.I), "ALTER COLUMN TYPE"),
    (re.compile(r"\bALTER\s+COLUMN\b[^;]*\b(SET|DROP)\s+NOT\s+NULL\b", re.I), "ALTER COLUMN NULL"),
    (re.compile(r"\bTRUNCATE\b", re.I), "TRUNCATE"),
    (re.compile(r"\bDELETE\s+FROM\b", re.I), "DELETE"),
    (
        re.compile(r"\bADD\s+COLUMN\b[^;,]*\bNOT\s+NULL\b(?![^;,]*\bDEFAULT\b)", re.I),
        "ADD COLUMN NOT NULL without DEFAULT",
    ),
]


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


def lint_migration(sql: str) -> list[str]:
    """Reasons this migration is not additive (empty when it is)."""
    text = _strip_comments(sql)
    problems = []
    for pattern, what in _FORBIDDEN:
        for match in pattern.finditer(text):
            snippet = " ".join(match.group(0).split())[:80]
            problems.append(f"{what}: {snippet}")
    return problems
