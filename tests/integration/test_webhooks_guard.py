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
    # IPv6 forms that reach an IPv4 address are judged as that address.
    "http://[::ffff:0:a9fe:a9fe]/latest/meta-data",  # IPv4-translated 169.254.169.254
    "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped 169.254.169.254
    "http://[::127.0.0.1]/hook",  # IPv4-compatible
    "http://[::a00:1]/hook",  # IPv4-compatible 10.0.0.1
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 169.254.169.254
    "http://[64:ff9b:1::808:808]/hook",  # NAT64 local-use prefix: private by definition
    "http://[2002:7f00:1::1]/hook",  # 6to4 127.0.0.1
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
    "http://[2001:0:a9fe:a9fe::1]/hook",  # Teredo, server 169.254.169.254
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


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::808:808",  # NAT64 8.8.8.8
        "2002:808:808::1",  # 6to4 8.8.8.8
        "::ffff:808:808",  # IPv4-mapped 8.8.8.8
        "2001:0:808:808::f7f7:f7f7",  # Teredo: server 8.8.8.8, client 8.8.8.8
    ],
)
async def test_ipv6_forms_of_a_public_ipv4_address_stay_allowed(address: str) -> None:
    target = await check_target(f"http://[{address}]/hook", allow_private=False)
    assert target.url == f"http://[{address}]/hook"


async def test_the_checked_address_is_the_one_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a name answers a public address to the check, then loopback. The
    target names the checked address, so nothing resolves the name again before connecting."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        asked.append(host)
        return [(2, 1, 6, "", (address, port)) for address in answers.pop(0)]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    target = await check_target("https://hooks.example.com/in?key=k", allow_private=False)
    assert asked == ["hooks.example.com"]
    assert target.url == "https://93.184.216.34/in?key=k"
    assert target.host == "hooks.example.com" and target.sni == "hooks.example.com"
    # A name with any non-public answer is refused, even when another answer is public.
    answers[:] = [["93.184.216.34", "::ffff:0:7f00:1"]]
    with pytest.raises(TargetRefused, match="non-public"):
        await check_target("https://hooks.example.com/in", allow_private=False)


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
