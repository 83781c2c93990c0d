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
import pytest

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
# Every phase by default; CARIOS_FUZZ_PHASES=examples,fuzzing leaves out the coverage phase
# (boundary values of every parameter, about half the cost) for a quicker run by hand.
PHASES = os.environ.get("CARIOS_FUZZ_PHASES", "examples,coverage,fuzzing")


# The operations in four parts, each fuzzed by a test of its own, so that parallel test
# workers share the work: (schemathesis option, tag) pairs; the last part is everything else.
PARTS = {
    "channels": [("--include-tag", "channels")],
    "messages": [("--include-tag", "messages")],
    "moderation": [("--include-tag", "moderation")],
    "the rest": [
        ("--exclude-tag", "channels"),
        ("--exclude-tag", "messages"),
        ("--exclude-tag", "moderation"),
    ],
}


def _schemathesis(
    url: str, credential: str, part: str, workdir: Path
) -> subprocess.CompletedProcess[str]:
    selection = [word for option in PARTS[part] for word in option]
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
            PHASES,
            "--seed",
            "1",
            # One thread: test workers run the parts in parallel, and hypothesis describing
            # filters from several threads at once trips CPython 3.11's `ast` ("AST constructor
            # recursion depth mismatch", a SystemError schemathesis reports as a failure).
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
            "--max-failures",
            "20",
            *selection,
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


@pytest.mark.parametrize("part", list(PARTS))
@pytest.mark.parametrize("kind", ["api secret", "user token"])
async def test_schema_holds(
    server: RunningServer, workspace: NewWorkspace, tmp_path: Path, kind: str, part: str
) -> None:
    token = await _seed(server, workspace)
    async with httpx.AsyncClient(base_url=server.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert any(p.startswith("/v1/") for p in paths)
    credential = workspace.api_secret if kind == "api secret" else token
    result = await asyncio.to_thread(_schemathesis, server.url, credential, part, tmp_path)
    assert result.returncode == 0, (
        f"{kind}, {part}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    # `make fuzz` reads this line to report how many cases ran.
    cases = re.findall(r"(\d+) generated", result.stdout)
    assert cases, result.stdout[-400:]
    print(f"schemathesis {kind}, {part}: {cases}")
