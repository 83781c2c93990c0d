"""Node.js for the TypeScript SDK and the demo app (sdk/js): found on PATH, or the test fails."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"
# Outside the tree, one per checkout: the lock file is nobody's source.
_LOCK = Path(tempfile.gettempdir()) / (
    "cariosan-sdk-js-" + hashlib.sha256(str(SDK).encode()).hexdigest()[:12] + ".lock"
)


@asynccontextmanager
async def sdk_js() -> AsyncIterator[None]:
    """sdk/js to oneself: tests in other test processes also run `npm ci` (which replaces
    node_modules) and builds (which rewrite dist/), and node reading a half-written dist/ fails
    ("does not provide an export named ..."). Held across the build and every run that reads it.
    """
    with _LOCK.open("w") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def npm() -> str:
    found = shutil.which("npm")
    assert found, "npm (Node.js 20+) is needed to build and test sdk/js: apt-get install nodejs npm"
    return found


def node() -> str:
    found = shutil.which("node")
    assert found, "node (Node.js 20+) is needed to build sdk/js: apt-get install nodejs"
    return found


async def run(*args: str, env: dict[str, str] | None = None, cwd: Path = SDK) -> str:
    """Run a command (in sdk/js by default); its output, or a failure that shows it."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(args)} failed:\n{text}"
    return text


async def ensure_node_modules() -> None:
    """`npm ci` when node_modules is missing or older than package-lock.json (as `make` does)."""
    marker = SDK / "node_modules" / ".package-lock.json"
    lock = SDK / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        await run(npm(), "ci", "--no-audit", "--no-fund")
