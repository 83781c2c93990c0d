"""The HTTP plumbing shared by `ChatClient` and `ServerClient`: one connection pool, JSON in and
out, and typed errors for every failure."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from importlib import metadata
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from cariosan_client.errors import CariosanError, Internal, TransportError, error_from_response
from cariosan_client.retry import IDEMPOTENT_METHODS, RetryPolicy

T = TypeVar("T")

Params = Mapping[str, str | int | bool | None]

try:
    _VERSION = metadata.version("cariosan-client")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

USER_AGENT = f"cariosan-python/{_VERSION}"

# Looked up at each retry, so that tests can make the pauses instant.
sleep = asyncio.sleep


def segment(value: str) -> str:
    """`value` quoted as one path segment: `/`, `@`, `?`, `#` and `%` are escaped, and `.`/`..`
    (which URL resolution would collapse) are spelled `%2E`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"an id must be a non-empty string, not {value!r}")
    quoted = quote(value, safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return quoted


def _query(params: Params | None) -> dict[str, str | int] | None:
    if not params:
        return None
    query: dict[str, str | int] = {}
    for key, value in params.items():
        if value is None:
            continue
        query[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return query


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings every client of this process shares. httpx builds a new context per
    client otherwise, loading the whole CA bundle each time: about 70 ms of CPU per client,
    which an application creating a client per user pays again and again."""
    return httpx.create_ssl_context()


class Connection:
    """An `httpx.AsyncClient` bound to a Cariosan base URL; retries by its `RetryPolicy` and
    raises `CariosanError`s."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required, e.g. 'https://chat.example.com'")
        self.retry = retry if retry is not None else RetryPolicy()
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            verify=_tls_context(),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    @property
    def base_url(self) -> httpx.URL:
        return self._client.base_url

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    async def request(
        self,
        method: str,
        path: str,
        *,
        credential: str | None,
        params: Params | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request, again as the retry policy allows; return a 2xx response or raise the
        typed error. `path` may be a full URL (a presigned one: then `credential` is None, as
        the URL carries its own). `idempotent` defaults to what the HTTP method says."""
        headers = dict(headers or {})
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        if json is not None:
            content = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        attempt = 0
        while True:
            try:
                return await self._send(method, path, params, content, headers)
            except CariosanError as error:
                delay = self.retry.delay(attempt, error, idempotent=idempotent)
                if delay is None:
                    raise
            await sleep(delay)
            attempt += 1

    async def _send(
        self,
        method: str,
        path: str,
        params: Params | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method, path, params=_query(params), content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise TransportError.wrap(exc) from exc
        if not response.is_success:
            raise error_from_response(response)
        return response

    async def aclose(self) -> None:
        await self._client.aclose()


def decode(response: httpx.Response, type_: type[T]) -> T:
    """The response body as `type_`; a body that does not fit is `Internal`."""
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Internal(
            f"unexpected response from {response.request.method} {response.request.url.path}: "
            f"{exc}",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc
