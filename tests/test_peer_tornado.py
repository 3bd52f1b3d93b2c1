"""Ports of Tornado's IOStream tests (tornado/test/iostream_test.py: the
read cases of TestIOStreamWebMixin, TestReadWriteMixin, TestIOStreamMixin,
TestIOStreamStartTLS and TestPipeIOStream; the streaming-callback cases
from Tornado 4.x, before 5.0 removed ``streaming_callback``) to
`BufferedStream`.

The API, mapped:

* ``read_bytes(n)`` -> ``receive_exactly(n)``; ``read_bytes(n,
  partial=True)`` -> ``receive_some(n)``; ``read_until(delim,
  max_bytes=m)`` -> ``receive_until(delim, max_size=m,
  keep_delimiter=True)``; ``read_until_regex`` -> ``receive_until_regex``;
  ``read_until_close()`` -> ``receive_until_eof()``; ``read_into(buf)`` ->
  ``receive_exactly_into(buf)``; ``write(data)`` -> ``send_all(data)``;
  ``ws.close()`` -> the peer's EOF; ``streaming_callback`` -> a loop of
  ``receive_some``; ``start_tls`` -> ``start_tls`` (which returns the
  stream to use).
* ``StreamClosedError`` at EOF -> `IncompleteReadError` (``.partial``,
  ``.expected``), the bytes kept; "Unsatisfiable read" (Tornado logs it
  and closes the stream) -> `FrameTooLongError`, nothing consumed and the
  stream still usable; ``max_buffer_size`` and ``read_chunk_size`` ->
  ``max_buffer_size`` and ``receive_size``.
* The stream pairs (a socket pair, SSL, a pipe) -> the ``kind`` fixture's
  scripted transport, TCP and a `Connection` on 127.0.0.1, `trio.lowlevel.FdStream` for
  the pipe tests, `trio.SSLStream` (through ``start_tls``) for TLS.

Sizes are smaller than Tornado's (1 MiB rather than 4 MiB for
test_large_read_until, 1 MiB through a 64 KiB buffer for test_flow_control,
200 kB rather than 1 MB for test_many_mixed_reads) to keep the suite fast.

Some tests here port a behaviour of Tornado's IOStream that has no test of
its own in iostream_test.py; their docstrings say so.

Left out: the tests of connecting and of HTTP (test_connection_closed,
test_read_until_close, test_write_while_connecting,
test_connection_refused, test_gaierror: `trio.open_tcp_stream`'s concern);
close callbacks and write futures (test_future_close_callback,
test_future_write); error logging and a socket closed under the stream
(test_async_read_error_logging, test_inline_read_error: a transport error
passes through, as test_read_until_close_with_error checks); read_into's
``partial=True`` (test_read_into_partial: there is no partial read into a
caller's buffer); test_typed_memoryview (``send_all`` hands its argument
to the transport unchanged: the transport's concern); the other Tornado
4.x callback styles of the same reads (test_streaming_callback_with_final_callback,
test_streaming_until_close_future, test_delayed_close_callback,
test_streaming_read_until_close_after_close); the SSL options and
hostname checks (test_check_hostname, WaitForHandshakeTest,
TestIOStreamCheckHostname: `trio.SSLStream` and the `ssl` module do them);
and TestStreamBuffer (Tornado's internal buffer).
"""

from __future__ import annotations

import hashlib
import os
import random
import ssl

import pytest
import trio
import trio.testing
import trustme
from peer_harness import Script, cancel_when_blocked, deadline, feed_and_read, open_pair, reading
from peer_harness import kind as kind  # the fixture (pytest finds it by name)

from triostream import BufferedStream, FrameTooLongError, IncompleteReadError, StartTLSRefusedError
from triostream.testing import open_socket_stream_pair

HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nHello"


@deadline
async def test_read_zero_bytes(kind: str) -> None:
    """iostream_test.py: test_read_zero_bytes."""
    async with open_pair(kind) as (s, p):
        await p.send(HTTP_RESPONSE)
        assert await s.receive_exactly(9) == b"HTTP/1.1 "
        assert await s.receive_exactly(0) == b""
        assert await s.receive_exactly(3) == b"200"


