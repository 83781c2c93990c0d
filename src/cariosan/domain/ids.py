"""Customer-chosen ids (users, channels) and server-made ones (messages, attachments)."""

from __future__ import annotations

import re
import uuid

from cariosan.errors import NotFound, ValidationFailed

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# Event sequence numbers (and other counters) are PostgreSQL bigints.
MAX_SEQ = 2**63 - 1


def customer_id(kind: str, value: str) -> str:
    """A user or channel id as API.md allows them, or VALIDATION_FAILED naming the field."""
    # fullmatch: `$` would also accept a trailing newline.
    if not isinstance(value, str) or not _CUSTOMER_ID.fullmatch(value):
        raise ValidationFailed(f"{kind} must match [A-Za-z0-9_.@-]{{1,64}}")
    return value


def server_id(kind: str, value: str, *, missing_is_not_found: bool = True) -> uuid.UUID:
    """A UUID from a path or body. In a path, a malformed id names nothing: 404."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        if missing_is_not_found:
            raise NotFound(f"no such {kind}") from None
        raise ValidationFailed(f"{kind} must be a UUID") from None
