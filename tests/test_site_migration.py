"""The migration guides (docs/migration/*.md): their named examples, driven
by real clients, and every claim their tables make about triostream.

Claims about the other libraries were checked against their installed
sources when the pages were written; nothing here asserts on them.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio
import trio.testing
from site_examples import run_example

import triostream
from triostream import (
    BufferedStream,
    CloseReason,
    Connection,
    CorruptFrameError,
    FrameChannel,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Netstring,
    StartTLSRefusedError,
    WriteBufferFullError,
    open_connection,
)

Handler = Callable[[Connection], Awaitable[None]]


def handler_of(name: str) -> Handler:
    return cast(Handler, run_example(name)["handle"])


@asynccontextmanager
async def serving(handle: Handler, **options: Any) -> AsyncIterator[int]:
    """Serve ``handle`` on 127.0.0.1 (a free port) for the block; yields the port."""
    async with trio.open_nursery() as nursery:
        serve = functools.partial(triostream.serve_tcp, handle, 0, host="127.0.0.1", **options)
        listeners = await nursery.start(serve)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def connect(port: int) -> BufferedStream:
    """A client of the server on 127.0.0.1:``port``."""
    return BufferedStream(await trio.open_tcp_stream("127.0.0.1", port))


async def read_to_eof(stream: trio.abc.ReceiveStream, limit: int = 1 << 20) -> bytes:
    """Everything until EOF (bounded)."""
    data = b""
    with trio.fail_after(10):
        while len(data) < limit:
            chunk = await stream.receive_some()
            if not chunk:
                return data
            data += chunk
    raise AssertionError("too much data")


async def memory_pair(**options: Any) -> tuple[trio.abc.HalfCloseableStream, BufferedStream]:
    peer, transport = trio.testing.memory_stream_pair()
    return peer, BufferedStream(transport, **options)


# ------------------------------------------------------------ the named examples


async def test_asyncio_after_answers_requests() -> None:
    handle = handler_of("migration-asyncio-after")
    async with serving(handle) as port:
        client = await connect(port)
        with trio.fail_after(10):
            # two pipelined requests, one in a single write
            await client.send_all(b"UPPER\r\nLength: 5\r\n\r\nhelloUPPER\r\nlength:  3\r\n\r\nabc")
            assert await client.receive_exactly(len(b"200 5\r\nHELLO")) == b"200 5\r\nHELLO"
            assert await client.receive_exactly(len(b"200 3\r\nABC")) == b"200 3\r\nABC"
            await client.send_all(b"UPPER\r\n\r\n")  # no Length: an empty body
            assert await client.receive_exactly(len(b"200 0\r\n")) == b"200 0\r\n"
            await client.transport_stream.send_eof()  # type: ignore[attr-defined]
            assert await read_to_eof(client) == b""  # the server closed after a clean EOF
        await client.aclose()


async def refused_then_serving(
    handle: Handler,
    request_bytes: bytes,
    reply: bytes,
    served: Callable[[BufferedStream], Awaitable[None]],
) -> None:
    """One client sends ``request_bytes`` and EOF and gets exactly ``reply``;
    the server then goes on serving others (``served`` talks to one)."""
    async with serving(handle) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(request_bytes)
        await client.send_eof()
        assert await read_to_eof(client) == reply
        await client.aclose()
        again = BufferedStream(await trio.open_tcp_stream("127.0.0.1", port))
        with trio.fail_after(10):
            await served(again)
        await again.aclose()


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"UPPER\r\n" + b"X: " + b"x" * 9000, b"431 head too long\r\n"),  # no blank line within 8192 bytes
        (b"UPPER\r\nLength: 70000\r\n\r\n", b"413 bad length\r\n"),  # over max_buffer_size
        (b"UPPER\r\nLength: -1\r\n\r\n", b"413 bad length\r\n"),
        (b"UPPER\r\nLength: 10\r\n\r\nabc", b""),  # EOF inside the body: no reply
        (b"UPPER\r\nLen", b""),  # EOF inside the head
    ],
)
async def test_asyncio_after_refuses_bad_requests(request_bytes: bytes, reply: bytes) -> None:
    async def served(again: BufferedStream) -> None:
        await again.send_all(b"UPPER\r\nLength: 1\r\n\r\nz")
        assert await again.receive_exactly(8) == b"200 1\r\nZ"

    await refused_then_serving(handler_of("migration-asyncio-after"), request_bytes, reply, served)


async def test_tornado_after_session() -> None:
    handle = handler_of("migration-tornado-after")
    async with serving(handle) as port:
        client = await connect(port)
        with trio.fail_after(10):
            await client.send_all(b"PUT 5\r\nhello")
            assert await client.receive_line() == b"OK 5"
            await client.send_all(b"BOGUS\n")
            assert await client.receive_line() == b"ERR unknown command"
            await client.send_all(b"PUT " + b"9" * 3000 + b"\nPUT 2\nhi")  # an over-long line, then more
            assert await client.receive_line() == b"ERR line too long"
            assert await client.receive_line() == b"OK 2"  # the session went on
            await client.send_all(b"PUT 3\nabc")
            await client.transport_stream.send_eof()  # type: ignore[attr-defined]
            assert await client.receive_line() == b"OK 3"  # replied after the client's EOF
            assert await read_to_eof(client) == b""
        await client.aclose()


async def test_tornado_after_close_reason(capsys: pytest.CaptureFixture[str]) -> None:
    handle = handler_of("migration-tornado-after")
    async with serving(handle) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"PUT 1\nx")
        await client.send_eof()
        assert await read_to_eof(client) == b"OK 1\n"
        await client.aclose()
        out = ""
        with trio.fail_after(10):
            while "client left" not in out:
                await trio.sleep(0.01)
                out += capsys.readouterr().out
    assert "client left: CloseReason.PEER_EOF" in out


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"PUT 100000\n", b"ERR too large\n"),
        (b"PUT 10\nabc", b""),  # EOF inside the body: the client's session ends, no reply
        (b"PUT 1", b""),  # EOF inside a line
    ],
)
async def test_tornado_after_ends_bad_sessions(request_bytes: bytes, reply: bytes) -> None:
    async def served(again: BufferedStream) -> None:
        await again.send_all(b"PUT 1\n!")
        assert await again.receive_line() == b"OK 1"

    await refused_then_serving(handler_of("migration-tornado-after"), request_bytes, reply, served)


async def test_anyio_after_echoes_frames() -> None:
    namespace = run_example("migration-anyio-after")
    handle = cast(Handler, namespace["handle"])
    codec = cast(LengthPrefixed, namespace["CODEC"])
    assert codec == LengthPrefixed(max_size=1 << 20)
    async with serving(handle, max_buffer_size=codec.wire_limit) as port:
        channel = FrameChannel(await trio.open_tcp_stream("127.0.0.1", port), codec)
        with trio.fail_after(10):
            await channel.send(b"hello")
            assert await channel.receive() == b"HELLO"
            await channel.send(b"")
            assert await channel.receive() == b""
            big = b"a" * (1 << 20)  # the largest frame the codec allows
            await channel.send(big)
            assert await channel.receive() == big.upper()
        await channel.aclose()
        # a declared size over max_size ends that connection, before the body is sent
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(((1 << 20) + 1).to_bytes(4, "big"))
        assert await read_to_eof(client) == b""
        await client.aclose()


async def test_anyio_after_needs_room_for_a_whole_frame() -> None:
    namespace = run_example("migration-anyio-after")
    codec = cast(LengthPrefixed, namespace["CODEC"])
    assert codec.wire_limit == 4 + (1 << 20)
    _, stream = await memory_pair()  # 64 KiB buffer: too small for this codec
    with pytest.raises(ValueError):
        stream.frames(codec)


async def test_twisted_after_session(capsys: pytest.CaptureFixture[str]) -> None:
    handle = handler_of("migration-twisted-after")
    async with serving(handle) as port:
        client = await connect(port)
        with trio.fail_after(10):
            await client.send_all(b"DATA 5\r\nhelloDATA 0\r\nNOPE\r\n")
            assert await client.receive_line() == b"OK 5"
            assert await client.receive_line() == b"OK 0"
            assert await client.receive_line() == b"ERR unknown command"
            # 1023 bytes + \r\n: 1025 with the ending, as Twisted's MAX_LENGTH 1024 allowed (line + \r)
            await client.send_all(b"x" * 1023 + b"\r\n")
            assert await client.receive_line() == b"ERR unknown command"
            await client.send_all(b"x" * 1024 + b"\r\n")  # one more: too long
            assert await client.receive_line() == b"ERR line too long"
            await client.send_all(b"DATA 100000\n")
            assert await client.receive_line() == b"ERR too large"
            assert await read_to_eof(client) == b""
        await client.aclose()
        client = await connect(port)
        with trio.fail_after(10):
            await client.send_all(b"DATA 2\nabQUIT\nDATA 1\n")
            assert await read_to_eof(client) == b"OK 2\nBYE\n"  # nothing after QUIT is read
        await client.aclose()
        out = ""
        with trio.fail_after(10):
            while out.count("client left") < 2:
                await trio.sleep(0.01)
                out += capsys.readouterr().out
    assert "client left: CloseReason.LOCAL" in out


async def test_twisted_after_clean_eof_and_truncated_body(capsys: pytest.CaptureFixture[str]) -> None:
    handle = handler_of("migration-twisted-after")
    async with serving(handle) as port:
        for request, reply in [(b"DATA 1\nz", b"OK 1\n"), (b"DATA 9\nabc", b"")]:
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(request)
            await client.send_eof()
            assert await read_to_eof(client) == reply
            await client.aclose()
        out = ""
        with trio.fail_after(10):
            while out.count("client left") < 2:
                await trio.sleep(0.01)
                out += capsys.readouterr().out
    assert out.count("client left: CloseReason.PEER_EOF") == 2


# ------------------------------------------------------------ what a limit counts


async def test_max_size_counts_the_delimiter() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"12345678\n" * 3)
    with pytest.raises(FrameTooLongError):
        await stream.receive_until(b"\n", max_size=8)
    assert await stream.receive_until(b"\n", max_size=9) == b"12345678"
    with pytest.raises(FrameTooLongError):
        await stream.receive_line(max_size=8)
    assert await stream.receive_line(max_size=9) == b"12345678"
    assert await stream.receive_until(b"\n", max_size=9, keep_delimiter=True) == b"12345678\n"


async def test_max_size_as_tornado_max_bytes() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"01234\n012345\n")
    assert await stream.receive_until(b"\n", max_size=6, keep_delimiter=True) == b"01234\n"
    with pytest.raises(FrameTooLongError):
        await stream.receive_until(b"\n", max_size=6, keep_delimiter=True)


async def test_max_size_is_enforced_on_a_frame_that_arrived_whole() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"0123456789\n")
    with pytest.raises(FrameTooLongError):
        await stream.receive_until(b"\n", max_size=5)
    assert await stream.receive_until(b"\n", max_size=11) == b"0123456789"


async def test_max_size_defaults_to_max_buffer_size_and_may_not_exceed_it() -> None:
    peer, stream = await memory_pair(max_buffer_size=16)
    with pytest.raises(ValueError):
        await stream.receive_line(max_size=17)
    await peer.send_all(b"x" * 20)
    with pytest.raises(FrameTooLongError):
        await stream.receive_line()  # 16 bytes buffered, no line ending
    assert stream.peek() == b"x" * 16  # the buffer never holds more than max_buffer_size
    with pytest.raises(FrameTooLongError):
        await stream.receive_until_eof()


async def test_receive_exactly_is_bounded_and_receive_exactly_into_is_not() -> None:
    peer, stream = await memory_pair(max_buffer_size=16)
    with pytest.raises(ValueError):
        await stream.receive_exactly(17)
    await peer.send_all(b"y" * 40)
    target = bytearray(40)
    await stream.receive_exactly_into(target)  # fills it all; returns None
    assert target == b"y" * 40


async def test_twisted_max_length_maps_to_max_size_plus_the_ending() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"a" * 1024 + b"\r\n" + b"b" * 1025 + b"\r\n")
    assert await stream.receive_line(max_size=1026) == b"a" * 1024  # MAX_LENGTH = 1024 with b"\r\n"
    with pytest.raises(FrameTooLongError):
        await stream.receive_line(max_size=1026)


async def test_length_prefixed_max_size_counts_the_body() -> None:
    codec = LengthPrefixed(max_size=5)
    assert codec.encode(b"hello") == b"\x00\x00\x00\x05hello"
    assert LengthPrefixed(max_size=5, length_size=2).encode(b"hi") == b"\x00\x02hi"
    peer, stream = await memory_pair()
    await peer.send_all(codec.encode(b"hello") + b"\x00\x00\x00\x06")
    assert await stream.receive_frame(codec) == b"hello"
    with pytest.raises(FrameTooLongError) as caught:
        await stream.receive_frame(codec)  # the header alone is enough to refuse
    assert caught.value.declared == 6
    assert stream.peek() == b"\x00\x00\x00\x06"  # nothing consumed


# ------------------------------------------------------------ delimiters


async def test_receive_line_strips_lf_and_one_cr() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"lf\ncrlf\r\ntwo\r\r\n\n")
    assert await stream.receive_line() == b"lf"
    assert await stream.receive_line() == b"crlf"
    assert await stream.receive_line() == b"two\r"
    assert await stream.receive_line() == b""


async def test_tuple_delimiters_earliest_then_longest() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"a\r\nb\nc\rd")
    assert await stream.receive_until((b"\r", b"\r\n", b"\n")) == b"a"
    assert await stream.receive_until((b"\r", b"\r\n", b"\n")) == b"b"
    assert await stream.receive_until((b"\r", b"\r\n", b"\n")) == b"c"
    assert stream.peek() == b"d"


async def test_exact_crlf_delimiter() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"one\ntwo\r\n")
    await peer.send_eof()
    assert [frame async for frame in stream.iter_until(b"\r\n")] == [b"one\ntwo"]


# ------------------------------------------------------------ EOF inside a frame


@pytest.mark.parametrize(
    ("receive", "expected"),
    [
        (lambda s: s.receive_line(), None),
        (lambda s: s.receive_until(b"\r\n\r\n"), None),
        (lambda s: s.receive_exactly(10), 10),
        (lambda s: s.receive_until_regex(rb"\r?\n"), None),
    ],
)
async def test_eof_inside_a_frame_raises_and_consumes_nothing(
    receive: Callable[[BufferedStream], Awaitable[bytes]], expected: int | None
) -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"xyz")
    await peer.send_eof()
    with pytest.raises(IncompleteReadError) as caught:
        await receive(stream)
    assert isinstance(caught.value, EOFError)
    assert caught.value.partial == b"xyz"
    assert caught.value.expected == expected
    assert stream.peek() == b"xyz"  # still buffered
    with pytest.raises(IncompleteReadError):
        await receive(stream)  # the same again: nothing was consumed
    assert await stream.receive_until_eof() == b"xyz"


async def test_eof_inside_a_frame_leaves_bytes_for_receive_some() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"partial")
    await peer.send_eof()
    with pytest.raises(IncompleteReadError):
        await stream.receive_line()
    assert await stream.receive_some() == b"partial"
    assert await stream.receive_some() == b""


async def test_clean_eof_between_frames() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"last\n")
    await peer.send_eof()
    assert await stream.receive_line() == b"last"
    with pytest.raises(IncompleteReadError) as caught:
        await stream.receive_line()
    assert caught.value.partial == b""
    assert str(caught.value) == "EOF before a frame began"
    assert await stream.receive_some() == b""


async def test_iterators_end_at_a_clean_eof_and_raise_at_a_truncated_frame() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"a\nb\r\n")
    await peer.send_eof()
    assert [line async for line in stream.lines()] == [b"a", b"b"]

    peer, stream = await memory_pair()
    await peer.send_all(b"a\nunterminated")
    await peer.send_eof()
    lines = []
    with pytest.raises(IncompleteReadError) as caught:
        async for line in stream.lines():
            lines.append(line)
    assert lines == [b"a"]
    assert caught.value.partial == b"unterminated"


async def test_length_prefixed_eof_expected_counts_the_header() -> None:
    codec = LengthPrefixed(max_size=100)
    peer, stream = await memory_pair()
    await peer.send_all(b"\x00\x00\x00\x0aabc")
    await peer.send_eof()
    with pytest.raises(IncompleteReadError) as caught:
        await stream.receive_frame(codec)
    assert caught.value.partial == b"\x00\x00\x00\x0aabc"
    assert caught.value.expected == 14


async def test_frame_channel_raises_end_of_channel_at_a_clean_eof() -> None:
    codec = LengthPrefixed(max_size=100)
    peer, transport = trio.testing.memory_stream_pair()
    channel = FrameChannel(transport, codec)
    await peer.send_all(codec.encode(b"one"))
    await peer.send_eof()
    assert [frame async for frame in channel] == [b"one"]
    with pytest.raises(trio.EndOfChannel):
        await channel.receive()


# ------------------------------------------------------------ over-long frames


async def test_over_long_frame_consumes_nothing_and_discard_until_skips_it() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"x" * 100 + b"\nnext\n")
    with pytest.raises(FrameTooLongError):
        await stream.receive_line(max_size=50)
    assert stream.peek().startswith(b"x" * 100)
    assert await stream.discard_until(b"\n") == 101
    assert await stream.receive_line(max_size=50) == b"next"


async def test_discard_until_works_in_bounded_memory() -> None:
    peer, stream = await memory_pair(max_buffer_size=64)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            for _ in range(100):
                await peer.send_all(b"z" * 100)
            await peer.send_all(b"\nafter\n")

        nursery.start_soon(send)
        with pytest.raises(FrameTooLongError):
            await stream.receive_line()
        assert await stream.discard_until(b"\n") == 10001
        assert await stream.receive_line() == b"after"


async def test_codec_discard_mode_skips_an_over_long_frame() -> None:
    codec = LengthPrefixed(max_size=4, on_too_long="discard")
    peer, stream = await memory_pair()
    await peer.send_all(b"\x00\x00\x00\x64" + b"q" * 100 + codec.encode(b"ok"))
    with pytest.raises(FrameTooLongError) as caught:
        await stream.receive_frame(codec)
    assert caught.value.discarding
    assert caught.value.declared == 100
    assert await stream.receive_frame(codec) == b"ok"


async def test_netstring_bad_framing_is_corrupt_frame_error() -> None:
    codec = Netstring(max_size=100)
    assert codec.encode(b"hello") == b"5:hello,"
    peer, stream = await memory_pair()
    await peer.send_all(b"5:hello;")
    with pytest.raises(CorruptFrameError):
        await stream.receive_frame(codec)
    assert stream.peek() == b"5:hello;"


# ------------------------------------------------------------ errors with data buffered


class _FailAfterData(trio.abc.Stream):
    """A transport that delivers ``data`` once, then fails like a reset."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.data:
            data, self.data = self.data, b""
            return data
        raise trio.BrokenResourceError("connection reset")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_buffered_frames_come_before_a_transport_error() -> None:
    stream = BufferedStream(_FailAfterData(b"one\ntwo\n"))
    assert await stream.receive_line() == b"one"
    assert await stream.receive_line() == b"two"
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_line()