@deadline
async def test_future_interface(kind: str) -> None:
    """iostream_test.py: test_future_interface (a status line, the headers,
    a body of Content-Length bytes)."""
    async with open_pair(kind) as (s, p):
        await p.send(HTTP_RESPONSE)
        assert await s.receive_until(b"\r\n", keep_delimiter=True) == b"HTTP/1.1 200 OK\r\n"
        head = await s.receive_until(b"\r\n\r\n", keep_delimiter=True)
        assert head == b"Content-Length: 5\r\nX: y\r\n\r\n"
        length = int(head.split(b"\r\n")[0].split(b":")[1])
        assert await s.receive_exactly(length) == b"Hello"


@deadline
async def test_future_close_while_reading(kind: str) -> None:
    """iostream_test.py: test_future_close_while_reading (``read_bytes(1
    MiB)``, the peer closing first). ``receive_exactly`` over
    ``max_buffer_size`` is a ValueError (documented);
    ``receive_exactly_into`` takes the size, raises IncompleteReadError and
    pushes back what it had written."""
    async with open_pair(kind) as (s, p):
        await p.send(HTTP_RESPONSE)
        await p.eof()
        with pytest.raises(ValueError):
            await s.receive_exactly(1024 * 1024)
        buf = bytearray(1024 * 1024)
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_exactly_into(buf)
        assert info.value.partial == HTTP_RESPONSE
        assert info.value.expected == 1024 * 1024
        assert await s.receive_until_eof() == HTTP_RESPONSE


@deadline
async def test_future_read_until_close(kind: str) -> None:
    """iostream_test.py: test_future_read_until_close: the data comes
    through before EOF; then every read reports EOF at once."""
    async with open_pair(kind) as (s, p):
        await p.send(HTTP_RESPONSE)
        await p.eof()
        await s.receive_until(b"\r\n\r\n")
        assert await s.receive_until_eof() == b"Hello"
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_exactly(1)
        assert (info.value.partial, info.value.expected) == (b"", 1)
        assert await s.receive_some() == b""
        assert await s.receive_until_eof() == b""


@deadline
async def test_write_zero_bytes(kind: str) -> None:
    """iostream_test.py: test_write_zero_bytes: writing zero bytes returns
    (no endless loop) and sends nothing; the stream writes on after it."""
    async with open_pair(kind) as (s, p):
        await s.send_all(b"")
        await s.send_all(b"after")
        await s.send_eof()
        assert await p.received() == b"after"


@deadline
async def test_streaming_callback(kind: str) -> None:
    """iostream_test.py (Tornado 4.x): test_streaming_callback:
    ``read_bytes(6, streaming_callback=...)`` -> ``receive_some`` up to a
    count; the rest of the last chunk stays for the next read."""
    async with open_pair(kind) as (s, p):
        chunks: list[bytes] = []

        async def reader() -> None:
            got = 0
            while got < 6:
                chunk = await s.receive_some(6 - got)
                chunks.append(chunk)
                got += len(chunk)

        await feed_and_read(p, reader, [b"1234", b"5678"])
        assert chunks == [b"1234", b"56"]
        assert await s.receive_exactly(2) == b"78"


@deadline
async def test_streaming_callback_with_data_in_buffer(kind: str) -> None:
    """iostream_test.py (Tornado 4.x): test_streaming_callback_with_data_in_buffer."""
    async with open_pair(kind) as (s, p):
        await p.send(b"abcd\r\nefgh")
        assert await s.receive_until(b"\r\n", keep_delimiter=True) == b"abcd\r\n"
        assert await s.receive_some() == b"efgh"


@deadline
async def test_streaming_until_close(kind: str) -> None:
    """iostream_test.py (Tornado 4.x): test_streaming_until_close: each
    chunk as it arrives, then EOF."""
    async with open_pair(kind) as (s, p):

        async def reader() -> list[bytes]:
            out = []
            while chunk := await s.receive_some():
                out.append(chunk)
            return out

        assert await feed_and_read(p, reader, [b"1234", b"5678"], eof=True) == [b"1234", b"5678"]


