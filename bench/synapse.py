"""Matrix Synapse as the peer in the benchmark table: the same send and fan-out workloads as
bench.send_throughput and bench.ws_latency, run against Synapse instead of Cariosan.

Installs `matrix-synapse[postgres]` into a virtual environment of its own under a cache folder
(reused on later runs), starts one Synapse on loopback against a fresh PostgreSQL database
(found as the tests find it) with every rate limit raised out of the way, and removes both at
the end, also on an error or Ctrl-C.

- send: C concurrent senders (one user each, one connection each) post `m.room.message` as fast
  as they are answered for T seconds, over R rooms every sender has joined, or all into one hot
  room. The load comes from wrk (one thread per connection, so that each connection keeps its
  own user and its own transaction ids). Every acknowledged message is then counted in
  Synapse's own `events` table.
- fan-out: N users long-poll `/sync` (filtered down to one room's messages) from client
  processes, one sender posts at a steady rate with `time.monotonic()` taken just before the
  send in the body; latency is receipt minus that stamp (CLOCK_MONOTONIC is system-wide, so it
  compares across processes). Every delivery must arrive.

    python -m bench.synapse --rooms 1000 --seconds 10 --runs 3 --fanout-clients 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
from tests.services.provision import provide_postgres, terminate

from bench.figures import Run, median
from bench.harness import admin, database_dsn

# Pinned so that figures taken on different days compare; the venv is rebuilt when it changes.
SYNAPSE_VERSION = "1.163.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cariosan-bench"
CLIENT = "/_matrix/client/v3"
T = TypeVar("T")


def _say(text: str) -> None:
    print(f"synapse: {text}", file=sys.stderr, flush=True)


# --- install -----------------------------------------------------------------------------


def _venv_ready(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import psycopg2, synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == SYNAPSE_VERSION


def ensure_synapse(cache: Path = CACHE) -> Path:
    """The Python of a venv with Synapse and psycopg2 in it, installed the first time (a few
    minutes) and reused afterwards. Synapse never enters the project's own environment."""
    venv = cache / "synapse-venv"
    python = venv / "bin" / "python"
    if _venv_ready(python):
        return python
    _say(f"installing matrix-synapse {SYNAPSE_VERSION} into {venv} (the first time takes minutes)")
    if venv.exists():
        shutil.rmtree(venv)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip", "wheel"], check=True)
    wanted = f"matrix-synapse[postgres]=={SYNAPSE_VERSION}"
    # pip's own "Collecting ..." lines are the progress; one line each, so they stay readable.
    if subprocess.run([*pip, wanted], check=False).returncode != 0:
        # The extra builds psycopg2 from source, which needs pg_config and a compiler; the
        # binary wheel is the same driver without either.
        _say("building psycopg2 failed; trying psycopg2-binary")
        subprocess.run([*pip, f"matrix-synapse=={SYNAPSE_VERSION}", "psycopg2-binary"], check=True)
    if not _venv_ready(python):
        raise RuntimeError(f"Synapse was installed into {venv} but does not import")
    _say("installed")
    return python


# --- one Synapse ---------------------------------------------------------------------------


@dataclass
class Synapse:
    """A running Synapse and what the workloads have set up in it so far (reused across runs)."""

    url: str
    shared_secret: str
    database_dsn: str
    log_path: Path
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)  # user localpart -> access token
    send_rooms: list[str] = field(default_factory=list)  # created by sender000
    fanout_room: str | None = None  # created by fanout-sender
    joined: set[tuple[str, str]] = field(default_factory=set)  # (user localpart, room)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# High enough that no workload here ever meets a limit: the bench measures Synapse's speed,
