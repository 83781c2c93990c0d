"""The demo chat app of `cariosan dev` and the `/docs` page in a real browser (Debian's
Chromium, driven by Playwright): two users chat, type, upload, reload, and live through a
server restart. The screenshots in docs/images/ are taken here, so they show the app as it is."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from cariosan.config import Limits, Settings
from cariosan.db.bootstrap import prepare_database
from cariosan.domain.workspaces import NewWorkspace, create_workspace
from cariosan_client import ServerClient
from tests.support.server import RunningServer, free_port, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "Chromium is needed for the browser tests: apt-get install chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def demo_workspace(settings: Settings) -> NewWorkspace:
    prepared = await prepare_database(settings.require_database(), 10, pool_min=1, pool_max=1)
    try:
        return await create_workspace(prepared.database, "default")
    finally:
        await prepared.database.close()


@pytest.fixture
def dev_settings(settings: Settings, demo_workspace: NewWorkspace) -> Settings:
    """What `cariosan dev` serves: the demo app at / for the default workspace."""
    return settings.with_overrides(demo_workspace_id=str(demo_workspace.id))


@pytest.fixture
async def dev_server(dev_settings: Settings) -> AsyncIterator[RunningServer]:
    async with start_server(dev_settings) as running:
        yield running


async def _context(browser: Browser) -> BrowserContext:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return context


async def sign_in(browser: Browser, url: str, user: str) -> Page:
    page = await (await _context(browser)).new_page()
    await page.goto(f"{url}/?user={user}")
    await expect(page.get_by_test_id("connection-status")).to_have_text("connected")
    return page


async def open_channel(page: Page, name: str) -> None:
    await page.get_by_test_id("channel-item").filter(has_text=name).click()
    await expect(page.get_by_test_id("channel-item").filter(has_text=name)).to_have_class("active")


async def send(page: Page, text: str) -> None:
    await page.get_by_test_id("composer").fill(text)
    await page.get_by_test_id("send").click()


def png(width: int, height: int) -> bytes:
    """A small valid PNG (a blue square), made here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\x30\x60\xd0" * width
    raw = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


async def test_two_users_chat_both_ways_with_typing(
    browser: Browser, dev_server: RunningServer
) -> None:
    alice = await sign_in(browser, dev_server.url, "alice")
    bob = await sign_in(browser, dev_server.url, "bob")

    # Alice makes the channel with the new-channel form; it appears live in Bob's list.
    form = alice.get_by_test_id("new-channel")
    await form.get_by_test_id("new-channel-members").fill("bob")
    await form.get_by_test_id("new-channel-name").fill("lunch")
    await form.get_by_test_id("new-channel-submit").click()
    await expect(alice.get_by_test_id("channel-item").filter(has_text="lunch")).to_have_class(
        "active"
    )
    await expect(bob.get_by_test_id("channel-item").filter(has_text="lunch")).to_be_visible()
    await open_channel(bob, "lunch")

    # Typing shows on the other side, and clears when the message arrives.
    await alice.get_by_test_id("composer").fill("noodles at 12?")
    await expect(bob.get_by_test_id("typing-indicator")).to_have_text("alice is typing…")
    await alice.get_by_test_id("send").click()
    await expect(bob.get_by_test_id("message").filter(has_text="noodles at 12?")).to_have_count(1)
    await expect(bob.get_by_test_id("typing-indicator")).to_have_text("")

    await send(bob, "yes! @alice")
    await expect(alice.get_by_test_id("message").filter(has_text="yes! @alice")).to_have_count(1)
    await expect(alice.locator(".mention")).to_have_text("@alice")
    bob_dot = alice.locator('[data-testid=member][data-user-id="bob"] [data-testid=presence]')
    await expect(bob_dot).to_have_class("presence online")
    await expect(alice.get_by_test_id("message")).to_have_count(2)
    await expect(bob.get_by_test_id("message")).to_have_count(2)

    # A reaction from Bob shows for Alice.
    first = bob.get_by_test_id("message").filter(has_text="noodles")
    await first.hover()
    await first.get_by_test_id("react").click()
    await expect(
        alice.get_by_test_id("message").filter(has_text="noodles").get_by_test_id("reaction")
    ).to_have_text("like 1")

    # Alice edits her message and starts a thread on it; only authors get edit/delete buttons.
    mine = alice.get_by_test_id("message").filter(has_text="noodles")
    alice.once("dialog", lambda dialog: dialog.accept("ramen at 12?"))
    await mine.hover()
    await mine.get_by_test_id("edit").click()
    edited = bob.get_by_test_id("message").filter(has_text="ramen at 12?")
    await expect(edited).to_contain_text("(edited)")
    bob_own = bob.get_by_test_id("message").filter(has_text="yes!")
    await expect(bob_own.get_by_test_id("edit")).to_have_count(1)
    await expect(edited.get_by_test_id("edit")).to_have_count(0)
    ramen = alice.get_by_test_id("message-list").get_by_test_id("message").filter(has_text="ramen")
    await ramen.hover()
    await ramen.get_by_test_id("reply").click()
    await alice.get_by_test_id("thread-composer").fill("or dumplings")
    await alice.get_by_test_id("thread-send").click()
    await expect(alice.get_by_test_id("thread-list").get_by_test_id("message")).to_have_text(
        re.compile("or dumplings")
    )
    await expect(
        bob.get_by_test_id("message").filter(has_text="ramen").get_by_test_id("reply")
    ).to_have_text("1 reply")
    await expect(bob.get_by_test_id("message")).to_have_count(2)  # replies stay in the thread

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOTS / "demo-chat.png"))

    extra = alice.get_by_test_id("message-list").get_by_test_id("message")
    await send(alice, "typo")
    await expect(extra.filter(has_text="typo")).to_have_count(1)
    await extra.filter(has_text="typo").hover()
    await extra.filter(has_text="typo").get_by_test_id("delete").click()
    await expect(bob.get_by_test_id("message").filter(has_text="message deleted")).to_have_count(1)
    await expect(bob.get_by_test_id("message").filter(has_text="typo")).to_have_count(0)
    await alice.context.close()
    await bob.context.close()


