"""`/docs` works with no way out to the internet and shows exactly `/openapi.json`; `/` of
`serve` names the product and links to the docs."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """These tests only read pages that are the same on every server: one serves them all."""
    return shared_server


class _References(HTMLParser):
    """Every URL a page makes the browser fetch or offers as a link."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


def _references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


async def test_docs_page_references_only_this_server(server: RunningServer) -> None:
    async with server.client() as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        found = _references(page.text)
        assert found.urls, "the page loads its UI from somewhere"
        for url in found.urls:
            assert url.startswith("/") and not url.startswith("//"), f"outside URL {url!r}"
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        inline = "\n".join(found.scripts)
        assert "http://" not in inline and "https://" not in inline
        # The UI reads the published schema itself, not a copy embedded in the page.
        assert 'url: "/openapi.json"' in inline
        assert "validatorUrl: null" in inline  # no badge fetched from the public validator


async def test_docs_assets_are_an_allowlist(server: RunningServer) -> None:
    async with server.client() as http:
        assert (await http.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
        assert (await http.get("/docs/assets/index.j2")).status_code == 404
        assert (await http.get("/docs/assets/..%2F__init__.py")).status_code == 404


async def test_home_page_of_serve_names_the_product(server: RunningServer) -> None:
    async with server.client() as http:
        page = await http.get("/")
        token = await http.post("/demo/token", json={"user_id": "alice"})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Cariosan" in page.text
    assert "/docs" in _references(page.text).urls
    # The demo app and the endpoint that hands it tokens exist only in `cariosan dev`.
    assert 'data-testid="channel-list"' not in page.text
    assert token.status_code in {404, 405}
