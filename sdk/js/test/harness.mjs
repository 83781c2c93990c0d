// The server the tests talk to: the one named by CARIOSAN_TEST_URL + CARIOSAN_TEST_API_SECRET
// (the Python test suite starts one and sets them), else a `cariosan dev` started here, in a
// temporary folder, with the repository's .venv (or CARIOSAN_PYTHON).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");

function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

async function startDev() {
  const python = process.env.CARIOSAN_PYTHON ?? join(repo, ".venv/bin/python");
  if (!existsSync(python)) {
    throw new Error(`no Cariosan server: set CARIOSAN_TEST_URL/CARIOSAN_TEST_API_SECRET or create ${python} (make lint)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "cariosan-js-"));
  const port = await freePort();
  const child = spawn(python, ["-m", "cariosan", "dev", "--port", String(port), "--data-dir", join(dir, "data")], {
    cwd: dir,
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const secret = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`cariosan dev printed no banner:\n${output}`)), 120_000);
    const read = (chunk) => {
      output += chunk;
      const found = /API secret\s+(\S+)/.exec(output);
      if (found && output.includes("Stop with Ctrl-C")) {
        clearTimeout(timer);
        ok(found[1]);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("exit", (code) => fail(new Error(`cariosan dev exited (${code}):\n${output}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  after(async () => {
    child.kill("SIGINT");
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  });
  return { url, apiSecret: secret };
}

let started = null;

/** `{ url, apiSecret }` of a ready server. */
export function testServer() {
  if (process.env.CARIOSAN_TEST_URL && process.env.CARIOSAN_TEST_API_SECRET) {
    return Promise.resolve({ url: process.env.CARIOSAN_TEST_URL, apiSecret: process.env.CARIOSAN_TEST_API_SECRET });
  }
  started ??= startDev();
  return started;
}

/** A unique id, so tests never see each other's users and channels on a shared server. */
export function unique(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}
