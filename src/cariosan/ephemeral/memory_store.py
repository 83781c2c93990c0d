"""In-process ephemeral state, for a single node (`cariosan dev`, or no CARIOS_REDIS_URL)."""

from __future__ import annotations


class MemoryStore:
    kind = "memory"

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
