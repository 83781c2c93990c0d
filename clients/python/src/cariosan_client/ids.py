"""Message ids the SDK makes: time-ordered UUIDs (v7), as the server makes them.

A send carries its id so that a retry is recognised. Ids that grow with time keep a channel's
recent messages together in the server's index, where random ones scatter them.
"""

from __future__ import annotations

import os
import time
import uuid


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
