"""The JSON error envelope of API.md, for every error, with no stack trace ever in a body."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from cariosan import errors
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.http")

REQUEST_ID_KEY = "cariosan.request_id"

_STATUS_OF_CODE = {
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "BANNED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "EVENTS_EXPIRED": 410,
    "PAYLOAD_TOO_LARGE": 413,
    "VALIDATION_FAILED": 422,
    "RATE_LIMITED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}

# Litestar raises HTTPException with these statuses (routing, parsing, limits).
_CODE_OF_STATUS = {
    400: "VALIDATION_FAILED",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "VALIDATION_FAILED",
    422: "VALIDATION_FAILED",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


def request_id_of(request: Request[Any, Any, Any]) -> str:
    value = request.scope.get(REQUEST_ID_KEY)  # type: ignore[call-overload]
    return value if isinstance(value, str) else ""


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(
    request: Request[Any, Any, Any],
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    status = _STATUS_OF_CODE.get(code, 500)
    return Response(
        error_body(code, message, request_id_of(request)), status_code=status, headers=headers
    )


def handle_cariosan_error(
    request: Request[Any, Any, Any], exc: errors.CariosanError
) -> Response[dict[str, Any]]:
    headers = None
    if isinstance(exc, errors.RateLimited):
        retry_after = str(max(1, exc.retry_after))
        headers = {"Retry-After": retry_after}
        if exc.limit is not None:
            headers.update(
                {
                    "X-RateLimit-Limit": str(exc.limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": retry_after,
                }
            )
    response = error_response(request, exc.code, exc.message, headers)
    if isinstance(exc, errors.EventsExpired):
        # Where the client continues once it has refetched channels and history.
        response.content["error"]["latest_seq"] = exc.latest_seq
    return response


def _validation_message(exc: HTTPException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra[:5]:
            if isinstance(item, dict):
                key = item.get("key")
                msg = item.get("message", "")
                parts.append(f"{key}: {msg}" if key else str(msg))
        if parts:
            return "; ".join(parts)
    detail = exc.detail or "invalid request"
    return str(detail)


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    status = exc.status_code
    code = _CODE_OF_STATUS.get(status, "INTERNAL" if status >= 500 else "VALIDATION_FAILED")
    if code == "VALIDATION_FAILED":
        message = _validation_message(exc)
    elif code == "NOT_FOUND":
        message = "no such resource" if request.scope.get("path_template") else "no such route"
    elif code == "METHOD_NOT_ALLOWED":
        message = f"method {request.method} is not allowed here"
    elif code == "INTERNAL":
        log.error("http_exception", status=status, detail=str(exc.detail))
        message = "internal error"
    else:
        message = str(exc.detail)
    headers = dict(exc.headers or {})
    response = error_response(request, code, message, headers or None)
    if code == "METHOD_NOT_ALLOWED":
        response.status_code = 405
    return response


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, RecursionError):
        # Decoding an absurdly nested JSON body exhausts the stack before validation runs.
        return error_response(request, "VALIDATION_FAILED", "the JSON body is nested too deeply")
    if isinstance(exc, UnicodeDecodeError):
        # msgspec raises it (not a DecodeError) for invalid UTF-8 inside a JSON string.
        return error_response(request, "VALIDATION_FAILED", "the body is not valid UTF-8")
    # The traceback goes to the log (with the request id to find it), never to the client.
    log.error(
        "unhandled_exception",
        request_id=request_id_of(request),
        error=exc.__class__.__name__,
        exc_info=exc,
    )
    return error_response(request, "INTERNAL", "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.CariosanError: handle_cariosan_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
