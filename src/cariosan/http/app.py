"""Builds the ASGI application from the services of one server process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from cariosan import __version__
from cariosan.domain.auth import Caller
from cariosan.heap import freeze_booted_heap
from cariosan.http import (
    attachments,
    audit,
    auth,
    bans,
    channels,
    demo,
    docs,
    events,
    flags,
    health,
    home,
    messages,
    middleware,
    mutes,
    openapi,
    pins,
    users,
    webhooks,
)
from cariosan.http.errors import EXCEPTION_HANDLERS
from cariosan.obs.logging import get_logger
from cariosan.realtime import gateway
from cariosan.services import BootFailed, Services

log = get_logger("cariosan.http")

OnBootFailure = Callable[[str], None]


def create_app(services: Services, on_boot_failure: OnBootFailure | None = None) -> Any:
    """The ASGI app: Litestar routes wrapped in the request-context layer.

    Boot (wait for PostgreSQL, migrate) runs as a background task of the lifespan so the process
    answers `/healthz` at once and `/readyz` with 503 until it is done. A boot failure is handed to
    `on_boot_failure`, which stops the server (the CLI) or leaves it not ready (tests).
    """

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async def boot() -> None:
            try:
                await services.boot()
                freeze_booted_heap()
            except BootFailed as exc:
                log.error("boot_failed", reason=str(exc))
                if on_boot_failure is not None:
                    on_boot_failure(str(exc))

        task = asyncio.create_task(boot(), name="cariosan-boot")
        try:
            yield
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await services.close()

    plugins: list[Any] = []
    if services.tracer_provider is not None:
        plugins.append(
            OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=services.tracer_provider))
        )

    app = Litestar(
        route_handlers=[
            # `cariosan dev` serves its demo chat app at /; `serve` a page pointing to /docs.
            *(demo.ROUTES if services.settings.demo_workspace_id else home.ROUTES),
            *health.ROUTES,
            *openapi.ROUTES,
            *users.ROUTES,
            *events.ROUTES,
            *channels.ROUTES,
            *messages.ROUTES,
            *gateway.ROUTES,
            *webhooks.ROUTES,
            *attachments.ROUTES,
            *audit.ROUTES,
            # Bans (issue 14, point 2).
            *bans.ROUTES,
            # Flags and the review queue (issue 14 point 4).
            *flags.ROUTES,
            # Mutes and blocks (issue 14.3).
            *mutes.ROUTES,
            # Pins and slow mode (issue 14 point 5).
            *pins.ROUTES,
        ],
        dependencies={
            "services": Provide(lambda: services, use_cache=True, sync_to_thread=False),
            "caller": Provide(auth.provide_caller),
            "server": Provide(auth.provide_server),
        },
        signature_namespace={
            "Services": Services,
            "Caller": Caller,
            "NamedDependency": NamedDependency,
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        plugins=plugins,
        request_max_body_size=services.settings.limits.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Cariosan",
            version=__version__,
            # The docs UI lives at /docs, with its assets, and loads /openapi.json (see
            # http/openapi.py): nothing comes from outside (http/docs.py).
            path="/docs",
            render_plugins=[docs.OfflineSwaggerPlugin()],
        ),
        logging_config=None,
        debug=False,
    )
    return middleware.wrap(app, services.metrics)