@deadline
async def test_future_delayed_close_callback(kind: str) -> None:
    """iostream_test.py: test_future_delayed_close_callback: bytes buffered
    before the peer's close are still read after it."""
    async with open_pair(kind) as (s, p):
        await p.send(b"12")
        assert await s.receive_exactly(1) == b"1"
        await p.eof()
        assert await s.receive_exactly(1) == b"2"


@deadline
async def test_close_buffered_data(kind: str) -> None:
    """iostream_test.py: test_close_buffered_data (``read_chunk_size=256``
    -> ``receive_size=256``: the bytes wait in the transport, not in the
    stream's buffer, when the peer closes)."""
    async with open_pair(kind, receive_size=256) as (s, p):
        await p.send(b"A" * 512)
        assert await s.receive_exactly(256) == b"A" * 256
        await p.eof()
        assert await s.receive_exactly(256) == b"A" * 256
        assert await s.receive_some() == b""


@deadline
async def test_read_until_close_after_close(kind: str) -> None:
    """iostream_test.py: test_read_until_close_after_close."""
    async with open_pair(kind) as (s, p):
        await p.send(b"1234")
        await p.eof()
        assert await s.receive_exactly(1) == b"1"
        assert await s.receive_until_eof() == b"234"


@deadline
async def test_large_read_until(kind: str) -> None:
    """iostream_test.py: test_large_read_until (1 MiB in 1 KiB writes, then
    the delimiter; the delimiter search is incremental)."""
    num_kb = 1024
    async with open_pair(kind, max_buffer_size=num_kb * 1024 + 2) as (s, p):

        async def writer() -> None:
            for _ in range(num_kb):
                await p.send(b"A" * 1024, settle=False)
            await p.send(b"\r\n", settle=False)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            data = await s.receive_until(b"\r\n", keep_delimiter=True)
        assert data == b"A" * (num_kb * 1024) + b"\r\n"


@deadline
async def test_read_until_with_close_after_second_packet(kind: str) -> None:
    """iostream_test.py: test_read_until_with_close_after_second_packet
    (Tornado issue 2717: a second chunk smaller than the first, then EOF)."""
    async with open_pair(kind) as (s, p):
        assert await feed_and_read(p, lambda: s.receive_until(b"done"), [b"x" * 2048, b"done"], eof=True) == b"x" * 2048
        assert await s.receive_some() == b""


@deadline
async def test_read_until_unsatisfied_after_close(kind: str) -> None:
    """iostream_test.py: test_read_until_unsatisfied_after_close: EOF
    before the delimiter is an IncompleteReadError, not a too-long frame."""
    async with open_pair(kind) as (s, p):
        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, lambda: s.receive_until(b"done"), [b"x" * 2048, b"foo"], eof=True)
        assert info.value.partial == b"x" * 2048 + b"foo"
        assert info.value.expected is None
        assert s.peek() == b"x" * 2048 + b"foo"


@deadline
async def test_close_callback_with_pending_read(kind: str) -> None:
    """iostream_test.py: test_close_callback_with_pending_read: a read
    pending when the peer closes ends with EOF (Tornado: the close callback
    runs)."""
    async with open_pair(kind) as (s, p):
        await p.send(b"OK\r\n")
        assert await s.receive_until(b"\r\n", keep_delimiter=True) == b"OK\r\n"
        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, lambda: s.receive_until(b"\r\n"), [], eof=True)
        assert info.value.partial == b""


@deadline
async def test_write_memoryview(kind: str) -> None:
    """iostream_test.py: test_write_memoryview: a memoryview written
    arrives whole; 4 of its bytes read, the fifth stays."""
    async with open_pair(kind) as (s, p):
        await s.send_all(memoryview(b"hello"))
        await s.send_eof()
        assert await p.received() == b"hello"
        await p.send(memoryview(b"hello"))
        assert await s.receive_exactly(4) == b"hell"
        assert await s.receive_exactly(1) == b"o"


@deadline
async def test_read_bytes_partial(kind: str) -> None:
    """iostream_test.py: test_read_bytes_partial."""
    async with open_pair(kind) as (s, p):
        assert await feed_and_read(p, lambda: s.receive_some(50), [b"hello"]) == b"hello"
        assert await feed_and_read(p, lambda: s.receive_some(3), [b"world"]) == b"wor"
        assert await s.receive_exactly(0) == b""
        assert await s.receive_some() == b"ld"


