"""`cariosan serve` as operators run it: a real process, its exit codes, its logs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import resource
from pathlib import Path

import asyncpg
import httpx

from cariosan.db.schema import load_migrations
from tests.conftest import JWT_SECRET
from tests.support.process import run_cli, serve
from tests.support.server import free_port


def _env(database_url: str) -> dict[str, str]:
    return {"CARIOS_DATABASE_URL": database_url, "CARIOS_JWT_SECRET": JWT_SECRET}


def _applied_versions(dsn: str) -> list[int]:
    async def read() -> list[int]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            return [r["version"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_serve_boots_migrates_and_logs_json(empty_database_url: str, tmp_path: Path) -> None:
    with serve(_env(empty_database_url), tmp_path) as server:
        assert httpx.get(server.url + "/healthz").status_code == 200
        response = httpx.get(server.url + "/nope", headers={"X-Request-Id": "trace-me"})
        assert response.status_code == 404
        health = run_cli(["healthcheck"], {"CARIOS_PORT": server.url.rsplit(":", 1)[1]})
        assert health.returncode == 0, health.stderr
    logs = server.logs()
    assert all(isinstance(line, dict) for line in logs)
    request = next(line for line in logs if line.get("request_id") == "trace-me")
    assert request["event"] == "request"
    assert request["method"] == "GET"
    assert request["route"] == "unmatched"
    assert request["status"] == 404
    assert isinstance(request["duration_ms"], float)
    assert any(line.get("event") == "boot_complete" for line in logs)
    assert _applied_versions(empty_database_url) == [m.version for m in load_migrations()]
    # Every line of output is a JSON object (nothing printed around the logger).
    text_lines = [line for line in server.raw_log().splitlines() if line.strip()]
    assert all(line.startswith("{") for line in text_lines), text_lines[:5]


def test_serve_raises_its_open_file_limit_and_says_how_many_sockets_it_can_hold(
    database_url: str, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard > 256, "this test needs a hard limit above 256"
    with serve(_env(database_url), tmp_path, open_files=256) as server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    soft = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    raised = soft.split()[3]
    assert raised != "256" and (raised == "unlimited" or int(raised) > 256), soft
    said = next(line for line in server.logs() if line.get("event") == "open_file_limit")
    assert str(said["files"]) == raised or raised == "unlimited"
    assert said["sockets_per_process"] == said["files"] - 100


def test_two_servers_on_an_empty_database_both_come_up(
    empty_database_url: str, tmp_path: Path
) -> None:
    def start(n: int) -> int:
        folder = tmp_path / f"node{n}"
        folder.mkdir()
        with serve(_env(empty_database_url), folder) as server:
            return httpx.get(server.url + "/readyz").status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(start, [1, 2]))
    assert statuses == [200, 200]
    assert _applied_versions(empty_database_url) == [m.version for m in load_migrations()]


def test_unreachable_database_exits_with_one_clear_line(tmp_path: Path) -> None:
    result = run_cli(
        ["serve"],
        {
            "CARIOS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/cariosan",
            "CARIOS_JWT_SECRET": JWT_SECRET,
            "CARIOS_DATABASE_WAIT_SECONDS": "2",
            "CARIOS_PORT": str(free_port()),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("cariosan:")]
    assert len(error_lines) == 1
    assert "127.0.0.1:1/cariosan did not answer within 2 s" in error_lines[0]
    assert "CARIOS_DATABASE_URL" in error_lines[0]


def test_missing_or_short_jwt_secret_exits_with_one_clear_line(tmp_path: Path) -> None:
    for secret, expected in [(None, "is not set"), ("too-short", "at least 32")]:
        env = {"CARIOS_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}
        if secret:
            env["CARIOS_JWT_SECRET"] = secret
        result = run_cli(["serve"], env, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert "CARIOS_JWT_SECRET" in result.stderr and expected in result.stderr
        assert "Traceback" not in result.stderr


def test_dotenv_in_working_directory_is_read(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"CARIOS_JWT_SECRET={JWT_SECRET}\n")
    with serve({"CARIOS_DATABASE_URL": empty_database_url}, tmp_path) as server:
        assert httpx.get(server.url + "/readyz").status_code == 200


def test_changed_migration_stops_the_boot(database_url: str, tmp_path: Path) -> None:
    async def tamper() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        finally:
            await conn.close()

    asyncio.run(tamper())
    result = run_cli(
        ["serve"], {**_env(database_url), "CARIOS_PORT": str(free_port())}, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "0001_workspaces.sql was changed after it was applied" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_future_migration_in_database_boots_with_a_warning(
    database_url: str, tmp_path: Path
) -> None:
    async def newer_release() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TABLE future_feature (id bigint PRIMARY KEY)")
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) "
                "VALUES (9001, 'future_feature', 'abc')"
            )
        finally:
            await conn.close()

    asyncio.run(newer_release())
    with serve(_env(database_url), tmp_path) as server:
        assert httpx.get(server.url + "/readyz").status_code == 200
    warnings = [line for line in server.logs() if line.get("event") == "schema_ahead"]
    assert warnings and warnings[0]["level"] == "warning"
    assert warnings[0]["unknown_versions"] == [9001]


def test_migrate_check_and_migrate(empty_database_url: str, tmp_path: Path) -> None:
    env = _env(empty_database_url)
    pending = run_cli(["migrate", "--check"], env, cwd=tmp_path)
    assert pending.returncode == 1
    assert "pending: 0001_workspaces.sql" in pending.stdout
    applied = run_cli(["migrate"], env, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "applied: 0001_workspaces.sql" in applied.stdout
    assert run_cli(["migrate", "--check"], env, cwd=tmp_path).returncode == 0


def test_workspace_create_and_list(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url)
    created = run_cli(["workspace", "create", "Acme", "--json"], env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    workspace = json.loads(created.stdout)
    assert set(workspace) == {"id", "name", "api_secret"}
    assert workspace["name"] == "Acme"
    listed = run_cli(["workspace", "list", "--json"], env, cwd=tmp_path)
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"]) for r in rows] == [(workspace["id"], "Acme")]
    assert workspace["api_secret"] not in listed.stdout
    plain = run_cli(["workspace", "list"], env, cwd=tmp_path)
    assert workspace["id"] in plain.stdout and workspace["api_secret"] not in plain.stdout
    empty_name = run_cli(["workspace", "create", "  "], env, cwd=tmp_path)
    assert empty_name.returncode == 1
    assert "name" in empty_name.stderr


def test_bad_arguments_print_usage_and_exit_2() -> None:
    for args in (["nonsense"], ["serve", "--port", "eighty"], ["workspace"], []):
        result = run_cli(args, {})
        assert result.returncode == 2, args
        assert "usage: cariosan" in result.stderr


def test_version(tmp_path: Path) -> None:
    result = run_cli(["version", "--json"], {}, cwd=tmp_path)
    assert result.returncode == 0
    from cariosan import __version__

    assert json.loads(result.stdout) == {
        "release": __version__,
        "schema_version": max(m.version for m in load_migrations()),
    }
