"""Throwaway state: Redis when configured, memory otherwise."""

from __future__ import annotations

from cariosan.config import Settings
from cariosan.ephemeral.memory_store import MemoryStore
from cariosan.ephemeral.redis_store import RedisStore
from cariosan.ephemeral.store import EphemeralStore


def open_ephemeral(settings: Settings) -> EphemeralStore:
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_prefix)
    return MemoryStore()


__all__ = ["EphemeralStore", "MemoryStore", "RedisStore", "open_ephemeral"]
