"""pytest plugin: real PostgreSQL, Redis and S3 as session fixtures.

Loaded by the root conftest with `pytest_plugins = ["tests.services.plugin"]`. Each service is
found or started (see tests/services/provision.py) the first time a test asks for it, kept for
the session, and stopped at its end. A service that cannot be had fails the tests that need it,
with a message naming the service and what was tried; it never skips them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import redis

from tests.services.provision import (
    PostgresService,
    RedisService,
    S3Service,
    ServiceUnavailable,
    provide_postgres,
    provide_redis,
    provide_s3,
)

T = TypeVar("T")

# What each started fixture used, for the end-of-run summary: a run against the machine's own
# Redis and one against a throwaway redis-server should be told apart in CI logs.
_used: dict[str, str] = {}


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[PostgresService]:
    """A PostgreSQL server where tests may CREATE DATABASE; `.dsn` connects as a superuser."""
    service = _provide(provide_postgres)
    _used["postgres"] = service.source
    yield service
    service.close()


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisService]:
    """A Redis server shared by the session; isolate tests with `redis_prefix`."""
    service = _provide(provide_redis)
    _used["redis"] = service.source
    yield service
    service.close()


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Service]:
    """An S3 endpoint with credentials; make buckets with provision.new_bucket."""
    service = _provide(provide_s3)
    _used["s3"] = service.source
    yield service
    service.close()


def _provide(provide: Callable[[], T]) -> T:
    try:
        return provide()
    except ServiceUnavailable as exc:
        message = str(exc)
    # Outside the except block: the message says it all, no chained traceback.
    pytest.fail(message, pytrace=False)


@pytest.fixture
def redis_prefix(redis_service: RedisService) -> Iterator[str]:
    """A key prefix unique to this test, like "t:3f9c2a1b7d4e:"; its keys are deleted after.

    Per-test isolation is by key prefix, not DB number: an existing server (the machine's, or
    CARIOS_TEST_REDIS_URL) may have other users' data in other DBs, has only 16 by default, and
    Redis Cluster has just DB 0. Pub/sub channels are not keys: name them with the prefix too.
    """
    prefix = f"t:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_service.url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_url(redis_service: RedisService, redis_prefix: str) -> str:
    """The Redis URL for this test. The server (and DB) is shared with the other tests of the
    session: every key a test writes must start with its `redis_prefix`, which also pulls that
    prefix's cleanup in after the test.
    """
    return redis_service.url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _used:
        sources = ", ".join(f"{name}: {source}" for name, source in sorted(_used.items()))
        terminalreporter.write_line(f"backing services used: {sources}")
