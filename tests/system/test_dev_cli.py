"""`cariosan dev` and the operations commands together: the commands find the dev deployment
from its data folder (no CARIOS_* variables), whether dev is running or not; dev's start-up
mistakes end in one line and exit 2."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.process import cariosan_env, run_cli
from tests.support.server import free_port

NO_VARIABLES: dict[str, str] = {}


@pytest.fixture
def project() -> Iterator[Path]:
    # Not under pytest's tmp_path (see tests/system/test_dev.py): PostgreSQL may run as nobody.
    folder = Path(tempfile.mkdtemp(prefix="cariosan-devcli-test-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Dev:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.pg_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cariosan", "dev", "--port", str(self.port)]
        command += ["--postgres-port", str(self.pg_port), *args]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=cariosan_env({"PYTHONUNBUFFERED": "1"}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.banner = self._banner()
        # The banner comes once the port is bound; /readyz says 200 once boot has finished.
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "cariosan dev exited"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "cariosan dev never became ready"
            time.sleep(0.1)

    def _banner(self) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not selector.select(timeout=1):
                if self.process.poll() is not None:
                    break
                continue
            line = self.process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "Stop with Ctrl-C" in line:
                return "".join(seen)
        raise AssertionError("cariosan dev printed no banner:\n" + "".join(seen))

    def stop(self) -> str:
        """Ctrl-C; what it printed after the banner."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        assert self.process.stdout is not None
        return self.process.stdout.read()


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert "Future exception" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cariosan: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, NO_VARIABLES, cwd=cwd, timeout=120)


def test_commands_operate_the_dev_deployment_from_its_folder(project: Path) -> None:
    dev = Dev(project)
    try:
        listed = _cli(["workspace", "list", "--json"], project)
        assert listed.returncode == 0, listed.stderr
        [default] = json.loads(listed.stdout)
        assert default["name"] == "default" and default["id"] in dev.banner
        settings = (project / ".cariosan" / "dev.env").read_text()
        assert f"127.0.0.1:{dev.pg_port}/" in settings
        assert (project / ".cariosan" / "dev.env").stat().st_mode & 0o077 == 0

        secret = json.loads((project / ".cariosan" / "credentials.json").read_text())["api_secret"]
        put = httpx.put(
            dev.url + "/v1/users/alice", json={}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert put.status_code == 200
        token = _cli(["token", "--workspace", default["id"], "--user", "alice"], project)
        assert token.returncode == 0, token.stderr
        me = httpx.get(
            dev.url + "/v1/me", headers={"Authorization": f"Bearer {token.stdout.strip()}"}
        )
        assert me.status_code == 200 and me.json()["user"]["id"] == "alice"

        made = _cli(["backup", "create", "--out", str(project / "backups"), "--json"], project)
        assert made.returncode == 0, made.stderr
        backup = json.loads(made.stdout)["path"]

        refused = _cli(["restore", backup], project)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"pid {dev.process.pid}" in refused.stderr
        assert "Ctrl-C" in refused.stderr and f"cariosan restore {backup}" in refused.stderr

        # A second dev on the same folder, and one on a taken port: one line each, exit 2.
        again = _cli(
            ["dev", "--port", str(free_port()), "--postgres-port", str(free_port())], project
        )
        assert "already using .cariosan" in _one_line_exit_2(again)
        elsewhere = project / "elsewhere"
        elsewhere.mkdir()
        taken = _cli(
            ["dev", "--port", str(dev.port), "--postgres-port", str(free_port())], elsewhere
        )
        assert f"port {dev.port}" in _one_line_exit_2(taken)
        assert not (elsewhere / ".cariosan" / "postgres").exists(), "nothing started"
    finally:
        after = dev.stop()
    assert dev.process.returncode in (0, 130) and "Traceback" not in after, after

    # Dev stopped: the commands start the folder's database themselves, for their duration.
    listed = _cli(["workspace", "list", "--json"], project)
    assert listed.returncode == 0, listed.stderr
    restored = _cli(["restore", backup, "--json"], project)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["row_counts"]["users"] == 1
    rotated = _cli(["rotate-secret", "--workspace", default["id"], "--json"], project)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["api_secret"]
    # From anywhere, with --data-dir.
    there = _cli(["workspace", "list", "--data-dir", str(project / ".cariosan")], Path("/"))
    assert there.returncode == 0 and default["id"] in there.stdout, there.stderr

    # The next dev serves the restored data and shows the rotated secret.
    dev = Dev(project)
    try:
        assert new_secret in dev.banner
        alice = httpx.get(
            dev.url + "/v1/users/alice", headers={"Authorization": f"Bearer {new_secret}"}
        )
        assert alice.status_code == 200
    finally:
        dev.stop()


def test_dev_on_a_port_postgresql_cannot_take_exits_2_in_one_line(project: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        pg_port = holder.getsockname()[1]
        result = _cli(["dev", "--port", str(free_port()), "--postgres-port", str(pg_port)], project)
    line = _one_line_exit_2(result)
    assert f"--postgres-port {pg_port + 1}" in line
