"""The `data` object customers attach to users, channels and messages: JSON, bounded in size
and depth, storable by PostgreSQL (no NUL), so one user cannot make a read page huge."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from cariosan.config import Limits
from cariosan.errors import ValidationFailed

# Deeper client data is refused: it must survive JSON encoders with recursion limits.
MAX_DATA_DEPTH = 32


def storable_text(name: str, value: str) -> str:
    """`value`, or VALIDATION_FAILED naming `name` if PostgreSQL text cannot hold it (NUL)."""
    if "\x00" in value:
        raise ValidationFailed(f"{name} must not contain NUL characters")
    return value


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ValidationFailed(f"data must not be nested more than {MAX_DATA_DEPTH} levels deep")
    if isinstance(value, str):
        storable_text("data", value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationFailed("data must hold finite numbers only")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable_text("data", key)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def valid_data(value: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """`value` if it may be stored: at most `limits.max_data_bytes` as compact JSON."""
    _check(value, 0)
    size = len(msgspec.json.encode(value))
    if size > limits.max_data_bytes:
        raise ValidationFailed(
            f"data must be at most {limits.max_data_bytes} bytes as JSON (it is {size})"
        )
    return value
