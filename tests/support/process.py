"""Real `cariosan` processes for system tests: started with an environment, logs captured."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import free_port


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def cariosan_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARIOS_", "OTEL_"))}
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cariosan", *args],
        env=cariosan_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(url: str, path: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before {path}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}{path} did not answer 200 within {timeout} s")


@contextmanager
def serve(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    wait_ready: bool = True,
    args: list[str] | None = None,
    open_files: int | None = None,
) -> Iterator[ServerProcess]:
    """A `cariosan serve` process; `open_files` lowers the soft open-file limit it starts with."""
    port = free_port()

    def limit_files() -> None:
        if open_files is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    log_path = log_dir / f"server-{port}.log"
    full_env = cariosan_env({"CARIOS_HOST": "127.0.0.1", "CARIOS_PORT": str(port), **env})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cariosan", "serve", *(args or [])],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            preexec_fn=limit_files if open_files is not None else None,
        )
    running = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        if wait_ready:
            wait_for(running.url, "/readyz", process, timeout=60)
        yield running
    finally:
        running.stop()