async def test_connection_delivers_buffered_frames_then_raises_broken() -> None:
    async with open_connection(_FailAfterData(b"one\ntwo\n")) as conn:
        await conn.wait_closed()  # the read-ahead met the error
        assert conn.close_reason is CloseReason.ERROR
        assert conn.close_error is not None
        assert await conn.receive_line() == b"one"
        assert await conn.receive_line() == b"two"
        with pytest.raises(trio.BrokenResourceError) as caught:
            await conn.receive_line()
        assert caught.value.__cause__ is conn.close_error


# ------------------------------------------------------------ concurrency, checkpoints, cancellation


async def test_concurrent_receives_raise_busy_resource_error() -> None:
    peer, stream = await memory_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_line)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.receive_line()
        with pytest.raises(trio.BusyResourceError):
            await stream.receive_exactly(1)
        await peer.send_all(b"done\n")
    assert stream.peek() == b""


async def test_concurrent_sends_raise_busy_resource_error() -> None:
    _, transport = trio.testing.lockstep_stream_pair()
    stream = BufferedStream(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, b"blocked")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.send_all(b"second")
        nursery.cancel_scope.cancel()


async def test_a_receive_from_the_buffer_is_a_checkpoint() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"a\nb\nc\n")
    assert await stream.receive_line() == b"a"
    with trio.testing.assert_checkpoints():
        assert await stream.receive_line() == b"b"  # already buffered
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_line()  # a cancelled scope stops it, with a frame buffered
    assert scope.cancelled_caught
    assert await stream.receive_line() == b"c"


