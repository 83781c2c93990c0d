"""docs/moderation.md's moderation day runs as written, with the SDK, against a real server, and
prints what the doc says it prints."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cariosan.domain.workspaces import NewWorkspace
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


DOC = Path(__file__).resolve().parents[2] / "docs" / "moderation.md"


def _day() -> tuple[str, str]:
    """The section's script and the output it promises."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## A moderation day\n", 1)[1].split("\n## ", 1)[0]
    [script] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    [printed] = re.findall(r"It prints:\n\n```text\n(.*?)```", section, flags=re.S)
    return script, printed


async def test_the_moderation_day_runs_and_prints_what_the_doc_says(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path
) -> None:
    script, promised = _day()
    path = tmp_path / "moderation_day.py"
    path.write_text(script)
    env = {**os.environ, "CARIOS_API_URL": server.url, "CARIOS_API_SECRET": workspace.api_secret}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == promised
