"""The verification code in docs/webhooks.md works: the Python snippet and the Node.js snippet
(run with `node`) accept our signatures and refuse tampered or stale requests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cariosan.webhooks import signing

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
BODY = json.dumps({"type": "message.new", "seq": 7, "text": "héllo"}, ensure_ascii=False).encode()


def snippet(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"docs/webhooks.md should have one {language} block"
    return str(blocks[0])


def cases() -> list[tuple[str, dict[str, str], bytes, bool]]:
    old, new = signing.new_secret(), signing.new_secret()
    now = int(time.time())
    signed = signing.headers([new], "d-1", now, BODY)
    rotated = signing.headers([new, old], "d-2", now, BODY)
    stale = signing.headers([new], "d-3", now - 3600, BODY)
    return [
        (new, signed, BODY, True),
        (old, rotated, BODY, True),
        (new, rotated, BODY, True),
        (old, signed, BODY, False),
        (new, signed, BODY + b" ", False),
        (new, {**signed, "webhook-id": "d-9"}, BODY, False),
        (new, stale, BODY, False),
    ]


def test_python_snippet_verifies_our_signatures() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(snippet("python"), str(DOC), "exec"), namespace)
    verify = namespace["verify_webhook"]
    for secret, headers, body, valid in cases():
        if valid:
            assert verify(secret, headers, body) == json.loads(BODY)
        else:
            with pytest.raises(namespace["InvalidSignature"]):
                verify(secret, headers, body)


def test_node_snippet_verifies_our_signatures(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js to check the docs' Node snippet")
    module = tmp_path / "verify.js"
    module.write_text(snippet("js"), encoding="utf-8")
    inputs = [{"secret": s, "headers": h, "body": b.decode(), "valid": v} for s, h, b, v in cases()]
    (tmp_path / "cases.json").write_text(json.dumps(inputs), encoding="utf-8")
    (tmp_path / "run.js").write_text(
        """
const { verifyWebhook } = require("./verify.js");
const cases = require("./cases.json");
const results = cases.map((c) => {
  try {
    const event = verifyWebhook(c.secret, c.headers, Buffer.from(c.body, "utf8"));
    return { ok: true, event };
  } catch (e) {
    return { ok: false, error: String(e.message) };
  }
});
console.log(JSON.stringify(results));
""",
        encoding="utf-8",
    )
    done = subprocess.run(
        [node, "run.js"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for case, result in zip(inputs, results, strict=True):
        assert result["ok"] is case["valid"], (case, result)
        if case["valid"]:
            assert result["event"] == json.loads(BODY)
