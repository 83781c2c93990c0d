"""No error reaches a client without the envelope, and no 500 carries a stack trace."""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Litestar, get

from cariosan.errors import RateLimited
from cariosan.http.errors import EXCEPTION_HANDLERS
from cariosan.http.middleware import wrap
from cariosan.obs.metrics import Metrics


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internals /srv/app.py line 42")


@get("/slow-down", sync_to_thread=False)
def slow_down() -> None:
    raise RateLimited("too many requests", retry_after=7)


def _app() -> Any:
    return wrap(
        Litestar([boom, slow_down], exception_handlers=EXCEPTION_HANDLERS, logging_config=None),
        Metrics(),
    )


async def test_unexpected_error_is_internal_without_traceback() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "INTERNAL"
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert "secret internals" not in response.text
    assert "RuntimeError" not in response.text


async def test_error_escaping_the_app_still_gets_the_envelope() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("raw failure")

    transport = httpx.ASGITransport(app=wrap(broken, Metrics()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/anything")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL"
    assert "raw failure" not in response.text


async def test_rate_limited_carries_retry_after() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/slow-down")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "RATE_LIMITED"
