"""`cariosan restore PATH [--force]`: put a backup back, database and attachment files.

The database is restored clean and atomically: in one transaction the `public` schema is dropped
and recreated and the dump loaded into it, so afterwards the database holds exactly what the dump
holds (a failure leaves it as it was). The attachment store is made equal to the backup's files:
missing ones uploaded, extra ones deleted.

A server still connected would keep writing while the restore runs and leave a state that is
neither the backup nor the live data, so the restore refuses while one is connected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from cariosan.config import Settings
from cariosan.db import backup as facts
from cariosan.db.pool import connect, describe_dsn, wait_for_database
from cariosan.ops import pg_tools
from cariosan.ops.backup import (
    DUMP,
    BackupError,
    Manifest,
    Phase,
    check_files,
    compare_counts,
    first_error,
    no_progress,
    read_manifest,
    restore_tool,
    server_major,
)
from cariosan.ops.backup_files import BucketFiles, open_files


class ServersConnected(BackupError):
    """Refused: `cariosan` servers are connected to the database."""


@dataclass
class Restored:
    database: str
    row_counts: dict[str, int]
    files_uploaded: int
    files_deleted: int


# Run before the dump's SQL, in the same transaction. The schema is recreated as PostgreSQL 15
# creates it (owned by the database owner, usable by everyone).
_RESET_SCHEMA = [
    "DROP SCHEMA IF EXISTS public CASCADE",
    "CREATE SCHEMA public AUTHORIZATION pg_database_owner",
    "GRANT USAGE ON SCHEMA public TO PUBLIC",
]


async def restore_backup(
    settings: Settings, backup: Path, *, force: bool = False, phase: Phase = no_progress
) -> Restored:
    manifest = read_manifest(backup)
    problems = await asyncio.to_thread(check_files, backup, manifest, phase)
    if problems:
        raise BackupError(f"not restoring {backup.name}: it is damaged: {problems[0]}")
    dsn = settings.require_database()
    await wait_for_database(dsn, settings.database_wait_seconds)
    conn = await connect(dsn)
    try:
        servers = await facts.connected_servers(conn)
        if servers and not force:
            clients = sorted({s.client_address or "a local socket" for s in servers})
            backends = ", ".join(str(s.pid) for s in servers)
            raise ServersConnected(
                f"cariosan servers are still connected to {describe_dsn(dsn)}: "
                f"{len(servers)} connection(s) named {servers[0].application_name} from "
                f"{', '.join(clients)} (PostgreSQL backend pids {backends}); "
                "stop every server first (with the compose deployment: "
                "docker compose -f deploy/docker-compose.yml stop cariosan-server), "
                "or pass --force to restore under them"
            )
        major, _, _ = await server_major(conn)
        pg_restore = restore_tool(major, manifest)
        try:
            psql = pg_tools.find_tool("psql", major)
        except pg_tools.PgToolMissing as exc:
            raise BackupError(str(exc)) from None
        step = phase("restoring PostgreSQL", None)
        await _load_dump(pg_restore, psql, dsn, backup / DUMP)
        step(manifest.dump_bytes)
        step = phase("updating planner statistics", None)
        await facts.analyze(conn)
        step(1)
        counts = await facts.row_counts(conn)
    finally:
        await conn.close()
    mismatch = compare_counts(manifest.row_counts, counts)
    if mismatch:
        raise BackupError(f"the restored database differs from the manifest: {mismatch}")
    uploaded = deleted = 0
    if manifest.attachments_included:
        uploaded, deleted = await asyncio.to_thread(
            _restore_files, settings, backup, manifest, phase
        )
    return Restored(describe_dsn(dsn), counts, uploaded, deleted)


async def _load_dump(pg_restore: Path, psql: Path, dsn: str, dump: Path) -> None:
    """pg_restore writes the dump as SQL; psql runs the schema reset and it as one transaction."""
    env = pg_tools.libpq_env(dsn)
    reader = await asyncio.create_subprocess_exec(
        str(pg_restore),
        "--no-owner",
        "--no-privileges",
        "--file",
        "-",
        str(dump),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    resets = [arg for statement in _RESET_SCHEMA for arg in ("--command", statement)]
    loader = await asyncio.create_subprocess_exec(
        str(psql),
        "--no-psqlrc",
        "--quiet",
        "--set",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        *resets,
        "--file",
        "-",
        "--dbname",
        pg_tools.without_password(dsn),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert loader.stdin is not None
    assert loader.stderr is not None

    async def pump() -> None:
        assert reader.stdout is not None
        assert loader.stdin is not None
        try:
            while chunk := await reader.stdout.read(1 << 20):
                loader.stdin.write(chunk)
                await loader.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # psql stopped at an error: its stderr says which
        finally:
            loader.stdin.close()

    _, reader_err, loader_err = await asyncio.gather(
        pump(), reader.stderr.read(), loader.stderr.read()
    )
    reader_code, loader_code = await reader.wait(), await loader.wait()
    if loader_code != 0:
        raise BackupError(
            f"the restore failed and was rolled back (psql): {first_error(loader_err)}"
        )
    if reader_code != 0:
        raise BackupError(f"pg_restore could not read the dump: {first_error(reader_err)}")


def _restore_files(
    settings: Settings, backup: Path, manifest: Manifest, phase: Phase
) -> tuple[int, int]:
    store = open_files(settings)
    if isinstance(store, BucketFiles):
        store.ensure_bucket()
    wanted = [f for f in manifest.files if f.key is not None]
    keys = {f.key for f in wanted}
    advance = phase("restoring attachment files", sum(f.size for f in wanted) or None)
    for entry in wanted:
        assert entry.key is not None
        store.upload(backup / entry.path, entry.key)
        advance(entry.size)
    extra = [item.key for item in store.list() if item.key not in keys]
    for key in extra:
        store.delete(key)
    return len(wanted), len(extra)