async def test_iterators_hand_out_buffered_frames_without_a_checkpoint() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"a\nb\nc\n")
    await peer.send_eof()
    frames = stream.lines()
    assert await frames.__anext__() == b"a"
    with trio.testing.assert_no_checkpoints():
        assert await frames.__anext__() == b"b"


async def test_cancellation_is_all_or_nothing() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"half")
    with trio.move_on_after(0.01) as scope:
        await stream.receive_line()
    assert scope.cancelled_caught
    assert stream.peek() == b"half"
    await peer.send_all(b" line\nnext\n")
    assert await stream.receive_line() == b"half line"  # the bytes before the timeout too
    assert await stream.receive_line() == b"next"


async def test_cancelled_receive_exactly_into_loses_nothing() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"abc")
    target = bytearray(6)
    with trio.move_on_after(0.01):
        await stream.receive_exactly_into(target)
    assert stream.peek() == b"abc"
    await peer.send_all(b"def")
    await stream.receive_exactly_into(target)
    assert target == b"abcdef"


# ------------------------------------------------------------ buffer access


async def test_unreceive_pushes_in_front_of_the_buffer() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"one\ntwo\n")
    assert await stream.receive_line() == b"one"
    stream.unreceive(b"zero\n")  # in front of the buffered b"two\n", unlike anyio's feed_data
    assert stream.peek() == b"zero\ntwo\n"
    assert await stream.receive_line() == b"zero"
    assert await stream.receive_line() == b"two"


