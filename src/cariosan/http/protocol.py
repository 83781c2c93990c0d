"""The HTTP/1.1 protocol uvicorn runs, with a read deadline against slow clients (slowloris).

uvicorn only times out idle kept-alive connections: a client that opens a connection and sends
its request head or body a byte at a time holds it for ever. Here a request's head and body must
arrive within `read_seconds` of its first byte (or of the connection opening); otherwise the
connection is closed. Time spent by the app answering is not counted, and a WebSocket upgrade
hands over to the WebSocket protocol, whose own limits (frame size, heartbeats) then apply.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cariosan.obs.logging import get_logger

log = get_logger("cariosan.http")


class DeadlineHttpProtocol(HttpToolsProtocol):
    read_seconds: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("request_read_timeout", seconds=self.read_seconds)
            self.transport.close()


def http_protocol(read_seconds: float) -> type[DeadlineHttpProtocol]:
    """The protocol class for uvicorn's `http` option, with this deadline."""
    return type("CariosanHttpProtocol", (DeadlineHttpProtocol,), {"read_seconds": read_seconds})


# `serve --workers N`: uvicorn pickles its config into each worker, so the protocol goes by
# import path, and each worker sets its deadline from its own settings (server.app_factory).
WORKER_PROTOCOL = "cariosan.http.protocol:DeadlineHttpProtocol"


def set_worker_deadline(read_seconds: float) -> None:
    DeadlineHttpProtocol.read_seconds = read_seconds
