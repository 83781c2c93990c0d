"""The error vocabulary shared by every layer; each class carries its stable API code.

`http/` maps these to status codes and the JSON envelope; the SDK raises classes of the same names.
"""

from __future__ import annotations


class CariosanError(Exception):
    """Base of every error that reaches a caller with a stable code."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(CariosanError):
    code = "UNAUTHORIZED"


class Forbidden(CariosanError):
    code = "FORBIDDEN"


class NotFound(CariosanError):
    code = "NOT_FOUND"


class ValidationFailed(CariosanError):
    code = "VALIDATION_FAILED"


class Conflict(CariosanError):
    code = "CONFLICT"


class PayloadTooLarge(CariosanError):
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(CariosanError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int, limit: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit


class EventsExpired(CariosanError):
    """The caller's position is older than the kept event log: refetch state, go on from
    `latest_seq`."""

    code = "EVENTS_EXPIRED"

    def __init__(self, message: str, latest_seq: int) -> None:
        super().__init__(message)
        self.latest_seq = latest_seq


class Banned(CariosanError):
    """The user is banned from the workspace or the channel (issue 14): the message gives the
    reason and until when."""

    code = "BANNED"


class Unavailable(CariosanError):
    """A backing store (PostgreSQL, Redis, S3) cannot be reached right now."""

    code = "UNAVAILABLE"