async def test_image_upload_shows_its_preview_to_the_other_user(
    browser: Browser, dev_server: RunningServer, demo_workspace: NewWorkspace
) -> None:
    async with ServerClient(dev_server.url, demo_workspace.api_secret) as backend:
        for user in ("alice", "bob"):
            await backend.upsert_user(user)
        await backend.as_user("alice").create_channel(
            "group", ["alice", "bob"], id="photos", name="photos"
        )
    alice = await sign_in(browser, dev_server.url, "alice")
    bob = await sign_in(browser, dev_server.url, "bob")
    await open_channel(alice, "photos")
    await open_channel(bob, "photos")

    await alice.get_by_test_id("file-input").set_input_files(
        {"name": "square.png", "mimeType": "image/png", "buffer": png(64, 64)}
    )
    await expect(alice.get_by_test_id("upload-ready")).to_contain_text("square.png")
    await send(alice, "look")
    preview = bob.get_by_test_id("message").filter(has_text="look").get_by_test_id("image-preview")
    await expect(preview).to_be_visible()
    width = await preview.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width == 64, "the preview shows the uploaded image"
    await bob.screenshot(path=str(SCREENSHOTS / "demo-upload.png"))
    await alice.context.close()
    await bob.context.close()


async def test_unread_counts_stay_right_across_reloads(
    browser: Browser, dev_server: RunningServer, demo_workspace: NewWorkspace
) -> None:
    async with ServerClient(dev_server.url, demo_workspace.api_secret) as backend:
        for user in ("alice", "bob"):
            await backend.upsert_user(user)
        as_alice = backend.as_user("alice")
        await as_alice.create_channel("group", ["alice", "bob"], id="quiet", name="quiet")
        await as_alice.create_channel("group", ["alice", "bob"], id="busy", name="busy")
        bob = await sign_in(browser, dev_server.url, "bob")
        await open_channel(bob, "quiet")
        for n in range(3):
            await as_alice.send("busy", f"news {n}")
        busy = bob.get_by_test_id("channel-item").filter(has_text="busy")
        await expect(busy.get_by_test_id("unread-badge")).to_have_text("3")
        # Live reordering: the channel with the newest message is first.
        await expect(bob.get_by_test_id("channel-item").first).to_contain_text("busy")

        await bob.reload()
        await expect(bob.get_by_test_id("connection-status")).to_have_text("connected")
        await expect(busy.get_by_test_id("unread-badge")).to_have_text("3")
        await expect(
            bob.get_by_test_id("channel-item")
            .filter(has_text="quiet")
            .get_by_test_id("unread-badge")
        ).to_have_count(0)

        await open_channel(bob, "busy")
        await expect(bob.get_by_test_id("message")).to_have_count(3)
        await expect(busy.get_by_test_id("unread-badge")).to_have_count(0)
        await as_alice.send("quiet", "psst")
        quiet = bob.get_by_test_id("channel-item").filter(has_text="quiet")
        await expect(quiet.get_by_test_id("unread-badge")).to_have_text("1")

        await bob.reload()
        await expect(bob.get_by_test_id("connection-status")).to_have_text("connected")
        await expect(quiet.get_by_test_id("unread-badge")).to_have_text("1")
        await expect(busy.get_by_test_id("unread-badge")).to_have_count(0)
    await bob.context.close()