# not its policy. Synapse ignores the names an older version does not know.
_MANY = 1_000_000
_LIMIT = {"per_second": _MANY, "burst_count": _MANY}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _LIMIT,
    "rc_registration": _LIMIT,
    "rc_registration_token_validity": _LIMIT,
    "rc_login": {"address": _LIMIT, "account": _LIMIT, "failed_attempts": _LIMIT},
    "rc_admin_redaction": _LIMIT,
    "rc_joins": {"local": _LIMIT, "remote": _LIMIT},
    "rc_joins_per_room": _LIMIT,
    "rc_3pid_validation": _LIMIT,
    "rc_invites": {"per_room": _LIMIT, "per_user": _LIMIT, "per_issuer": _LIMIT},
    "rc_third_party_invite": _LIMIT,
    "rc_room_creation": _LIMIT,
    "rc_media_create": _LIMIT,
    "rc_reports": _LIMIT,
    "rc_presence": {"per_user": _LIMIT},
    "rc_delayed_event_mgmt": _LIMIT,
    "rc_key_requests": _LIMIT,
    "rc_user_directory": _LIMIT,
    "rc_profile": _LIMIT,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": _MANY,
        "sleep_delay": 0,
        "reject_limit": _MANY,
        "concurrent": _MANY,
    },
}


def _homeserver_config(folder: Path, port: int, dsn: str, shared_secret: str) -> dict[str, Any]:
    parts = urlsplit(dsn)
    return {
        "server_name": "localhost",
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(folder / "homeserver.pid"),
        # Only the client API: no federation listener, and no key servers to ask.
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "database": {
            "name": "psycopg2",
            "args": {
                "user": parts.username or "postgres",
                "password": parts.password or "",
                "dbname": parts.path.lstrip("/"),
                "host": parts.hostname or "127.0.0.1",
                "port": parts.port or 5432,
                "cp_min": 5,
                "cp_max": 10,
            },
        },
        "log_config": str(folder / "log.config"),
        "media_store_path": str(folder / "media"),
        "enable_media_repo": False,
        "url_preview_enabled": False,
        "enable_registration": False,
        "registration_shared_secret": shared_secret,
        # Passwords are hashed once per user at setup; the default cost only slows setup down.
        "bcrypt_rounds": 4,
        "report_stats": False,
        "enable_metrics": False,
        "presence": {"enabled": False},
        "signing_key_path": str(folder / "signing.key"),
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        **_RATE_LIMITS,
    }


