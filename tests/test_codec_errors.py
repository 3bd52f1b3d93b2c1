"""When the codecs' errors fire (issue #9): over-long frames reported as soon
as a header or max_size bytes show them (also in discard mode), an EOF inside
a frame being skipped reported as a truncation everywhere, the sizes the
errors carry, and a checkpoint before every error of the frame iterators."""

from __future__ import annotations

import pickle
import struct

import pytest
import trio
import trio.testing
from scripted import ScriptedStream

from triostream import (
    BufferedStream,
    Codec,
    CorruptFrameError,
    Delimited,
    FrameChannel,
    FrameParser,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Lines,
    Netstring,
    VarintPrefixed,
)
from triostream._codecs import encode_varint

DISCARDING: list[Codec] = [
    Lines(10, on_too_long="discard"),
    Delimited((b"\r\n", b";"), 10, on_too_long="discard"),
    LengthPrefixed(10, on_too_long="discard"),
    LengthPrefixed(10, length_size=1, length_offset=2, on_too_long="discard"),
    Netstring(10, on_too_long="discard"),
    VarintPrefixed(10, on_too_long="discard"),
]


def over_long(codec: Codec, size: int) -> bytes:
    """A frame with a ``size``-byte body, on ``codec``'s wire, too long for it."""
    body = b"B" * size
    if isinstance(codec, Delimited):
        return body + codec.encode(b"")  # the body, then the delimiter
    if isinstance(codec, LengthPrefixed):
        loose = LengthPrefixed(1 << 20, length_size=codec.length_size, length_offset=codec.length_offset)
        return loose.encode(body)
    assert isinstance(codec, (Netstring, VarintPrefixed))
    return type(codec)(1 << 20).encode(body)


# ---------------------------------------------------------------- fail fast


@pytest.mark.parametrize(
    ("codec", "header", "declared"),
    [
        (LengthPrefixed(10, length_size=8, on_too_long="discard"), struct.pack(">Q", 1 << 63), 1 << 63),
        (LengthPrefixed(10, length_offset=1, on_too_long="discard"), b"T" + struct.pack(">I", 5000), 5000),
        (Netstring(10, on_too_long="discard"), b"9223372036854775807:", (1 << 63) - 1),
        (VarintPrefixed(10, on_too_long="discard"), encode_varint(1 << 62), 1 << 62),
        (LengthPrefixed(10, length_size=8), struct.pack(">Q", 1 << 63), 1 << 63),
        (Netstring(10), b"11:", 11),
        (VarintPrefixed(10), encode_varint(11), 11),
    ],
)
def test_over_long_frame_reported_on_the_call_that_parses_its_header(
    codec: Codec, header: bytes, declared: int
) -> None:
    parser = FrameParser(codec)
    parser.feed(header)
    with pytest.raises(FrameTooLongError) as info:
        parser.next_frame()
    error = info.value
    assert error.declared == declared
    assert str(declared) in str(error)
    assert error.max_size == 10
    discard = getattr(codec, "on_too_long", "raise") == "discard"
    assert error.discarding is discard
    if not discard:
        assert parser.buffer.peek() == header, "raise mode consumes nothing"
        return
    # The body keeps coming and is dropped as it arrives, never buffered.
    assert not parser.decoder.idle
    for _ in range(4):  # less than the smallest body declared above
        parser.feed(b"B" * 1000)
        assert parser.next_frame() is None
        assert len(parser.buffer) == 0


@pytest.mark.parametrize("codec", DISCARDING, ids=repr)
def test_discard_mode_fails_fast_then_returns_the_next_frame(codec: Codec) -> None:
    wire = codec.encode(b"ok") + over_long(codec, 250) + codec.encode(b"next")
    parser = FrameParser(codec)
    got: list[object] = []
    for i in range(0, len(wire), 7):
        parser.feed(wire[i : i + 7])
        while True:
            try:
                frame = parser.next_frame()
            except FrameTooLongError as exc:
                assert exc.discarding
                # Reported by the time max_size bytes (and a header) arrived,
                # long before the end of the 250-byte frame.
                assert i < 20, f"reported only at offset {i}"
                got.append("too long")
                continue
            if frame is None:
                break
            got.append(frame)
        assert len(parser.buffer) <= 16, "the over-long frame was buffered"
    assert got == [b"ok", "too long", b"next"]


