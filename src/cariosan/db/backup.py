"""SQL for backup and restore: the server's version, row counts, who is connected, and the
last-backup fact that `/metrics` exports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cariosan.db.pool import SERVER_APPLICATION_NAME

LAST_BACKUP_FACT = "last_backup_at"


@dataclass(frozen=True)
class ConnectedServer:
    application_name: str
    client_address: str
    pid: int
    backend_start: datetime | None


async def server_version_num(conn: asyncpg.Connection) -> int:
    """`SHOW server_version_num`, e.g. 150020 for 15.20 (major = value // 10000)."""
    return int(await conn.fetchval("SHOW server_version_num"))


async def server_version(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SHOW server_version"))


async def table_names(conn: asyncpg.Connection) -> list[str]:
    """The ordinary tables of the `public` schema, sorted."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [r["relname"] for r in rows]


async def analyze(conn: asyncpg.Connection) -> None:
    """Planner statistics for every table of the database. A restore loads rows without
    them, and until autovacuum's first pass plans are guesses: the sequencer's round, for one,
    would read the whole event log (db/events.py)."""
    await conn.execute("ANALYZE")


async def row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per table of the `public` schema, as the connection's snapshot sees them."""
    counts: dict[str, int] = {}
    for name in await table_names(conn):
        quoted = '"' + name.replace('"', '""') + '"'
        query = f"SELECT count(*) FROM public.{quoted}"  # noqa: S608 - a quoted catalog name
        counts[name] = int(await conn.fetchval(query))
    return counts


async def export_snapshot(conn: asyncpg.Connection) -> str:
    """Export the snapshot of the connection's open REPEATABLE READ transaction, for
    `pg_dump --snapshot`: the dump then sees exactly what this transaction sees."""
    return str(await conn.fetchval("SELECT pg_export_snapshot()"))


async def connected_servers(conn: asyncpg.Connection) -> list[ConnectedServer]:
    """`cariosan` servers connected to this connection's database (their pools name
    themselves `cariosan-server`)."""
    rows = await conn.fetch(
        "SELECT pid, application_name, client_addr::text AS addr, client_port, backend_start "
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = $1 AND pid <> pg_backend_pid() ORDER BY backend_start",
        SERVER_APPLICATION_NAME,
    )
    servers = []
    for r in rows:
        if r["addr"] is None:
            where = "local socket"
        else:
            where = f"{r['addr'].split('/')[0]}:{r['client_port']}"
        servers.append(ConnectedServer(r["application_name"], where, r["pid"], r["backend_start"]))
    return servers


async def record_last_backup(conn: asyncpg.Connection, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO deployment_facts (key, value, updated_at) VALUES ($1, $2, now()) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        LAST_BACKUP_FACT,
        at.isoformat(),
    )


async def last_backup(conn: asyncpg.Connection) -> datetime | None:
    """When the last successful `cariosan backup create` finished, or None."""
    value = await conn.fetchval(
        "SELECT value FROM deployment_facts WHERE key = $1", LAST_BACKUP_FACT
    )
    return datetime.fromisoformat(value) if value else None


async def create_scratch_database(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'CREATE DATABASE "{name}"')


async def drop_database(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
