"""A codec written outside triostream, as `Codec` and `FrameDecoder` document
it, works everywhere the built-in ones do: `BufferedStream.receive_frame` and
`frames`, `FrameChannel`, and the sans-I/O `FrameParser`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from scripted import ScriptedStream

from triostream import (
    BufferedStream,
    Codec,
    CorruptFrameError,
    FrameChannel,
    FrameDecoder,
    FrameParser,
    FrameTooLongError,
    IncompleteReadError,
    ReceiveBuffer,
    open_connection,
)

_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclasses.dataclass(frozen=True)
class HexLength(Codec):
    """Frames prefixed by their length as two ASCII hex digits: ``b"05hello"``."""

    max_size: int = 255

    def __post_init__(self) -> None:
        if not 0 <= self.max_size <= 255:
            raise ValueError("two hex digits declare at most 255 bytes")

    @property
    def wire_limit(self) -> int:
        return 2 + self.max_size

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        if len(frame) > self.max_size:
            raise ValueError(f"frame of {len(frame)} bytes over max_size={self.max_size}")
        return b"%02x" % len(frame) + frame

    def decoder(self) -> FrameDecoder:
        return HexLengthDecoder(self.max_size)


class HexLengthDecoder(FrameDecoder):
    """Only the buffer's public methods; consumes a whole frame or nothing."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        if len(buffer) < 2:
            return None
        header = buffer.peek(2)
        if not _HEX.issuperset(header):
            raise CorruptFrameError(f"length {header!r} is not two hex digits", buffer.offset)
        size = int(header, 16)
        if size > self.max_size:
            raise FrameTooLongError(self.max_size, None, size)
        if len(buffer) < 2 + size:
            return None  # the header stays buffered until the body is there
        buffer.skip(2)
        frame = buffer.take_exactly(size)
        assert frame is not None
        return frame


FRAMES = [b"hello", b"", b"x" * 200, b"bye"]
WIRE = b"".join(HexLength().encode(f) for f in FRAMES)


def test_parser() -> None:
    parser = FrameParser(HexLength())
    got: list[bytes] = []
    for i in range(len(WIRE)):  # one byte at a time
        parser.feed(WIRE[i : i + 1])
        got.extend(parser)
    parser.feed_eof()
    assert list(parser) == []
    assert got == FRAMES


async def test_receive_frame_and_frames_one_byte_at_a_time() -> None:
    stream = BufferedStream(ScriptedStream([WIRE[i : i + 1] for i in range(len(WIRE))]))
    assert await stream.receive_frame(HexLength()) == b"hello"
    assert [f async for f in stream.frames(HexLength())] == FRAMES[1:]
    assert len(stream._decoders) == 1, "equal custom codecs share a decoder"


async def test_channel() -> None:
    left, right = trio.testing.memory_stream_pair()
    a, b = FrameChannel(left, HexLength(100)), FrameChannel(right, HexLength(100))
    await a.send(b"ping")
    assert await b.receive() == b"ping"
    with pytest.raises(ValueError, match="max_size"):
        await b.send(b"x" * 101)
    await a.aclose()
    with pytest.raises(trio.EndOfChannel):
        await b.receive()


async def test_errors_consume_nothing() -> None:
    stream = BufferedStream(ScriptedStream([b"03abc" + b"zz" + b"rest"]))
    assert await stream.receive_frame(HexLength()) == b"abc"
    with pytest.raises(CorruptFrameError) as info:
        await stream.receive_frame(HexLength())
    assert info.value.offset == 5
    assert stream.peek() == b"zzrest"

    parser = FrameParser(HexLength(16))
    parser.feed(b"ff")
    with pytest.raises(FrameTooLongError) as too_long:
        parser.next_frame()
    assert too_long.value.declared == 255
    assert parser.buffer.peek() == b"ff"


async def test_truncated_frame_at_eof() -> None:
    channel = FrameChannel(ScriptedStream([b"05hel"]), HexLength())
    with pytest.raises(IncompleteReadError) as info:
        await channel.receive()
    assert info.value.partial == b"05hel"
    parser = FrameParser(HexLength())
    parser.feed(b"05hel")
    parser.feed_eof()
    with pytest.raises(IncompleteReadError):
        parser.next_frame()


async def test_a_codec_too_big_for_the_stream_is_refused() -> None:
    stream = BufferedStream(ScriptedStream([]), max_buffer_size=100)
    with pytest.raises(ValueError, match="max_buffer_size"):
        await stream.receive_frame(HexLength())


class Endless(Codec):
    """A faulty codec: its decoder never finds a frame, whatever is buffered."""

    @property
    def wire_limit(self) -> int:
        return 100  # what it claims; its decoder does not keep the promise

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        return bytes(frame)

    def decoder(self) -> FrameDecoder:
        return EndlessDecoder()


