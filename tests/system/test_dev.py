"""`cariosan dev`: embedded PostgreSQL, a default workspace, Ctrl-C stops everything, data kept.

Run as root (this machine's default) and as an ordinary user; when the tests themselves run as an
ordinary user, that is the only case there is.
"""

from __future__ import annotations

import os
import re
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

from tests.support.process import cariosan_env
from tests.support.server import free_port

USERS = ["root", "nobody"] if os.geteuid() == 0 else ["self"]


def _start_dev(workdir: Path, port: int, user: str) -> subprocess.Popen[str]:
    # A free PostgreSQL port rather than the fixed default: tests run in parallel.
    command = [sys.executable, "-m", "cariosan", "dev", "--port", str(port)]
    command += ["--postgres-port", str(free_port())]
    if user == "nobody":
        runuser = shutil.which("runuser")
        assert runuser, "runuser (util-linux) is needed to run cariosan dev as an ordinary user"
        command = [runuser, "-u", "nobody", "--", *command]
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=cariosan_env({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _read_banner(process: subprocess.Popen[str], timeout: float = 120) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(timeout=1):
            if process.poll() is not None:
                break
            continue
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "Stop with Ctrl-C" in line:
            return "".join(seen)
    raise AssertionError("cariosan dev printed no banner:\n" + "".join(seen))


def _wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "cariosan dev exited"
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("cariosan dev never became ready")


def _postmaster_alive(data_dir: Path) -> bool:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_once(workdir: Path, user: str) -> tuple[str, str]:
    port = free_port()
    process = _start_dev(workdir, port, user)
    try:
        banner = _read_banner(process)
        url = f"http://127.0.0.1:{port}"
        assert url in banner
        # The banner comes once the port is ours: it accepts connections at once.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        _wait_ready(url, process)
        ready = httpx.get(url + "/readyz").json()
        assert ready["checks"]["ephemeral"]["kind"] == "memory"
        assert ready["checks"]["attachments"]["kind"] == "local"
        assert _postmaster_alive(workdir / ".cariosan")
        secret = re.search(r"API secret\s+(\S+)", banner)
        assert secret, banner
        upserted = httpx.put(
            url + "/v1/users/probe",
            json={"name": "Probe"},
            headers={"Authorization": f"Bearer {secret.group(1)}"},
        )
        assert upserted.status_code == 200, "the printed API secret must work"
        # Dev mode only: the demo chat app at /, and the endpoint that signs its users in.
        assert 'data-testid="channel-list"' in httpx.get(url + "/").text
        assert "text/javascript" in httpx.get(url + "/demo/app.js").headers["content-type"]
        minted = httpx.post(url + "/demo/token", json={"user_id": "probe"})
        assert minted.status_code == 200
        token = minted.json()["token"]
        me = httpx.get(url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["user"]["id"] == "probe"
        # Ctrl-C sends SIGINT to the terminal's whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not _postmaster_alive(workdir / ".cariosan"), "PostgreSQL was left running"
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=1)
    workspace = re.search(r"workspace id\s+(\S+)", banner)
    secret = re.search(r"API secret\s+(\S+)", banner)
    assert workspace and secret, banner
    return workspace.group(1), secret.group(1)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp_path: a root pytest session resets /tmp/pytest-of-root to 0700,
    # which would cut the unprivileged PostgreSQL off from its data mid-run.
    folder = Path(tempfile.mkdtemp(prefix="cariosan-dev-test-"))
    os.chmod(folder, 0o755)
    yield folder / "project"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("user", USERS)
def test_dev_runs_stops_cleanly_and_keeps_its_data(workdir: Path, user: str) -> None:
    workdir.mkdir()
    if user == "nobody":
        os.chown(workdir, 65534, 65534)
        # The ordinary user must reach its working folder and this Python (which may live in
        # root's home, e.g. under pyenv): grant traversal (o+x) only, never listing or reading.
        interpreter = Path(os.path.realpath(sys.executable))
        for folder in [*workdir.parents, *interpreter.parents]:
            mode = os.stat(folder).st_mode
            if not mode & 0o001:
                os.chmod(folder, mode | 0o001)
    first = _run_once(workdir, user)
    second = _run_once(workdir, user)
    assert first == second, "a second run must reuse the same data and default workspace"
    credentials = workdir / ".cariosan" / "credentials.json"
    assert credentials.stat().st_mode & 0o077 == 0, "credentials must be private to the user"
