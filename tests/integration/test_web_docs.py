"""docs/web.md's code runs: its Node backend mints tokens and verifies a real webhook, and its
browser code (run in Node with a WebSocket, as a browser has) lets Alice and Bob talk."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cariosan.config import Settings
from cariosan.domain.workspaces import create_workspace
from tests.support.node import SDK, ensure_node_modules, node, npm, run, sdk_js
from tests.support.server import start_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "web.md"

DRIVER = """
import WebSocket from "SDK/node_modules/ws/wrapper.mjs";
globalThis.WebSocket = WebSocket; // what a browser has

const { backend, received } = await import("./backend.mjs");
const { registerWebhook } = await import("./register-webhook.mjs");
const { openChat, talk } = await import("./chat.mjs");

await new Promise((ready) => backend.listen(0, "127.0.0.1", ready));
const backendUrl = `http://127.0.0.1:${backend.address().port}`;
process.env.CARIOS_WEBHOOK_SECRET = await registerWebhook(`${backendUrl}/cariosan-webhook`);
const cariosanUrl = process.env.CARIOS_API_URL;

const signedOut = await fetch(`${backendUrl}/chat-token`, { method: "POST" });
const alice = openChat({ cariosanUrl, backendUrl, appSession: "session-of-alice" });
const bob = openChat({ cariosanUrl, backendUrl, appSession: "session-of-bob" });
await Promise.all([alice.live.ready(), bob.live.ready()]);
// Bob answers once talk() has read Alice's unread count: an answer before that would count.
let talked;
const afterTalk = new Promise((resolve) => (talked = resolve));
bob.live.on("message.new", (event) => {
  if (event.message.user_id === "alice") {
    void afterTalk.then(() => bob.chat.send(event.channel_id, { text: "hi alice" }));
  }
});
const { channel, replied, unread } = await talk(alice.chat, alice.live, "bob");
talked();
const reply = await replied;
for (let i = 0; i < 200 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
alice.live.close();
bob.live.close();
backend.close();
console.log("RESULT " + JSON.stringify({
  signedOut: signedOut.status,
  channelType: channel.type,
  unread,
  reply: reply.text,
  webhooks: received.map((event) => [event.type, event.message.user_id, event.message.text]),
}));
"""


def blocks() -> dict[str, str]:
    """The doc's code blocks that name a file (```js backend.mjs)."""
    found = re.findall(r"```js (\S+)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return {name: code for name, code in found}


async def test_web_doc_backend_and_browser_code_work(settings: Settings, tmp_path: Path) -> None:
    files = blocks()
    assert set(files) == {"backend.mjs", "register-webhook.mjs", "chat.mjs"}, set(files)
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    (tmp_path / "driver.mjs").write_text(DRIVER.replace("SDK/", f"{SDK}/"), encoding="utf-8")
    # `import ... from "cariosan"` resolves as it does in an app that installed the package.
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "cariosan").symlink_to(SDK, target_is_directory=True)

    async with (
        sdk_js(),
        start_server(settings.with_overrides(webhook_allow_private=True)) as server,
    ):
        await ensure_node_modules()
        await run(npm(), "run", "build")
        workspace = await create_workspace(server.services.db, "web docs")
        output = await run(
            node(),
            str(tmp_path / "driver.mjs"),
            env={"CARIOS_API_URL": server.url, "CARIOS_API_SECRET": workspace.api_secret},
            cwd=tmp_path,
        )
    result = json.loads(output.split("RESULT ", 1)[1])
    assert result["signedOut"] == 401
    assert result["channelType"] == "dm"
    assert result["unread"] == 0, "one's own message is not unread"
    assert result["reply"] == "hi alice"
    assert sorted(result["webhooks"]) == [
        ["message.new", "alice", "hello @bob"],
        ["message.new", "bob", "hi alice"],
    ]
