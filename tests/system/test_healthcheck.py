"""`cariosan healthcheck` (the image's HEALTHCHECK) reports readiness: while another server holds
the migration lock, a booting server is alive but not healthy; once the lock is released and it
has migrated, it is healthy. `--live` reports liveness only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx

from cariosan.db.schema import MIGRATION_LOCK_KEY
from tests.conftest import JWT_SECRET
from tests.support.process import run_cli, serve


def _healthcheck(url: str, *flags: str) -> int:
    port = url.rsplit(":", 1)[1]
    return run_cli(["healthcheck", *flags], {"CARIOS_PORT": port}).returncode


def test_the_healthcheck_fails_while_migrations_wait_then_passes(
    empty_database_url: str, tmp_path: Path
) -> None:
    env = {"CARIOS_DATABASE_URL": empty_database_url, "CARIOS_JWT_SECRET": JWT_SECRET}

    async def hold_lock() -> asyncpg.Connection:
        conn = await asyncpg.connect(empty_database_url)
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        return conn

    loop = asyncio.new_event_loop()
    holder = loop.run_until_complete(hold_lock())
    try:
        with serve(env, tmp_path, wait_ready=False) as server:
            # The process answers (liveness) while its boot waits for the migration lock.
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server never answered /healthz"
                time.sleep(0.1)
            assert _healthcheck(server.url, "--live") == 0
            assert _healthcheck(server.url) == 1
            assert httpx.get(server.url + "/readyz").status_code == 503
            loop.run_until_complete(holder.close())  # releases the lock: the server migrates
            deadline = time.monotonic() + 60
            while _healthcheck(server.url) != 0:
                assert time.monotonic() < deadline, "the server never became healthy"
                time.sleep(0.2)
            assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        if not holder.is_closed():
            loop.run_until_complete(holder.close())
        loop.close()
