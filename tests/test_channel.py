"""Frames over streams: BufferedStream.frames/receive_frame and FrameChannel."""

from __future__ import annotations

import functools
import random

import pytest
import trio
import trio.testing
from scripted import ScriptedStream

from triostream import (
    BufferedStream,
    Codec,
    CorruptFrameError,
    FrameChannel,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Lines,
    Netstring,
    VarintPrefixed,
)

CODECS: list[Codec] = [Lines(100), LengthPrefixed(1000), Netstring(1000), VarintPrefixed(1000)]


# ---------------------------------------------------------------- BufferedStream


@pytest.mark.parametrize("codec", CODECS, ids=repr)
async def test_receive_frame_and_frames(codec: Codec) -> None:
    frames = [b"one", b"", b"three"]
    wire = b"".join(codec.encode(f) for f in frames)
    stream = BufferedStream(ScriptedStream([wire[i : i + 2] for i in range(0, len(wire), 2)]))
    assert await stream.receive_frame(codec) == b"one"
    assert [f async for f in stream.frames(codec)] == [b"", b"three"]
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_frame(codec)
    assert info.value.partial == b""


async def test_receive_frame_checkpoints_and_nowait() -> None:
    codec = LengthPrefixed(100)
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(codec.encode(b"a") + codec.encode(b"b") + codec.encode(b"c"))
    with trio.testing.assert_checkpoints():
        assert await stream.receive_frame(codec) == b"a"
    with trio.testing.assert_checkpoints():
        assert await stream.receive_frame(codec) == b"b"  # buffered: still a checkpoint
    with trio.testing.assert_no_checkpoints():
        assert stream.receive_frame_nowait(codec) == b"c"
        with pytest.raises(trio.WouldBlock):
            stream.receive_frame_nowait(codec)
    with trio.CancelScope() as scope:
        await left.send_all(codec.encode(b"d"))
        assert stream.peek() == b""
        await stream.receive_exactly(0)
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await stream.receive_frame(codec)
    assert await stream.receive_frame(codec) == b"d", "a cancelled receive consumed nothing"


async def test_codec_must_fit_the_buffer() -> None:
    _, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right, max_buffer_size=100)
    with pytest.raises(ValueError, match="max_buffer_size"):
        await stream.receive_frame(LengthPrefixed(1000))


async def test_discard_mode_state_persists_across_calls() -> None:
    codec = LengthPrefixed(10, on_too_long="discard")
    big = LengthPrefixed(10_000).encode(b"B" * 3000)
    chunks = [codec.encode(b"ok"), *[big[i : i + 100] for i in range(0, len(big), 100)], codec.encode(b"next")]
    transport = ScriptedStream(chunks)
    stream = BufferedStream(transport, max_buffer_size=256, receive_size=100)
    assert await stream.receive_frame(codec) == b"ok"
    with pytest.raises(FrameTooLongError):
        await stream.receive_frame(codec)
    assert await stream.receive_frame(codec) == b"next"
    assert all(r is not None and r <= 100 for r in transport.requests)


async def test_corrupt_frame_consumes_nothing() -> None:
    stream = BufferedStream(ScriptedStream([b"3:abc,3x:abc,"]))
    assert await stream.receive_frame(Netstring(100)) == b"abc"
    with pytest.raises(CorruptFrameError) as info:
        await stream.receive_frame(Netstring(100))
    assert info.value.offset == 7
    assert stream.peek() == b"3x:abc,"


# ---------------------------------------------------------------- FrameChannel


async def test_channel_round_trip_over_memory_streams() -> None:
    left, right = trio.testing.memory_stream_pair()
    a = FrameChannel(left, Netstring(1000))
    b = FrameChannel(BufferedStream(right), Netstring(1000))
    await a.send(b"hello")
    await a.send(b"")
    assert await b.receive() == b"hello"
    assert b.receive_nowait() == b""
    with pytest.raises(trio.WouldBlock):
        b.receive_nowait()
    await b.send(b"back")
    assert await a.receive() == b"back"
    with pytest.raises(ValueError):
        await a.send(b"x" * 1001)  # refused before sending anything
    await a.aclose()
    with pytest.raises(trio.EndOfChannel):
        await b.receive()
    with pytest.raises(trio.ClosedResourceError):
        await a.send(b"late")


