"""`pip install ./clients/python` in an empty virtual environment gives a working SDK, and not the
server: the customer's app installs `cariosan-client` without Litestar, asyncpg or boto3."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from cariosan.domain.workspaces import NewWorkspace
from tests.support.server import RunningServer

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "python"

# Runs inside the fresh environment: imports every module of the SDK, reports what is installed.
INSPECT = """
import importlib, importlib.metadata as md, json, pkgutil
import cariosan_client
modules = [m.name for m in pkgutil.walk_packages(cariosan_client.__path__, "cariosan_client.")]
for name in modules:
    importlib.import_module(name)
try:
    import cariosan
    server = cariosan.__file__
except ImportError:
    server = None
installed = sorted(d.metadata["Name"].lower().replace("_", "-") for d in md.distributions())
print(json.dumps({"modules": modules, "server": server, "installed": installed}))
"""

# Runs inside the fresh environment against a real server: the SDK alone is enough.
CONVERSATION = """
import asyncio
from cariosan_client import ChatClient, ServerClient

async def main() -> None:
    async with ServerClient() as server:
        await server.upsert_user("alice")
        token = (await server.create_token("alice")).token
    async with ChatClient(server.base_url, token=token) as alice:
        channel = await alice.create_channel("group", [])
        await alice.send(channel.id, "sent from a bare venv")
        print((await alice.list_messages(channel.id)).messages[0].text)

asyncio.run(main())
"""


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def _install_sdk(tmp_path: Path) -> Path:
    """A new venv (no system site-packages) with only `pip install ./clients/python` in it."""
    # A copy, so that the build's `build/` and `*.egg-info` never land in the checkout.
    source = shutil.copytree(SDK, tmp_path / "python", ignore=shutil.ignore_patterns("build"))
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, f"python -m venv failed: {made.stderr}"
    python = venv / "bin" / "python"
    installed = _run(
        [str(python), "-m", "pip", "install", "-c", str(ROOT / "constraints.txt"), str(source)]
    )
    assert installed.returncode == 0, (
        "pip install ./clients/python failed; it needs PyPI (or PIP_INDEX_URL / PIP_FIND_LINKS "
        f"pointing at a mirror) for httpx, websockets, msgspec and setuptools:\n{installed.stderr}"
    )
    return python


async def test_the_sdk_installs_alone_and_talks_to_a_server(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path
) -> None:
    python = await asyncio.to_thread(_install_sdk, tmp_path)

    inspected = await asyncio.to_thread(_run, [str(python), "-c", INSPECT], cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert {"cariosan_client.sync", "cariosan_client.events"} <= set(report["modules"])
    assert report["server"] is None, "the server package came with the SDK"
    installed = set(report["installed"])
    assert "cariosan-client" in installed and "cariosan" not in installed
    server_requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sdk_requirements = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    server_only = {_name(r) for r in server_requirements["dependencies"]} - {
        _name(r) for r in sdk_requirements["dependencies"]
    }
    assert "litestar" in server_only and "asyncpg" in server_only
    assert installed.isdisjoint(server_only), installed & server_only

    env = {
        **os.environ,
        "CARIOS_API_URL": server.url,
        "CARIOS_API_SECRET": workspace.api_secret,
    }
    # Not the checkout's folder as cwd: `src/` there must not be what makes it work.
    talked = await asyncio.to_thread(_run, [str(python), "-c", CONVERSATION], cwd=tmp_path, env=env)
    assert talked.returncode == 0, talked.stderr
    assert talked.stdout.strip() == "sent from a bare venv"
