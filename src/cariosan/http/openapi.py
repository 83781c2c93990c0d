"""`GET /openapi.json`: the exact schema of the public API, at the path API.md promises."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    return Response(request.app.openapi_schema.to_schema(), media_type="application/json")


ROUTES = [openapi_json]
