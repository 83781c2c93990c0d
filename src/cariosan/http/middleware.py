"""The outermost ASGI layer: request ids, one JSON log line and metrics per request.

It wraps the whole Litestar app, so unmatched routes and errors raised before routing are
counted and logged too.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cariosan.ephemeral.store import WindowState
from cariosan.http.errors import REQUEST_ID_KEY, error_body
from cariosan.obs.logging import get_logger
from cariosan.obs.metrics import Metrics

# Set by http/auth.py once the caller is known; reported in X-RateLimit-* headers.
RATE_LIMIT_KEY = "cariosan.ratelimit"

log = get_logger("cariosan.http")

# A caller may pass its own id (to correlate with its logs) if it is short and harmless.
_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes are not worth a log line each; they are still counted.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CALLER_ID.match(text) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id  # type: ignore[literal-required]
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                # The server's own time up to the response (W3C Server-Timing): what a client
                # or a benchmark can tell apart from the network.
                spent = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={spent:.2f}".encode()))
                window = scope.get(RATE_LIMIT_KEY)
                # A 429 carries the headers of the window it exceeded already: one set only.
                has_own = any(name.lower() == b"x-ratelimit-limit" for name, _ in headers)
                if isinstance(window, WindowState) and not has_own:
                    headers.extend(
                        [
                            (b"x-ratelimit-limit", str(window.window.limit).encode()),
                            (b"x-ratelimit-remaining", str(window.remaining).encode()),
                            (b"x-ratelimit-reset", str(window.reset_in).encode()),
                        ]
                    )
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.error("unhandled_exception", request_id=request_id, exc_info=True)
            if not response_started:
                status = 500
                await _send_internal_error(send, request_id)
        finally:
            duration = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(duration)
            if route not in _QUIET_ROUTES or status >= 500:
                log.info(
                    "request",
                    request_id=request_id,
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(duration * 1000, 2),
                )


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(error_body("INTERNAL", "internal error", request_id)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def wrap(app: Any, metrics: Metrics) -> Any:
    return RequestContextMiddleware(app, metrics)
