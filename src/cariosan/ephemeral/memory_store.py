"""In-process ephemeral state, for a single node (`cariosan dev`, or no CARIOS_REDIS_URL)."""

from __future__ import annotations

from cariosan.ephemeral.store import Window, WindowState


class MemoryStore:
    kind = "memory"

    def __init__(self) -> None:
        self._counters: dict[tuple[str, int], int] = {}
        self._sweep_at = 0.0

    async def ping(self) -> None:
        return None

    async def hit(self, windows: list[Window], now: float) -> list[WindowState]:
        if now >= self._sweep_at:
            # Forget windows that have ended, at most once a minute.
            self._counters = {k: v for k, v in self._counters.items() if k[1] >= int(now) - 3600}
            self._sweep_at = now + 60
        states = []
        for window in windows:
            start = int(now) // window.seconds * window.seconds
            slot = (window.key, start)
            self._counters[slot] = self._counters.get(slot, 0) + 1
            reset_in = max(1, start + window.seconds - int(now))
            states.append(WindowState(window, self._counters[slot], reset_in))
        return states

    async def close(self) -> None:
        return None
