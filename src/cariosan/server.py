"""Running the HTTP server (uvicorn) for `cariosan serve` and `cariosan dev`."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn

from cariosan.config import Settings, load_settings
from cariosan.db import schema
from cariosan.db.bootstrap import prepare_database
from cariosan.db.pool import DatabaseUnreachable
from cariosan.http.app import create_app
from cariosan.http.protocol import WORKER_PROTOCOL, http_protocol, set_worker_deadline
from cariosan.obs.logging import configure_logging, get_logger
from cariosan.obs.tracing import build_tracer_provider
from cariosan.services import BootFailed, Services

# WebSocket heartbeats: a protocol ping every 20 s; a client silent for 40 s more is dropped
# (so a dead peer goes within about a minute, and its presence with it).
WEBSOCKET_HEARTBEAT: dict[str, Any] = {"ws_ping_interval": 20.0, "ws_ping_timeout": 40.0}


def uvicorn_options(
    settings: Settings, *, heartbeat: bool = True, workers: bool = False
) -> dict[str, Any]:
    """The protocol limits every server process runs with (`serve`, `dev`, workers, tests)."""
    read_seconds = settings.limits.request_read_seconds
    options: dict[str, Any] = {
        # A request's head and body must arrive in time (slowloris).
        "http": WORKER_PROTOCOL if workers else http_protocol(read_seconds),
        # uvicorn's sans-I/O WebSocket protocol, letting the gateway write an event's frame,
        # built once, to every socket (realtime/wire.py). By path: workers unpickle it.
        "ws": "cariosan.realtime.wire:FrameWriterProtocol",
        "timeout_keep_alive": settings.limits.http_keepalive_seconds,
        # The WebSocket layer refuses a bigger frame from its header (close 1009), unread.
        "ws_max_size": settings.limits.ws_max_frame_bytes,
        # Frames queued unread per socket (uvicorn's default is 32 of up to ws_max_size).
        "ws_max_queue": 8,
        "ws_per_message_deflate": settings.ws_compression,
    }
    if heartbeat:
        options.update(WEBSOCKET_HEARTBEAT)
    return options


# Files a server process keeps open besides client sockets: its database pool, Redis, logs,
# libraries. What is left of the open-file limit is what it can hold in connections.
FILES_NOT_SOCKETS = 100


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit, as nginx and Synapse do: every
    connection is a file, and the usual soft default (1,024) would refuse the 1,025th client.
    Returns the limit in force; child processes (`--workers`) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft  # a platform that caps it lower (macOS: OPEN_MAX): keep what we have
    return target


def _log_open_file_limit(workers: int = 1) -> None:
    files = raise_open_file_limit()
    log.info(
        "open_file_limit",
        files=files,
        sockets_per_process=max(0, files - FILES_NOT_SOCKETS),
        processes=workers,
    )


class _Terminated(Exception):
    """SIGTERM, turned into an exception so `finally` blocks (stopping embedded PostgreSQL) run."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def run(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until interrupted. Raises BootFailed if PostgreSQL is unreachable or unmigratable.
    `sockets`: already bound listening sockets to serve on (`cariosan dev` binds first)."""
    configure_logging(settings.log_level)
    _log_open_file_limit()
    services = Services(settings, tracer_provider=build_tracer_provider(settings.otel))
    failures: list[str] = []
    server: uvicorn.Server | None = None

    def stop_on_boot_failure(reason: str) -> None:
        failures.append(reason)
        if server is not None:
            server.should_exit = True

    config = uvicorn.Config(
        create_app(services, on_boot_failure=stop_on_boot_failure),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # uvicorn's own loop choice (uvloop when installed, as `uvicorn.run` makes for workers):
        # on a plain asyncio loop a one-process server sent about 11 % fewer messages (profile).
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(server.serve(sockets=sockets))
    except _Terminated:
        pass
    except SystemExit:
        # uvicorn exits this way when it cannot bind; it has logged the OS error.
        raise BootFailed(
            f"could not listen on {config.host}:{config.port} (is another server using it?)"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failures:
        raise BootFailed(failures[0])


log = get_logger("cariosan.boot")


def app_factory() -> Any:
    """The app of one worker process of `serve --workers N` (uvicorn imports it by name).

    Workers share nothing but PostgreSQL and Redis: each builds its own settings (from the same
    environment), pool, hub and bus. A worker that cannot boot stops itself.
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    set_worker_deadline(settings.limits.request_read_seconds)
    services = Services(settings, tracer_provider=build_tracer_provider(settings.otel))

    def stop(reason: str) -> None:
        log.error("worker_boot_failed", reason=reason)
        os.kill(os.getpid(), signal.SIGTERM)

    return create_app(services, on_boot_failure=stop)


def run_workers(
    settings: Settings, workers: int, *, host: str | None = None, port: int | None = None
) -> None:
    """Serve with `workers` processes. Waits for PostgreSQL and migrates first, so a boot
    failure stops the command with its one line (BootFailed) before any worker starts."""
    configure_logging(settings.log_level)
    _log_open_file_limit(workers)
    if workers > 1 and not settings.redis_url:
        log.warning(
            "workers_without_redis",
            message="several workers without CARIOS_REDIS_URL: live events still arrive (each "
            "worker polls the event log every second), but typing and presence stay inside one "
            "worker and rate limits count per worker; set CARIOS_REDIS_URL",
        )
    asyncio.run(_migrate(settings))
    uvicorn.run(
        "cariosan.server:app_factory",
        factory=True,
        workers=workers,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings, workers=True),
    )


async def _migrate(settings: Settings) -> None:
    try:
        prepared = await prepare_database(
            settings.require_database(), settings.database_wait_seconds, pool_min=1, pool_max=1
        )
    except (DatabaseUnreachable, schema.MigrationError) as exc:
        raise BootFailed(str(exc)) from None
    await prepared.database.close()
