"""Fixtures shared by every kind of test: real PostgreSQL, Redis and S3 (tests/services), one
fresh database per test cloned from a migrated template, and a running server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from cariosan.config import Limits, Settings
from cariosan.db import schema
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.ordering import kind_of, spread_heavy
from tests.services.provision import PostgresService
from tests.support.server import RunningServer, start_server

pytest_plugins = ["tests.services.plugin"]

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind, from its folder (tests/unit, integration, fuzz, system), so
    that `pytest -m "unit or integration"` picks the quick ones (before `-m` deselects)."""
    for item in items:
        kind = kind_of(item)
        if kind is not None:
            item.add_marker(kind)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Under pytest-xdist, the order its scheduler deals the tests out in (tests/ordering.py),
    set before the worker reports its collection."""
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is not None:
        spread_heavy(session.items, int(workerinput["workercount"]))


def with_database(dsn: str, name: str) -> str:
    """The DSN of database `name` on the server of `dsn`."""
    base, _, rest = dsn.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def _admin(postgres: PostgresService, statement: str) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# Set by tests/system/test_upgrade_rollback.py: the template also carries a migration of a
# future release (additive: new table, new nullable column, new index), so the suite proves
# that this release keeps working after a rollback from that future one.
FUTURE_MIGRATION_ENV = "CARIOS_TEST_FUTURE_MIGRATION"
FUTURE_MIGRATION = schema.Migration(
    9001,
    "future_release",
    """
    CREATE TABLE future_polls (
        workspace_id uuid NOT NULL,
        id uuid NOT NULL,
        question text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workspace_id, id)
    );
    ALTER TABLE messages ADD COLUMN future_poll_id uuid;
    CREATE INDEX messages_future_poll_idx ON messages (workspace_id, future_poll_id)
        WHERE future_poll_id IS NOT NULL;
    """,
)


def template_migrations() -> list[schema.Migration]:
    known = schema.load_migrations()
    if os.environ.get(FUTURE_MIGRATION_ENV):
        known = [*known, FUTURE_MIGRATION]
    return known


# The API suites also run on the schema a future release leaves behind, as this release meets it
# after a rollback (tests/system/test_upgrade_rollback.py): each of their tests that uses a
# database runs twice, `[current]` and `[future]`, spread over the workers like any other test.
FUTURE_SCHEMA_SUITES = (
    "tests.integration.test_users_and_auth",
    "tests.integration.test_channels",
    "tests.integration.test_messages",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    uses_database = {"database_url", "server"} & set(metafunc.fixturenames)
    if metafunc.module.__name__ in FUTURE_SCHEMA_SUITES and uses_database:
        metafunc.parametrize("schema_release", ["current", "future"], indirect=True)


# Suites whose tests each work in a workspace of their own and look at nothing outside it
# declare `server` as `shared_server`: their tests share one server (and database) per test
# process and schema release, instead of cloning a database and booting a server for each test
# (about 0.9 s each, half the time of `make test-fast`).


def _template(postgres_service: PostgresService, migrations: list[schema.Migration]) -> str:
    name = f"cariosan_tpl_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        await _admin(postgres_service, f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(with_database(postgres_service.dsn, name))
        try:
            await schema.migrate(conn, migrations)
        finally:
            await conn.close()

    asyncio.run(create())
    return name


@pytest.fixture(scope="session")
def migrated_template(postgres_service: PostgresService) -> Iterator[str]:
    """A database migrated to this release's schema, cloned for each test (fast)."""
    name = _template(postgres_service, template_migrations())
    yield name
    asyncio.run(_admin(postgres_service, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def future_template(postgres_service: PostgresService) -> Iterator[str]:
    """This release's schema plus FUTURE_MIGRATION: what a rollback from it leaves."""
    name = _template(postgres_service, [*schema.load_migrations(), FUTURE_MIGRATION])
    yield name
    asyncio.run(_admin(postgres_service, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def schema_release(request: pytest.FixtureRequest) -> str:
    """ "current" (this release's schema), or "future" where parametrized so."""
    release: str = getattr(request, "param", "current")
    return release


@pytest.fixture
def database_template(schema_release: str, request: pytest.FixtureRequest) -> str:
    """The template `database_url` clones (sync: the session templates use asyncio.run)."""
    name = "future_template" if schema_release == "future" else "migrated_template"
    template: str = request.getfixturevalue(name)
    return template


@pytest.fixture
async def database_url(
    postgres_service: PostgresService, database_template: str
) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"cariosan_t_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_service, f'CREATE DATABASE "{name}" TEMPLATE "{database_template}"')
    yield with_database(postgres_service.dsn, name)
    await _admin(postgres_service, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database_url(postgres_service: PostgresService) -> AsyncIterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"cariosan_e_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_service, f'CREATE DATABASE "{name}"')
    yield with_database(postgres_service.dsn, name)
    await _admin(postgres_service, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a single-node server on this test's database (memory ephemeral state,
    local attachment folder): what `cariosan dev` runs, against the test PostgreSQL."""
    return Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        host="127.0.0.1",
        port=0,
        storage_dir=tmp_path_factory.mktemp("attachments"),
        database_wait_seconds=10,
        limits=Limits(),
        # Several test processes share one PostgreSQL (100 connections): a test's server needs
        # few, and requests beyond them wait for one.
        database_pool_size=8,
    )


class SharedServers:
    """One server per schema release for this test process, stopped at the end of the session."""

    def __init__(self, postgres: PostgresService, storage: Path) -> None:
        self.postgres = postgres
        self.storage = storage
        self.running: dict[str, RunningServer] = {}
        self.stack = contextlib.AsyncExitStack()
        self.databases: list[str] = []

    async def get(self, release: str, template: str) -> RunningServer:
        if release not in self.running:
            name = f"cariosan_s_{uuid.uuid4().hex[:12]}"
            await _admin(self.postgres, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            self.databases.append(name)
            settings = shared_settings(with_database(self.postgres.dsn, name), self.storage)
            self.running[release] = await self.stack.enter_async_context(start_server(settings))
        return self.running[release]

    async def close(self) -> None:
        await self.stack.aclose()
        for name in self.databases:
            await _admin(self.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def shared_settings(database_url: str, storage: Path) -> Settings:
    return Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        host="127.0.0.1",
        port=0,
        storage_dir=storage,
        database_wait_seconds=10,
        # Tests refused with 401 on purpose add up over a whole session from one address; the
        # per-address limit has its own test (tests/integration/test_abuse.py).
        limits=Limits(auth_failures_per_minute=1_000_000),
        # Kept for the whole session by every test process, beside the servers of other tests:
        # a small pool leaves the shared PostgreSQL's connections to them.
        database_pool_size=4,
    )


@pytest.fixture(scope="session")
async def shared_servers(
    postgres_service: PostgresService, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SharedServers]:
    servers = SharedServers(postgres_service, tmp_path_factory.mktemp("shared-attachments"))
    yield servers
    await servers.close()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """The app served by uvicorn on a free loopback port, booted and ready."""
    async with start_server(settings) as running:
        yield running


@pytest.fixture
async def shared_server(
    shared_servers: SharedServers, schema_release: str, database_template: str
) -> RunningServer:
    """The server this test process shares among the tests of SHARED_SERVER_SUITES, which use
    it as their `server` (each test still gets a workspace of its own)."""
    return await shared_servers.get(schema_release, database_template)


@pytest.fixture
async def own_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A server and database of this test's own, on its module's `settings`."""
    async with start_server(settings) as running:
        yield running


@pytest.fixture
def shared_or_own_server(request: pytest.FixtureRequest) -> RunningServer:
    """For suites whose tests share the process's server: that one, or the test's own for a
    test marked `own_server` (each says why it cannot share)."""
    marked = request.node.get_closest_marker("own_server") is not None
    running: RunningServer = request.getfixturevalue("own_server" if marked else "shared_server")
    return running


@pytest.fixture
async def workspace(server: RunningServer) -> NewWorkspace:
    """A workspace of the running server; `.api_secret` authenticates its backend."""
    return await create_workspace(server.services.db, "test workspace")


@pytest.fixture
async def other_workspace(server: RunningServer) -> NewWorkspace:
    return await create_workspace(server.services.db, "another tenant")
