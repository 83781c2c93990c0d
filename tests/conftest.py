"""Fixtures shared by every kind of test: real PostgreSQL, Redis and S3 (tests/services), one
fresh database per test cloned from a migrated template, and a running server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from cariosan.config import Limits, Settings
from cariosan.db import schema
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from tests.services.provision import PostgresService
from tests.support.server import RunningServer, start_server

pytest_plugins = ["tests.services.plugin"]

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"


_KINDS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind, from its folder (tests/unit, integration, system), so that
    `pytest -m "unit or integration"` (`make test-fast`) picks the quick ones."""
    for item in items:
        parts = item.path.parts
        for kind in _KINDS:
            if kind in parts:
                item.add_marker(kind)
                break


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
    if metafunc.module.__name__ in FUTURE_SCHEMA_SUITES and "database_url" in metafunc.fixturenames:
        metafunc.parametrize("schema_release", ["current", "future"], indirect=True)


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
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """The app served by uvicorn on a free loopback port, booted and ready."""
    async with start_server(settings) as running:
        yield running


@pytest.fixture
async def workspace(server: RunningServer) -> NewWorkspace:
    """A workspace of the running server; `.api_secret` authenticates its backend."""
    return await create_workspace(server.services.db, "test workspace")


@pytest.fixture
async def other_workspace(server: RunningServer) -> NewWorkspace:
    return await create_workspace(server.services.db, "another tenant")
