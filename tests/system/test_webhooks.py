"""Webhooks end to end: real `cariosan serve` processes, messages sent through the public API, a
real HTTP receiver on 127.0.0.1 that verifies every request with the Standard Webhooks library."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import JWT_SECRET
from tests.support.process import ServerProcess, run_cli, serve
from tests.support.webhook_receiver import Received, Receiver, Reply

# Compressed retry schedule: attempts keep coming every second for well over a minute.
SCHEDULE = ",".join(["0", "0.5"] + ["1"] * 120)


def _env(database_url: str, lease_seconds: int = 60) -> dict[str, str]:
    """`lease_seconds`: how long a claimed delivery stays with its worker (60 in production)."""
    return {
        "CARIOS_WEBHOOK_LEASE_SECONDS": str(lease_seconds),
        "CARIOS_DATABASE_URL": database_url,
        "CARIOS_JWT_SECRET": JWT_SECRET,
        "CARIOS_WEBHOOK_ALLOW_PRIVATE": "true",
        "CARIOS_WEBHOOK_SCHEDULE": SCHEDULE,
        "CARIOS_RATE_USER_MESSAGES_PER_SECOND": "100000",
        "CARIOS_RATE_USER_REQUESTS_PER_MINUTE": "1000000",
        "CARIOS_RATE_WORKSPACE_REQUESTS_PER_MINUTE": "1000000",
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def servers(stack: ExitStack, database_url: str, tmp_path: Path, count: int) -> list[ServerProcess]:
    started = []
    for n in range(count):
        folder = tmp_path / f"node{n}"
        folder.mkdir()
        started.append(stack.enter_context(serve(_env(database_url), folder)))
    return started


def workspace_secret(database_url: str, tmp_path: Path) -> str:
    created = run_cli(["workspace", "create", "hooks", "--json"], _env(database_url), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret: str = json.loads(created.stdout)["api_secret"]
    return secret


def backend(server: ServerProcess, secret: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )


def register(http: httpx.Client, url: str) -> dict[str, Any]:
    created = http.post("/v1/webhooks", json={"url": url, "events": ["message.new"]})
    assert created.status_code == 201, created.text
    hook: dict[str, Any] = created.json()
    return hook


def setup_channel(http: httpx.Client) -> None:
    for user in ("ann", "bob"):
        assert http.put(f"/v1/users/{user}", json={"name": user}).status_code == 200
    channel = http.post(
        "/v1/channels",
        json={"id": "general", "type": "group", "members": ["ann", "bob"], "user_id": "ann"},
    )
    assert channel.status_code == 201, channel.text


def send_messages(clients: list[httpx.Client], count: int, prefix: str) -> set[str]:
    """Send `count` messages, spread over the servers, from 8 threads; their ids."""
    lock = threading.Lock()
    ids: set[str] = set()

    def send(n: int) -> None:
        http = clients[n % len(clients)]
        sent = http.post(
            "/v1/channels/general/messages",
            json={"text": f"{prefix} {n}", "user_id": "ann" if n % 2 else "bob"},
        )
        assert sent.status_code == 201, sent.text
        with lock:
            ids.add(sent.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(count)))
    assert len(ids) == count
    return ids


def message_ids(secret: str, requests: list[Received]) -> Counter[str]:
    """Every request verified with the reference library; how often each message arrived."""
    verifier = Webhook(secret)
    seen: Counter[str] = Counter()
    for request in requests:
        event = verifier.verify(request.body, request.headers)
        assert event["type"] == "message.new"
        seen[event["message"]["id"]] += 1
    return seen


def attempts_finished(node: ServerProcess) -> int:
    """Attempts this server has sent and recorded the outcome of (its metrics, every outcome)."""
    total = 0.0
    for line in httpx.get(node.url + "/metrics").text.splitlines():
        if line.startswith("cariosan_webhook_deliveries_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def settle(
    http: httpx.Client, hook_id: str, nodes: list[ServerProcess], count: int
) -> list[dict[str, Any]]:
    """Wait until all `count` deliveries succeeded and every attempt any server claimed (the
    claim counts it in `attempts`) has finished: from then on nothing more is sent."""
    deadline = time.monotonic() + 60
    while True:
        page = http.get(f"/v1/webhooks/{hook_id}/deliveries", params={"limit": 200}).json()
        deliveries: list[dict[str, Any]] = page["deliveries"]
        claimed = sum(d["attempts"] for d in deliveries)
        succeeded = len(deliveries) == count and all(d["status"] == "succeeded" for d in deliveries)
        if succeeded and sum(attempts_finished(n) for n in nodes) == claimed:
            return deliveries
        assert time.monotonic() < deadline, f"deliveries did not settle: {claimed} claimed"
        time.sleep(0.1)


def test_a_burst_through_two_servers_arrives_once_each_signed(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The receiver is slow so that attempts overlap and both workers are busy at once.
    receiver.responder = lambda _: Reply(200, delay=0.05)
    secret = workspace_secret(database_url, tmp_path)
    with ExitStack() as stack:
        nodes = servers(stack, database_url, tmp_path, 2)
        clients = [stack.enter_context(backend(node, secret)) for node in nodes]
        hook = register(clients[0], receiver.url)
        setup_channel(clients[0])
        sent = send_messages(clients, 150, "burst")
        receiver.wait_for(lambda got: len({r.id for r in got}) >= 150, timeout=60)
        settled = settle(clients[0], hook["id"], nodes, 150)
        again = [(d["attempts"], d["last_error"]) for d in settled if d["attempts"] != 1]
        assert not again, f"each delivery was claimed once: {again[:5]}"
        got = receiver.requests()
        seen = message_ids(hook["secret"], got)
        assert set(seen) == sent, "every message arrived"
        assert max(seen.values()) == 1, "no attempt was sent by both servers"
        assert len({r.id for r in got}) == len(got) == 150
        # Both workers took part.
        metrics = [httpx.get(node.url + "/metrics").text for node in nodes]
        assert all('cariosan_webhook_deliveries_total{outcome="succeeded"}' in m for m in metrics)


def test_receiver_down_while_200_messages_are_sent_then_back(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    secret = workspace_secret(database_url, tmp_path)
    with ExitStack() as stack:
        nodes = servers(stack, database_url, tmp_path, 2)
        clients = [stack.enter_context(backend(node, secret)) for node in nodes]
        hook = register(clients[0], receiver.url)
        setup_channel(clients[0])
        receiver.stop()  # down: connections are refused
        sent = send_messages(clients, 200, "while down")

        def pending() -> list[dict[str, Any]]:
            page = (
                clients[1]
                .get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 200})
                .json()["deliveries"]
            )
            return [d for d in page if d["status"] == "pending"]

        deadline = time.monotonic() + 30
        while not all(d["attempts"] >= 2 for d in pending()) or len(pending()) < 200:
            assert time.monotonic() < deadline, "deliveries were not retried while down"
            time.sleep(0.2)
        waiting = pending()
        assert len(waiting) == 200
        assert all(d["last_error"] and d["last_status_code"] is None for d in waiting)
        assert all(d["next_attempt_at"] for d in waiting)

        receiver.start()  # back, on the same port
        receiver.wait_for(lambda got: len({r.id for r in got}) >= 200, timeout=60)
        settle(clients[0], hook["id"], nodes, 200)
        got = receiver.requests()
        seen = message_ids(hook["secret"], got)
        assert set(seen) == sent, "no event was lost"
        # Duplicates may only be retries of the same webhook-id; here none happened at all.
        by_id: dict[str, set[bytes]] = {}
        for request in got:
            by_id.setdefault(request.id, set()).add(request.body)
        assert all(len(bodies) == 1 for bodies in by_id.values())
        assert len(by_id) == 200 and max(seen.values()) == 1
        succeeded = (
            clients[0]
            .get(
                f"/v1/webhooks/{hook['id']}/deliveries",
                params={"status": "succeeded", "limit": 200},
            )
            .json()["deliveries"]
        )
        assert len(succeeded) == 200
        assert {d["id"] for d in succeeded} == set(by_id)

        # Replay re-sends one, with the same id and body.
        one = succeeded[0]
        replay = clients[1].post(f"/v1/webhooks/{hook['id']}/deliveries/{one['id']}/replay")
        assert replay.status_code == 202
        receiver.wait_for(lambda got: sum(r.id == one["id"] for r in got) == 2, timeout=20)
        again = [r for r in receiver.requests() if r.id == one["id"]]
        assert again[0].body == again[1].body
        Webhook(hook["secret"]).verify(again[1].body, again[1].headers)


def test_a_server_killed_mid_delivery_leaves_it_to_another(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The first request hangs: the server that sent it is killed while it waits.
    receiver.responder = lambda _: (
        Reply(200, delay=20) if len(receiver.requests()) == 1 else Reply(200)
    )
    secret = workspace_secret(database_url, tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # A short lease: the retry by the other server need not wait out the production minute.
    env = _env(database_url, lease_seconds=4)
    with serve(env, tmp_path / "a") as first:
        with backend(first, secret) as http:
            hook = register(http, receiver.url)
            setup_channel(http)
            sent = send_messages([http], 1, "in flight")
            receiver.wait_for(lambda got: len(got) == 1, timeout=20)
            # Claimed: pending, its lease running until next_attempt_at.
            [claimed] = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        first.stop(signal.SIGKILL)
    assert claimed["status"] == "pending" and claimed["attempts"] == 1, claimed
    lease_end = datetime.fromisoformat(claimed["next_attempt_at"]).timestamp()
    with serve(env, tmp_path / "b") as second, backend(second, secret) as http:
        # Retried by the other server once the lease of the dead one runs out.
        receiver.wait_for(lambda got: len(got) == 2, timeout=90)
        first_try, retry = receiver.requests()
        assert retry.wall_time >= lease_end, "the lease held while it ran"
        assert retry.id == first_try.id and retry.body == first_try.body
        assert set(message_ids(hook["secret"], [retry])) == sent
        deadline = time.monotonic() + 10
        while True:
            [delivery] = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
            if delivery["status"] == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert delivery["status"] == "succeeded" and delivery["attempts"] == 2
