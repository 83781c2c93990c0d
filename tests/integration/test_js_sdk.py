"""The TypeScript SDK (sdk/js): `npm test` builds it, type-checks it and runs its node tests
against this suite's server (the same one every integration test uses)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from cariosan.config import Settings
from cariosan.domain.workspaces import create_workspace
from tests.support.server import start_server

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"


def npm() -> str:
    found = shutil.which("npm")
    assert found, "npm (Node.js 20+) is needed to build and test sdk/js: apt-get install nodejs npm"
    return found


async def run(*args: str, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=SDK,
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


async def test_npm_test_passes_against_a_real_server(settings: Settings) -> None:
    await ensure_node_modules()
    # The SDK's webhook test receives a real delivery on 127.0.0.1.
    async with start_server(settings.with_overrides(webhook_allow_private=True)) as server:
        workspace = await create_workspace(server.services.db, "js sdk")
        output = await run(
            npm(),
            "test",
            env={"CARIOSAN_TEST_URL": server.url, "CARIOSAN_TEST_API_SECRET": workspace.api_secret},
        )
    assert "# fail 0" in output, output
    assert "# pass " in output and "# pass 0" not in output, output
