"""Paging cursors: the opaque form of a (time, id) sort key that list endpoints hand out.

A cursor is base64url of a JSON pair; anything this server did not make is refused with
VALIDATION_FAILED, never a 500.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from cariosan.errors import ValidationFailed


def encode(when: datetime, ident: str) -> str:
    raw = json.dumps([when.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    """The sort key a cursor stands for."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        when_text, ident = json.loads(raw)
        when = datetime.fromisoformat(when_text)
    except (ValueError, TypeError) as exc:  # binascii.Error and JSON errors are ValueErrors
        raise ValidationFailed("cursor is not one this server handed out") from exc
    if when.tzinfo is None or not isinstance(ident, str):
        raise ValidationFailed("cursor is not one this server handed out")
    return when, ident


def decode_with_uuid(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The sort key of a list ordered by (time, row id), the id a UUID."""
    when, ident = decode(cursor)
    try:
        return when, uuid.UUID(ident)
    except ValueError:
        raise ValidationFailed("cursor is not one this server handed out") from None


def encode_key(key: str) -> str:
    """The cursor of a list ordered by a text key alone (the user directory, by id)."""
    raw = json.dumps(["k", key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_key(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        tag, key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this server handed out") from exc
    if tag != "k" or not isinstance(key, str):
        raise ValidationFailed("cursor is not one this server handed out")
    return key
