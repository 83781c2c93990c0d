"""docs/api.md's quick start runs as written, with the SDK, against a real server."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from cariosan.domain.workspaces import NewWorkspace
from tests.support.server import RunningServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


async def test_quick_start_script_runs_and_prints_what_the_doc_says(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path
) -> None:
    script = next(block for block in _python_blocks() if "asyncio.run(main())" in block)
    path = tmp_path / "quickstart.py"
    path.write_text(script)
    env = {
        **os.environ,
        "CARIOS_API_URL": server.url,
        "CARIOS_API_SECRET": workspace.api_secret,
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The comments in the doc promise these lines.
    lines = result.stdout.splitlines()
    assert lines[0] == "[('project-x', 1)]"
    assert lines[1] == "alice Hello Bob! 1"
    assert lines[2] == "0"


async def test_blocking_sdk_example_runs_and_prints_what_the_doc_says(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path
) -> None:
    script = next(block for block in _python_blocks() if "cariosan_client.sync" in block)
    path = tmp_path / "blocking.py"
    path.write_text(script)
    env = {
        **os.environ,
        "CARIOS_API_URL": server.url,
        "CARIOS_API_SECRET": workspace.api_secret,
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Sent from a script"]


def test_every_python_block_compiles() -> None:
    # Snippets may use `async with`/`await` at top level, as in an async REPL or notebook.
    for block in _python_blocks():
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
