"""The `cariosan` command. Operator mistakes end in one line on stderr and exit 1, never a
traceback; bad arguments print usage and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from cariosan import __version__


class _Failure(Exception):
    """Raised by a command to stop with a one-line message and exit code 1."""


def _settings(args: argparse.Namespace | None = None) -> Any:
    """The settings of this command: those `_deployment` chose (a dev data folder's, or the
    environment's), else the environment's."""
    chosen = getattr(args, "settings", None)
    if chosen is not None:
        return chosen
    from cariosan.config import load_settings

    return load_settings()


@contextmanager
def _deployment(args: argparse.Namespace) -> Iterator[None]:
    """Choose what the command operates on and make it reachable for the command's duration.

    `--data-dir DIR`, or a `./.cariosan` made by `cariosan dev` when no CARIOS_DATABASE_URL is
    configured: the dev deployment in that folder, with the settings dev wrote there. If no
    `cariosan dev` is running on it, its PostgreSQL is started here and stopped afterwards.
    Otherwise: the `CARIOS_*` environment (and ./.env), as for `serve`.
    """
    import os

    from cariosan.config import load_settings, read_dotenv
    from cariosan.ops.dev_folder import (
        DEFAULT_DATA_DIR,
        SETTINGS_FILE,
        DevFolder,
        environment_with,
    )

    args.dev_folder = None
    args.dev_running = False
    explicit = getattr(args, "data_dir", None) is not None
    folder = DevFolder(Path(args.data_dir) if explicit else DEFAULT_DATA_DIR)
    environ = {**read_dotenv(Path(".env")), **os.environ}
    if explicit and not folder.exists():
        raise _Failure(
            f"{folder.path} holds no cariosan dev deployment (no {SETTINGS_FILE}): "
            f"run `cariosan dev --data-dir {folder.path}` once first"
        )
    if not explicit and (environ.get("CARIOS_DATABASE_URL") or not folder.exists()):
        args.settings = load_settings()
        yield
        return
    args.settings = load_settings(environment_with(folder, environ, explicit=explicit), None)
    args.dev_folder = folder
    if not folder.try_lock(" ".join(args.command_words)):
        args.dev_running = True  # its PostgreSQL is up: connect to it
        yield
        return
    try:
        from cariosan.ops.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

        postgres = EmbeddedPostgres(folder.postgres_dir, port=folder.postgres_port())
        print(
            f"cariosan dev is not running: starting the database in {folder.path}", file=sys.stderr
        )
        try:
            postgres.start()
        except EmbeddedPostgresError as exc:
            raise _Failure(f"the dev database in {folder.path} did not start: {exc}") from None
        try:
            yield
        finally:
            postgres.stop()
    finally:
        folder.release()


def cmd_serve(args: argparse.Namespace) -> int:
    from cariosan import server

    settings = _settings(args)
    settings.require_database()
    settings.require_jwt_secret()
    if args.workers > 1:
        server.run_workers(settings, args.workers, host=args.host, port=args.port)
    else:
        server.run(settings, host=args.host, port=args.port)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Exit 2 with one line when dev cannot start (folder in use, port taken, no database)."""
    from cariosan.db.pool import DatabaseUnreachable
    from cariosan.db.schema import MigrationError
    from cariosan.ops import dev
    from cariosan.services import BootFailed

    try:
        dev.run(
            _settings(),
            data_dir=Path(args.data_dir),
            host=args.host,
            port=args.port,
            postgres_port=args.postgres_port,
        )
    except (dev.DevStartFailed, BootFailed, DatabaseUnreachable, MigrationError) as exc:
        print(f"cariosan: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from cariosan.db import schema
    from cariosan.db.pool import connect, wait_for_database

    settings = _settings(args)
    dsn = settings.require_database()

    async def run() -> int:
        await wait_for_database(dsn, settings.database_wait_seconds)
        conn = await connect(dsn)
        try:
            if args.check:
                pending = await schema.pending_migrations(conn)
                for migration in pending:
                    print(f"pending: {migration.filename}")
                if pending:
                    print(f"{len(pending)} migration(s) pending")
                    return 1
                print(f"schema is up to date (version {await schema.schema_version(conn)})")
                return 0
            report = await schema.migrate(conn)
        finally:
            await conn.close()
        for migration in report.applied_now:
            print(f"applied: {migration.filename}")
        for ahead in report.ahead:
            print(
                f"warning: the database has migration {ahead.version:04d}_{ahead.name} that "
                "this release does not know (a newer release ran here)"
            )
        print(f"schema version {report.schema_version}")
        return 0

    return asyncio.run(run())


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from cariosan.ops.healthcheck import LIVENESS, READINESS, check, local_url

    if args.url:
        url = args.url
    else:
        settings = _settings(args)
        url = local_url(settings.host, settings.port, LIVENESS if args.live else READINESS)
    healthy, line = check(url, timeout=args.timeout)
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def _open_database(settings: Any) -> Any:
    from cariosan.db.bootstrap import prepare_database

    return prepare_database(
        settings.require_database(), settings.database_wait_seconds, pool_min=1, pool_max=2
    )


def cmd_workspace_create(args: argparse.Namespace) -> int:
    from cariosan.domain.workspaces import create_workspace

    settings = _settings(args)

    async def run() -> Any:
        prepared = await _open_database(settings)
        try:
            return await create_workspace(prepared.database, args.name)
        finally:
            await prepared.database.close()

    created = asyncio.run(run())
    if args.json:
        print(
            json.dumps(
                {"id": str(created.id), "name": created.name, "api_secret": created.api_secret}
            )
        )
    else:
        print(f"workspace  {created.id}  {created.name}")
        print(f"api secret {created.api_secret}")
        print("The API secret is shown only this once: store it in your backend's secrets now.")
    return 0


def cmd_workspace_list(args: argparse.Namespace) -> int:
    from cariosan.domain.workspaces import list_workspaces

    settings = _settings(args)

    async def run() -> Any:
        prepared = await _open_database(settings)
        try:
            return await list_workspaces(prepared.database)
        finally:
            await prepared.database.close()

    rows = asyncio.run(run())
    if args.json:
        print(
            json.dumps(
                [
                    {"id": str(r.id), "name": r.name, "created_at": r.created_at.isoformat()}
                    for r in rows
                ]
            )
        )
    else:
        for r in rows:
            print(f"{r.id}  {r.created_at:%Y-%m-%d %H:%M}  {r.name}")
    return 0


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `24h`, `7d` or plain seconds; argparse reports a bad value as usage (2)."""
    from cariosan.config import seconds_of

    try:
        return seconds_of(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 90s, 30m, 24h; not negative)"
        ) from None


def _workspace_id(text: str) -> Any:
    import uuid

    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a workspace id: {text!r}") from None


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    from cariosan.domain.workspaces import rotate_secret

    settings = _settings(args)

    async def run() -> Any:
        prepared = await _open_database(settings)
        try:
            return await rotate_secret(prepared.database, args.workspace, args.grace, args.secret)
        finally:
            await prepared.database.close()

    rotated = asyncio.run(run())
    if args.dev_folder is not None:
        from cariosan.ops.dev import remember_rotated_secret

        remember_rotated_secret(args.dev_folder.path, str(rotated.workspace_id), rotated.api_secret)
    until = rotated.previous_valid_until
    if args.json:
        print(
            json.dumps(
                {
                    "workspace_id": str(rotated.workspace_id),
                    "api_secret": rotated.api_secret,
                    "previous_valid_until": until.isoformat() if until else None,
                }
            )
        )
    else:
        print(f"api secret {rotated.api_secret}")
        if until is None:
            print("The previous API secret stopped working now.")
        else:
            print(f"The previous API secret keeps working until {until.isoformat()}.")
        print("The new API secret is shown only this once.")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from cariosan.domain.users import mint_token

    settings = _settings(args)
    secret = settings.require_jwt_secret()

    async def run() -> tuple[str, int]:
        prepared = await _open_database(settings)
        try:
            return await mint_token(prepared.database, secret, args.workspace, args.user, args.ttl)
        finally:
            await prepared.database.close()

    token, _ = asyncio.run(run())
    print(token)
    return 0


def _dev_workspace(args: argparse.Namespace) -> Any:
    """The default workspace of the dev folder the command operates on, if any."""
    import uuid

    folder = getattr(args, "dev_folder", None)
    if folder is None:
        return None
    try:
        saved = json.loads((folder.path / "credentials.json").read_text(encoding="utf-8"))
        return uuid.UUID(saved["workspace_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmd_user_export(args: argparse.Namespace) -> int:
    """Write everything stored about a user to a folder: export.json and files/<id>/<name>."""
    from datetime import UTC, datetime

    from cariosan.blobs import open_blobs
    from cariosan.domain.audit import OPERATOR
    from cariosan.domain.privacy import Export, export_user
    from cariosan.ops.mirror import MirrorError, open_source

    settings = _settings(args)
    workspace = args.workspace or _dev_workspace(args)
    if workspace is None:
        raise _Failure("--workspace ID is required (only a cariosan dev folder has a default)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or f"cariosan-export-{args.user}-{stamp}")
    if out.exists() and any(out.iterdir()):
        raise _Failure(f"{out} is not empty: choose another --out folder")

    async def run() -> Export:
        prepared = await _open_database(settings)
        blobs = open_blobs(settings)
        try:
            return await export_user(
                prepared.database, blobs, settings, workspace, args.user, actor=OPERATOR
            )
        finally:
            await blobs.close()
            await prepared.database.close()

    done = asyncio.run(run())
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_id = {entry["id"]: entry for entry in done.document["attachments"]}
    copied = failed = 0
    try:
        source = open_source(settings) if done.files else None
    except MirrorError as exc:
        raise _Failure(str(exc)) from None
    for item in done.files:
        target = files / item.attachment_id / item.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            assert source is not None
            with source.open(item.object_key) as reader, target.open("wb") as writer:
                while chunk := reader.read(1 << 20):
                    writer.write(chunk)
        except Exception as exc:  # a file missing from the store: say so, keep the rest
            failed += 1
            target.unlink(missing_ok=True)
            by_id[item.attachment_id]["file"] = None
            print(f"not copied: {item.object_key}: {exc.__class__.__name__}", file=sys.stderr)
            continue
        copied += 1
        by_id[item.attachment_id]["file"] = str(target.relative_to(out))
    (out / "export.json").write_text(json.dumps(done.document, indent=2, ensure_ascii=False))
    summary = {
        "path": str(out),
        "messages": len(done.document["messages"]),
        "files": copied,
        "failed": failed,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{out}/export.json: {summary['messages']} messages, {copied} files in {files}")
    return 1 if failed else 0


def cmd_attachments_mirror(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from cariosan.ops.mirror import MirrorError, mirror, open_source, open_target, parse_target

    settings = _settings(args)
    try:
        target = parse_target(
            args.target,
            endpoint=args.endpoint,
            access_key=args.access_key,
            secret_key=args.secret_key,
            region=args.region,
            defaults=settings,
        )
        source = open_source(settings)
        destination = open_target(target)
    except MirrorError as exc:
        raise _Failure(str(exc)) from None

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("mirroring"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.json or not console.is_terminal,
    )

    class Reporter:
        task = bar.add_task("mirror", total=0)

        def planned(self, files: int, total_bytes: int) -> None:
            bar.update(self.task, total=total_bytes)

        def advance(self, count: int) -> None:
            bar.advance(self.task, count)

    try:
        with bar:
            report = mirror(source, destination, remove=args.remove, progress=Reporter())
    except MirrorError as exc:
        raise _Failure(str(exc)) from None
    if args.json:
        print(
            json.dumps(
                {"source": source.description, "target": destination.description} | report.as_dict()
            )
        )
    else:
        for error in report.errors:
            print(f"failed: {error}", file=sys.stderr)
        print(
            f"{source.description} -> {destination.description}: copied {report.copied} "
            f"({report.bytes_copied} bytes), skipped {report.skipped}, removed {report.removed}"
            + (f", failed {report.failed}" if report.failed else "")
        )
    return 1 if report.failed else 0


def cmd_version(args: argparse.Namespace) -> int:
    from cariosan.db.schema import load_migrations

    schema_version = max((m.version for m in load_migrations()), default=0)
    if args.json:
        print(json.dumps({"release": __version__, "schema_version": schema_version}))
    else:
        print(f"cariosan {__version__} (schema version {schema_version})")
    return 0


# -- backup and restore ---------------------------------------------------------------------------


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A `Phase` for ops/backup.py drawn as rich progress bars on stderr (nothing when quiet)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from cariosan.ops.backup import no_progress

    if quiet:
        yield no_progress
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )

    def phase(description: str, total: float | None) -> Any:
        task = progress.add_task(description, total=total)

        done = 0.0

        def advance(n: float) -> None:
            nonlocal done
            done += n
            # A size not known up front grows with what has been done so far.
            progress.update(task, completed=done, total=done if total is None else total)

        return advance

    with progress:
        yield phase


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def cmd_backup_create(args: argparse.Namespace) -> int:
    from cariosan.ops.backup import create_backup

    settings = _settings(args)
    with _progress(args.json) as phase:
        path, manifest = asyncio.run(
            create_backup(
                settings, Path(args.out), attachments=not args.no_attachments, phase=phase
            )
        )
    attachments = [f for f in manifest.files if f.key is not None]
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(path),
                    "created_at": manifest.created_at.isoformat(),
                    "release": manifest.release,
                    "schema_version": manifest.schema_version,
                    "postgresql_version": manifest.postgresql_version,
                    "dump_bytes": manifest.dump_bytes,
                    "sql_bytes": manifest.sql_bytes,
                    "compression_ratio": round(manifest.compression_ratio, 2),
                    "row_counts": manifest.row_counts,
                    "attachments": len(attachments) if manifest.attachments_included else None,
                    "bytes": manifest.total_bytes,
                }
            )
        )
    else:
        print(f"backup     {path}")
        print(
            f"database   {sum(manifest.row_counts.values())} rows in "
            f"{len(manifest.row_counts)} tables, PostgreSQL {manifest.postgresql_version}, "
            f"schema version {manifest.schema_version}"
        )
        print(
            f"dump       {_human(manifest.dump_bytes)} for {_human(manifest.sql_bytes)} of SQL: "
            f"compression ratio {manifest.compression_ratio:.1f}x"
        )
        if manifest.attachments_included:
            size = sum(f.size for f in attachments)
            print(f"attachments {len(attachments)} files, {_human(size)}")
        else:
            print("attachments not included (--no-attachments)")
    return 0


def cmd_backup_verify(args: argparse.Namespace) -> int:
    from cariosan.ops.backup import verify_backup

    settings = _settings(args)
    with _progress(args.json) as phase:
        result = asyncio.run(verify_backup(settings, Path(args.path), phase=phase))
    if args.json:
        print(
            json.dumps(
                {
                    "path": args.path,
                    "ok": True,
                    "files_checked": result.files_checked,
                    "bytes_checked": result.bytes_checked,
                    "row_counts": result.row_counts,
                }
            )
        )
    else:
        print(
            f"ok: {result.files_checked} files ({_human(result.bytes_checked)}) match their "
            f"checksums; the dump restored into a scratch database with "
            f"{sum(result.row_counts.values())} rows in {len(result.row_counts)} tables, "
            "as the manifest says"
        )
    return 0


def cmd_backup_list(args: argparse.Namespace) -> int:
    from cariosan.ops.backup import list_backups, listing_json

    found = list_backups(Path(args.out))
    if args.json:
        print(json.dumps([listing_json(b) for b in found]))
    else:
        for item in found:
            m = item.manifest
            print(
                f"{item.path}  {m.created_at:%Y-%m-%d %H:%M:%S}Z  cariosan {m.release}  "
                f"schema {m.schema_version}  {_human(m.total_bytes)}"
            )
        if not found:
            print(f"no backups in {args.out}")
    return 0


def cmd_backup_prune(args: argparse.Namespace) -> int:
    from cariosan.ops.backup import prune_backups

    deleted = prune_backups(Path(args.out), args.keep)
    if args.json:
        print(json.dumps({"deleted": [str(p) for p in deleted]}))
    else:
        for path in deleted:
            print(f"deleted {path}")
        print(f"kept the newest {args.keep} backup(s) in {args.out}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from cariosan.ops.restore import restore_backup

    if args.dev_running and not args.force:
        pid, purpose = args.dev_folder.holder()
        here = "" if args.data_dir is None else f" --data-dir {args.data_dir}"
        raise _Failure(
            f"`cariosan {purpose}` (pid {pid}) is using {args.dev_folder.path}: stop it (Ctrl-C "
            f"in its terminal), then run `cariosan restore {args.path}{here}` again; the restore "
            "starts the dev database by itself, and the next `cariosan dev` serves what it restored"
        )
    settings = _settings(args)
    with _progress(args.json) as phase:
        result = asyncio.run(
            restore_backup(settings, Path(args.path), force=args.force, phase=phase)
        )
    if args.json:
        print(
            json.dumps(
                {
                    "database": result.database,
                    "row_counts": result.row_counts,
                    "files_uploaded": result.files_uploaded,
                    "files_deleted": result.files_deleted,
                }
            )
        )
    else:
        print(
            f"restored {sum(result.row_counts.values())} rows in {len(result.row_counts)} "
            f"tables into {result.database}; {result.files_uploaded} attachment files put "
            f"back, {result.files_deleted} not in the backup removed"
        )
        print("Start the server again: it migrates the schema if this backup is older.")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _operates(parser: argparse.ArgumentParser, *words: str) -> None:
    """A command that operates on a deployment: the environment's, or a dev data folder's."""
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="operate on the cariosan dev deployment in DIR, with the settings it wrote there "
        "(default: ./.cariosan when it exists and CARIOS_DATABASE_URL is not set)",
    )
    parser.set_defaults(deployment=True, command_words=list(words))


def _add_backup_commands(commands: Any) -> None:
    backup = commands.add_parser("backup", help="back up, verify, list and prune backups")
    actions = backup.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="dump PostgreSQL and copy the attachment files, with a manifest"
    )
    create.add_argument(
        "--out", default="backups", metavar="DIR", help="where to write it (default: ./backups)"
    )
    create.add_argument("--no-attachments", action="store_true", help="back up the database only")
    create.add_argument("--json", action="store_true", help="a summary on stdout, no progress")
    create.set_defaults(func=cmd_backup_create)
    _operates(create, "backup", "create")
    verify = actions.add_parser(
        "verify", help="check every checksum and restore into a scratch database"
    )
    verify.add_argument("path", metavar="PATH", help="the backup folder to check")
    verify.add_argument("--json", action="store_true", help="the result as JSON, no progress")
    verify.set_defaults(func=cmd_backup_verify)
    _operates(verify, "backup", "verify")
    listing = actions.add_parser("list", help="the backups in a folder, oldest first")
    listing.add_argument(
        "--out", default="backups", metavar="DIR", help="where the backups are (default: ./backups)"
    )
    listing.add_argument("--json", action="store_true", help="the list as JSON")
    listing.set_defaults(func=cmd_backup_list)
    prune = actions.add_parser("prune", help="delete all but the newest N backups")
    prune.add_argument(
        "--keep", required=True, type=_positive, metavar="N", help="how many backups to keep"
    )
    prune.add_argument(
        "--out", default="backups", metavar="DIR", help="where the backups are (default: ./backups)"
    )
    prune.add_argument("--json", action="store_true", help="the deleted paths as JSON")
    prune.set_defaults(func=cmd_backup_prune)

    restore = commands.add_parser(
        "restore", help="restore a backup (refuses while a server is connected)"
    )
    restore.add_argument("path", metavar="PATH", help="the backup folder to restore")
    restore.add_argument(
        "--force", action="store_true", help="restore even while cariosan servers are connected"
    )
    restore.add_argument("--json", action="store_true", help="a summary as JSON, no progress")
    restore.set_defaults(func=cmd_restore)
    _operates(restore, "restore")


def build_parser() -> argparse.ArgumentParser:
    from cariosan.ops.dev_folder import DEFAULT_POSTGRES_PORT

    parser = argparse.ArgumentParser(
        prog="cariosan", description="Cariosan: a self-hosted chat backend."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the server (migrates on boot)")
    serve.add_argument("--host", help="listen address (default: CARIOS_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default: CARIOS_PORT)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port (they share only PostgreSQL and Redis)",
    )
    serve.set_defaults(func=cmd_serve)

    dev = commands.add_parser("dev", help="embedded mode: everything in one process, no set-up")
    dev.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8080, help="HTTP port (default: 8080)")
    dev.add_argument(
        "--postgres-port",
        type=int,
        default=DEFAULT_POSTGRES_PORT,
        metavar="PORT",
        help=f"port of the embedded PostgreSQL on 127.0.0.1 (default: {DEFAULT_POSTGRES_PORT})",
    )
    dev.add_argument(
        "--data-dir",
        default=".cariosan",
        help="where state lives, and the settings other commands read (default: ./.cariosan)",
    )
    dev.set_defaults(func=cmd_dev)

    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.add_argument(
        "--check", action="store_true", help="apply nothing; exit 1 if any migration is pending"
    )
    migrate.set_defaults(func=cmd_migrate)
    _operates(migrate, "migrate")

    health = commands.add_parser(
        "healthcheck", help="exit 0 if this host's server is ready (/readyz answers 200)"
    )
    health.add_argument(
        "--live",
        action="store_true",
        help="check liveness (/healthz: the process answers) instead of readiness",
    )
    health.add_argument("--url", help="check this URL instead of the local server's")
    health.add_argument(
        "--timeout", type=float, default=3.0, metavar="SECONDS", help="give up after (default: 3)"
    )
    health.set_defaults(func=cmd_healthcheck)

    workspace = commands.add_parser("workspace", help="create or list workspaces")
    ws_commands = workspace.add_subparsers(
        dest="workspace_command", metavar="ACTION", required=True
    )
    create = ws_commands.add_parser("create", help="create a workspace; prints its API secret once")
    create.add_argument("name", help="a name for people (need not be unique)")
    create.add_argument(
        "--json", action="store_true", help='print {"id", "name", "api_secret"} as JSON'
    )
    create.set_defaults(func=cmd_workspace_create)
    _operates(create, "workspace", "create")
    listing = ws_commands.add_parser("list", help="list workspaces (never secrets)")
    listing.add_argument("--json", action="store_true", help="the list as JSON")
    listing.set_defaults(func=cmd_workspace_list)
    _operates(listing, "workspace", "list")

    rotate = commands.add_parser(
        "rotate-secret", help="new API secret for a workspace (the old one stops working)"
    )
    rotate.add_argument(
        "--workspace", required=True, type=_workspace_id, metavar="ID", help="the workspace id"
    )
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="keep the old secret valid this long (e.g. 30m, 24h); default: stop it now",
    )
    rotate.add_argument(
        "--secret",
        metavar="VALUE",
        help="use this new secret (cs_ + 32 or more URL-safe characters) instead of generating "
        "one, so your backend can be deployed with it before the rotation",
    )
    rotate.add_argument(
        "--json",
        action="store_true",
        help='print {"workspace_id", "api_secret", "previous_valid_until"} as JSON',
    )
    rotate.set_defaults(func=cmd_rotate_secret)
    _operates(rotate, "rotate-secret")

    token = commands.add_parser("token", help="mint a user JWT (support and debugging)")
    token.add_argument(
        "--workspace", required=True, type=_workspace_id, metavar="ID", help="the workspace id"
    )
    token.add_argument("--user", required=True, metavar="USER", help="the user id (must exist)")
    token.add_argument(
        "--ttl", type=_positive, default=3600, metavar="SECONDS", help="lifetime (default: 3600)"
    )
    token.set_defaults(func=cmd_token)
    _operates(token, "token")

    # Privacy (issue 14, point 7).
    user = commands.add_parser("user", help="operate on one user (privacy)")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    export = user_commands.add_parser(
        "export",
        help="write everything stored about a user (export.json) and its files to a folder",
    )
    export.add_argument("user", metavar="ID", help="the user id")
    export.add_argument(
        "--workspace",
        type=_workspace_id,
        metavar="ID",
        help="the user's workspace (default: a dev deployment's default workspace)",
    )
    export.add_argument(
        "--out",
        metavar="DIR",
        help="the folder to write: DIR/export.json and DIR/files/<attachment id>/<filename> "
        "(default: ./cariosan-export-<ID>-<UTC time>; must be empty or new)",
    )
    export.add_argument("--json", action="store_true", help="print a summary as JSON")
    export.set_defaults(func=cmd_user_export)
    _operates(export, "user", "export")

    _add_backup_commands(commands)

    attachments = commands.add_parser("attachments", help="operate on the attachment store")
    att_commands = attachments.add_subparsers(
        dest="attachments_command", metavar="ACTION", required=True
    )
    mirror = att_commands.add_parser(
        "mirror",
        help="copy the attachment store to another S3 bucket or a folder (only what changed)",
    )
    mirror.add_argument("target", metavar="TARGET", help="s3://bucket/prefix or a folder")
    mirror.add_argument(
        "--remove",
        action="store_true",
        help="delete from the target what the source no longer has (like mc mirror --remove)",
    )
    mirror.add_argument("--endpoint", help="target S3 endpoint (default: CARIOS_S3_ENDPOINT)")
    mirror.add_argument("--access-key", help="target access key (default: the source's)")
    mirror.add_argument("--secret-key", help="target secret key (default: the source's)")
    mirror.add_argument("--region", help="target region (default: CARIOS_S3_REGION)")
    mirror.add_argument("--json", action="store_true", help="print the counts as JSON")
    mirror.set_defaults(func=cmd_attachments_mirror)
    _operates(mirror, "attachments", "mirror")

    version = commands.add_parser("version", help="release and schema version")
    version.add_argument("--json", action="store_true", help="print them as JSON")
    version.set_defaults(func=cmd_version)
    return parser


def _operator_message(exc: Exception) -> str | None:
    """The one line to show for an operator mistake, or None for a bug (which keeps its
    traceback). Imports lazily so that `healthcheck` stays light."""
    if isinstance(exc, _Failure):
        return str(exc)
    from cariosan.config import ConfigError
    from cariosan.db.pool import DatabaseUnreachable
    from cariosan.db.schema import MigrationError
    from cariosan.errors import CariosanError
    from cariosan.ops.backup import BackupError
    from cariosan.ops.backup_files import UnsafeKey
    from cariosan.services import BootFailed

    if isinstance(exc, BackupError | UnsafeKey):
        return str(exc)
    if isinstance(exc, ConfigError | DatabaseUnreachable | MigrationError | BootFailed):
        return str(exc)
    if isinstance(exc, CariosanError):
        return exc.message
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "deployment", False):
            with _deployment(args):
                code = args.func(args)
        else:
            code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        message = _operator_message(exc)
        if message is None:
            raise
        print(f"cariosan: error: {message}", file=sys.stderr)
        code = 1
    sys.exit(code)
