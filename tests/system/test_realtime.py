"""Live events across real `cariosan serve` processes sharing PostgreSQL and Redis: another
node's sender, a node killed with SIGKILL, Redis flushed and restarted, 1,000 clients."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import JWT_SECRET
from tests.services.provision import (
    PostgresService,
    RedisService,
    redis_server_binary,
    start_redis_server,
)
from tests.support.live import LiveClient, live, ws_url
from tests.support.process import ServerProcess, run_cli, serve


def _env(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_REDIS_URL": redis_url,
        "CARIOS_REDIS_PREFIX": prefix,
        "CARIOS_RATE_USER_MESSAGES_PER_SECOND": "100000",
        "CARIOS_RATE_USER_REQUESTS_PER_MINUTE": "10000000",
        "CARIOS_RATE_WORKSPACE_REQUESTS_PER_MINUTE": "10000000",
        # A killed node's users go offline within about 5 s, not the production 15-20 s.
        "CARIOS_PRESENCE_HEARTBEAT_SECONDS": "1",
        "CARIOS_PRESENCE_NODE_TTL_SECONDS": "5",
    }


class Tenant:
    """A workspace made with the CLI, and its users' tokens."""

    def __init__(self, env: dict[str, str], url: str) -> None:
        made = run_cli(["workspace", "create", "live", "--json"], env)
        assert made.returncode == 0, made.stderr
        self.secret = json.loads(made.stdout)["api_secret"]
        self.url = url
        self.tokens: dict[str, str] = {}

    async def users(self, names: list[str]) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=30, limits=limits
        ) as http:

            async def one(name: str) -> None:
                assert (await http.put(f"/v1/users/{name}", json={"name": name})).status_code == 200
                minted = await http.post(f"/v1/users/{name}/token", json={"ttl_seconds": 3600})
                self.tokens[name] = minted.json()["token"]

            for start in range(0, len(names), 50):
                await asyncio.gather(*(one(n) for n in names[start : start + 50]))

    def http(self, name: str, url: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=url or self.url,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
            timeout=30,
        )

    async def channel(self, owner: str, members: list[str]) -> str:
        async with self.http(owner) as http:
            made = await http.post("/v1/channels", json={"type": "group", "members": members})
            assert made.status_code == 201, made.text
            channel_id: str = made.json()["id"]
            return channel_id


@pytest.fixture
def nodes(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], list[ServerProcess]]]:
    env = _env(database_url, redis_url, redis_prefix)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    with serve(env, tmp_path / "n1") as one, serve(env, tmp_path / "n2") as two:
        yield env, [one, two]


def _texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["message"]["text"] for f in frames if f["type"] == "message.new"]