async def test_detach_returns_the_transport_and_the_leftover() -> None:
    peer, transport = trio.testing.memory_stream_pair()
    stream = BufferedStream(transport)
    await peer.send_all(b"line\nleft over")
    assert await stream.receive_line() == b"line"
    assert stream.detach() == (transport, b"left over")
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_line()


async def test_start_tls_is_refused_while_plaintext_is_buffered() -> None:
    peer, stream = await memory_pair()
    await peer.send_all(b"STARTTLS\r\ninjected")
    assert await stream.receive_line() == b"STARTTLS"
    with pytest.raises(StartTLSRefusedError):
        await stream.start_tls(ssl.create_default_context(), server_hostname="example.com")
    assert stream.peek() == b"injected"


async def test_trio_socket_streams_set_nodelay() -> None:
    async with serving(handler_of("migration-tornado-after")) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await client.aclose()


# ------------------------------------------------------------ connections: writes, EOF, closing


async def test_write_queue_is_bounded() -> None:
    peer, transport = trio.testing.lockstep_stream_pair()
    async with open_connection(transport, max_write_buffer_size=10, write_high_water=8) as conn:
        conn.write(b"x" * 10)
        with pytest.raises(WriteBufferFullError) as caught:
            conn.write(b"y")
        assert isinstance(caught.value, trio.WouldBlock)
        assert conn.write_buffer_size == 10  # nothing of the refused write was queued
        assert await peer.receive_some(100) == b"x" * 10
        await conn.flush()
        assert conn.write_buffer_size == 0


