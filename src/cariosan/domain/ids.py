"""Customer-chosen ids (users, channels) and server-made ones (messages, attachments)."""

from __future__ import annotations

import os
import re
import time
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


def time_ordered_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Message ids index the messages table by (workspace, id). Random (v4) ids put each new row
    on a random leaf of that index, so the 100 messages of a catch-up page, written one after
    another, sit on 100 different pages (each a cache miss once the table outgrows memory),
    and every insert dirties a random page. Ids that grow with time keep neighbours together.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)