async def test_channel_send_and_receive_are_checkpoints() -> None:
    left, right = trio.testing.memory_stream_pair()
    a, b = FrameChannel(left, Lines(100)), FrameChannel(right, Lines(100))
    with trio.testing.assert_checkpoints():
        await a.send(b"one")
    await a.send(b"two")
    with trio.testing.assert_checkpoints():
        assert await b.receive() == b"one"  # reads the transport
    with trio.testing.assert_checkpoints():
        assert await b.receive() == b"two"  # already buffered
    with trio.testing.assert_checkpoints(), pytest.raises(ValueError):
        await a.send(b"x" * 200)  # refused by the codec: still a checkpoint, nothing sent
    await a.send(b"three")
    assert await b.receive() == b"three"


async def test_channel_truncated_last_frame() -> None:
    channel = FrameChannel(ScriptedStream([b"2:ok,5:abc"]), Netstring(100))
    assert [f async for f in _until_error(channel)] == [b"ok"]


async def _until_error(channel: FrameChannel):  # type: ignore[no-untyped-def]
    with pytest.raises(IncompleteReadError) as info:
        async for frame in channel:
            yield frame
    assert info.value.partial == b"5:abc"


async def test_channel_iteration_ends_at_clean_eof() -> None:
    codec = Lines(100)
    channel = FrameChannel(ScriptedStream([b"a\nb\r\n", b"c\n"]), codec)
    assert [f async for f in channel] == [b"a", b"b", b"c"]
    channel = FrameChannel(ScriptedStream([b"a\nb\r\n", b"c\n"]), codec)
    assert [f async for f in channel.frames()] == [b"a", b"b", b"c"]


async def test_channel_detach_leftover() -> None:
    channel = FrameChannel(ScriptedStream([b"STARTTLS\r\n\x16\x03\x01rest"]), Lines(100))
    assert await channel.receive() == b"STARTTLS"
    transport, leftover = channel.detach()
    assert isinstance(transport, ScriptedStream)
    assert leftover == b"\x16\x03\x01rest"
    with pytest.raises(trio.ClosedResourceError):
        await channel.receive()


async def test_channel_busy_and_checkpoints() -> None:
    left, right = trio.testing.lockstep_stream_pair()
    channel = FrameChannel(right, LengthPrefixed(100))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.receive)
        nursery.start_soon(channel.send, b"x")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await channel.receive()
        with pytest.raises(trio.BusyResourceError):
            await channel.send(b"y")
        assert await left.receive_some() == LengthPrefixed(100).encode(b"x")
        await left.send_all(LengthPrefixed(100).encode(b"z"))
    with trio.testing.assert_checkpoints():
        await channel.aclose()


async def test_channel_over_loopback_tcp() -> None:
    codec = LengthPrefixed(1 << 20)
    payloads = [bytes([i % 256]) * (i * 997 % 70_000) for i in range(40)]

    async def echo(stream: trio.SocketStream) -> None:
        server = FrameChannel(stream, codec)
        async for frame in server:
            await server.send(frame[::-1])

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = FrameChannel(await trio.open_tcp_stream("127.0.0.1", port), codec)
        async with client:
            for payload in payloads:
                await client.send(payload)
                assert await client.receive() == payload[::-1]
        nursery.cancel_scope.cancel()


async def test_channel_cancellation_fuzz() -> None:
    """Random cancellations while frames arrive in random pieces: every frame
    is received exactly once, in order."""
    rng = random.Random(7)
    codec = VarintPrefixed(5000)
    frames = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))) for _ in range(400)]
    wire = b"".join(codec.encode(f) for f in frames)
    left, right = trio.testing.memory_stream_pair()
    channel = FrameChannel(BufferedStream(right, max_buffer_size=8192, receive_size=37), codec)
    got: list[bytes] = []
    cancelled = 0

    async def sender() -> None:
        pos = 0
        while pos < len(wire):
            size = rng.randrange(1, 200)
            await left.send_all(wire[pos : pos + size])
            pos += size
            await trio.sleep(rng.choice([0, 0.0001, 0.001]))
        await left.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        while True:
            with trio.move_on_after(rng.choice([0, 0.00005, 0.0005, 0.01])) as scope:
                try:
                    if rng.random() < 0.3:
                        async for frame in channel.frames():
                            got.append(frame)
                            if rng.random() < 0.1:
                                break
                        else:
                            break
                    else:
                        got.append(await channel.receive())
                except trio.EndOfChannel:
                    break
            cancelled += scope.cancelled_caught
    assert got == frames
    assert cancelled > 50