async def test_a_message_sent_on_one_node_reaches_a_member_on_another(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    channel = await tenant.channel("alice", ["bob"])
    async with live(two.url, tenant.tokens["bob"]) as bob, tenant.http("alice") as alice:
        started = time.monotonic()
        for i in range(5):
            sent = await alice.post(f"/v1/channels/{channel}/messages", json={"text": f"x{i}"})
            assert sent.status_code == 201
        frames = await bob.events(5, types=("message.new",))
        # Woken through Redis pub/sub, not by the one-second poll alone.
        assert time.monotonic() - started < 4
    assert _texts(frames) == [f"x{i}" for i in range(5)]


class Receiver:
    """A client that keeps every event it gets and resumes from its last seq on reconnect."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.frames: list[dict[str, Any]] = []
        self.last = 0
        self.connections = 0

    async def follow(self, url: str, stop: asyncio.Event) -> None:
        """Read from `url` until `stop` is set or the connection breaks."""
        self.connections += 1
        try:
            async with live(url, self.token, resume_from=self.last) as client:
                while not stop.is_set():
                    try:
                        frame = await client.next(timeout=0.5)
                    except TimeoutError:
                        continue
                    self._keep(frame)
        except (websockets.ConnectionClosed, OSError):
            return

    async def drain(self, url: str, quiet: float = 3.0) -> None:
        """Connect, resume and read until nothing arrives for `quiet` seconds."""
        async with live(url, self.token, resume_from=self.last) as client:
            await self._until_quiet(client, quiet)

    async def _until_quiet(self, client: LiveClient, quiet: float) -> None:
        while True:
            try:
                frame = await client.next(timeout=quiet)
            except TimeoutError:
                return
            self._keep(frame)

    def _keep(self, frame: dict[str, Any]) -> None:
        if "seq" in frame:
            assert frame["seq"] > self.last, "an event was delivered twice or out of order"
            self.last = frame["seq"]
            self.frames.append(frame)


async def _send_many(
    http: httpx.AsyncClient, channel: str, count: int, acknowledged: list[str], pause: float
) -> None:
    """Post `count` messages; keep the texts the server acknowledged (retrying 5xx/errors)."""
    for i in range(count):
        text = f"m{i}"
        for _attempt in range(50):
            try:
                sent = await http.post(
                    f"/v1/channels/{channel}/messages", json={"id": _uuid(i), "text": text}
                )
            except httpx.TransportError:
                await asyncio.sleep(0.2)
                continue
            if sent.status_code in (200, 201):
                acknowledged.append(text)
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(pause)


def _uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


async def test_a_killed_node_loses_no_message_for_its_client(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    channel = await tenant.channel("alice", ["bob"])
    bob = Receiver(tenant.tokens["bob"])
    stop = asyncio.Event()
    acknowledged: list[str] = []
    async with tenant.http("alice") as alice:
        following = asyncio.create_task(bob.follow(two.url, stop))
        sending = asyncio.create_task(_send_many(alice, channel, 150, acknowledged, 0.01))
        while len(acknowledged) < 50:
            await asyncio.sleep(0.05)
        two.stop(signal.SIGKILL)
        await asyncio.wait_for(following, 10)  # the connection broke with the node
        assert not sending.done(), "messages must keep flowing while bob is away"
        following = asyncio.create_task(bob.follow(one.url, stop))
        await sending
        stop.set()
        await following
    await bob.drain(one.url)
    assert _texts(bob.frames) == [f"m{i}" for i in range(150)]
    assert acknowledged == [f"m{i}" for i in range(150)]
    assert bob.connections == 2


async def test_redis_flushed_and_restarted_mid_traffic_loses_no_acknowledged_message(
    database_url: str, tmp_path: Path
) -> None:
    redis = start_redis_server()
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    restarted: subprocess.Popen[bytes] | None = None
    env = _env(database_url, redis.url, "flush:")
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    try:
        with serve(env, tmp_path / "n1") as one, serve(env, tmp_path / "n2") as two:
            tenant = Tenant(env, one.url)
            await tenant.users(["alice", "bob"])
            channel = await tenant.channel("alice", ["bob"])
            bob = Receiver(tenant.tokens["bob"])
            stop = asyncio.Event()
            acknowledged: list[str] = []
            async with tenant.http("alice") as alice:
                following = asyncio.create_task(bob.follow(two.url, stop))
                sending = asyncio.create_task(_send_many(alice, channel, 200, acknowledged, 0.01))
                while len(acknowledged) < 40:
                    await asyncio.sleep(0.05)
                _flush(redis)
                while len(acknowledged) < 80:
                    await asyncio.sleep(0.05)
                redis.close()  # Redis goes away...
                await asyncio.sleep(2)
                restarted = _start_redis_on(port, tmp_path)  # ...and comes back, empty
                await sending
                stop.set()
                await following
            await bob.drain(two.url)
            assert len(acknowledged) == 200
            assert _texts(bob.frames) == acknowledged
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(10)
        redis.close()


def _flush(redis: RedisService) -> None:
    import redis as redis_client

    client = redis_client.Redis.from_url(redis.url)
    try:
        client.flushall()
    finally:
        client.close()


def _start_redis_on(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = redis_server_binary()
    assert binary is not None, "redis-server is needed for this test"
    args = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import redis as redis_client

    while time.monotonic() < deadline:
        try:
            redis_client.Redis(port=port, socket_connect_timeout=0.5).ping()
            return process
        except redis_client.RedisError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"redis-server did not come back on port {port}")


async def test_a_thousand_connected_clients_all_receive_a_message(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, servers = nodes
    tenant = Tenant(env, servers[0].url)
    names = [f"u{i:04d}" for i in range(1000)]
    await tenant.users(names)
    channel = await tenant.channel(names[0], names[1:])
    sockets: list[Any] = []
    try:
        for start in range(0, 1000, 100):
            batch = names[start : start + 100]
            sockets += await asyncio.gather(
                *(
                    websockets.connect(
                        ws_url(servers[i % 2].url, tenant.tokens[name]), open_timeout=30
                    )
                    for i, name in enumerate(batch, start)
                )
            )

        async def receive(socket: Any) -> bool:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 60))
                if frame["type"] == "message.new" and frame["message"]["text"] == "to all":
                    return True
            return False

        # Live from `connection.ready` on (what came before is for `resume`): under load the
        # server may send it seconds after the handshake, so wait for it rather than a while.
        await asyncio.gather(*(_ready(s) for s in sockets))
        waiting = [asyncio.create_task(receive(s)) for s in sockets]
        async with tenant.http(names[0]) as sender:
            sent = await sender.post(f"/v1/channels/{channel}/messages", json={"text": "to all"})
            assert sent.status_code == 201
        received = await asyncio.gather(*waiting, return_exceptions=True)
        failures = [repr(r) for r in received if r is not True]
        assert sum(1 for r in received if r is True) == 1000, failures[:5]
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "no-redis"])
def test_serve_with_workers_delivers_to_clients_of_every_worker(
    with_redis: bool, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = _env(database_url, redis_url, redis_prefix)
    if not with_redis:
        del env["CARIOS_REDIS_URL"]
    with serve(env, tmp_path, args=["--workers", "2"]) as server:
        asyncio.run(_workers_scenario(env, server.url))
        logs = server.raw_log()
    # Two worker processes served (each logs its own boot).
    assert logs.count('"boot_complete"') >= 2, logs[-2000:]


async def _workers_scenario(env: dict[str, str], url: str) -> None:
    tenant = Tenant(env, url)
    names = [f"w{i}" for i in range(12)]
    await tenant.users(names)
    channel = await tenant.channel(names[0], names[1:])
    sockets = [
        await websockets.connect(ws_url(url, tenant.tokens[name]), open_timeout=20)
        for name in names
    ]
    try:
        await asyncio.gather(*(_ready(s) for s in sockets))
        async with tenant.http(names[0]) as sender:
            for i in range(3):
                sent = await sender.post(f"/v1/channels/{channel}/messages", json={"text": f"k{i}"})
                assert sent.status_code == 201, sent.text

        async def texts(socket: Any) -> list[str]:
            found: list[str] = []
            while len(found) < 3:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 20))
                if frame["type"] == "message.new":
                    found.append(frame["message"]["text"])
            return found

        received = await asyncio.gather(*(texts(s) for s in sockets))
        assert received == [["k0", "k1", "k2"]] * len(names)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def _ready(socket: Any) -> None:
    """Read the socket's `connection.ready`, and start its live events at once (without a first
    frame they are held back for a second, in case the client resumes)."""
    frame = json.loads(await asyncio.wait_for(socket.recv(), 60))
    assert frame["type"] == "connection.ready", frame
    await socket.send('{"type":"ping"}')


async def _presence(client: LiveClient, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.next(timeout=max(0.01, deadline - time.monotonic()))
        if frame["type"] == "presence.changed":
            return frame


async def test_presence_across_nodes_and_after_a_node_is_killed(
    nodes: tuple[dict[str, str], list[ServerProcess]],
) -> None:
    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    await tenant.channel("alice", ["bob"])
    async with live(one.url, tenant.tokens["bob"]) as bob:
        async with live(one.url, tenant.tokens["alice"]):
            assert (await _presence(bob, 10))["online"] is True
            # A second connection on another node: still one presence, nothing announced.
            second = await websockets.connect(ws_url(two.url, tenant.tokens["alice"]))
            await asyncio.sleep(1)
        # The first one closed, alice is still connected on node 2: no change.
        with pytest.raises(TimeoutError):
            await _presence(bob, 2)
        two.stop(signal.SIGKILL)
        # Node 2 is gone without a word: its connections expire with its heartbeat key.
        offline = await _presence(bob, 40)
        assert offline["user_id"] == "alice" and offline["online"] is False
        await second.close()


async def test_an_open_transaction_in_another_database_holds_nothing_back_across_nodes(
    nodes: tuple[dict[str, str], list[ServerProcess]], postgres_service: PostgresService
) -> None:
    """Another database of the same PostgreSQL server (another app, a batch job) keeps a write
    transaction open: a message sent on one node still reaches a socket on the other node and
    `/v1/events` there while that transaction is open."""
    import uuid

    import asyncpg

    from tests.conftest import with_database

    env, (one, two) = nodes
    tenant = Tenant(env, one.url)
    await tenant.users(["alice", "bob"])
    channel = await tenant.channel("alice", ["bob"])
    name = f"cariosan_other_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_service.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    blocker = await asyncpg.connect(with_database(postgres_service.dsn, name))
    try:
        await blocker.execute("BEGIN")
        await blocker.execute("CREATE TABLE nightly_job (i int)")
        async with live(two.url, tenant.tokens["bob"]) as bob, tenant.http("alice") as alice:
            sent = await alice.post(f"/v1/channels/{channel}/messages", json={"text": "now"})
            assert sent.status_code == 201
            frames = await bob.events(1, types=("message.new",), timeout=20)
            async with tenant.http("bob", two.url) as bob_http:
                page = (
                    await bob_http.get("/v1/events", params={"after_seq": bob.ready["latest_seq"]})
                ).json()
        assert _texts(frames) == ["now"]
        assert [e["message"]["text"] for e in page["events"]] == ["now"]
        assert await blocker.fetchval("SELECT txid_current_if_assigned() IS NOT NULL")
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