@deadline
async def test_read_until_max_bytes(kind: str) -> None:
    """iostream_test.py: test_read_until_max_bytes: room to spare, just
    enough room, then too little (Tornado closes the stream; here
    FrameTooLongError, nothing consumed)."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(p, lambda: s.receive_until(b"def", max_size=50, keep_delimiter=True), [b"abcdef"])
        assert got == b"abcdef"
        got = await feed_and_read(p, lambda: s.receive_until(b"def", max_size=6, keep_delimiter=True), [b"abcdef"])
        assert got == b"abcdef"
        with pytest.raises(FrameTooLongError) as info:
            await feed_and_read(p, lambda: s.receive_until(b"def", max_size=5), [b"123456"])
        assert info.value.max_size == 5
        assert s.peek() == b"123456"


@deadline
async def test_read_until_max_bytes_inline(kind: str) -> None:
    """iostream_test.py: test_read_until_max_bytes_inline: the data is
    there before the read. The stream stays usable both ways."""
    async with open_pair(kind) as (s, p):
        await p.send(b"123456")
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"def", max_size=5)
        assert s.peek() == b"123456"
        await s.send_all(b"ERR\n")
        await s.send_eof()
        assert await p.received() == b"ERR\n"


@deadline
async def test_read_until_max_bytes_ignores_extra(kind: str) -> None:
    """iostream_test.py: test_read_until_max_bytes_ignores_extra: the
    delimiter arrives with the bytes that pass the limit, and still the
    read fails; with one byte more of room it succeeds."""
    async with open_pair(kind) as (s, p):
        await p.send(b"abcdef")
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"def", max_size=5)
        assert s.peek() == b"abcdef"
        assert await s.receive_until(b"def", max_size=6) == b"abc"


@deadline
async def test_read_until_regex_max_bytes(kind: str) -> None:
    """iostream_test.py: test_read_until_regex_max_bytes."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(
            p, lambda: s.receive_until_regex(b"def", max_size=50, keep_delimiter=True), [b"abcdef"]
        )
        assert got == b"abcdef"
        got = await feed_and_read(
            p, lambda: s.receive_until_regex(b"def", max_size=6, keep_delimiter=True), [b"abcdef"]
        )
        assert got == b"abcdef"
        with pytest.raises(FrameTooLongError):
            await feed_and_read(p, lambda: s.receive_until_regex(b"def", max_size=5), [b"123456"])
        assert s.peek() == b"123456"


@deadline
async def test_read_until_regex_max_bytes_inline(kind: str) -> None:
    """iostream_test.py: test_read_until_regex_max_bytes_inline."""
    async with open_pair(kind) as (s, p):
        await p.send(b"123456")
        with pytest.raises(FrameTooLongError):
            await s.receive_until_regex(b"def", max_size=5)
        assert s.peek() == b"123456"


@deadline
async def test_read_until_regex_max_bytes_ignores_extra(kind: str) -> None:
    """iostream_test.py: test_read_until_regex_max_bytes_ignores_extra."""
    async with open_pair(kind) as (s, p):
        await p.send(b"abcdef")
        with pytest.raises(FrameTooLongError):
            await s.receive_until_regex(b"def", max_size=5)
        assert s.peek() == b"abcdef"
        assert await s.receive_until_regex(b"def", max_size=6) == b"abc"


@deadline
async def test_small_reads_from_large_buffer(kind: str) -> None:
    """iostream_test.py: test_small_reads_from_large_buffer: 100 KiB
    through a 10 KiB buffer, 1 KiB at a time; the buffer never holds more
    than its size."""
    async with open_pair(kind, max_buffer_size=10 * 1024) as (s, p), trio.open_nursery() as nursery:
        nursery.start_soon(lambda: p.send(b"a" * 1024 * 100, settle=False))
        for _ in range(100):
            assert await s.receive_exactly(1024) == b"a" * 1024
            assert len(s.peek()) <= 10 * 1024


