"""Attachment files in a local folder."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class LocalStore:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        await asyncio.to_thread(check)

    async def prepare(self) -> None:
        await self.ping()

    async def close(self) -> None:
        return None
