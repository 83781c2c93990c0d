"""Whole-frame writes (realtime/wire.py, realtime/connection.py): the frame bytes, and the order
of frames between direct writes and the queue."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from cariosan.realtime.connection import TOO_SLOW, LiveConnection
from cariosan.realtime.wire import text_frame


def _parse(data: bytes) -> Frame:
    """The frame as websockets itself reads it from a server (unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert reader.at_eof(), "bytes left after the frame"
        return frame
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frame_is_one_final_text_frame_of_any_length(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    frame = _parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload


class FakeWriter:
    """Stands in for the protocol: records frames, and is writable or not as told."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.open = True

    def is_open(self) -> bool:
        return self.open

    def can_write_now(self) -> bool:
        return self.open and self.writable.is_set()

    async def until_writable(self) -> None:
        await self.writable.wait()

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def texts(self) -> list[str]:
        return [bytes(_parse(f).data).decode() for f in self.frames]


def _connection(writer: FakeWriter, queue_size: int = 10) -> tuple[LiveConnection, list[str]]:
    others: list[str] = []
    connection = LiveConnection(
        uuid.uuid4(), "bob", queue_size=queue_size, on_other_sent=lambda: others.append("x")
    )
    connection.writer = writer
    connection.release()
    return connection, others


async def _drain(connection: LiveConnection, writer: FakeWriter) -> None:
    """What the gateway's send task does with the queue (realtime/gateway.py Session._send)."""
    while not connection.queue.empty():
        text, _ = connection.queue.get_nowait()
        assert await connection.write_queued(writer, text)


async def test_a_frame_goes_out_at_once_when_nothing_waits_before_it() -> None:
    writer = FakeWriter()
    connection, others = _connection(writer)
    built = text_frame(b'{"seq":1}')
    assert connection.deliver(1, '{"seq":1}', 0.0, built) is True
    assert writer.frames == [built]  # the bytes built once by the dispatcher, not a copy
    connection.send_frame('{"type":"pong"}')
    assert writer.texts() == ['{"seq":1}', '{"type":"pong"}']
    assert others == ["x"]
    assert connection.queue.empty()


async def test_frames_queue_behind_a_busy_socket_and_keep_their_order() -> None:
    writer = FakeWriter()
    connection, _ = _connection(writer)
    assert connection.deliver(1, "1") is True
    writer.writable.clear()  # the transport's buffer passed its high-water mark
    assert connection.deliver(2, "2") is False
    writer.writable.set()  # writable again, but 2 is still queued: 3 must not overtake it
    assert connection.deliver(3, "3") is False
    connection.send_frame("pong")
    await _drain(connection, writer)
    assert connection.deliver(4, "4") is True
    assert writer.texts() == ["1", "2", "3", "pong", "4"]


async def test_no_frame_overtakes_one_the_send_task_holds() -> None:
    writer = FakeWriter()
    connection, _ = _connection(writer)
    writer.writable.clear()
    connection.deliver(1, "1")
    # The send task took frame 1 and waits for the buffer to drain.
    text, _ = connection.queue.get_nowait()
    connection.sending = True
    writer.writable.set()
    assert connection.deliver(2, "2") is False  # queued: frame 1 is not written yet
    writer.write_frame(text_frame(text.encode()))
    connection.sending = False
    await _drain(connection, writer)
    assert writer.texts() == ["1", "2"]


async def test_a_socket_that_stays_busy_overflows_its_queue_and_is_closed_too_slow() -> None:
    writer = FakeWriter()
    connection, _ = _connection(writer, queue_size=3)
    writer.writable.clear()
    for seq in range(1, 4):
        connection.deliver(seq, str(seq))
    assert not connection.closed.is_set()
    connection.deliver(4, "4")
    assert connection.closed.is_set() and connection.close_code == TOO_SLOW
    assert connection.deliver(5, "5") is False
    assert writer.frames == []


async def test_events_held_before_the_first_client_frame_go_out_in_order_once() -> None:
    writer = FakeWriter()
    connection = LiveConnection(uuid.uuid4(), "bob", queue_size=10)
    connection.writer = writer
    connection.start_at(1)
    assert connection.deliver(1, "old") is False  # at or before the start: never sent
    assert connection.deliver(2, "2") is False  # held until release
    assert connection.deliver(3, "3") is False
    assert writer.frames == []
    connection.release()
    assert writer.texts() == ["2", "3"]
    assert connection.deliver(3, "3") is False  # already sent
    assert writer.texts() == ["2", "3"]