async def test_write_marks_default_like_asyncio() -> None:
    _, transport = trio.testing.memory_stream_pair()
    async with open_connection(transport) as conn:
        assert conn.max_write_buffer_size == 1 << 20
        assert conn.write_high_water == 64 * 1024
        assert conn.write_low_water == 16 * 1024  # a quarter of the high-water mark
        assert conn.max_buffer_size == 64 * 1024


async def test_drain_waits_for_the_low_water_mark() -> None:
    peer, transport = trio.testing.lockstep_stream_pair()
    async with open_connection(transport, write_high_water=8, write_low_water=2) as conn:
        conn.write(b"0123456789")
        drained = False

        async def drain() -> None:
            nonlocal drained
            await conn.drain()
            drained = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            assert not drained
            received = b""
            while len(received) < 10:
                received += await peer.receive_some(100)
        assert drained
        assert received == b"0123456789"


async def test_connection_send_all_queues_and_waits_above_the_high_water_mark() -> None:
    peer, transport = trio.testing.lockstep_stream_pair()
    async with open_connection(transport, write_high_water=4, write_low_water=0) as conn:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.send_all, b"0123456789")
            await trio.testing.wait_all_tasks_blocked()
            received = b""
            while len(received) < 10:
                received += await peer.receive_some(100)
        assert received == b"0123456789"


