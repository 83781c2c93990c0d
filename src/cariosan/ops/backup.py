"""`cariosan backup create|verify|list|prune`: one consistent snapshot of PostgreSQL (pg_dump,
custom format, compressed), the attachment files, and a manifest that proves both.

A backup is a folder `cariosan-YYYYMMDDTHHMMSSZ/` holding `database.dump`, `attachments/<key>`
and `manifest.json` (versions, row counts per table, every file's size and sha256). It is written
as `<name>.partial/` and renamed when complete, so a folder without that suffix is whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from cariosan import __version__
from cariosan.config import Settings
from cariosan.db import backup as facts
from cariosan.db import schema
from cariosan.db.pool import connect, describe_dsn, wait_for_database
from cariosan.ops import pg_tools
from cariosan.ops.backup_files import check_key, open_files

MANIFEST = "manifest.json"
DUMP = "database.dump"
FORMAT = "cariosan-backup/1"
PREFIX = "cariosan-"
PARTIAL = ".partial"
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup could not be made, verified or read; the message is one line."""


# (description, total or None) -> advance(n); the CLI draws these as rich progress bars.
Phase = Callable[[str, float | None], Callable[[float], None]]


def no_progress(description: str, total: float | None) -> Callable[[float], None]:
    return lambda n: None


@dataclass
class FileEntry:
    path: str
    size: int
    sha256: str
    key: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass
