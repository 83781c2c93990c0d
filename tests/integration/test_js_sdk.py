"""The TypeScript SDK (sdk/js): `npm test` builds it, type-checks it and runs its node tests
against this suite's server (the same one every integration test uses); the demo app's bundle
that the Python package ships is the build of its current sources."""

from __future__ import annotations

from pathlib import Path

from cariosan.config import Settings
from cariosan.domain.workspaces import create_workspace
from cariosan.http.demo import ASSETS
from tests.support.node import ensure_node_modules, node, npm, run, sdk_js
from tests.support.server import start_server


async def test_npm_test_passes_against_a_real_server(settings: Settings) -> None:
    # The SDK's webhook test receives a real delivery on 127.0.0.1.
    async with (
        sdk_js(),
        start_server(settings.with_overrides(webhook_allow_private=True)) as server,
    ):
        await ensure_node_modules()
        workspace = await create_workspace(server.services.db, "js sdk")
        output = await run(
            npm(),
            "test",
            env={"CARIOSAN_TEST_URL": server.url, "CARIOSAN_TEST_API_SECRET": workspace.api_secret},
        )
    assert "# fail 0" in output, output
    assert "# pass " in output and "# pass 0" not in output, output


async def test_shipped_demo_bundle_is_built_from_its_sources(tmp_path: Path) -> None:
    async with sdk_js():
        await ensure_node_modules()
        await run(node(), "demo/build.mjs", "--out", str(tmp_path))
    fresh = (tmp_path / "app.js").read_bytes()
    shipped = (ASSETS / "app.js").read_bytes()
    assert fresh == shipped, (
        "src/cariosan/http/demo/app.js is stale: run `npm run build:demo` in sdk/js and commit it"
    )