@deadline
async def test_small_read_untils_from_large_buffer(kind: str) -> None:
    """iostream_test.py: test_small_read_untils_from_large_buffer."""
    async with open_pair(kind, max_buffer_size=10 * 1024) as (s, p), trio.open_nursery() as nursery:
        nursery.start_soon(lambda: p.send((b"a" * 1023 + b"\n") * 100, settle=False))
        for _ in range(100):
            assert await s.receive_until(b"\n", max_size=4096, keep_delimiter=True) == b"a" * 1023 + b"\n"
            assert len(s.peek()) <= 10 * 1024


@deadline
async def test_flow_control(kind: str) -> None:
    """iostream_test.py: test_flow_control: the writer sends 16 times what
    the buffer holds; the reader takes it a buffer's worth at a time and
    the buffer stays within its bound."""
    size = 64 * 1024
    async with open_pair(kind, max_buffer_size=size) as (s, p), trio.open_nursery() as nursery:
        nursery.start_soon(lambda: p.send(b"a" * size * 16, settle=False))
        for _ in range(16):
            assert await s.receive_exactly(size) == b"a" * size
            assert len(s.peek()) <= size


@deadline
async def test_read_into(kind: str) -> None:
    """iostream_test.py: test_read_into: filled across two writes; from the
    buffer, then the transport; from the buffer alone."""
    async with open_pair(kind) as (s, p):
        buf = bytearray(10)
        assert await feed_and_read(p, lambda: s.receive_exactly_into(buf), [b"hello", b"world!!"]) is None
        assert bytes(buf) == b"helloworld"
        assert await feed_and_read(p, lambda: s.receive_exactly_into(buf), [b"1234567890"]) is None
        assert bytes(buf) == b"!!12345678"
        buf = bytearray(4)
        await p.send(b"abcdefghi")
        await s.receive_exactly_into(buf)
        assert bytes(buf) == b"90ab"
        assert await s.receive_exactly(7) == b"cdefghi"


@deadline
async def test_read_into_buffer_resizable(kind: str) -> None:
    """No Tornado test of its own (Tornado's read_into tests fill a
    caller's bytearray): once ``receive_exactly_into`` returns, it holds no
    view of the bytearray, which can be resized."""
    async with open_pair(kind) as (s, p):
        buf = bytearray(5)
        await feed_and_read(p, lambda: s.receive_exactly_into(buf), [b"hello"])
        assert bytes(buf) == b"hello"
        del buf[:]  # BufferError if a view of it were still held
        await p.send(b"worldworld")
        assert await s.receive_exactly(1) == b"w"
        buf = bytearray(4)
        await s.receive_exactly_into(buf)
        assert bytes(buf) == b"orld"
        del buf[:]
        assert buf == b""


@deadline
async def test_read_into_resizable_after_close(kind: str) -> None:
    """No Tornado test of its own (as above): after ``receive_exactly_into``
    raised IncompleteReadError, the bytearray can be resized while the
    exception lives, and the bytes written into it are back in the
    stream's buffer."""
    async with open_pair(kind) as (s, p):
        await p.send(b"ab")
        assert await s.receive_exactly(1) == b"a"
        buf = bytearray(10)
        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, lambda: s.receive_exactly_into(buf), [b"cd"], eof=True)
        assert info.value.partial == b"bcd"
        assert info.tb is not None  # the exception and its traceback (the call's frame) still live
        del buf[:]  # BufferError if a view of it were still held
        assert await s.receive_until_eof() == b"bcd"


@deadline
async def test_read_into_resizable_after_cancel(kind: str) -> None:
    """No Tornado test of its own (as above): a ``receive_exactly_into``
    cancelled while it waits holds no view of the bytearray afterwards, and
    pushed back what it had written."""
    async with open_pair(kind) as (s, p):
        await p.send(b"ab")
        buf = bytearray(10)
        assert await cancel_when_blocked(lambda: s.receive_exactly_into(buf))
        del buf[:]
        await p.send(b"cd")
        assert await s.receive_exactly(4) == b"abcd"


@deadline
async def test_read_into_zero_bytes(kind: str) -> None:
    """iostream_test.py: test_read_into_zero_bytes: an empty buffer is
    filled at once, with nothing sent (it does not wait for data), and
    consumes nothing."""
    async with open_pair(kind) as (s, p):
        buf = bytearray()
        await s.receive_exactly_into(buf)
        assert buf == b""
        await p.send(b"x")
        await s.receive_exactly_into(buf)
        assert await s.receive_exactly(1) == b"x"


