"""`cariosan backup create|verify|list|prune` as an operator runs them: a damaged backup fails
verification, retention keeps the newest, and a missing client program is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from cariosan.ops import pg_tools
from tests.conftest import JWT_SECRET
from tests.support.process import run_cli


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    files = tmp_path / "files"
    (files / "ws" / "a1").mkdir(parents=True)
    (files / "ws" / "a1" / "photo.png").write_bytes(b"\x89PNG" + bytes(5000))
    # An upload in progress is not an attachment yet.
    (files / "ws" / "a1" / ".photo.png.123.part").write_bytes(b"partial")
    return {
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_STORAGE_DIR": str(files),
    }


def test_create_verify_damage_list_prune(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path)
    out = tmp_path / "backups"
    assert run_cli(["workspace", "create", "acme"], env).returncode == 0

    made = run_cli(["backup", "create", "--out", str(out)], env, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "compression ratio" in made.stdout
    assert "attachments 1 files" in made.stdout
    path = Path(made.stdout.split()[1])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["row_counts"]["workspaces"] == 1
    assert manifest["release"]
    assert [f["key"] for f in manifest["files"] if "key" in f] == ["ws/a1/photo.png"]

    ok = run_cli(["backup", "verify", str(path), "--json"], env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["row_counts"]["workspaces"] == 1

    photo = path / "attachments" / "ws" / "a1" / "photo.png"
    photo.write_bytes(photo.read_bytes()[:-1] + b"\x01")
    damaged = run_cli(["backup", "verify", str(path)], env, timeout=120)
    assert damaged.returncode == 1
    assert "attachments/ws/a1/photo.png: sha256 does not match" in damaged.stderr
    refused = run_cli(["restore", str(path)], env, timeout=120)
    assert refused.returncode == 1
    assert "damaged" in refused.stderr

    for _ in range(2):
        again = run_cli(["backup", "create", "--out", str(out), "--no-attachments", "--json"], env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["attachments"] is None
    listed = json.loads(run_cli(["backup", "list", "--out", str(out), "--json"], env).stdout)
    assert len(listed) == 3
    assert [b["created_at"] for b in listed] == sorted(b["created_at"] for b in listed)

    pruned = run_cli(["backup", "prune", "--out", str(out), "--keep", "1", "--json"], env)
    assert pruned.returncode == 0, pruned.stderr
    assert len(json.loads(pruned.stdout)["deleted"]) == 2
    left = json.loads(run_cli(["backup", "list", "--out", str(out), "--json"], env).stdout)
    assert [b["name"] for b in left] == [listed[-1]["name"]]

    bad = run_cli(["backup", "prune", "--out", str(out), "--keep", "0"], env)
    assert bad.returncode == 2


def test_verify_of_a_folder_that_is_no_backup(database_url: str, tmp_path: Path) -> None:
    result = run_cli(["backup", "verify", str(tmp_path)], _env(database_url, tmp_path))
    assert result.returncode == 1
    assert "has no manifest.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_client_program_names_the_package_to_install() -> None:
    with pytest.raises(pg_tools.PgToolMissing) as missing:
        pg_tools.find_tool("pg_dump", 99)
    message = str(missing.value)
    assert "PostgreSQL 99" in message
    assert "postgresql-client-99" in message
    assert "\n" not in message


async def test_the_client_programs_match_the_server_major(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()
    for name in ("pg_dump", "pg_restore", "psql"):
        assert pg_tools.tool_major(pg_tools.find_tool(name, major)) == major


async def test_the_docs_plain_dump_and_restore_commands(database_url: str, tmp_path: Path) -> None:
    """docs/operations.md's compose procedure (pg_dump, dropdb --force, createdb, pg_restore from
    stdin, vacuumdb --analyze-only), run with this machine's client programs instead of inside
    the postgres container."""
    import subprocess
    from urllib.parse import urlsplit

    parts = urlsplit(database_url)
    where = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    user, name = parts.username or "postgres", parts.path.lstrip("/")
    conn = await asyncpg.connect(database_url)
    try:
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        await conn.execute("INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'kept')")
    finally:
        await conn.close()

    def tool(name: str) -> str:
        return str(pg_tools.find_tool(name, major))

    dump = tmp_path / "cariosan-2026-11-24.dump"
    with dump.open("wb") as out:
        subprocess.run(
            [tool("pg_dump"), *where, "-U", user, "-d", name, "--format=custom"],
            stdout=out,
            check=True,
        )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'lost')")
    finally:
        await conn.close()
    subprocess.run([tool("dropdb"), *where, "-U", user, "--force", name], check=True)
    subprocess.run([tool("createdb"), *where, "-U", user, name], check=True)
    with dump.open("rb") as source:
        subprocess.run(
            [tool("pg_restore"), *where, "-U", user, "-d", name, "--no-owner", "--exit-on-error"],
            stdin=source,
            check=True,
        )
    subprocess.run([tool("vacuumdb"), *where, "-U", user, "--analyze-only", name], check=True)
    conn = await asyncpg.connect(database_url)
    try:
        names = sorted(await conn.fetch("SELECT name FROM workspaces"), key=str)
        unanalyzed = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_user_tables "
            "WHERE schemaname = 'public' AND last_analyze IS NULL"
        )
    finally:
        await conn.close()
    assert [r["name"] for r in names] == ["kept"]
    assert unanalyzed == 0  # the docs' vacuumdb step left planner statistics behind


async def test_an_older_backup_restores_and_the_server_migrates_it_forward(
    empty_database_url: str, tmp_path: Path
) -> None:
    """A backup taken at schema version 2 restored under this release: `serve` migrates it."""
    from cariosan.db import schema
    from tests.support.process import serve

    migrations = schema.load_migrations()
    conn = await asyncpg.connect(empty_database_url)
    try:
        await schema.migrate(conn, migrations[:2])
        await conn.execute("INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'old')")
    finally:
        await conn.close()
    env = {
        "CARIOS_DATABASE_URL": empty_database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_STORAGE_DIR": str(tmp_path / "files"),
    }
    made = run_cli(["backup", "create", "--out", str(tmp_path / "b"), "--json"], env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["schema_version"] == 2
    conn = await asyncpg.connect(empty_database_url)
    try:
        await schema.migrate(conn)  # the deployment moved on...
    finally:
        await conn.close()
    restored = run_cli(["restore", json.loads(made.stdout)["path"]], env)  # ...and goes back
    assert restored.returncode == 0, restored.stderr
    with serve(env, tmp_path):
        pass
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await schema.schema_version(conn) == migrations[-1].version
        assert await conn.fetchval("SELECT name FROM workspaces") == "old"
    finally:
        await conn.close()
