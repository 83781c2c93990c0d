"""Rollback: this release keeps working on the schema of a future release.

A future release's migration (tests/conftest.py: a new table, a new nullable column on messages,
a new index) is applied on top of this release's schema, as an upgrade would leave it; then this
release, the one rolled back to, is started on it and the API suites are run against it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from cariosan.db import schema
from tests.conftest import FUTURE_MIGRATION, FUTURE_SCHEMA_SUITES, JWT_SECRET
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


@pytest.mark.parametrize("schema_release", ["future"], indirect=True)
async def test_future_schema_databases_carry_the_future_migration(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("select to_regclass('future_polls')") is not None
        assert await conn.fetchval(
            "select count(*) from information_schema.columns "
            "where table_name = 'messages' and column_name = 'future_poll_id'"
        )
        assert await schema.schema_version(conn) == FUTURE_MIGRATION.version
    finally:
        await conn.close()


def test_the_api_suites_run_on_a_future_schema_too() -> None:
    """Every test of the API suites that uses a database also runs as `[future]` (see
    FUTURE_SCHEMA_SUITES in tests/conftest.py), in the same run, in parallel with the rest."""
    assert [f"tests/{m.split('.', 1)[1].replace('.', '/')}.py" for m in FUTURE_SCHEMA_SUITES] == (
        SUITES
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    release = re.compile(r"\[(current|future)(?=[\]-])")

    def variants(name: str) -> set[str]:
        found = set()
        for test_id in ids:
            match = release.search(test_id)
            if match is not None and match[1] == name:
                found.add(release.sub("[", test_id))
        return found

    current, future = variants("current"), variants("future")
    assert len(current) >= 90 and current == future
    for suite in SUITES:
        assert any(i.startswith(suite) for i in current), suite