@deadline
async def test_many_mixed_reads(kind: str) -> None:
    """iostream_test.py: test_many_mixed_reads: ``read_bytes`` and
    ``read_into`` in turn, at random sizes, against random writes (200 kB,
    seeded)."""
    nbytes = 200_000
    async with open_pair(kind) as (s, p):
        produce_hash = hashlib.sha1()
        consume_hash = hashlib.sha1()

        async def produce() -> None:
            rnd = random.Random(42)
            remaining = nbytes
            while remaining > 0:
                size = rnd.randint(1, min(1000, remaining))
                data = rnd.randbytes(size)
                produce_hash.update(data)
                await p.send(data, settle=False)
                remaining -= size

        async def consume() -> None:
            rnd = random.Random(7)
            remaining = nbytes
            while remaining > 0:
                size = rnd.randint(1, min(1000, remaining))
                if rnd.random() > 0.5:
                    consume_hash.update(await s.receive_exactly(size))
                else:
                    buf = bytearray(size)
                    await s.receive_exactly_into(buf)
                    consume_hash.update(buf)
                remaining -= size

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume)
        assert produce_hash.hexdigest() == consume_hash.hexdigest()


@deadline
async def test_read_until_close_with_error() -> None:
    """iostream_test.py: test_read_until_close_with_error (a read raising
    IOError). The error passes through, and the bytes that arrived before
    it stay buffered (documented)."""
    transport = Script()
    async with BufferedStream(transport) as s:
        async with reading(s.receive_until_eof) as reader:
            transport.feed(b"hello")
            await trio.testing.wait_all_tasks_blocked()
            transport.feed_error(OSError("boom"))
        with pytest.raises(OSError):
            await reader.result()
        assert s.peek() == b"hello"


@deadline
async def test_read_until_close_after_connection_reset() -> None:
    """No Tornado test of its own: Tornado's IOStream treats a connection
    reset as a close (``_is_connreset``); here the transport's error passes
    through, and the bytes buffered before it stay readable without the
    transport."""
    transport = Script()
    async with BufferedStream(transport) as s:
        transport.feed(b"1234")
        assert await s.receive_exactly(1) == b"1"
        transport.feed_error(trio.BrokenResourceError("reset"))
        with pytest.raises(trio.BrokenResourceError):
            await s.receive_until_eof()
        assert s.peek() == b"234"
        assert s.receive_exactly_nowait(3) == b"234"


@deadline
async def test_read_until_close_with_buffer_overflow(kind: str) -> None:
    """No Tornado test of its own: Tornado closes the stream on "Reached
    maximum read buffer size". Here ``receive_until_eof`` raises
    FrameTooLongError, consuming nothing; the buffer holds
    ``max_buffer_size`` bytes and the one-byte probe beyond them
    (documented)."""
    async with open_pair(kind, max_buffer_size=1024) as (s, p):
        with pytest.raises(FrameTooLongError) as info:
            await feed_and_read(p, s.receive_until_eof, [b"a" * 4096])
        assert info.value.max_size == 1024
        assert s.peek() == b"a" * 1025


@deadline
async def test_pipe_iostream() -> None:
    """iostream_test.py: test_pipe_iostream."""
    r, w = os.pipe()
    writer = trio.lowlevel.FdStream(w)
    async with BufferedStream(trio.lowlevel.FdStream(r)) as rs, writer:
        await writer.send_all(b"hel")
        await writer.send_all(b"lo world")
        assert await rs.receive_until(b" ", keep_delimiter=True) == b"hello "
        assert await rs.receive_exactly(3) == b"wor"
        await writer.aclose()
        assert await rs.receive_until_eof() == b"ld"