class EndlessDecoder(FrameDecoder):
    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        return None


@pytest.mark.parametrize("how", ["receive_frame", "frames", "connection"])
async def test_a_decoder_that_never_completes_cannot_grow_the_buffer(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The buffer is bounded whatever the decoder does: once it is full and
    # still no frame, the receive raises FrameTooLongError (after a
    # checkpoint, nothing consumed) instead of reading on a byte at a time
    # (which here would swallow all 5000 bytes and then wait for more: the
    # virtual clock turns that wait into trio.TooSlowError at once).
    with trio.fail_after(60):
        await _fill_an_endless_decoder(how)


async def _fill_an_endless_decoder(how: str) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"x" * 5000)
    if how == "connection":
        async with open_connection(right, max_buffer_size=1000) as conn:
            with trio.testing.assert_checkpoints(), pytest.raises(FrameTooLongError) as info:
                await conn.receive_frame(Endless())
            assert info.value.max_size == 1000
            assert conn.peek() == b"x" * 1000
        return
    stream = BufferedStream(right, max_buffer_size=1000)
    with trio.testing.assert_checkpoints(), pytest.raises(FrameTooLongError) as info:
        if how == "receive_frame":
            await stream.receive_frame(Endless())
        else:
            async for _ in stream.frames(Endless()):
                raise AssertionError("no frame")
    assert info.value.max_size == 1000
    assert stream.peek() == b"x" * 1000  # bounded, and nothing consumed


class _Counted(bytes):
    """A frame that counts the calls of ``len`` on it."""

    lens = 0

    def __len__(self) -> int:
        _Counted.lens += 1
        return bytes.__len__(self)


@dataclasses.dataclass(frozen=True)
class PeekingHexLength(HexLength):
    """`HexLength` whose decoder also cuts ahead for the frame iterators
    (`FrameDecoder.bind_peek`), answering with ``items`` items: ``(frames,
    extra)``, ``+ drained``, ``+ size``."""

    items: int = 4

    def decoder(self) -> FrameDecoder:
        return PeekingHexLengthDecoder(self.max_size, self.items)


class PeekingHexLengthDecoder(HexLengthDecoder):
    def __init__(self, max_size: int, items: int) -> None:
        super().__init__(max_size)
        self.items = items

    def bind_peek(self, buffer: ReceiveBuffer) -> Callable[[int], Any]:
        return functools.partial(self.peek_frames, buffer)

    def peek_frames(self, buffer: ReceiveBuffer, window: int) -> Any:
        # Only the public methods: peek() copies the buffered bytes (fine here).
        data = buffer.peek()
        frames: list[bytes] = []
        pos = size = 0
        while pos + 2 <= min(len(data), window) and _HEX.issuperset(data[pos : pos + 2]):
            end = pos + 2 + int(data[pos : pos + 2], 16)
            if end > len(data) or end - pos - 2 > self.max_size:
                break
            frames.append(_Counted(data[pos + 2 : end]))
            size += end - pos
            pos = end
        if not frames:
            return None
        # Every frame here is as long as its bytes plus the 2-byte header.
        return (frames, 2, False, size)[: self.items]


@pytest.mark.parametrize("items", [2, 3, 4])
async def test_a_decoder_that_cuts_ahead_hands_out_its_frames_in_order_and_consumes_each(items: int) -> None:
    # (frames, extra), + drained, + size (the bytes they occupy in all): the
    # frame iterator hands the cut frames out one by one; breaking out, or
    # another receive, finds the next frame still buffered.
    frames = [bytes([65 + i % 26]) * (i % 7) for i in range(40)]
    wire = b"".join(HexLength().encode(f) for f in frames)
    codec = PeekingHexLength(items=items)
    stream = BufferedStream(ScriptedStream([wire[i : i + 37] for i in range(0, len(wire), 37)]))
    got: list[bytes] = []
    async for frame in stream.frames(codec):
        got.append(frame)
        if len(got) == 5:
            break
    got.append(await stream.receive_frame(codec))  # the next frame: consumed by nothing before
    async for frame in stream.frames(codec):
        got.append(frame)
    assert got == frames
    assert stream.peek() == b""


async def test_a_cut_s_size_spares_the_iterator_adding_up_its_frames() -> None:
    # Once every frame of a cut is out, the iterator moves the buffer's
    # cursor past them all: by the size the peek gave, without a len() per
    # frame (a 2-tuple's or 3-tuple's frames are added up).
    frames = [b"abc" * (i % 5) for i in range(30)]
    wire = b"".join(HexLength().encode(f) for f in frames)
    for items, lens in [(4, 0), (3, 30)]:
        stream = BufferedStream(ScriptedStream([wire]))
        _Counted.lens = 0
        got = [frame async for frame in stream.frames(PeekingHexLength(items=items))]
        assert _Counted.lens == lens
        assert got == frames