async def test_a_peer_declaring_two_to_the_63_bytes_is_reported_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    codec = LengthPrefixed(10, length_size=8, on_too_long="discard")
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    channel = FrameChannel(stream, codec)
    await left.send_all(struct.pack(">Q", 1 << 63) + b"some of the body")
    # The peer sends nothing more and keeps the connection open.
    with trio.move_on_after(3600) as scope, pytest.raises(FrameTooLongError) as info:
        await channel.receive()
    assert not scope.cancelled_caught, "the error waited for the declared body"
    assert info.value.declared == 1 << 63
    assert stream.peek() == b"", "what arrived of the frame is dropped"


# ---------------------------------------------------------------- EOF inside a skipped frame


def truncated_over_long(codec: Codec) -> bytes:
    """The first 30 bytes of a 50-byte over-long frame (for the delimited
    codecs, 30 bytes without a delimiter)."""
    return over_long(codec, 50)[:30]


@pytest.mark.parametrize("codec", DISCARDING, ids=repr)
def test_parser_reports_eof_inside_a_skipped_frame(codec: Codec) -> None:
    parser = FrameParser(codec)
    parser.feed(codec.encode(b"ok") + truncated_over_long(codec))
    assert parser.next_frame() == b"ok"
    with pytest.raises(FrameTooLongError):
        parser.next_frame()
    parser.feed_eof()
    with pytest.raises(IncompleteReadError) as info:
        parser.next_frame()
    assert info.value.skipped > 0
    assert info.value.skipped + len(info.value.partial) == len(truncated_over_long(codec))
    with pytest.raises(IncompleteReadError):
        list(parser)


@pytest.mark.parametrize("codec", DISCARDING, ids=repr)
async def test_receive_frame_reports_eof_inside_a_skipped_frame(codec: Codec) -> None:
    stream = BufferedStream(ScriptedStream([codec.encode(b"ok"), truncated_over_long(codec)]))
    assert await stream.receive_frame(codec) == b"ok"
    with pytest.raises(FrameTooLongError):
        await stream.receive_frame(codec)
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_frame(codec)
    assert info.value.skipped > 0
    assert "skipped" in str(info.value)
    assert "EOF before a frame began" not in str(info.value)


@pytest.mark.parametrize("codec", DISCARDING, ids=repr)
async def test_channel_reports_eof_inside_a_skipped_frame(codec: Codec) -> None:
    channel = FrameChannel(ScriptedStream([codec.encode(b"ok"), truncated_over_long(codec)]), codec)
    assert await channel.receive() == b"ok"
    with pytest.raises(FrameTooLongError):
        await channel.receive()
    with pytest.raises(IncompleteReadError) as info:
        await channel.receive()  # not trio.EndOfChannel
    assert info.value.skipped > 0
    with pytest.raises(IncompleteReadError):
        channel.receive_nowait()


@pytest.mark.parametrize("codec", DISCARDING, ids=repr)
@pytest.mark.parametrize("through", ["stream", "channel"])
async def test_iterators_report_eof_inside_a_skipped_frame(codec: Codec, through: str) -> None:
    chunks = [codec.encode(b"ok"), truncated_over_long(codec)]
    channel = FrameChannel(ScriptedStream(chunks), codec)
    got: list[bytes] = []
    with pytest.raises(FrameTooLongError):
        async for frame in channel.stream.frames(codec) if through == "stream" else channel.frames():
            got.append(frame)
    assert got == [b"ok"]
    with pytest.raises(IncompleteReadError) as info:
        async for frame in channel.stream.frames(codec) if through == "stream" else channel.frames():
            got.append(frame)  # the iteration must not end as if the EOF were clean
    assert info.value.skipped > 0
    assert got == [b"ok"]


async def test_clean_eof_after_a_skipped_frame_still_ends_iteration() -> None:
    codec = LengthPrefixed(10, on_too_long="discard")
    channel = FrameChannel(ScriptedStream([over_long(codec, 50), codec.encode(b"last")]), codec)
    with pytest.raises(FrameTooLongError):
        await channel.receive()
    assert [f async for f in channel.frames()] == [b"last"]
    with pytest.raises(trio.EndOfChannel):
        await channel.receive()


# ---------------------------------------------------------------- what the errors carry


async def test_clean_eof_says_so() -> None:
    stream = BufferedStream(ScriptedStream([]))
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_frame(Netstring(10))
    assert info.value.partial == b""
    assert info.value.skipped == 0
    assert info.value.expected is None
    assert str(info.value) == "EOF before a frame began"


