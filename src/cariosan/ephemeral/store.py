"""Throwaway state (rate-limit counters, presence, typing, fan-out): Redis, or memory in dev."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Window:
    """A fixed rate-limit window: `limit` hits per `seconds` under `key`."""

    key: str
    limit: int
    seconds: int


@dataclass(frozen=True)
class WindowState:
    window: Window
    count: int
    reset_in: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.window.limit

    @property
    def remaining(self) -> int:
        return max(0, self.window.limit - self.count)


class EphemeralStore(Protocol):
    kind: str

    async def ping(self) -> None:
        """Raise when the store cannot be used right now."""

    async def hit(self, windows: list[Window], now: float) -> list[WindowState]:
        """Count one hit in each window (one round trip) and return their states."""

    async def close(self) -> None: ...
