"""Rollback: this release keeps working on the schema of a future release.

A future release's migration (tests/conftest.py: a new table, a new nullable column on messages,
a new index) is applied on top of this release's schema, as an upgrade would leave it; then this
release, the one rolled back to, is started on it and the API suites are run against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx

from cariosan.db import schema
from tests.conftest import FUTURE_MIGRATION, FUTURE_MIGRATION_ENV, JWT_SECRET
from tests.support.process import run_cli, serve

ROOT = Path(__file__).resolve().parents[2]
# The API suites run on the future schema: users and auth, channels, messages.
SUITES = [
    "tests/integration/test_users_and_auth.py",
    "tests/integration/test_channels.py",
    "tests/integration/test_messages.py",
]


def test_the_future_migration_is_additive() -> None:
    assert schema.lint_migration(FUTURE_MIGRATION.sql) == []


async def _apply_future(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.migrate(conn, [*schema.load_migrations(), FUTURE_MIGRATION])
    finally:
        await conn.close()


def test_rolled_back_server_serves_on_a_newer_schema(database_url: str, tmp_path: Path) -> None:
    asyncio.run(_apply_future(database_url))
    env = {"CARIOS_DATABASE_URL": database_url, "CARIOS_JWT_SECRET": JWT_SECRET}
    created = json.loads(run_cli(["workspace", "create", "acme", "--json"], env).stdout)
    with serve(env, tmp_path) as server:
        backend = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {created['api_secret']}"}
        )
        assert backend.put("/v1/users/alice", json={"name": "Alice"}).status_code == 200
        token = backend.post("/v1/users/alice/token").json()["token"]
        alice = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        assert alice.post("/v1/channels", json={"id": "c", "type": "group"}).status_code == 201
        sent = alice.post("/v1/channels/c/messages", json={"text": "after the rollback"})
        assert sent.status_code == 201, sent.text
        history = alice.get("/v1/channels/c/messages").json()
        assert "after the rollback" in json.dumps(history)
        metrics = httpx.get(server.url + "/metrics").text
        logs = server.logs()
    assert any(line.get("event") == "schema_ahead" for line in logs), logs
    assert "cariosan_schema_version 9001.0" in metrics
    assert "cariosan_pending_migrations 0.0" in metrics


def test_the_api_suites_pass_on_a_future_schema(tmp_path: Path) -> None:
    env = {**os.environ, FUTURE_MIGRATION_ENV: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
    assert result.returncode == 0, tail
    assert " passed" in tail
