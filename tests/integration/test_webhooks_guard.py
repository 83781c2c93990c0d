"""The outbound guard: without CARIOS_WEBHOOK_ALLOW_PRIVATE, webhooks never reach private,
loopback or link-local addresses, whether named by IP or by a host name resolving there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cariosan.db import events
from cariosan.domain.workspaces import NewWorkspace
from cariosan.webhooks.guard import TargetRefused, check_target
from tests.support.chat import bearer
from tests.support.server import RunningServer
from tests.support.webhook_receiver import Receiver

NON_PUBLIC = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "https://localhost/hook",
    "http://localhost:8080/hook",
]


@pytest.mark.parametrize("url", NON_PUBLIC)
async def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="non-public"):
        await check_target(url, allow_private=False)


@pytest.mark.parametrize("url", NON_PUBLIC)
async def test_allow_private_lets_them_through(url: str) -> None:
    target = await check_target(url, allow_private=True)
    assert target.url.startswith(("http://", "https://"))


async def test_a_name_is_connected_through_its_checked_address() -> None:
    target = await check_target("https://localhost:8443/a/b?x=1", allow_private=True)
    assert target.url == "https://127.0.0.1:8443/a/b?x=1"
    assert target.host == "localhost:8443" and target.sni == "localhost"
    public = await check_target("http://93.184.216.34/hook", allow_private=False)
    assert public.url == "http://93.184.216.34/hook" and public.sni is None
    six = await check_target("http://[2606:4700::1111]:81/", allow_private=False)
    assert six.url == "http://[2606:4700::1111]:81/"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///x", "file:///etc/passwd"])
async def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check_target(url, allow_private=True)


async def test_unresolvable_names_are_refused() -> None:
    with pytest.raises(TargetRefused, match="cannot resolve"):
        await check_target("http://no-such-host.invalid/hook", allow_private=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


async def test_the_worker_refuses_a_loopback_receiver(
    server: RunningServer, workspace: NewWorkspace, receiver: Receiver
) -> None:
    # The default settings: private targets not allowed.
    assert server.services.settings.webhook_allow_private is False
    async with server.client(headers=bearer(workspace.api_secret)) as http:
        literal = await http.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
        assert literal.status_code == 422, "an IP literal is refused at registration"
        assert "CARIOS_WEBHOOK_ALLOW_PRIVATE" in literal.json()["error"]["message"]
        # A name is only resolved when sending: registration accepts it, sending refuses it.
        named = receiver.url.replace("127.0.0.1", "localhost")
        created = await http.post("/v1/webhooks", json={"url": named, "events": ["*"]})
        assert created.status_code == 201, created.text
        hook = created.json()["id"]
        async with server.services.db.transaction() as conn:
            await events.append_event(conn, workspace.id, "message.new", {}, channel_id="c")
        for _ in range(100):
            page = (await http.get(f"/v1/webhooks/{hook}/deliveries")).json()["deliveries"]
            if page and page[0]["attempts"] >= 1 and page[0]["last_error"]:
                break
            await asyncio.sleep(0.1)
        [delivery] = page
        assert delivery["last_error"].startswith("refused:"), delivery
        assert delivery["status"] == "pending", "retried later, in case DNS changes"
    assert receiver.requests() == []
