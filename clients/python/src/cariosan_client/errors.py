"""Errors raised by the SDK: one class per API error code (API.md, "Errors and limits").

Every error carries the server's `code`, `message`, HTTP `status` and `request_id` (quote it when
reporting a problem), plus `retry_after` in seconds when the server sent `Retry-After`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

__all__ = [
    "Banned",
    "CariosanError",
    "Conflict",
    "EventsExpired",
    "Forbidden",
    "Internal",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "error_from_response",
]


class CariosanError(Exception):
    """Base of every SDK error; `except CariosanError` catches them all."""

    code: str = "INTERNAL"
    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class Unauthorized(CariosanError):
    """Missing, malformed, expired or wrongly signed credential (401)."""

    code = "UNAUTHORIZED"
    status = 401


class Forbidden(CariosanError):
    """The credential is valid but may not do this (403)."""

    code = "FORBIDDEN"
    status = 403


class NotFound(CariosanError):
    """No such user, channel, message... or not visible to the caller (404)."""

    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(CariosanError):
    """The path exists but not with this HTTP method (405)."""

    code = "METHOD_NOT_ALLOWED"
    status = 405


class Conflict(CariosanError):
    """The request clashes with the current state (409)."""

    code = "CONFLICT"
    status = 409


class EventsExpired(CariosanError):
    """`after_seq` is older than the events the server keeps (410). Resync: refetch channels and
    history, then continue from `latest_seq`."""

    code = "EVENTS_EXPIRED"
    status = 410
    latest_seq: int = 0


class PayloadTooLarge(CariosanError):
    """Body, text or attachment over the deployment's limit (413)."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class ValidationFailed(CariosanError):
    """The request is malformed or a field is invalid (422)."""

    code = "VALIDATION_FAILED"
    status = 422


class RateLimited(CariosanError):
    """Too many requests; wait `retry_after` seconds (429)."""

    code = "RATE_LIMITED"
    status = 429


class Internal(CariosanError):
    """The server failed unexpectedly, or answered with something the SDK cannot read (500)."""

    code = "INTERNAL"
    status = 500


class Unavailable(CariosanError):
    """A backing store of the server is down; retrying later may succeed (503)."""

    code = "UNAVAILABLE"
    status = 503


class TransportError(CariosanError):
    """The server could not be reached or did not answer in time (no HTTP status: 0)."""

    code = "UNAVAILABLE"
    status = 0

    @classmethod
    def wrap(cls, exc: httpx.TransportError) -> TransportError:
        detail = str(exc) or type(exc).__name__
        return cls(f"cannot reach the Cariosan server: {detail}")


# Bans (issue 14, point 2).
class Banned(Forbidden):
    """The user is banned from the workspace or the channel (403 `BANNED`); the message names
    the reason and until when. A subclass of `Forbidden`: code that catches that still works."""

    code = "BANNED"
    status = 403


_BY_CODE: dict[str, type[CariosanError]] = {
    cls.code: cls
    for cls in (
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        EventsExpired,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        Internal,
        Unavailable,
        # Bans (issue 14, point 2).
        Banned,
    )
}

# For bodies without the envelope (a proxy's error page, say); mirrors the server's own mapping.
_BY_STATUS: dict[int, type[CariosanError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: EventsExpired,
    413: PayloadTooLarge,
    415: ValidationFailed,
    422: ValidationFailed,
    429: RateLimited,
    500: Internal,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def error_from_response(response: httpx.Response) -> CariosanError:
    """The typed error for a non-2xx response: by the envelope's `code`, else by HTTP status."""
    status = response.status_code
    envelope = _envelope(response)
    code = _text(envelope.get("code"))
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = Internal if status >= 500 else CariosanError
    if code is None:
        code = cls.code if cls is not CariosanError else f"HTTP_{status}"
    message = _text(envelope.get("message")) or (f"HTTP {status} {response.reason_phrase}".rstrip())
    error = cls(
        message,
        code=code,
        status=status,
        request_id=_text(envelope.get("request_id")) or response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
    if isinstance(error, EventsExpired) and isinstance(envelope.get("latest_seq"), int):
        error.latest_seq = envelope["latest_seq"]
    return error