@pytest.mark.parametrize(
    ("codec", "cut"),
    [
        (LengthPrefixed(100), 7),  # header (4) + 3 of the 10 body bytes
        (LengthPrefixed(100, length_size=2, length_offset=3), 9),
        (Netstring(100), 6),  # b"10:abc"
        (Netstring(100), 13),  # everything but the b","
        (VarintPrefixed(100), 4),
    ],
    ids=repr,
)
async def test_truncated_frame_reports_its_declared_size(codec: Codec, cut: int) -> None:
    wire = codec.encode(b"0123456789")
    parser = FrameParser(codec)
    parser.feed(wire[:cut])
    parser.feed_eof()
    with pytest.raises(IncompleteReadError) as info:
        parser.next_frame()
    assert info.value.expected == len(wire), "expected: the frame's size on the wire"
    assert info.value.partial == wire[:cut]
    assert f"EOF after {cut} of {len(wire)} expected bytes" in str(info.value)
    for receive in ("stream", "channel"):
        channel = FrameChannel(ScriptedStream([wire[:cut]]), codec)
        with pytest.raises(IncompleteReadError) as info:
            if receive == "stream":
                await channel.stream.receive_frame(codec)
            else:
                await channel.receive()
        assert info.value.expected == len(wire)
        assert info.value.partial == wire[:cut]
        assert channel.stream.peek() == wire[:cut], "the partial frame stays buffered"


def test_errors_pickle_with_their_new_attributes() -> None:
    too_long = FrameTooLongError(10, None, 1 << 63, True)
    assert str(1 << 63) in str(too_long)
    again = pickle.loads(pickle.dumps(too_long))
    assert (again.max_size, again.declared, again.discarding, str(again)) == (10, 1 << 63, True, str(too_long))
    assert FrameTooLongError(10).declared is None
    incomplete = IncompleteReadError(b"", 300, 200)
    again_incomplete = pickle.loads(pickle.dumps(incomplete))
    assert (again_incomplete.partial, again_incomplete.expected, again_incomplete.skipped) == (b"", 300, 200)
    assert str(again_incomplete) == str(incomplete)


# ---------------------------------------------------------------- iterator checkpoints


@pytest.mark.parametrize(
    ("codec", "wire", "error"),
    [
        (Netstring(100), b"3:abc,3x:abc,", CorruptFrameError),
        (Lines(4), b"ab\nway too long\n", FrameTooLongError),
        (LengthPrefixed(100, length_size=2, length_adjustment=-2), b"\x00\x03a\x00\x01", CorruptFrameError),
    ],
)
async def test_every_error_of_the_frame_iterator_is_a_checkpoint(codec: Codec, wire: bytes, error: type) -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(wire)
    iterator = stream.frames(codec)
    await iterator.__anext__()  # reads the transport: the rest is buffered now
    with trio.testing.assert_checkpoints(), pytest.raises(error):
        await iterator.__anext__()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await iterator.__anext__()
    with pytest.raises(error):
        await iterator.__anext__()  # nothing was consumed


async def test_iterator_eof_error_from_the_buffer_is_a_checkpoint() -> None:
    stream = BufferedStream(ScriptedStream([b"\x00\x00\x00\x09abc"]))
    codec = LengthPrefixed(100)
    with pytest.raises(IncompleteReadError):
        await stream.receive_frame(codec)  # EOF is known now
    iterator = stream.frames(codec)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await iterator.__anext__()
    with trio.testing.assert_checkpoints(), pytest.raises(IncompleteReadError):
        await iterator.__anext__()


async def test_a_skip_already_done_is_reported_even_when_cancelled() -> None:
    """A discarding FrameTooLongError reports bytes already dropped: a
    Cancelled in its place would hide that a frame was skipped, so the
    iterator raises it after a schedule point that is not a cancel point."""
    codec = LengthPrefixed(10, on_too_long="discard")
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(codec.encode(b"ok") + over_long(codec, 50) + codec.encode(b"next"))
    iterator = stream.frames(codec)
    assert await iterator.__anext__() == b"ok"
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(FrameTooLongError) as info:
            await iterator.__anext__()
    assert info.value.discarding
    assert await iterator.__anext__() == b"next"


async def test_a_corrupt_frame_after_bytes_pushed_back_names_its_stream_offset() -> None:
    """A protocol that sniffs the first bytes and pushes them back
    (`BufferedStream.unreceive`) then reads a corrupt netstring: the error
    names the offset of the offending byte in the stream, where it is, not
    one shifted by the bytes pushed back (they count as not consumed)."""
    stream = BufferedStream(ScriptedStream([b"3:abc,", b"4x:abcd,"]))
    assert await stream.receive_frame(Netstring(100)) == b"abc"
    head = await stream.receive_exactly(2)
    stream.unreceive(head)
    with pytest.raises(CorruptFrameError) as caught:
        await stream.receive_frame(Netstring(100))
    assert caught.value.offset == 7  # the "x"
    assert await stream.receive_exactly(2) == b"4x"  # nothing consumed