async def test_peer_eof_does_not_close_a_connection() -> None:
    peer, transport = trio.testing.memory_stream_pair()
    reasons: list[CloseReason | None] = []
    async with open_connection(transport) as conn:
        conn.add_close_callback(lambda c: reasons.append(c.close_reason))
        await peer.send_all(b"request\n")
        await peer.send_eof()
        assert await conn.receive_line() == b"request"
        with pytest.raises(IncompleteReadError):
            await conn.receive_line()
        assert conn.peer_eof
        assert not conn.closed
        assert conn.close_reason is None
        await conn.send_all(b"reply\n")  # still open for sending
        await conn.flush()
        assert await peer.receive_some() == b"reply\n"
    assert conn.closed
    assert conn.close_reason is CloseReason.PEER_EOF
    assert reasons == [CloseReason.PEER_EOF]  # once


async def test_close_callbacks_run_once_in_order() -> None:
    _, transport = trio.testing.memory_stream_pair()
    calls: list[str] = []
    async with open_connection(transport) as conn:
        conn.add_close_callback(lambda c: calls.append("first"))
        conn.add_close_callback(lambda c: calls.append("second"))
    assert conn.close_reason is CloseReason.LOCAL
    await conn.aclose()
    assert calls == ["first", "second"]


async def test_connection_send_eof_flushes_the_queue_first() -> None:
    peer, transport = trio.testing.memory_stream_pair()
    async with open_connection(transport) as conn:
        conn.write(b"queued")
        await conn.send_eof()
        assert await read_to_eof(peer) == b"queued"
        with pytest.raises(trio.ClosedResourceError):
            conn.write(b"more")


async def test_aclose_forcefully_drops_the_queue() -> None:
    peer, transport = trio.testing.lockstep_stream_pair()
    async with open_connection(transport) as conn:
        conn.write(b"never sent")
        await trio.aclose_forcefully(conn)
        assert conn.closed
        assert conn.write_buffer_size == 0
    await peer.aclose()
