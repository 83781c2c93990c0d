"""Schemathesis over /openapi.json with both kinds of credential: no 5xx, and every response
conforms to the published schema (status codes, content types, bodies). The budget is small
here; `make fuzz` runs it with a large one (CARIOS_FUZZ_EXAMPLES examples per operation)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import bearer, make_user
from tests.support.server import RunningServer

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = int(os.environ.get("CARIOS_FUZZ_EXAMPLES", "25"))


def _schemathesis(url: str, credential: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {credential}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "1",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--max-failures",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=max(600, MAX_EXAMPLES * 3),
        cwd=workdir,
    )


async def _seed(server: RunningServer, workspace: NewWorkspace) -> str:
    """Some state to hit: users, a channel with messages. Returns a user token."""
    token = await make_user(server, workspace, "alice")
    await make_user(server, workspace, "bob")
    async with server.client(headers=bearer(token)) as http:
        channel = await http.post(
            "/v1/channels", json={"id": "general", "type": "group", "members": ["bob"]}
        )
        if channel.status_code == 201:
            for n in range(3):
                await http.post("/v1/channels/general/messages", json={"text": f"hello {n}"})
    return token


async def test_schema_holds_for_api_secret_and_user_token(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path
) -> None:
    token = await _seed(server, workspace)
    async with httpx.AsyncClient(base_url=server.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert any(p.startswith("/v1/") for p in paths)
    for name, credential in [("api secret", workspace.api_secret), ("user token", token)]:
        result = await asyncio.to_thread(_schemathesis, server.url, credential, tmp_path)
        assert result.returncode == 0, f"{name}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        # `make fuzz` reads this line to report how many cases ran.
        cases = re.findall(r"(\d+) generated", result.stdout)
        print(f"schemathesis {name}: {cases or result.stdout[-400:]}")