async def test_history_scrolls_back_to_the_first_message(
    browser: Browser, dev_settings: Settings, demo_workspace: NewWorkspace
) -> None:
    # 75 messages at once: more than a user's default send rate allows.
    unlimited = dev_settings.with_overrides(limits=Limits(user_messages_per_second=10_000))
    async with start_server(unlimited) as running:
        async with ServerClient(running.url, demo_workspace.api_secret) as backend:
            await backend.upsert_user("alice")
            as_alice = backend.as_user("alice")
            await as_alice.create_channel("group", ["alice"], id="log", name="log")
            for n in range(75):
                await as_alice.send("log", f"line {n:02d}")
        alice = await sign_in(browser, running.url, "alice")
        await open_channel(alice, "log")
        messages = alice.get_by_test_id("message")
        await expect(messages).to_have_count(30)
        await expect(messages.last).to_contain_text("line 74")
        for expected in (60, 75):
            await alice.get_by_test_id("message-list").evaluate("list => { list.scrollTop = 0 }")
            await expect(messages).to_have_count(expected)
        await expect(messages.first).to_contain_text("line 00")
        await alice.context.close()


async def test_a_server_restart_shows_reconnecting_then_every_missed_message_once(
    browser: Browser, dev_settings: Settings, demo_workspace: NewWorkspace
) -> None:
    port = free_port()
    async with start_server(dev_settings, port=port) as first:
        async with ServerClient(first.url, demo_workspace.api_secret) as backend:
            for user in ("alice", "bob"):
                await backend.upsert_user(user)
            await backend.as_user("alice").create_channel(
                "group", ["alice", "bob"], id="ops", name="ops"
            )
        bob = await sign_in(browser, first.url, "bob")
        await open_channel(bob, "ops")
    # The server is down: the page says so, while a second node on the same database takes
    # messages through the API.
    status = bob.get_by_test_id("connection-status")
    await expect(status).to_have_text("reconnecting")
    await bob.screenshot(path=str(SCREENSHOTS / "demo-reconnecting.png"))
    missed = [f"while you were away {n}" for n in range(5)]
    async with start_server(dev_settings) as other_node:
        async with ServerClient(other_node.url, demo_workspace.api_secret) as backend:
            for text in missed:
                await backend.as_user("alice").send("ops", text)
    async with start_server(dev_settings, port=port):
        await expect(status).to_have_text("connected")
        for text in missed:
            await expect(bob.get_by_test_id("message").filter(has_text=text)).to_have_count(1)
        await expect(bob.get_by_test_id("message")).to_have_count(len(missed))
        texts = await bob.get_by_test_id("message-text").all_inner_texts()
        assert texts == missed, "in order, each once"
    await bob.context.close()


async def test_docs_page_renders_offline_from_this_server(
    browser: Browser, server: RunningServer
) -> None:
    context = await _context(browser)
    page = await context.new_page()
    outside: list[str] = []

    def record(request: object) -> None:
        url = getattr(request, "url", "")
        if not url.startswith(server.url):
            outside.append(url)

    page.on("request", record)
    await page.goto(f"{server.url}/docs")
    await expect(page.locator(".opblock").first).to_be_visible()
    await expect(page.get_by_text("/v1/channels/{channel_id}/messages").first).to_be_visible()
    assert outside == [], f"the docs page fetched from outside: {outside}"
    await context.close()
