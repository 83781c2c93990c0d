"""Point-in-time recovery as docs/operations.md describes it, with Debian's PostgreSQL 15 and
pgBackRest: WAL archived by pgBackRest, a full base backup, rows written, a time noted, more
rows written, a restore to that time: the rows before it are there, the rows after it gone.

A private cluster is initdb'ed on a free port in a temporary folder (the machine's own cluster
is never touched), run as an unprivileged user when the tests run as root. The repository is a
folder (repo1-type=posix); the compose override (deploy/docker-compose.pitr.yml) points the same
commands at MinIO instead, which changes the repository, not the procedure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STANZA = "cariosan"


def _pgbackrest() -> str:
    found = shutil.which("pgbackrest")
    if found is None or not (PG_BIN / "postgres").is_file():
        pytest.fail(
            "PITR test needs PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin and "
            "pgbackrest on PATH (Debian: apt-get install -y postgresql-15 pgbackrest)",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    root: Path
    port: int
    pgbackrest: str
    uid: int | None
    gid: int | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "run"

    @property
    def config(self) -> Path:
        return self.root / "pgbackrest.conf"

    def run(self, *args: str, timeout: float = 120) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGBACKREST_"))}
        result = subprocess.run(
            list(args),
            cwd=self.root,
            env=env,
            user=self.uid,
            group=self.gid,
            extra_groups=[] if self.uid is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            log = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n--- postgres.log ---\n{log}"
            )
        return result.stdout

    def backrest(self, *args: str) -> str:
        return self.run(self.pgbackrest, f"--config={self.config}", f"--stanza={STANZA}", *args)

    def sql(self, statement: str) -> str:
        return self.run(
            str(PG_BIN / "psql"),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            statement,
        ).strip()

    def start(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", "postgres.log", "-w", "start")

    def stop(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pgbackrest = _pgbackrest()
    uid = gid = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        account = pwd.getpwnam("nobody")
        uid, gid = account.pw_uid, account.pw_gid
    root = Path(tempfile.mkdtemp(prefix="cariosan-pitr-", dir="/tmp"))
    root.chmod(0o700)
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    cluster = Cluster(root, _free_port(), pgbackrest, uid, gid)
    for name in ("run", "repo", "log", "lock", "spool"):
        cluster.run("mkdir", "-m", "0700", str(root / name))
    cluster.config.write_text(
        "[global]\n"
        f"repo1-path={root / 'repo'}\n"
        "repo1-type=posix\n"
        "repo1-retention-full=2\n"
        f"log-path={root / 'log'}\n"
        f"lock-path={root / 'lock'}\n"
        f"spool-path={root / 'spool'}\n"
        "log-level-console=warn\n"
        "log-level-file=info\n"
        "start-fast=y\n"
        f"\n[{STANZA}]\n"
        f"pg1-path={cluster.data}\n"
        f"pg1-port={cluster.port}\n"
        f"pg1-socket-path={cluster.sockets}\n"
        "pg1-user=postgres\n"
    )
    if uid is not None and gid is not None:
        os.chown(cluster.config, uid, gid)
    cluster.run(
        str(PG_BIN / "initdb"),
        "-D",
        str(cluster.data),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "--no-instructions",
    )
    archive = f"{pgbackrest} --config={cluster.config} --stanza={STANZA} archive-push %p"
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {cluster.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{cluster.sockets}'\n"
            "wal_level = replica\n"
            "archive_mode = on\n"
            f"archive_command = '{archive}'\n"
            "max_wal_senders = 3\n"
        )
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(AssertionError):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_restore_to_a_time_keeps_rows_before_it_and_drops_rows_after(cluster: Cluster) -> None:
    cluster.backrest("stanza-create")
    cluster.backrest("check")  # WAL archiving works
    cluster.sql("CREATE TABLE messages (id int PRIMARY KEY, text text NOT NULL)")
    cluster.sql("INSERT INTO messages SELECT g, 'in the base backup' FROM generate_series(1, 10) g")
    cluster.backrest("--type=full", "backup")

    cluster.sql("INSERT INTO messages SELECT g, 'before the target' FROM generate_series(11, 20) g")
    time.sleep(1.1)
    target = cluster.sql("SELECT clock_timestamp()")
    time.sleep(1.1)
    cluster.sql("INSERT INTO messages SELECT g, 'after the target' FROM generate_series(21, 30) g")
    cluster.sql("DELETE FROM messages WHERE id <= 5")  # a mistake to undo, after the target too
    cluster.backrest("check")  # switches WAL and waits until the segment is archived
    assert cluster.sql("SELECT count(*) FROM messages") == "25"

    cluster.stop()
    cluster.backrest(
        "--delta", "--type=time", f"--target={target}", "--target-action=promote", "restore"
    )
    cluster.start()
    deadline = time.monotonic() + 60
    while cluster.sql("SELECT pg_is_in_recovery()") != "f":
        assert time.monotonic() < deadline, "recovery did not finish"
        time.sleep(0.2)

    ids = [int(v) for v in cluster.sql("SELECT id FROM messages ORDER BY id").split()]
    assert ids == list(range(1, 21)), "rows up to the target, none after it"
    assert cluster.sql("SELECT count(*) FROM messages WHERE text = 'after the target'") == "0"
    # The restored cluster accepts writes and keeps archiving on its new timeline.
    cluster.sql("INSERT INTO messages VALUES (100, 'after recovery')")
    cluster.backrest("check")


# --- the compose override -------------------------------------------------------------------


def test_compose_override_archives_wal_with_pgbackrest_into_minio(tmp_path: Path) -> None:
    import json as _json

    from tests.system.test_deploy import COMPOSE_FILE, DEPLOY, ENV_EXAMPLE, compose_binary

    result = subprocess.run(
        [
            str(compose_binary()),
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(DEPLOY / "docker-compose.pitr.yml"),
            "--env-file",
            str(ENV_EXAMPLE),
            "config",
            "--format",
            "json",
        ],
        env={**os.environ, "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = _json.loads(result.stdout)["services"]
    postgres = services["postgres"]
    command = " ".join(postgres["command"])
    assert "archive_mode=on" in command
    assert f"archive_command=pgbackrest --stanza={STANZA} archive-push %p" in command
    assert postgres["build"]["context"].endswith("deploy/pitr")
    assert postgres["environment"]["PGBACKREST_REPO1_S3_BUCKET"] == "cariosan-pitr"
    assert "minio-tls" in services
    conf = (DEPLOY / "pitr" / "pgbackrest.conf").read_text()
    assert f"[{STANZA}]" in conf
    assert "repo1-type=s3" in conf
    assert "repo1-s3-endpoint=minio-tls" in conf
    # The data volume is the production one: enabling PITR keeps the data.
    assert any("postgres_data" in str(v.get("source")) for v in postgres["volumes"])