@deadline
async def test_pipe_iostream_big_write() -> None:
    """iostream_test.py: test_pipe_iostream_big_write (1 MiB, more than the
    pipe holds: ``receive_exactly_into``, as it is over
    ``max_buffer_size``)."""
    n = 1024 * 1024
    r, w = os.pipe()
    writer = trio.lowlevel.FdStream(w)
    async with BufferedStream(trio.lowlevel.FdStream(r)) as rs, writer:

        async def write() -> None:
            await writer.send_all(b"1" * n)
            await writer.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            buf = bytearray(n)
            await rs.receive_exactly_into(buf)
        assert buf == b"1" * n
        assert await rs.receive_some() == b""


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's test CA)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@deadline
async def test_start_tls_smtp(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """iostream_test.py: test_start_tls_smtp (the exchange of RFC 3207
    section 5, simplified as Tornado does; both ends buffered streams)."""
    server_ctx, client_ctx = tls_contexts
    a, b = await open_socket_stream_pair("tcp")
    client, server = BufferedStream(a), BufferedStream(b)
    try:

        async def server_send(line: bytes) -> None:
            await server.send_all(line)
            assert await client.receive_until(b"\r\n", keep_delimiter=True) == line

        async def client_send(line: bytes) -> None:
            await client.send_all(line)
            assert await server.receive_until(b"\r\n", keep_delimiter=True) == line

        await server_send(b"220 mail.example.com ready\r\n")
        await client_send(b"EHLO mail.example.com\r\n")
        await server_send(b"250-mail.example.com welcome\r\n")
        await server_send(b"250 STARTTLS\r\n")
        await client_send(b"STARTTLS\r\n")
        await server_send(b"220 Go ahead\r\n")

        async def client_tls() -> None:
            nonlocal client
            client = await client.start_tls(client_ctx, server_hostname="localhost")

        async def server_tls() -> None:
            nonlocal server
            server = await server.start_tls(server_ctx, server_side=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_tls)
            nursery.start_soon(server_tls)
        assert isinstance(client.transport_stream, trio.SSLStream)
        assert isinstance(server.transport_stream, trio.SSLStream)
        await client_send(b"EHLO mail.example.com\r\n")
        await server_send(b"250 mail.example.com welcome\r\n")
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)


@deadline
async def test_start_tls_refused_with_plaintext_buffered(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """No Tornado test of its own: Tornado's ``start_tls`` refuses a stream
    that is not idle (data in its read buffer). Here plaintext buffered
    after the STARTTLS command (CVE-2011-0411's command injection) makes
    ``start_tls`` raise StartTLSRefusedError and leaves the stream as it
    was."""
    server_ctx, _ = tls_contexts
    a, b = await open_socket_stream_pair("tcp")
    server = BufferedStream(b)
    try:
        await a.send_all(b"STARTTLS\r\nINJECTED\r\n")
        assert await server.receive_line() == b"STARTTLS"
        while len(server.peek()) < len(b"INJECTED\r\n"):
            assert await server.fill() > 0
        with pytest.raises(StartTLSRefusedError):
            await server.start_tls(server_ctx, server_side=True)
        assert not isinstance(server.transport_stream, trio.SSLStream)
        assert await server.receive_line() == b"INJECTED"
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(a)


@deadline
async def test_handshake_fail(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """iostream_test.py: test_handshake_fail: the client does not trust the
    server's certificate; both handshakes fail, and the streams stay
    unusable afterwards (no plaintext after a failed upgrade)."""
    server_ctx, _ = tls_contexts
    a, b = await open_socket_stream_pair("tcp")
    client, server = BufferedStream(a), BufferedStream(b)
    untrusting = ssl.create_default_context()  # does not trust the test CA
    errors: dict[str, Exception] = {}
    try:

        async def client_tls() -> None:
            try:
                await client.start_tls(untrusting, server_hostname="localhost")
            except Exception as exc:
                errors["client"] = exc
                await trio.aclose_forcefully(a)  # as Tornado's client closes its socket

        async def server_tls() -> None:
            try:
                await server.start_tls(server_ctx, server_side=True)
            except Exception as exc:
                errors["server"] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_tls)
            nursery.start_soon(server_tls)
        assert isinstance(errors["client"], trio.BrokenResourceError)
        assert isinstance(errors["client"].__cause__, ssl.SSLCertVerificationError)
        assert isinstance(errors["server"], trio.BrokenResourceError)
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"plaintext")
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)
