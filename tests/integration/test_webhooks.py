"""Webhooks against a real receiver on 127.0.0.1: the endpoints API, the outbox written with each
event, signed delivery, retries, 410, Retry-After, redirects, replay, rotation and leases."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from cariosan.config import Settings
from cariosan.db import events
from cariosan.db import webhooks as rows
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import ServerClient
from tests.support.chat import bearer
from tests.support.server import RunningServer
from tests.support.webhook_receiver import Received, Receiver, Reply


# Tests on `server` (a server of each test's own) send to receivers on loopback, with retries,
# timeouts and leases shortened by these settings; some also read the process's metrics, stop
# the server's worker or change every endpoint of the database.
@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The receiver runs on loopback, and retries come fast."""
    return settings.with_overrides(
        webhook_allow_private=True,
        webhook_schedule=(0.0, 0.2, 0.2),
        webhook_timeout_seconds=1.0,
        webhook_lease_seconds=3.0,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
async def backend(
    server: RunningServer, workspace: NewWorkspace
) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        yield http


async def register(http: httpx.AsyncClient, url: str, events: list[str]) -> dict[str, Any]:
    response = await http.post("/v1/webhooks", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def emit(
    server: RunningServer,
    workspace: NewWorkspace,
    type: str = "message.new",
    *,
    wait: bool = True,
    **payload: Any,
) -> int:
    """Append an event as the domain does; its seq once the sequencer has numbered it (with
    `wait`; else the server's sequencer numbers it a moment later, and this returns 0)."""
    async with server.services.db.transaction() as conn:
        await events.append_event(
            conn, workspace.id, type, {"message": payload}, channel_id="general"
        )
    if not wait:
        return 0
    await server.services.sequencer.drain()
    async with server.services.db.connection() as conn:
        return await events.latest_seq(conn, workspace.id)


async def deliveries(
    http: httpx.AsyncClient, webhook_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()["deliveries"]
    return page


async def until(check: Any, timeout: float = 15) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def verify(secret: str, request: Received) -> Any:
    return Webhook(secret).verify(request.body, request.headers)


async def test_register_list_delete(backend: httpx.AsyncClient, receiver: Receiver) -> None:
    created = await register(backend, receiver.url, ["message.new", "reaction.new"])
    assert set(created) >= {"id", "url", "events", "secret"}
    assert created["url"] == receiver.url
    assert created["events"] == ["message.new", "reaction.new"]
    assert created["secret"].startswith("whsec_")
    uuid.UUID(created["id"])
    listed = (await backend.get("/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0], "the secret is shown once"
    assert (await backend.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
    assert (await backend.get("/v1/webhooks")).json()["webhooks"] == []
    gone = await backend.delete(f"/v1/webhooks/{created['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/hook", "events": ["*"]},
        {"url": "https://user:pw@example.com/hook", "events": ["*"]},
        {"url": "https:///nohost", "events": ["*"]},
        {"url": "not a url", "events": ["*"]},
        {"url": "https://example.com/hook", "events": []},
        {"url": "https://example.com/hook", "events": ["message.nope"]},
        {"url": "https://example.com:99999/hook", "events": ["*"]},
        {"url": "https://example.com/hook"},
    ],
)
async def test_invalid_registrations(shared_server: RunningServer, body: dict[str, Any]) -> None:
    # Refused whatever the settings (no private address among them): on the server the test
    # process shares, in a workspace of this test's own.
    workspace = await create_workspace(shared_server.services.db, "test workspace")
    async with shared_server.client(headers=bearer(workspace.api_secret)) as backend:
        response = await backend.post("/v1/webhooks", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_other_workspaces_and_users_see_nothing(
    server: RunningServer,
    backend: httpx.AsyncClient,
    other_workspace: NewWorkspace,
    receiver: Receiver,
) -> None:
    created = await register(backend, receiver.url, ["*"])
    hook = created["id"]
    async with server.client(headers=bearer(other_workspace.api_secret)) as other:
        assert (await other.get("/v1/webhooks")).json()["webhooks"] == []
        for method, path in [
            ("DELETE", f"/v1/webhooks/{hook}"),
            ("GET", f"/v1/webhooks/{hook}/deliveries"),
            ("POST", f"/v1/webhooks/{hook}/rotate-secret"),
            ("POST", f"/v1/webhooks/{hook}/deliveries/{uuid.uuid4()}/replay"),
        ]:
            response = await other.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
    put = await backend.put("/v1/users/ann", json={})
    assert put.status_code == 200
    token = (await backend.post("/v1/users/ann/token")).json()["token"]
    async with server.client(headers=bearer(token)) as user:
        assert (await user.get("/v1/webhooks")).status_code == 403
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/webhooks")).status_code == 401
    assert (await backend.get("/v1/webhooks/not-a-uuid/deliveries")).status_code == 404


async def test_outbox_rows_are_written_with_the_event_and_only_if_it_commits(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    # Nobody listens on this port: deliveries stay pending, which is what we look at.
    messages = await register(backend, "http://127.0.0.1:9/a", ["message.new"])
    everything = await register(backend, "http://127.0.0.1:9/b", ["*"])
    await emit(server, workspace, "message.new", text="one")
    await emit(server, workspace, "channel.created")
    conn = await asyncpg.connect(server.services.settings.database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await events.append_event(conn, workspace.id, "message.new", {}, channel_id="general")
        await tx.rollback()
    finally:
        await conn.close()
    assert [d["event_type"] for d in await deliveries(backend, messages["id"])] == ["message.new"]
    assert sorted(d["event_type"] for d in await deliveries(backend, everything["id"])) == [
        "channel.created",
        "message.new",
    ]


async def test_delivery_is_signed_and_carries_the_wire_event(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    hook = await register(backend, receiver.url, ["message.new"])
    seq = await emit(server, workspace, text='héllo "world"', n=1)
    await receiver.wait_for_async(lambda got: len(got) == 1)
    request = receiver.requests()[0]
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-signature"].startswith("v1,")
    event = verify(hook["secret"], request)
    caught_up = (await backend.get("/v1/events")).json()["events"]
    assert event == caught_up[0], "the webhook body is the event clients get"
    assert event["seq"] == seq and event["type"] == "message.new"
    assert event["channel_id"] == "general" and event["message"]["text"] == 'héllo "world"'

    async def succeeded() -> list[dict[str, Any]]:
        done = await deliveries(backend, hook["id"], status="succeeded")
        return done

    [delivery] = await until(succeeded)
    assert request.id == delivery["id"], "webhook-id is the delivery id"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["last_error"] is None and delivery["seq"] == seq
    assert delivery["next_attempt_at"] is None
    assert set(delivery) == {
        "id",
        "event_type",
        "seq",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    }


async def test_retries_send_the_same_id_and_bytes_until_success(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda _: Reply(500) if len(receiver.requests()) < 3 else Reply(204)
    hook = await register(backend, receiver.url, ["*"])
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 3)
    got = receiver.requests()
    assert len({r.id for r in got}) == 1 and len({r.body for r in got}) == 1
    for request in got:
        verify(hook["secret"], request)

    async def succeeded() -> list[dict[str, Any]]:
        return await deliveries(backend, hook["id"], status="succeeded")

    [delivery] = await until(succeeded)
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 204
    await asyncio.sleep(0.8)
    assert len(receiver.requests()) == 3, "a delivered event is not sent again"


async def test_last_failed_attempt_marks_the_delivery_failed_and_keeps_it(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda _: Reply(500)
    hook = await register(backend, receiver.url, ["*"])
    await emit(server, workspace)

    async def failed() -> list[dict[str, Any]]:
        return await deliveries(backend, hook["id"], status="failed")

    [delivery] = await until(failed)
    assert delivery["attempts"] == 3, "one attempt per entry of the schedule"
    assert delivery["last_status_code"] == 500 and delivery["last_error"] == "HTTP 500"
    assert len(receiver.requests()) == 3
    assert await deliveries(backend, hook["id"], status="pending") == []
    metrics = (await backend.get("/metrics")).text
    assert 'cariosan_webhook_deliveries_total{outcome="failed"} 1.0' in metrics
    assert 'cariosan_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics


async def test_unreachable_receiver_and_timeouts_are_retried(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda _: Reply(200, delay=3.0)  # beyond the 1 s test timeout
    slow = await register(backend, receiver.url, ["*"])
    refused = await register(backend, "http://127.0.0.1:9/closed", ["*"])
    await emit(server, workspace)

    async def both_failed() -> bool:
        a = await deliveries(backend, slow["id"], status="failed")
        b = await deliveries(backend, refused["id"], status="failed")
        return bool(a and b)

    await until(both_failed, timeout=30)
    [timed_out] = await deliveries(backend, slow["id"])
    assert timed_out["last_error"].startswith("timed out")
    assert timed_out["last_status_code"] is None
    [closed] = await deliveries(backend, refused["id"])
    assert "Connect" in closed["last_error"], closed


async def test_410_disables_the_endpoint_and_replay_enables_it(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda _: Reply(410)
    hook = await register(backend, receiver.url, ["*"])
    await emit(server, workspace)

    async def failed() -> list[dict[str, Any]]:
        return await deliveries(backend, hook["id"], status="failed")

    [delivery] = await until(failed)
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 410
    [listed] = (await backend.get("/v1/webhooks")).json()["webhooks"]
    assert listed["enabled"] is False and "410" in listed["disabled_reason"]
    await emit(server, workspace)
    await asyncio.sleep(0.8)
    assert len(await deliveries(backend, hook["id"])) == 1, "a disabled endpoint gets nothing"
    assert len(receiver.requests()) == 1

    receiver.responder = lambda _: Reply(200)
    replay = await backend.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay")
    assert replay.status_code == 202, replay.text
    await receiver.wait_for_async(lambda got: len(got) == 2)
    assert receiver.requests()[1].id == delivery["id"]
    [listed] = (await backend.get("/v1/webhooks")).json()["webhooks"]
    assert listed["enabled"] is True


async def test_retry_after_is_honoured(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda _: (
        Reply(429, {"Retry-After": "2"}) if len(receiver.requests()) == 1 else Reply(200)
    )
    await register(backend, receiver.url, ["*"])
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 2, timeout=20)
    first, second = receiver.requests()
    assert second.at - first.at >= 1.9, "the schedule says 0.2 s but the receiver asked for 2 s"


async def test_redirects_are_not_followed(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.responder = lambda r: (
        Reply(302, {"Location": "/elsewhere"}) if r.path == "/hook" else Reply(200)
    )
    hook = await register(backend, receiver.url, ["*"])
    await emit(server, workspace)

    async def failed() -> list[dict[str, Any]]:
        return await deliveries(backend, hook["id"], status="failed")

    [delivery] = await until(failed)
    assert delivery["last_status_code"] == 302
    assert "redirect" in delivery["last_error"]
    assert {r.path for r in receiver.requests()} == {"/hook"}


async def test_replay_resends_a_delivered_event(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    hook = await register(backend, receiver.url, ["*"])
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 1)

    async def succeeded() -> list[dict[str, Any]]:
        return await deliveries(backend, hook["id"], status="succeeded")

    [delivery] = await until(succeeded)
    path = f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay"
    replayed = await backend.post(path)
    assert replayed.status_code == 202
    assert replayed.json() == {"delivery_id": delivery["id"], "status": "pending"}
    await receiver.wait_for_async(lambda got: len(got) == 2)
    first, again = receiver.requests()
    assert again.id == first.id and again.body == first.body
    verify(hook["secret"], again)
    missing = await backend.post(f"/v1/webhooks/{hook['id']}/deliveries/{uuid.uuid4()}/replay")
    assert missing.status_code == 404
    assert (await backend.post(f"/v1/webhooks/{hook['id']}/deliveries/x/replay")).status_code == 404


async def test_rotated_secret_signs_with_both_for_a_day(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    # Not "*": the rotation itself is an audit.recorded event (tests/integration/test_audit.py).
    hook = await register(backend, receiver.url, ["message.new"])
    rotated = await backend.post(f"/v1/webhooks/{hook['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != hook["secret"]
    assert rotated.json()["id"] == hook["id"]
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 1)
    request = receiver.requests()[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(new_secret, request)
    verify(hook["secret"], request)
    # Once the grace period is over, only the new secret signs.
    async with server.services.db.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s'"
        )
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 2)
    later = receiver.requests()[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    verify(new_secret, later)


async def test_deliveries_page_with_cursor_and_status(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    hook = await register(backend, "http://127.0.0.1:9/none", ["*"])
    seqs = [await emit(server, workspace, n=i) for i in range(5)]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await backend.get(f"/v1/webhooks/{hook['id']}/deliveries", params=params)).json()
        seen.extend(page["deliveries"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [d["seq"] for d in seen] == seqs[::-1], "newest first, each once"
    assert all(d["status"] == "pending" for d in seen)
    assert await deliveries(backend, hook["id"], status="succeeded") == []
    for bad in ({"cursor": "garbage!"}, {"limit": 0}, {"limit": 201}, {"status": "lost"}):
        response = await backend.get(f"/v1/webhooks/{hook['id']}/deliveries", params=bad)
        assert response.status_code in (400, 422), (bad, response.text)


async def test_concurrent_claims_never_share_a_row_and_a_lost_lease_is_retried(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    # Stop this server's worker so that the test alone claims.
    worker = server.services.webhooks
    assert worker is not None
    await worker.stop()
    hook = await register(backend, receiver.url, ["*"])
    for i in range(40):
        await emit(server, workspace, n=i)
    dsn = server.services.settings.database_url
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
    try:

        async def claim() -> list[rows.Claim]:
            """Claim rounds until nothing is due, like one worker."""
            mine: list[rows.Claim] = []
            async with pool.acquire() as conn:
                for _ in range(100):
                    batch = await rows.claim_due(conn, 7, 60, per_endpoint=3)
                    if not batch and sum(len(b) for b in claimed_so_far) >= 40:
                        break
                    assert len(batch) <= 3, "at most per_endpoint rows of one endpoint"
                    mine.extend(batch)
                    claimed_so_far.append(batch)
                    await asyncio.sleep(0)
            return mine

        claimed_so_far: list[list[rows.Claim]] = []
        # How the rows spread over the claimers is up to the scheduler (one may win them all on
        # a busy machine); what must hold is that none is claimed twice.
        batches = await asyncio.gather(*(claim() for _ in range(4)))
        claimed = [c.id for batch in batches for c in batch]
        assert len(claimed) == len(set(claimed)) == 40, "every row claimed exactly once"
        async with pool.acquire() as conn:
            assert await rows.claim_due(conn, 100, 60) == [], "leased rows are not due"
            # A claim whose worker "died": its lease ends and another worker may take it.
            [one] = [c for batch in batches for c in batch][:1]
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1", one.id
            )
            [again] = await rows.claim_due(conn, 100, 60)
            assert again.id == one.id and again.attempts == 2 and again.lease != one.lease
            # The dead worker's late outcome is fenced off by the new lease.
            stale = await rows.record_attempt(
                conn, one, status="succeeded", status_code=200, error=None
            )
            assert stale is False
            assert await rows.record_attempt(
                conn, again, status="succeeded", status_code=200, error=None
            )
    finally:
        await pool.close()
    assert len(await deliveries(backend, hook["id"], status="succeeded")) == 1
    assert receiver.requests() == []


async def test_queue_metrics(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    await register(backend, "http://127.0.0.1:9/none", ["*"])
    for _ in range(3):
        await emit(server, workspace)
    worker = server.services.webhooks
    assert worker is not None
    await asyncio.sleep(0.3)
    await worker.refresh_stats()
    metrics = (await backend.get("/metrics")).text
    depth = next(
        line for line in metrics.splitlines() if line.startswith("cariosan_webhook_queue_depth ")
    )
    assert float(depth.split()[1]) == 3
    age = next(
        line
        for line in metrics.splitlines()
        if line.startswith("cariosan_webhook_oldest_pending_age_seconds ")
    )
    assert float(age.split()[1]) > 0


def test_wire_body_is_valid_json_for_odd_payloads() -> None:
    # The SQL builds the body from the payload's JSON text: the join must stay valid JSON.
    for payload in ({}, {"a": 1}, {"nested": {"x": [1, 2]}, "s": '}{",'}):
        text = json.dumps(payload, separators=(",", ":"))
        tail = "" if text == "{}" else "," + text[1:-1]
        body = '{"type":"t","seq":1' + tail + "}"
        assert json.loads(body) == {"type": "t", "seq": 1, **payload}


async def test_a_host_name_is_sent_to_its_checked_address_with_its_host_header(
    server: RunningServer,
    workspace: NewWorkspace,
    backend: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    named = receiver.url.replace("127.0.0.1", "localhost")
    hook = await register(backend, named + "?tenant=a", ["*"])
    await emit(server, workspace)
    await receiver.wait_for_async(lambda got: len(got) == 1)
    request = receiver.requests()[0]
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.path == "/hook?tenant=a"
    verify(hook["secret"], request)


async def test_the_python_sdk_drives_the_webhook_api(
    server: RunningServer, workspace: NewWorkspace, receiver: Receiver
) -> None:
    async with ServerClient(server.url, workspace.api_secret) as chat:
        hook = await chat.create_webhook(receiver.url, ["*"])
        assert hook.secret is not None and hook.secret.startswith("whsec_")
        assert [w.id for w in await chat.list_webhooks()] == [hook.id]
        await emit(server, workspace)
        await receiver.wait_for_async(lambda got: len(got) == 1)
        page = await chat.list_deliveries(hook.id)
        assert len(page.deliveries) == 1 and page.next_cursor is None
        await chat.replay_delivery(hook.id, page.deliveries[0].id)
        await receiver.wait_for_async(lambda got: len(got) == 2)
        await chat.delete_webhook(hook.id)
        assert await chat.list_webhooks() == []


async def test_a_dead_receiver_cannot_take_every_slot(
    server: RunningServer, workspace: NewWorkspace, backend: httpx.AsyncClient
) -> None:
    # "dead" hangs past the 1 s timeout; "alive" answers at once.
    dead = Receiver(lambda _: Reply(200, delay=3)).start()
    alive = Receiver().start()
    try:
        await register(backend, dead.url, ["message.new"])
        await register(backend, alive.url, ["channel.created"])
        # One transaction: every delivery becomes due in the same numbering round, so what is
        # measured below is the worker's fairness, not how long the writes took.
        async with server.services.db.transaction() as conn:
            for i in range(40):
                await events.append_event(
                    conn, workspace.id, "message.new", {"message": {"n": i}}, channel_id="general"
                )
            await events.append_event(conn, workspace.id, "channel.created", {}, channel_id="g")
        await alive.wait_for_async(lambda got: len(got) == 1, timeout=10)
        await dead.wait_for_async(lambda got: len(got) >= 8, timeout=10)
        first = dead.requests()[0].at
        arrived = alive.requests()[0].at
        assert arrived - first < 0.9, "the live endpoint waited for the dead one's timeouts"
        concurrent = [r for r in dead.requests() if r.at - first < 0.9]
        assert len(concurrent) <= 8, "at most 8 attempts in flight per endpoint and server"
    finally:
        dead.stop()
        alive.stop()
