"""`GET /openapi.json`: the exact schema of the public API, at the path API.md promises.

Litestar derives paths, parameters and bodies from the handlers; the error envelope is ours, so
it is added here once for every operation instead of on each handler.
"""

from __future__ import annotations

import copy
from typing import Any

from litestar import Request, Response, get

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "UNAUTHORIZED",
                        "FORBIDDEN",
                        "NOT_FOUND",
                        "METHOD_NOT_ALLOWED",
                        "VALIDATION_FAILED",
                        "CONFLICT",
                        "PAYLOAD_TOO_LARGE",
                        "RATE_LIMITED",
                        "UNAVAILABLE",
                        "INTERNAL",
                    ],
                },
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }
    },
}

_ERRORS = {
    "401": "Missing, malformed, expired or wrongly signed credential (UNAUTHORIZED)",
    "403": "Authenticated but not allowed (FORBIDDEN)",
    "404": "No such resource, or not visible to the caller (NOT_FOUND)",
    "409": "Conflicts with the current state (CONFLICT)",
    "413": "Request body over the limit (PAYLOAD_TOO_LARGE)",
    "422": "Malformed JSON or invalid input (VALIDATION_FAILED)",
    "429": "Rate limited; see Retry-After (RATE_LIMITED)",
    "500": "Unexpected failure (INTERNAL)",
    "503": "A backing store is unavailable (UNAVAILABLE)",
}

_PUBLIC_OPERATION_PREFIX = "/v1/"
_cache: dict[int, dict[str, Any]] = {}


def _ref() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def public_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """Litestar's schema plus the error envelope on every /v1 operation and the bearer auth."""
    schema = copy.deepcopy(raw)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The workspace API secret (server-side) or a user JWT (client-side).",
    }
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith(_PUBLIC_OPERATION_PREFIX):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            # Litestar documents its own 400 for validation errors; ours are 422 in the envelope.
            responses.pop("400", None)
            for status, description in _ERRORS.items():
                responses.setdefault(status, {"description": description, **_ref()})
            operation.setdefault("security", [{"bearer": []}])
    return schema


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    app_id = id(request.app)
    if app_id not in _cache:
        _cache[app_id] = public_schema(request.app.openapi_schema.to_schema())
    return Response(_cache[app_id], media_type="application/json")


ROUTES = [openapi_json]