def _log_config(log_path: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(log_path),
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def synapse(
    cache: Path = CACHE, *, keep_database: bool = False, reuse_database: str | None = None
) -> Iterator[Synapse]:
    """One Synapse on loopback with a database of its own; stopped and dropped afterwards.

    Setting up 1,000 rooms of 32 members takes Synapse far longer than the runs: with
    `keep_database` the database stays, and `reuse_database` starts on such a kept one (its
    users, tokens, rooms and joins read back from it) and leaves it as it is."""
    python = ensure_synapse(cache)
    postgres = provide_postgres()
    name = reuse_database or f"synapse_bench_{uuid.uuid4().hex[:10]}"
    if reuse_database is None:
        # Synapse refuses a database whose collation is not C (its text ordering assumes it).
        asyncio.run(
            admin(
                postgres.dsn,
                f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0",
            )
        )
    dsn = database_dsn(postgres.dsn, name)
    folder = Path(tempfile.mkdtemp(prefix="synapse-bench-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        shared_secret = secrets.token_hex(16)
        log_path = folder / "homeserver.log"
        config_path = folder / "homeserver.yaml"
        # JSON is YAML, so neither file needs a YAML library on this side.
        config_path.write_text(json.dumps(_homeserver_config(folder, port, dsn, shared_secret)))
        (folder / "log.config").write_text(json.dumps(_log_config(log_path)))
        app = [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config_path)]
        subprocess.run([*app, "--generate-keys"], check=True, capture_output=True)
        started = time.monotonic()
        with (folder / "stdout.log").open("wb") as out:
            # A session of its own: Ctrl-C reaches only this script, which then stops Synapse
            # in order (before its database is dropped).
            process = subprocess.Popen(
                app, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
        _say(f"starting on {url} (database {name}, logs in {folder})")
        _wait_ready(url, process, log_path, folder / "stdout.log", timeout=300)
        _say(f"ready in {time.monotonic() - started:.1f} s")
        handle = Synapse(url, shared_secret, dsn, log_path, process)
        if reuse_database is not None:
            asyncio.run(_load_setup(handle))
        yield handle
    finally:
        if process is not None:
            terminate(process)
        if keep_database or reuse_database is not None:
            _say(
                f"kept database {name} (again: --reuse-database {name};"
                f' drop: DROP DATABASE "{name}")'
            )
        else:
            asyncio.run(admin(postgres.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        postgres.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _load_setup(handle: Synapse) -> None:
    """What an earlier run set up in a kept database, as this module's setup would know it."""

    def local(user_id: str) -> str:
        return user_id[1:].partition(":")[0]

    conn = await asyncpg.connect(handle.database_dsn)
    try:
        for row in await conn.fetch("SELECT user_id, token FROM access_tokens ORDER BY id"):
            handle.tokens.setdefault(local(row["user_id"]), row["token"])
        rooms = await conn.fetch("SELECT room_id, creator FROM rooms ORDER BY room_id")
        handle.send_rooms = [r["room_id"] for r in rooms if local(r["creator"]) == "sender000"]
        fanout = [r["room_id"] for r in rooms if local(r["creator"]) == "fanout-sender"]
        handle.fanout_room = fanout[0] if fanout else None
        joins = await conn.fetch(
            "SELECT user_id, room_id FROM local_current_membership WHERE membership = 'join'"
        )
        handle.joined = {(local(j["user_id"]), j["room_id"]) for j in joins}
    finally:
        await conn.close()
    _say(
        f"reusing {len(handle.tokens)} users, {len(handle.send_rooms)} send rooms, "
        f"{len(handle.joined)} joins"
    )


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, stdout: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Synapse exited with {process.returncode}:\n{_log_tail(stdout)}\n{_log_tail(log)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_matrix/client/versions", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"Synapse did not answer within {timeout:.0f} s:\n{_log_tail(log)}")


# --- setup: users and rooms ----------------------------------------------------------------


async def _bounded(items: list[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


def _ok(reply: httpx.Response) -> dict[str, Any]:
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.request.method} {reply.request.url.path}: {reply.text}")
    body: dict[str, Any] = reply.json()
    return body


async def _register(handle: Synapse, http: httpx.AsyncClient, names: list[str]) -> None:
    """Users by shared-secret registration (Synapse's admin register API), HMAC-SHA1 over
    nonce, user, password and admin flag, each NUL-separated, as its docs specify."""

    async def one(name: str) -> None:
        nonce = _ok(await http.get("/_synapse/admin/v1/register"))["nonce"]
        password = secrets.token_hex(8)
        mac = hmac.new(handle.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), name.encode(), password.encode(), b"notadmin"]))
        body = {"nonce": nonce, "username": name, "password": password, "admin": False}
        made = _ok(
            await http.post("/_synapse/admin/v1/register", json={**body, "mac": mac.hexdigest()})
        )
        handle.tokens[name] = made["access_token"]

    await _bounded([n for n in names if n not in handle.tokens], 8, one)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _create_room(http: httpx.AsyncClient, token: str) -> str:
    # Public, so that members join without an invite each (one request per member, not two).
    reply = await http.post(
        f"{CLIENT}/createRoom", json={"preset": "public_chat"}, headers=_auth(token)
    )
    room: str = _ok(reply)["room_id"]
    return room


async def _join(http: httpx.AsyncClient, token: str, room: str) -> None:
    _ok(await http.post(f"{CLIENT}/join/{quote(room, safe='')}", json={}, headers=_auth(token)))


class _Progress:
    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done, self.shown = what, total, 0, -1
        self.started = time.monotonic()

    def step(self) -> None:
        self.done += 1
        tenth = self.done * 10 // max(1, self.total)
        if tenth != self.shown and self.total >= 50:
            self.shown = tenth
            elapsed = time.monotonic() - self.started
            _say(f"{self.what}: {self.done}/{self.total} ({elapsed:.0f} s)")


async def _setup_send(handle: Synapse, rooms: int, concurrency: int) -> None:
    senders = [f"sender{i:03d}" for i in range(concurrency)]
    async with httpx.AsyncClient(base_url=handle.url, timeout=120) as http:
        await _register(handle, http, senders)
        creator = handle.tokens[senders[0]]
        new = rooms - len(handle.send_rooms)
        if new > 0:
            progress = _Progress("rooms created", new)

            async def create(_: int) -> None:
                room = await _create_room(http, creator)
                handle.send_rooms.append(room)
                handle.joined.add((senders[0], room))
                progress.step()

            await _bounded(list(range(new)), 8, create)
        joins = [
            (name, room)
            for name in senders
            for room in handle.send_rooms[:rooms]
            if (name, room) not in handle.joined
        ]
        progress = _Progress("joins", len(joins))

        async def join(pair: tuple[str, str]) -> None:
            await _join(http, handle.tokens[pair[0]], pair[1])
            handle.joined.add(pair)
            progress.step()

        # Sender by sender, so that the joins in flight are into different rooms: joins into
        # one room queue on that room's lock in Synapse.
        await _bounded(joins, 16, join)


async def _setup_fanout(handle: Synapse, clients: int) -> None:
    receivers = [f"reader{i:05d}" for i in range(clients)]
    async with httpx.AsyncClient(base_url=handle.url, timeout=120) as http:
        await _register(handle, http, ["fanout-sender", *receivers])
        if handle.fanout_room is None:
            handle.fanout_room = await _create_room(http, handle.tokens["fanout-sender"])
        room = handle.fanout_room
        missing = [r for r in receivers if (r, room) not in handle.joined]
        progress = _Progress("fan-out joins", len(missing))

        async def join(name: str) -> None:
            await _join(http, handle.tokens[name], room)
            handle.joined.add((name, room))
            progress.step()

        # Joins into one room queue on that room anyway; a few at once keep Synapse busy.
        await _bounded(missing, 4, join)


# --- send ----------------------------------------------------------------------------------

# One wrk thread per connection (-t C -c C): setup() numbers the threads, so each connection
# is one sender with its own token and its own run of transaction ids (unique per token, as
# Matrix requires: a repeated id would be answered from Synapse's cache, not sent again).
_WRK_SCRIPT = """
local tokens = {%(tokens)s}
local rooms = {%(rooms)s}
local next_id = 1
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  counter = 0
  headers = {["Authorization"] = "Bearer " .. tokens[id], ["Content-Type"] = "application/json"}
end
function request()
  counter = counter + 1
  local room = rooms[((id - 1) * 7919 + counter) %% #rooms + 1]
  local txn = "%(run)s." .. id .. "." .. counter
  local path = "%(client)s/rooms/" .. room .. "/send/m.room.message/" .. txn
  local body = '{"msgtype":"m.text","body":"bench ' .. id .. ' ' .. counter .. '"}'
  return wrk.format("PUT", path, headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%.0f %%.0f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
_WRK_RESULT = re.compile(r"^RESULT ([\d ]+)$", re.MULTILINE)


def _lua_list(items: list[str]) -> str:
    return ", ".join(json.dumps(i) for i in items)


async def _stored_messages(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE type = 'm.room.message'"))
    finally:
        await conn.close()


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def measure_send(
    handle: Synapse, runs: int, seconds: int, rooms: int, concurrency: int, hot: bool
) -> list[Run]:
    """Messages acknowledged (200) per second by `concurrency` senders posting as fast as they
    are answered, spread over `rooms` rooms or (`hot`) all into one."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found: apt-get install -y wrk")
    started = time.monotonic()
    wanted = 1 if hot else rooms
    asyncio.run(_setup_send(handle, wanted, concurrency))
    took = time.monotonic() - started
    _say(f"send setup ({concurrency} senders, {wanted} room(s)) took {took:.1f} s")
    senders = [f"sender{i:03d}" for i in range(concurrency)]
    targets = handle.send_rooms[:1] if hot else handle.send_rooms[:rooms]
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="synapse-wrk-") as folder:
        for n in range(runs):
            script = Path(folder) / f"send{n}.lua"
            script.write_text(
                _WRK_SCRIPT
                % {
                    "tokens": _lua_list([handle.tokens[s] for s in senders]),
                    "rooms": _lua_list([quote(r, safe="") for r in targets]),
                    "client": CLIENT,
                    "run": uuid.uuid4().hex[:12],
                }
            )
            before = asyncio.run(_stored_messages(handle.database_dsn))
            cpu_before, wall_before = _children_cpu(), time.monotonic()
            # A 60 s timeout: a slow answer is a slow answer, not an error to reconnect over.
            done = subprocess.run(
                [
                    wrk,
                    "-t",
                    str(concurrency),
                    "-c",
                    str(concurrency),
                    "-d",
                    f"{seconds}s",
                    "--timeout",
                    "60s",
                    "-s",
                    str(script),
                    handle.url,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.monotonic() - wall_before
            cpu = _children_cpu() - cpu_before
            found = _WRK_RESULT.search(done.stdout)
            if done.returncode != 0 or found is None:
                raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            requests, duration_us, *errors, p50_us, p99_us = (
                int(x) for x in found.group(1).split()
            )
            connect, read, write, status, timeout = errors
            acknowledged = requests - status
            # Requests still in flight when wrk stopped are sent by Synapse all the same.
            time.sleep(1.0)
            stored = asyncio.run(_stored_messages(handle.database_dsn)) - before
            if not acknowledged <= stored <= acknowledged + concurrency + timeout + read:
                _say(f"WARNING: {acknowledged} acknowledged but {stored} stored")
            rate = acknowledged / (duration_us / 1e6)
            _say(
                f"send run {n + 1}/{runs}: {acknowledged} acknowledged in {duration_us / 1e6:.1f} s"
                f" = {rate:.1f} msg/s, p50 {p50_us / 1000:.1f} ms, p99 {p99_us / 1000:.1f} ms;"
                f" {stored} stored; not 2xx {status}, errors connect/read/write/timeout"
                f" {connect}/{read}/{write}/{timeout}"
            )
            results.append(
                Run(
                    rate=rate,
                    p50_ms=p50_us / 1000,
                    p99_ms=p99_us / 1000,
                    load_cpu=cpu / (wall * (os.cpu_count() or 1)),
                    extra={"acknowledged": acknowledged, "stored": stored, "failed": status},
                )
            )
    return results


# --- fan-out -------------------------------------------------------------------------------

_STAMP = re.compile(r"^b (\w+) (\d+) ([0-9.]+)$")


@dataclass
class _Received:
    latencies: list[float]
    counts: list[int]
    last_receipt: float
    cpu: float  # this process's CPU seconds from ready to the end
    gaps: int  # timelines Synapse cut short ("limited"): deliveries that were skipped


def _receive_process(
    url: str,
    tokens: list[str],
    room: str,
    tag: str,
    go: multiprocessing.synchronize.Event,
    sent: Any,
    send_done: multiprocessing.synchronize.Event,
    drain: float,
    out: multiprocessing.connection.Connection,
) -> None:
    out.send(asyncio.run(_receive(url, tokens, room, tag, go, sent, send_done, drain, out)))
    out.close()


async def _receive(
    url: str,
    tokens: list[str],
    room: str,
    tag: str,
    go: multiprocessing.synchronize.Event,
    sent: Any,
    send_done: multiprocessing.synchronize.Event,
    drain: float,
    out: multiprocessing.connection.Connection,
) -> _Received:
    # Only this room's messages: no state, presence, receipts or account data to carry.
    sync_filter = json.dumps(
        {
            "room": {
                "rooms": [room],
                "timeline": {"limit": 1000, "types": ["m.room.message"]},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
            "presence": {"types": []},
            "account_data": {"types": []},
        },
        separators=(",", ":"),
    )
    result = _Received([], [0] * len(tokens), 0.0, 0.0, 0)
    limits = httpx.Limits(
        max_connections=len(tokens) + 4, max_keepalive_connections=len(tokens) + 4
    )
    async with httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as http:

        async def sync(token: str, since: str | None) -> dict[str, Any]:
            params = {"filter": sync_filter, "set_presence": "offline"}
            params.update({"since": since, "timeout": "30000"} if since else {"timeout": "0"})
            return _ok(await http.get(f"{CLIENT}/sync", params=params, headers=_auth(token)))

        # The first sync only finds where "now" is: what came before belongs to earlier runs.
        firsts = await asyncio.gather(*(sync(t, None) for t in tokens))
        out.send("ready")
        await asyncio.to_thread(go.wait, 600)
        cpu_started = time.process_time()

        async def client(i: int, since: str) -> None:
            while True:
                body = await sync(tokens[i], since)
                now = time.monotonic()
                since = body["next_batch"]
                joined = body.get("rooms", {}).get("join", {}).get(room)
                if joined is None:
                    continue
                timeline = joined.get("timeline", {})
                if timeline.get("limited"):
                    result.gaps += 1
                for event in timeline.get("events", []):
                    found = _STAMP.match(str(event.get("content", {}).get("body", "")))
                    if found is not None and found.group(1) == tag:
                        result.latencies.append(now - float(found.group(3)))
                        result.counts[i] += 1
                        result.last_receipt = max(result.last_receipt, now)

        tasks = [asyncio.create_task(client(i, b["next_batch"])) for i, b in enumerate(firsts)]
        try:
            drained_at: float | None = None
            while True:
                await asyncio.sleep(0.05)
                if any(t.done() for t in tasks):
                    for t in tasks:
                        if t.done():
                            t.result()  # a failed client is the run's failure
                if send_done.is_set():
                    drained_at = drained_at or time.monotonic() + drain
                    if min(result.counts) >= sent.value or time.monotonic() > drained_at:
                        break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        result.cpu = time.process_time() - cpu_started
    return result


async def _send_steadily(
    handle: Synapse, room: str, tag: str, rate: float, seconds: float
) -> tuple[int, int, float]:
    """(sent, failed, when sending began) for one sender at `rate` messages/s."""
    token = handle.tokens["fanout-sender"]
    path = f"{CLIENT}/rooms/{quote(room, safe='')}/send/m.room.message"
    sent = failed = 0
    async with httpx.AsyncClient(base_url=handle.url, headers=_auth(token), timeout=60) as http:
        began = time.monotonic()
        # Each send's time from its number, not from a running sum that rounding moves.
        for n in range(round(rate * seconds)):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            stamp = time.monotonic()
            body = {"msgtype": "m.text", "body": f"b {tag} {n} {stamp:.6f}"}
            reply = await http.put(f"{path}/{tag}.{n}", json=body)
            if reply.status_code == 200:
                sent += 1
            else:
                failed += 1
    return sent, failed, began


def measure_fanout(
    handle: Synapse,
    runs: int,
    clients: int,
    rate: float,
    seconds: float,
    processes: int | None = None,
    drain: float = 30.0,
) -> list[Run]:
    """Deliveries per second and send-to-receipt latency for `clients` users long-polling
    `/sync` in one room while one sender posts `rate` messages/s for `seconds`."""
    started = time.monotonic()
    asyncio.run(_setup_fanout(handle, clients))
    _say(f"fan-out setup ({clients} clients) took {time.monotonic() - started:.1f} s")
    assert handle.fanout_room is not None
    room = handle.fanout_room
    readers = [f"reader{i:05d}" for i in range(clients)]
    # About 250 long-polls per process keep each event loop's share of parsing small.
    count = processes or max(1, min(os.cpu_count() or 1, math.ceil(clients / 250)))
    context = multiprocessing.get_context("spawn")
    results: list[Run] = []
    for n in range(runs):
        tag = uuid.uuid4().hex[:10]
        go = context.Event()
        sent_value = context.Value("q", 0)
        send_done = context.Event()
        pipes, procs = [], []
        try:
            for p in range(count):
                tokens = [handle.tokens[r] for r in readers[p::count]]
                mine, theirs = context.Pipe(duplex=False)
                proc = context.Process(
                    target=_receive_process,
                    args=(
                        handle.url,
                        tokens,
                        room,
                        tag,
                        go,
                        sent_value,
                        send_done,
                        drain,
                        theirs,
                    ),
                    daemon=True,
                )
                proc.start()
                theirs.close()
                pipes.append(mine)
                procs.append(proc)
            # A message per process, not a barrier: a process that died says so at once (EOF).
            for pipe in pipes:
                if not pipe.poll(300) or pipe.recv() != "ready":
                    raise RuntimeError("a fan-out client process did not finish its first sync")
            go.set()
            cpu_started, wall_started = time.process_time(), time.monotonic()
            sent, failed, began = asyncio.run(_send_steadily(handle, room, tag, rate, seconds))
            sent_value.value = sent
            send_done.set()
            received: list[_Received] = []
            for pipe in pipes:
                if not pipe.poll(drain + 120):
                    raise RuntimeError("a fan-out client process did not report")
                received.append(pipe.recv())
            wall = time.monotonic() - wall_started
            cpu = time.process_time() - cpu_started + sum(r.cpu for r in received)
        finally:
            send_done.set()
            go.set()
            for proc in procs:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
        latencies = sorted(x for r in received for x in r.latencies)
        got, expected = len(latencies), sent * clients
        short = sum(1 for r in received for c in r.counts if c < sent)
        gaps = sum(r.gaps for r in received)
        span = max(0.001, max(r.last_receipt for r in received) - began)
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        complete = got == expected and short == 0
        _say(
            f"fan-out run {n + 1}/{runs}: sent {sent} ({failed} failed), received {got} of"
            f" {expected} deliveries ({got / span:.0f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            + ("" if complete else f"; INCOMPLETE: {short} clients short, {gaps} cut timelines")
        )
        results.append(
            Run(
                rate=got / span,
                p50_ms=p50,
                p99_ms=p99,
                load_cpu=cpu / (wall * (os.cpu_count() or 1)),
                extra={
                    "sent": sent,
                    "expected": expected,
                    "received": got,
                    "missing": expected - got,
                },
            )
        )
    return results


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


# --- the table -----------------------------------------------------------------------------


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def table(rows: list[tuple[str, str, list[Run]]]) -> str:
    """Markdown: one row per workload, each figure the median of its runs."""
    lines = [
        "| Synapse workload | runs | rate | p50 ms | p99 ms | load CPU | all delivered |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, unit, runs in rows:
        m = median(runs)
        if "missing" in m.extra:
            whole = "yes" if all(r.extra.get("missing", 0) == 0 for r in runs) else "NO"
        else:
            whole = (
                "yes" if all(r.extra["stored"] >= r.extra["acknowledged"] for r in runs) else "NO"
            )
        load = "-" if m.load_cpu is None else f"{m.load_cpu:.0%}"
        lines.append(
            f"| {name} | {len(runs)} | {_cell(m.rate, 1)} {unit} | {_cell(m.p50_ms, 1)} |"
            f" {_cell(m.p99_ms, 1)} | {load} | {whole} |"
        )
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per workload (median shown)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each send run")
    parser.add_argument("--concurrency", type=int, default=32, help="senders posting at once")
    parser.add_argument("--rooms", type=int, default=1000, help="rooms of the send workload")
    parser.add_argument("--fanout-clients", type=int, default=20, help="users long-polling /sync")
    parser.add_argument("--fanout-rate", type=float, default=10.0, help="messages/s sent")
    parser.add_argument("--fanout-seconds", type=float, default=10.0)
    parser.add_argument(
        "--fanout-processes", type=int, default=None, help="client processes (default: 1/250)"
    )
    parser.add_argument(
        "--workloads", default="send,hot,fanout", help="comma-separated: send, hot, fanout"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="keep Synapse's database (and its setup)"
    )
    parser.add_argument("--reuse-database", metavar="NAME", help="start on a kept database")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the Synapse venv lives")
    args = parser.parse_args(argv)
    chosen = {w.strip() for w in args.workloads.split(",") if w.strip()}
    unknown = chosen - {"send", "hot", "fanout"}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")

    # A `kill` stops the bench as Ctrl-C does: through the cleanup, not around it.
    signal.signal(signal.SIGTERM, _interrupt)
    rows: list[tuple[str, str, list[Run]]] = []
    with synapse(
        args.cache, keep_database=args.keep_database, reuse_database=args.reuse_database
    ) as handle:
        c = args.concurrency
        if "send" in chosen:
            runs = measure_send(handle, args.runs, args.seconds, args.rooms, c, hot=False)
            rows.append((f"send, {c} clients, {args.rooms} rooms", "msg/s", runs))
        if "hot" in chosen:
            runs = measure_send(handle, args.runs, args.seconds, args.rooms, c, hot=True)
            rows.append((f"send, {c} clients, 1 hot room", "msg/s", runs))
        if "fanout" in chosen:
            runs = measure_fanout(
                handle,
                args.runs,
                args.fanout_clients,
                args.fanout_rate,
                args.fanout_seconds,
                processes=args.fanout_processes,
            )
            name = f"fan-out, {args.fanout_clients} clients /sync, {args.fanout_rate:g} msg/s"
            rows.append((name, "deliveries/s", runs))
    print(f"Matrix Synapse {SYNAPSE_VERSION}, one process, PostgreSQL, rate limits off")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
