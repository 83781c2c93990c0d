"""Node.js for the TypeScript SDK and the demo app (sdk/js): found on PATH, or the test fails."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"


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
