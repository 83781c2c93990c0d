"""Health, readiness, metrics, request ids, the error envelope and traces, over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cariosan.config import Settings
from cariosan.db.pool import SERVER_APPLICATION_NAME
from cariosan.db.schema import MIGRATION_LOCK_KEY
from cariosan.domain.workspaces import NewWorkspace
from cariosan.obs.tracing import build_tracer_provider
from tests.support.chat import bearer
from tests.support.server import RunningServer, start_server


@pytest.fixture
def server(shared_or_own_server: RunningServer) -> RunningServer:
    """The server this process's tests share (each works in a workspace of its own), or one of
    the test's own for those marked `own_server`."""
    return shared_or_own_server


async def test_healthz_and_readyz(server: RunningServer) -> None:
    async with server.client() as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["postgres"]["status"] == "ok"
    assert body["checks"]["postgres"]["schema_version"] >= 1
    assert body["checks"]["ephemeral"] == {"status": "ok", "kind": "memory"}
    assert body["checks"]["attachments"] == {"status": "ok", "kind": "local"}


async def test_readyz_is_503_until_migrations_are_done(
    empty_database_url: str, settings: Settings
) -> None:
    # Another server "is migrating": it holds the migration lock, so this one must wait.
    holder = await asyncpg.connect(empty_database_url)
    await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        async with start_server(
            settings.with_overrides(database_url=empty_database_url), wait_for_ready=False
        ) as running:
            async with running.client() as http:
                for _ in range(5):
                    assert (await http.get("/healthz")).status_code == 200
                    not_ready = await http.get("/readyz")
                    assert not_ready.status_code == 503
                    assert not_ready.json()["checks"]["postgres"]["status"] == "starting"
                    await asyncio.sleep(0.1)
                await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
                for _ in range(100):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                assert (await http.get("/readyz")).status_code == 200
    finally:
        await holder.close()


async def test_readyz_reports_boot_failure(settings: Settings) -> None:
    unreachable = settings.with_overrides(
        database_url="postgresql://postgres@127.0.0.1:1/nothing", database_wait_seconds=0.5
    )
    async with start_server(unreachable, wait_for_ready=False) as running:
        async with running.client() as http:
            for _ in range(100):
                if running.boot_failures:
                    break
                await asyncio.sleep(0.05)
            response = await http.get("/readyz")
    assert running.boot_failures and "did not answer within" in running.boot_failures[0]
    assert response.status_code == 503
    assert response.json()["checks"]["postgres"]["status"] == "error"


async def test_unknown_route_and_method_get_the_envelope(server: RunningServer) -> None:
    async with server.client() as http:
        missing = await http.get("/v1/no-such-thing")
        wrong_method = await http.delete("/healthz")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_every_response_has_a_request_id(server: RunningServer) -> None:
    async with server.client() as http:
        ids = {
            (await http.get(path)).headers["x-request-id"]
            for path in ["/healthz", "/readyz", "/metrics", "/nope", "/openapi.json"]
        }
        echoed = await http.get("/healthz", headers={"X-Request-Id": "caller-123"})
        refused = await http.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert len(ids) == 5
    assert echoed.headers["x-request-id"] == "caller-123"
    assert refused.headers["x-request-id"] != "bad id\twith spaces"


@pytest.mark.own_server  # exact request counts in the process-wide metrics, which other tests bump
async def test_metrics_are_labelled_by_route_template(
    server: RunningServer, workspace: NewWorkspace
) -> None:
    async with server.client() as http:
        for n in range(3):
            await http.get(f"/random-path-{n}")
            await http.get(f"/v1/users/someone-{n}", headers=bearer(workspace.api_secret))
        await http.get("/healthz")
        text = (await http.get("/metrics")).text
    assert 'route="/v1/users/{user_id}",status="404"} 3.0' in text
    assert "someone-" not in text
    assert 'cariosan_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "random-path" not in text
    assert "cariosan_http_request_duration_seconds_bucket" in text
    assert "cariosan_schema_version" in text


async def test_openapi_and_docs_are_served(server: RunningServer) -> None:
    async with server.client() as http:
        schema = await http.get("/openapi.json")
        docs = await http.get("/docs")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_http_and_sql_spans_are_exported(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider({}, exporter=exporter)
    assert provider is not None
    async with start_server(settings, tracer_provider=provider) as running:
        async with running.client() as http:
            assert (await http.get("/readyz")).status_code == 200
    provider.force_flush()
    spans = exporter.get_finished_spans()
    http_spans = [
        s
        for s in spans
        if (s.attributes and s.attributes.get("http.method") == "GET") or s.name.startswith("GET")
    ]
    sql_spans = [s for s in spans if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert http_spans, [s.name for s in spans]
    assert sql_spans, [s.name for s in spans]
    assert any(
        "SELECT 1" in str(s.attributes.get("db.statement", "")) for s in sql_spans if s.attributes
    )


def _healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cariosan", "healthcheck", "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_healthcheck_command(server: RunningServer) -> None:
    alive = await asyncio.to_thread(_healthcheck, server.url + "/healthz")
    assert alive.returncode == 0, alive.stderr
    dead = await asyncio.to_thread(_healthcheck, "http://127.0.0.1:9/healthz")
    assert dead.returncode == 1
    assert "did not answer" in dead.stderr
    assert "Traceback" not in dead.stderr


async def test_readyz_does_not_show_the_boot_failure_reason(settings: Settings) -> None:
    unreachable = settings.with_overrides(
        database_url="postgresql://postgres:pw@127.0.0.1:1/secretdb", database_wait_seconds=0.5
    )
    async with start_server(unreachable, wait_for_ready=False) as running:
        async with running.client() as http:
            for _ in range(100):
                if running.boot_failures:
                    break
                await asyncio.sleep(0.05)
            response = await http.get("/readyz")
    assert running.boot_failures
    assert response.status_code == 503
    assert "secretdb" not in response.text and "127.0.0.1:1" not in response.text
    assert "boot_failed" in response.json()["checks"]["postgres"]["detail"]


async def test_a_booted_server_keeps_its_startup_heap_out_of_collections(
    server: RunningServer,
) -> None:
    async with server.client() as http:
        assert (await http.get("/readyz")).status_code == 200
    # What boot made lives as long as the process; a full collection would walk it each time.
    assert gc.get_freeze_count() > 10_000


async def test_the_pool_keeps_to_its_configured_size(settings: Settings) -> None:
    """CARIOS_DATABASE_POOL_SIZE caps the connections one server process opens."""
    async with start_server(settings.with_overrides(database_pool_size=3)) as running:
        db = running.services.db
        async with db.connection() as a, db.connection(), db.connection():
            fourth = asyncio.create_task(db.fetchval("SELECT 1"))
            await asyncio.sleep(0.2)
            assert not fourth.done(), "a fourth connection was opened"
            opened = await a.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                SERVER_APPLICATION_NAME,
            )
            assert opened == 3
        assert await fourth == 1
