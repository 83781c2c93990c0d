"""The `cariosan` command. Operator mistakes end in one line on stderr and exit 1, never a
traceback; bad arguments print usage and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cariosan import __version__


class _Failure(Exception):
    """Raised by a command to stop with a one-line message and exit code 1."""


def _settings() -> Any:
    from cariosan.config import load_settings

    return load_settings()


def cmd_serve(args: argparse.Namespace) -> int:
    from cariosan import server

    settings = _settings()
    settings.require_database()
    settings.require_jwt_secret()
    server.run(settings, host=args.host, port=args.port)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from cariosan.ops import dev

    dev.run(_settings(), data_dir=Path(args.data_dir), host=args.host, port=args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from cariosan.db import schema
    from cariosan.db.pool import connect, wait_for_database

    settings = _settings()
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
    from cariosan.ops.healthcheck import check, local_url

    if args.url:
        url = args.url
    else:
        settings = _settings()
        url = local_url(settings.host, settings.port)
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

    settings = _settings()

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

    settings = _settings()

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


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `24h`, `7d` or plain seconds; argparse reports a bad value as usage (2)."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 90s, 30m, 24h)"
        ) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return seconds


def _workspace_id(text: str) -> Any:
    import uuid

    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a workspace id: {text!r}") from None


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    from cariosan.domain.workspaces import rotate_secret

    settings = _settings()

    async def run() -> Any:
        prepared = await _open_database(settings)
        try:
            return await rotate_secret(prepared.database, args.workspace, args.grace)
        finally:
            await prepared.database.close()

    rotated = asyncio.run(run())
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

    settings = _settings()
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


def cmd_version(args: argparse.Namespace) -> int:
    from cariosan.db.schema import load_migrations

    schema_version = max((m.version for m in load_migrations()), default=0)
    if args.json:
        print(json.dumps({"release": __version__, "schema_version": schema_version}))
    else:
        print(f"cariosan {__version__} (schema version {schema_version})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cariosan", description="Cariosan: a self-hosted chat backend."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the server (migrates on boot)")
    serve.add_argument("--host", help="listen address (default: CARIOS_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default: CARIOS_PORT)")
    serve.set_defaults(func=cmd_serve)

    dev = commands.add_parser("dev", help="embedded mode: everything in one process, no set-up")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--data-dir", default=".cariosan", help="where state lives (./.cariosan)")
    dev.set_defaults(func=cmd_dev)

    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.add_argument(
        "--check", action="store_true", help="apply nothing; exit 1 if any migration is pending"
    )
    migrate.set_defaults(func=cmd_migrate)

    health = commands.add_parser("healthcheck", help="exit 0 if this host's /healthz answers 200")
    health.add_argument("--url", help="check this URL instead of the local server's /healthz")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(func=cmd_healthcheck)

    workspace = commands.add_parser("workspace", help="create or list workspaces")
    ws_commands = workspace.add_subparsers(
        dest="workspace_command", metavar="ACTION", required=True
    )
    create = ws_commands.add_parser("create", help="create a workspace; prints its API secret once")
    create.add_argument("name")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_workspace_create)
    listing = ws_commands.add_parser("list", help="list workspaces (never secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_workspace_list)

    rotate = commands.add_parser(
        "rotate-secret", help="new API secret for a workspace (the old one stops working)"
    )
    rotate.add_argument("--workspace", required=True, type=_workspace_id, metavar="ID")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="keep the old secret valid this long (e.g. 30m, 24h); default: stop it now",
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_rotate_secret)

    token = commands.add_parser("token", help="mint a user JWT (support and debugging)")
    token.add_argument("--workspace", required=True, type=_workspace_id, metavar="ID")
    token.add_argument("--user", required=True, metavar="USER")
    token.add_argument("--ttl", type=int, default=3600, metavar="SECONDS")
    token.set_defaults(func=cmd_token)

    version = commands.add_parser("version", help="release and schema version")
    version.add_argument("--json", action="store_true")
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
    from cariosan.services import BootFailed

    if isinstance(exc, ConfigError | DatabaseUnreachable | MigrationError | BootFailed):
        return str(exc)
    if isinstance(exc, CariosanError):
        return exc.message
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    try:
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