class Manifest:
    release: str
    schema_version: int
    postgresql_version: str
    postgresql_version_num: int
    created_at: datetime
    database: str
    row_counts: dict[str, int]
    dump_bytes: int
    sql_bytes: int
    attachments_included: bool
    attachments_source: str | None
    files: list[FileEntry] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        return self.sql_bytes / self.dump_bytes if self.dump_bytes else 0.0

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "release": self.release,
            "schema_version": self.schema_version,
            "postgresql_version": self.postgresql_version,
            "postgresql_version_num": self.postgresql_version_num,
            "created_at": self.created_at.isoformat(),
            "database": self.database,
            "row_counts": self.row_counts,
            "compression": {
                "dump_bytes": self.dump_bytes,
                "sql_bytes": self.sql_bytes,
                "ratio": round(self.compression_ratio, 2),
            },
            "attachments": {
                "included": self.attachments_included,
                "source": self.attachments_source,
                "count": sum(1 for f in self.files if f.key is not None),
            },
            "files": [f.as_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise BackupError(f"unknown backup format {data.get('format')!r} (expected {FORMAT})")
        return cls(
            release=data["release"],
            schema_version=int(data["schema_version"]),
            postgresql_version=data["postgresql_version"],
            postgresql_version_num=int(data["postgresql_version_num"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            database=data["database"],
            row_counts={k: int(v) for k, v in data["row_counts"].items()},
            dump_bytes=int(data["compression"]["dump_bytes"]),
            sql_bytes=int(data["compression"]["sql_bytes"]),
            attachments_included=bool(data["attachments"]["included"]),
            attachments_source=data["attachments"].get("source"),
            files=[
                FileEntry(f["path"], int(f["size"]), f["sha256"], f.get("key"))
                for f in data["files"]
            ],
        )


def read_manifest(backup: Path) -> Manifest:
    path = backup / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{backup} is not a cariosan backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from None
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"{path} is damaged: {exc.__class__.__name__}: {exc}") from None


def sha256_file(path: Path, advance: Callable[[float], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


# -- running the PostgreSQL client programs ----------------------------------------------------


async def _run(args: list[str], dsn: str, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=pg_tools.libpq_env(dsn),
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{what} failed: {first_error(err)}")


def first_error(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    return lines[-1] if lines else "no output"


async def sql_size(pg_restore: Path, dump: Path, advance: Callable[[float], None]) -> int:
    """Bytes of SQL the dump stands for: `pg_restore -f -` streamed and counted."""
    proc = await asyncio.create_subprocess_exec(
        str(pg_restore),
        "-f",
        "-",
        str(dump),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    total = 0
    while chunk := await proc.stdout.read(_CHUNK):
        total += len(chunk)
        advance(len(chunk))
    err = await proc.stderr.read()
    if await proc.wait() != 0:
        raise BackupError(f"pg_restore could not read the dump: {first_error(err)}")
    return total


async def server_major(conn: asyncpg.Connection) -> tuple[int, str, int]:
    num = await facts.server_version_num(conn)
    return num // 10000, await facts.server_version(conn), num


# -- create ---------------------------------------------------------------------------------


def _new_folder(out: Path, now: datetime) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    base = f"{PREFIX}{now:%Y%m%dT%H%M%SZ}"
    name, n = base, 1
    while (out / name).exists() or (out / (name + PARTIAL)).exists():
        n += 1
        name = f"{base}-{n}"
    partial = out / (name + PARTIAL)
    partial.mkdir()
    return partial, out / name


async def create_backup(
    settings: Settings,
    out: Path,
    *,
    attachments: bool = True,
    phase: Phase = no_progress,
) -> tuple[Path, Manifest]:
    """Dump the database and copy the attachment files into a new folder under `out`."""
    dsn = settings.require_database()
    now = datetime.now(UTC)
    await wait_for_database(dsn, settings.database_wait_seconds)
    conn = await connect(dsn)
    try:
        major, version, version_num = await server_major(conn)
        try:
            pg_dump = pg_tools.find_tool("pg_dump", major)
            pg_restore = pg_tools.find_tool("pg_restore", major)
        except pg_tools.PgToolMissing as exc:
            raise BackupError(str(exc)) from None
        schema_version = await schema.schema_version(conn)
        partial, final = _new_folder(out, now)
        try:
            dump = partial / DUMP
            step = phase("dumping PostgreSQL", None)
            # One snapshot for the row counts and the dump: the counts describe exactly it.
            transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            await transaction.start()
            try:
                snapshot = await facts.export_snapshot(conn)
                counts = await facts.row_counts(conn)
                await _run(
                    [
                        str(pg_dump),
                        "--format=custom",
                        "--compress=6",
                        f"--snapshot={snapshot}",
                        "--file",
                        str(dump),
                        "--dbname",
                        pg_tools.without_password(dsn),
                    ],
                    dsn,
                    "pg_dump",
                )
            finally:
                await transaction.rollback()
            dump_bytes = dump.stat().st_size
            step(dump_bytes)
            sql_bytes = await sql_size(pg_restore, dump, phase("measuring the compression", None))
            manifest = Manifest(
                release=__version__,
                schema_version=schema_version,
                postgresql_version=version,
                postgresql_version_num=version_num,
                created_at=now,
                database=describe_dsn(dsn),
                row_counts=counts,
                dump_bytes=dump_bytes,
                sql_bytes=sql_bytes,
                attachments_included=attachments,
                attachments_source=None,
            )
            manifest.files.append(
                FileEntry(
                    DUMP, dump_bytes, sha256_file(dump, phase("checksum of the dump", dump_bytes))
                )
            )
            if attachments:
                await asyncio.to_thread(_copy_attachments, settings, partial, manifest, phase)
            (partial / MANIFEST).write_text(
                json.dumps(manifest.as_json(), indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        await facts.record_last_backup(conn, datetime.now(UTC))
    finally:
        await conn.close()
    return final, manifest


def _copy_attachments(settings: Settings, folder: Path, manifest: Manifest, phase: Phase) -> None:
    store = open_files(settings)
    manifest.attachments_source = store.description
    try:
        listed = list(store.list())
    except Exception as exc:
        raise BackupError(
            f"cannot list the attachment files ({store.description}): "
            f"{exc.__class__.__name__}: {exc} (use --no-attachments to back up the database only)"
        ) from None
    advance = phase("copying attachment files", sum(f.size for f in listed) or None)
    for item in listed:
        relative = f"attachments/{check_key(item.key)}"
        target = folder / relative
        store.download(item.key, target)
        size = target.stat().st_size
        manifest.files.append(FileEntry(relative, size, sha256_file(target), key=item.key))
        advance(size)


# -- verify ---------------------------------------------------------------------------------


def check_files(backup: Path, manifest: Manifest, phase: Phase = no_progress) -> list[str]:
    """Problems with the files: missing, wrong size, wrong checksum (empty when all match)."""
    problems = []
    advance = phase("checking checksums", manifest.total_bytes or None)
    for entry in manifest.files:
        path = backup / entry.path
        if not path.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
            advance(entry.size)
            continue
        if sha256_file(path, advance) != entry.sha256:
            problems.append(f"{entry.path}: sha256 does not match the manifest")
    return problems


@dataclass
class Verification:
    files_checked: int
    bytes_checked: int
    row_counts: dict[str, int]


async def verify_backup(
    settings: Settings, backup: Path, phase: Phase = no_progress
) -> Verification:
    """Every checksum, then a trial restore into a scratch database whose row counts must
    equal the manifest's. The scratch database is dropped whatever happens."""
    manifest = read_manifest(backup)
    problems = await asyncio.to_thread(check_files, backup, manifest, phase)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BackupError(f"{backup.name} is damaged: {problems[0]}{more}")
    dsn = settings.require_database()
    await wait_for_database(dsn, settings.database_wait_seconds)
    conn = await connect(dsn)
    scratch = f"cariosan_verify_{uuid.uuid4().hex[:12]}"
    try:
        major, _, _ = await server_major(conn)
        pg_restore = restore_tool(major, manifest)
        await facts.create_scratch_database(conn, scratch)
        try:
            step = phase("trial restore", None)
            scratch_dsn = pg_tools.with_database(dsn, scratch)
            await _run(
                [
                    str(pg_restore),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--dbname",
                    pg_tools.without_password(scratch_dsn),
                    str(backup / DUMP),
                ],
                dsn,
                "the trial restore (pg_restore)",
            )
            step(manifest.dump_bytes)
            restored = await asyncpg.connect(scratch_dsn)
            try:
                counts = await facts.row_counts(restored)
            finally:
                await restored.close()
        finally:
            await facts.drop_database(conn, scratch)
    finally:
        await conn.close()
    mismatch = compare_counts(manifest.row_counts, counts)
    if mismatch:
        raise BackupError(
            f"the trial restore of {backup.name} differs from its manifest: {mismatch}"
        )
    return Verification(len(manifest.files), manifest.total_bytes, counts)


def restore_tool(server_major: int, manifest: Manifest) -> Path:
    dumped_major = manifest.postgresql_version_num // 10000
    if server_major < dumped_major:
        raise BackupError(
            f"the backup comes from PostgreSQL {dumped_major} and this server runs "
            f"{server_major}: restore it into PostgreSQL {dumped_major} or newer"
        )
    try:
        return pg_tools.find_tool("pg_restore", server_major)
    except pg_tools.PgToolMissing as exc:
        raise BackupError(str(exc)) from None


def compare_counts(expected: dict[str, int], found: dict[str, int]) -> str | None:
    """The first difference between two row-count maps, in words, or None."""
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want != got:
            return f"table {table}: {got if got is not None else 'missing'} rows, expected {want}"
    return None


# -- list and prune ----------------------------------------------------------------------------


@dataclass
class Listed:
    path: Path
    manifest: Manifest


def list_backups(out: Path) -> list[Listed]:
    """The complete backups under `out`, oldest first (damaged manifests are skipped)."""
    found: list[Listed] = []
    if not out.is_dir():
        return found
    for child in out.iterdir():
        if not child.is_dir() or not child.name.startswith(PREFIX) or child.name.endswith(PARTIAL):
            continue
        try:
            found.append(Listed(child, read_manifest(child)))
        except BackupError:
            continue
    found.sort(key=lambda b: (b.manifest.created_at, b.path.name))
    return found


def prune_backups(out: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete backups under `out`; the deleted paths."""
    if keep < 1:
        raise BackupError("--keep must be at least 1: prune never deletes the newest backup")
    backups = list_backups(out)
    doomed = [b.path for b in backups[: max(0, len(backups) - keep)]]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def listing_json(item: Listed) -> dict[str, Any]:
    m = item.manifest
    return {
        "path": str(item.path),
        "name": item.path.name,
        "created_at": m.created_at.isoformat(),
        "release": m.release,
        "schema_version": m.schema_version,
        "postgresql_version": m.postgresql_version,
        "bytes": m.total_bytes,
        "attachments": sum(1 for f in m.files if f.key is not None)
        if m.attachments_included
        else None,
    }
