"""The WebSocket protocol uvicorn runs, with a way for the gateway to write whole frames.

An event fanned out to N sockets is the same text frame N times: server frames are not masked,
so its bytes do not depend on the socket. Through ASGI, each copy would still go through the
app's send wrappers, uvicorn's `send` and websockets' framing, and it would wake one task per
socket. This protocol offers itself in the scope (`FRAME_WRITER`) so that the gateway can build
an event's frame once and hand the same bytes to every transport, without a task switch.

Only sockets without extensions take this path: with permessage-deflate agreed (which
CARIOS_WS_COMPRESSION allows), frames go through websockets as before, compressed per socket.
Everything else (the handshake, pings, client frames, the close) is uvicorn's.
"""

from __future__ import annotations

import struct

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

# The scope extension under which the protocol offers itself.
FRAME_WRITER = "cariosan.frame_writer"

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455, 5.2) carrying `payload` (UTF-8)."""
    length = len(payload)
    if length < 126:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, length) + payload


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, plus whole-frame writes for the gateway."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: it sees the extension.
        if self.handshake_initiated and not self.close_sent:
            self.scope["extensions"][FRAME_WRITER] = self  # type: ignore[index,assignment]

    # ---- the gateway's side (realtime/connection.py FrameWriter) ---------------------------

    def frames_allowed(self) -> bool:
        """Whole frames may be written: the handshake is done and no extension was agreed."""
        return self.handshake_complete and not self.conn.extensions

    def is_open(self) -> bool:
        return not (self.close_sent or self.disconnected or self.transport.is_closing())

    def can_write_now(self) -> bool:
        """Open, and the transport's buffer is below its high-water mark."""
        return self.writable.is_set() and self.is_open()

    async def until_writable(self) -> None:
        await self.writable.wait()

    def write_frame(self, frame: bytes) -> None:
        self.transport.write(frame)
