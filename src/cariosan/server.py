"""Running the HTTP server (uvicorn) for `cariosan serve` and `cariosan dev`."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

import uvicorn

from cariosan.config import Settings
from cariosan.http.app import create_app
from cariosan.obs.logging import configure_logging
from cariosan.obs.tracing import build_tracer_provider
from cariosan.services import BootFailed, Services


class _Terminated(Exception):
    """SIGTERM, turned into an exception so `finally` blocks (stopping embedded PostgreSQL) run."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def run(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted. Raises BootFailed if PostgreSQL is unreachable or unmigratable."""
    configure_logging(settings.log_level)
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
    )
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        asyncio.run(server.serve())
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
