"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from cariosan import __version__
from cariosan.obs.metrics import CONTENT_TYPE
from cariosan.services import Services


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: 200 whenever the process serves."""
    return {"status": "ok", "version": __version__}


@get("/readyz", include_in_schema=False)
async def readyz(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    """Readiness: 200 only when PostgreSQL is reachable and migrated."""
    readiness = await services.readiness()
    body = {
        "status": "ready" if readiness.ready else "not_ready",
        "version": __version__,
        "checks": readiness.checks,
    }
    return Response(body, status_code=200 if readiness.ready else 503)


@get("/metrics", include_in_schema=False)
async def metrics(services: NamedDependency[Services]) -> Response[bytes]:
    await services.refresh_operations()
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)


ROUTES = [healthz, readyz, metrics]
