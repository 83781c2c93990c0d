"""Throwaway state (rate-limit counters, presence, typing, fan-out): Redis, or memory in dev."""

from __future__ import annotations

from typing import Protocol


class EphemeralStore(Protocol):
    kind: str

    async def ping(self) -> None:
        """Raise when the store cannot be used right now."""

    async def close(self) -> None: ...
