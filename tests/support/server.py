"""Serving the real app with uvicorn inside the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from cariosan.config import Settings
from cariosan.http.app import create_app
from cariosan.server import uvicorn_options
from cariosan.services import Services

# One for every client the tests make: httpx loads the CA bundle for each client otherwise
# (about 70 ms of CPU, for servers that speak plain HTTP anyway).
TLS = httpx.create_ssl_context()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    url: str
    services: Services
    boot_failures: list[str]

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        kwargs.setdefault("verify", TLS)
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2, verify=TLS) as http:
        while True:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"server at {url} was not ready within {timeout} s")
            await asyncio.sleep(0.01)


@asynccontextmanager
async def start_server(
    settings: Settings,
    *,
    tracer_provider: TracerProvider | None = None,
    wait_for_ready: bool = True,
    port: int | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve on `port` (a free one when None: give the same one again to restart a server)."""
    # Bound here and handed to uvicorn: no other test (or xdist worker) can take the port
    # between picking it and serving on it.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    port = int(sock.getsockname()[1])
    # public_url too: the local attachment store signs URLs that point at this server.
    services = Services(
        settings.with_overrides(port=port, public_url=f"http://127.0.0.1:{port}"),
        tracer_provider=tracer_provider,
    )
    failures: list[str] = []
    app = create_app(services, on_boot_failure=failures.append)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # No heartbeats: tests hold stuck sockets for longer than one on a busy machine.
        **uvicorn_options(services.settings, heartbeat=False),
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        running = RunningServer(f"http://127.0.0.1:{port}", services, failures)
        if wait_for_ready:
            await wait_ready(running.url)
        yield running
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=15)
        finally:
            sock.close()
