"""What every bench needs: a `cariosan serve` on loopback against a database of its own, a
workspace in it, and users with tokens. Everything is removed again at the end."""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from tests.services.provision import provide_postgres, provide_redis
from tests.support.process import run_cli, serve

from cariosan.domain import tokens

JWT_SECRET = "bench-jwt-secret-" + secrets.token_hex(16)
# Benches measure the server, not its limits.
UNLIMITED = {
    "CARIOS_RATE_USER_MESSAGES_PER_SECOND": "100000",
    "CARIOS_RATE_USER_REQUESTS_PER_MINUTE": "100000000",
    "CARIOS_RATE_WORKSPACE_REQUESTS_PER_MINUTE": "100000000",
}


@dataclass(frozen=True)
class Deployment:
    url: str
    database_url: str
    api_secret: str
    workspace_id: uuid.UUID
    redis: bool
    # The `cariosan serve` process (with `--workers`, the parent of the workers): for its memory.
    server_pid: int | None = None


def database_dsn(server_dsn: str, name: str) -> str:
    base, _, rest = server_dsn.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def deployment(
    *,
    workers: int = 1,
    redis: bool = False,
    keep_database: bool = False,
    reuse_database: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """A server (with `--workers`), a fresh database and a workspace; gone afterwards (the
    database stays, for a look at query plans, with `keep_database`). With `reuse_database`, a
    server on that kept database and its `bench` workspace, left as they are."""
    postgres = provide_postgres()
    redis_service = provide_redis() if redis else None
    name = reuse_database or f"cariosan_bench_{uuid.uuid4().hex[:10]}"
    if reuse_database is None:
        asyncio.run(admin(postgres.dsn, f'CREATE DATABASE "{name}"'))
    dsn = database_dsn(postgres.dsn, name)
    try:
        server_env = {
            "CARIOS_DATABASE_URL": dsn,
            "CARIOS_JWT_SECRET": JWT_SECRET,
            "CARIOS_LOG_LEVEL": "warning",
            **UNLIMITED,
            **(env or {}),
        }
        if redis_service is not None:
            server_env["CARIOS_REDIS_URL"] = redis_service.url
            server_env["CARIOS_REDIS_PREFIX"] = f"bench:{uuid.uuid4().hex[:8]}:"
        with tempfile.TemporaryDirectory(prefix="cariosan-bench-") as folder:
            args = ["--workers", str(workers)] if workers > 1 else []
            with serve(server_env, Path(folder), args=args) as server:
                if reuse_database is None:
                    made = run_cli(["workspace", "create", "bench", "--json"], server_env)
                    if made.returncode != 0:
                        raise RuntimeError(made.stderr.strip())
                    workspace = json.loads(made.stdout)
                    secret, workspace_id = workspace["api_secret"], uuid.UUID(workspace["id"])
                else:
                    # Its API secret is gone (only a hash is kept): benches on a kept database
                    # mint user tokens and do not call as the backend.
                    secret, workspace_id = "", asyncio.run(workspace_named(dsn, "bench"))
                yield Deployment(server.url, dsn, secret, workspace_id, redis, server.process.pid)
    finally:
        if keep_database or reuse_database is not None:
            print(f'kept database {name} (drop it with: DROP DATABASE "{name}")')
        else:
            asyncio.run(admin(postgres.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if redis_service is not None:
            redis_service.close()
        postgres.close()


async def workspace_named(dsn: str, name: str) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", name)
    finally:
        await conn.close()
    if not isinstance(found, uuid.UUID):
        raise RuntimeError(f"no workspace named {name!r} in that database")
    return found


def user_tokens(workspace_id: uuid.UUID, names: list[str]) -> dict[str, str]:
    """Tokens of users that exist, minted with the bench's JWT secret."""
    return {n: tokens.mint(JWT_SECRET, workspace_id, n, 3600)[0] for n in names}


async def make_users(where: Deployment, names: list[str]) -> dict[str, str]:
    """Upsert the users; their tokens (minted locally with the bench's JWT secret)."""
    headers = {"Authorization": f"Bearer {where.api_secret}"}
    async with httpx.AsyncClient(base_url=where.url, headers=headers, timeout=60) as http:
        for start in range(0, len(names), 50):
            batch = names[start : start + 50]
            replies = await asyncio.gather(
                *(http.put(f"/v1/users/{n}", json={"name": n}) for n in batch)
            )
            assert all(r.status_code == 200 for r in replies), replies[0].text
    return user_tokens(where.workspace_id, names)
