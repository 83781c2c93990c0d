"""A real HTTP webhook receiver on 127.0.0.1 for tests: records every request, answers as told,
and can go down and come back on the same port. Runs in threads, so it serves sync system tests
and async integration tests alike."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    # time.time() at arrival: comparable with timestamps the server wrote (same machine clock).
    wall_time: float = 0.0

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Received], Reply]


class _Server(ThreadingHTTPServer):
    # A web server's usual listen backlog (socketserver's default is 5): a burst from several
    # webhook workers at once must not find connections refused or dropped.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The webhook worker closes each connection without reading the body ("ok") it does
        # not need, which resets the socket; a killed server resets its connections too. Both
        # are normal for a receiver and would otherwise print a traceback each.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Receiver:
    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda _: Reply())
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender went away mid-body (a node killed while delivering): like any
                    # web server, drop the request unanswered; the delivery is retried.
                    self.close_connection = True
                    return
                request = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                    time.time(),
                )
                with receiver._lock:
                    receiver.received.append(request)
                reply = receiver.responder(request)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        _Server.allow_reuse_address = True
        server = _Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: connections to the port are refused until `start()` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.requests()):
                return
            time.sleep(0.05)
        got = self.requests()
        raise AssertionError(f"the receiver did not get what was expected; it got {len(got)}")

    async def wait_for_async(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 20
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.requests()):
                return
            await asyncio.sleep(0.05)
        got = self.requests()
        raise AssertionError(f"the receiver did not get what was expected; it got {len(got)}")
