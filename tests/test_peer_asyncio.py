"""Ports of CPython's asyncio stream tests (Lib/test/test_asyncio/test_streams.py,
class StreamTests, as of Python 3.13: the `asyncio.StreamReader` cases) to
`BufferedStream`.

The API, mapped:

* ``feed_data(data)`` / ``feed_eof()`` -> the peer sends the data / EOF
  (``Peer.send`` / ``Peer.eof``, over an in-process transport, over TCP and
  to a `Connection` over TCP);
  ``set_exception(exc)`` -> the scripted transport raises ``exc``
  (``Script.feed_error``: those tests run over it alone).
* ``read(n)`` -> ``receive_some(n)``; ``read()`` / ``read(-1)`` ->
  ``receive_until_eof()``; ``readexactly(n)`` -> ``receive_exactly(n)``;
  ``readline()`` -> ``receive_line()`` (the line without its ``\\n``);
  ``readuntil(sep)`` -> ``receive_until(sep, keep_delimiter=True)``.
* ``StreamReader(limit=n)`` -> ``max_size``: asyncio's limit counts the line
  or frame without its separator, ``max_size`` counts it with it
  (``limit + len(sep)``); ``LimitOverrunError`` / ``ValueError`` ->
  `FrameTooLongError`; asyncio's `IncompleteReadError` -> ours (the same
  ``.partial`` and ``.expected``).
* ``stream._buffer`` (what is left) -> ``peek()``, or the next receive.
* ``asyncio.start_server`` / ``open_connection`` -> `triostream.serve_tcp` /
  `triostream.connect_tcp` (on 127.0.0.1).

Documented differences, asserted as triostream's behaviour where the port
meets them: an error raised by a receive consumes nothing (asyncio empties
its buffer on ``LimitOverrunError`` and on an incomplete ``readline``);
an unterminated last line raises `IncompleteReadError` (asyncio's
``readline`` returns it); ``receive_some(0)`` is a `ValueError` (Trio's
contract) and ``receive_exactly(n)`` refuses ``n`` over ``max_buffer_size``
(asyncio's ``read`` and ``readexactly`` ignore their limit:
``receive_exactly_into`` takes payloads of any size); a transport error
comes after the bytes buffered before it (asyncio's ``set_exception``
makes every later read raise at once).

Left out: the tests of asyncio's own machinery with no counterpart here
(``feed_data`` into ``_buffer``, ``at_eof()``'s flag, ``exception()`` and
its waiters, the ``StreamReader`` / ``StreamReaderProtocol`` constructors
and their event loops, ``__repr__``, ``drain`` and the writer's closing,
``ResourceWarning`` on an unclosed writer), the Unix-socket and SSL variants
of ``open_connection`` / ``start_server`` (the TCP one is ported),
``test_start_tls`` (the Tornado ports cover STARTTLS), and
``test_open_connection*`` against asyncio's HTTP test server.
"""

from __future__ import annotations

import functools
import os
import pickle

import pytest
import trio
from peer_harness import Script, cancel_when_blocked, deadline, feed_and_read, open_pair
from peer_harness import kind as kind  # the fixture (pytest finds it by name)

import triostream
from triostream import BufferedStream, Connection, FrameTooLongError, IncompleteReadError

DATA = b"line1\nline2\nline3\n"


@deadline
async def test_read_zero(kind: str) -> None:
    """test_streams.py: test_read_zero. ``receive_some(0)`` is a ValueError
    (Trio's contract); ``receive_exactly(0)`` reads zero bytes."""
    async with open_pair(kind) as (s, p):
        await p.send(DATA)
        assert await s.receive_exactly(0) == b""
        with pytest.raises(ValueError):
            await s.receive_some(0)
        assert await s.receive_exactly(len(DATA)) == DATA


@deadline
async def test_read(kind: str) -> None:
    """test_streams.py: test_read."""
    async with open_pair(kind) as (s, p):
        assert await feed_and_read(p, lambda: s.receive_some(30), [DATA]) == DATA
        assert s.peek() == b""


@deadline
async def test_read_line_breaks(kind: str) -> None:
    """test_streams.py: test_read_line_breaks."""
    async with open_pair(kind) as (s, p):
        await p.send(b"line1", b"line2")
        assert await s.receive_some(5) == b"line1"
        assert await s.receive_exactly(5) == b"line2"


@deadline
async def test_read_eof(kind: str) -> None:
    """test_streams.py: test_read_eof."""
    async with open_pair(kind) as (s, p):
        assert await feed_and_read(p, lambda: s.receive_some(1024), [], eof=True) == b""
        assert s.peek() == b""
        assert await s.receive_some(1024) == b""  # and again: EOF stays


@deadline
async def test_read_until_eof(kind: str) -> None:
    """test_streams.py: test_read_until_eof (``read(-1)``)."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(p, s.receive_until_eof, [b"chunk1\n", b"chunk2"], eof=True)
        assert got == b"chunk1\nchunk2"
        assert s.peek() == b""


@deadline
async def test_read_exception() -> None:
    """test_streams.py: test_read_exception. asyncio's ``set_exception``
    makes every later read raise; a transport error here comes after the
    bytes read before it (documented), then passes through unchanged."""
    transport = Script()
    async with BufferedStream(transport) as s:
        transport.feed(b"line\n")
        transport.feed_error(ValueError("boom"))
        assert await s.receive_some(2) == b"li"
        assert await s.receive_some(2) == b"ne"
        assert await s.receive_some(2) == b"\n"
        with pytest.raises(ValueError):
            await s.receive_some(2)


@pytest.mark.parametrize("bad", [0, -1])
def test_invalid_limit(bad: int) -> None:
    """test_streams.py: test_invalid_limit (``limit`` -> ``max_buffer_size``,
    and ``receive_size`` too)."""
    with pytest.raises(ValueError):
        BufferedStream(Script(), max_buffer_size=bad)
    with pytest.raises(ValueError):
        BufferedStream(Script(), receive_size=bad)


@deadline
async def test_read_limit(kind: str) -> None:
    """test_streams.py: test_read_limit: ``read(5)`` is not bound by the
    limit (3), nor is ``receive_some(5)`` by ``max_buffer_size``: with the
    buffer empty it reads the transport directly. A Connection reads ahead
    into its buffer, never past ``max_buffer_size``: its ``receive_some``
    hands out what the buffer holds, 3 bytes at most."""
    async with open_pair(kind, max_buffer_size=3) as (s, p):
        await p.send(b"chunk")
        await p.eof()
        if kind == "connection":
            assert await s.receive_some(5) == b"chu"
            assert await s.receive_some(5) == b"nk"
        else:
            assert await s.receive_some(5) == b"chunk"
        assert s.peek() == b""
        assert await s.receive_some(5) == b""


@deadline
async def test_readline(kind: str) -> None:
    """test_streams.py: test_readline."""
    async with open_pair(kind) as (s, p):
        await p.send(b"chunk1 ")
        got = await feed_and_read(p, s.receive_line, [b"chunk2 ", b"chunk3 ", b"\n chunk4"])
        assert got == b"chunk1 chunk2 chunk3 "
        assert s.peek() == b" chunk4"


@deadline
async def test_readline_limit_with_existing_data(kind: str) -> None:
    """test_streams.py: test_readline_limit_with_existing_data (limit 3 ->
    ``max_size=4``, the ``\\n`` counted). asyncio drops the over-long line;
    here nothing is consumed, and ``discard_until`` skips it."""
    async with open_pair(kind) as (s, p):
        await p.send(b"li", b"ne1\nline2\n")
        with pytest.raises(FrameTooLongError):
            await s.receive_line(max_size=4)
        assert s.peek() == b"line1\nline2\n"
        assert await s.discard_until(b"\n") == 6
        assert await s.receive_line(max_size=6) == b"line2"

    # No \n at all: 4 bytes buffered cannot become a line of max_size 4, so
    # it raises without waiting for more (the peer sends nothing more).
    async with open_pair(kind) as (s, p):
        await p.send(b"li", b"ne1", b"li")
        with pytest.raises(FrameTooLongError):
            await s.receive_line(max_size=4)
        await p.eof()
        assert await s.receive_until_eof() == b"line1li"


@deadline
async def test_at_eof(kind: str) -> None:
    """test_streams.py: test_at_eof. There is no ``at_eof()``: EOF shows as
    ``receive_some`` returning ``b""`` once the buffer is empty."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some data\n")
        assert await s.receive_line() == b"some data"
        await p.send(b"some data\n")
        await p.eof()
        assert await s.receive_line() == b"some data"
        assert s.peek() == b""
        assert await s.receive_some() == b""


@deadline
async def test_readline_limit(kind: str) -> None:
    """test_streams.py: test_readline_limit (limit 7 -> ``max_size=8``).
    asyncio consumes the over-long line; here it stays buffered."""
    async with open_pair(kind) as (s, p):
        with pytest.raises(FrameTooLongError):
            await feed_and_read(p, lambda: s.receive_line(max_size=8), [b"chunk1", b"chunk2", b"chunk3\n"], eof=True)
        assert await s.receive_line() == b"chunk1chunk2chunk3"

    async with open_pair(kind) as (s, p):
        with pytest.raises(FrameTooLongError):
            await feed_and_read(p, lambda: s.receive_line(max_size=8), [b"chunk1", b"chunk2\n", b"chunk3\n"], eof=True)
        assert await s.discard_until(b"\n") == 13
        assert await s.receive_line(max_size=8) == b"chunk3"

    # the strictness of the limit
    async with open_pair(kind) as (s, p):
        await p.send(b"1234567\n")
        assert await s.receive_line(max_size=8) == b"1234567"
        await p.send(b"12345678\n")
        with pytest.raises(FrameTooLongError):
            await s.receive_line(max_size=8)
        assert await s.receive_line() == b"12345678"
        await p.send(b"12345678")
        with pytest.raises(FrameTooLongError):  # 8 bytes and no \n: raises without waiting
            await s.receive_line(max_size=8)
        assert s.peek() == b"12345678"


@deadline
async def test_readline_nolimit_nowait(kind: str) -> None:
    """test_streams.py: test_readline_nolimit_nowait."""
    async with open_pair(kind) as (s, p):
        await p.send(DATA[:6], DATA[6:])
        assert await s.receive_line() == b"line1"
        assert await s.receive_exactly(12) == b"line2\nline3\n"


@deadline
async def test_readline_eof(kind: str) -> None:
    """test_streams.py: test_readline_eof. asyncio returns the unterminated
    last line; here it is an IncompleteReadError (documented), and the
    bytes stay readable."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some data")
        await p.eof()
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_line()
        assert info.value.partial == b"some data"
        assert info.value.expected is None
        assert await s.receive_until_eof() == b"some data"


@deadline
async def test_readline_empty_eof(kind: str) -> None:
    """test_streams.py: test_readline_empty_eof. asyncio returns ``b""``;
    here a clean EOF between lines is an IncompleteReadError with nothing
    partial."""
    async with open_pair(kind) as (s, p):
        await p.eof()
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_line()
        assert info.value.partial == b""
        assert info.value.expected is None


@deadline
async def test_readline_read_byte_count(kind: str) -> None:
    """test_streams.py: test_readline_read_byte_count."""
    async with open_pair(kind) as (s, p):
        await p.send(DATA)
        assert await s.receive_line() == b"line1"
        assert await s.receive_exactly(7) == b"line2\nl"
        assert s.peek() == b"ine3\n"


@deadline
async def test_readline_exception() -> None:
    """test_streams.py: test_readline_exception. asyncio drops its buffer;
    here the receive is all or nothing: the partial line stays buffered."""
    transport = Script()
    async with BufferedStream(transport) as s:
        transport.feed(b"line\n")
        assert await s.receive_line() == b"line"
        transport.feed(b"partial")
        transport.feed_error(ValueError("x"))
        with pytest.raises(ValueError):
            await s.receive_line()
        assert s.peek() == b"partial"


@deadline
@pytest.mark.parametrize("sep", [b"", (b"",), ()])
async def test_readuntil_separator(kind: str, sep: bytes | tuple[bytes, ...]) -> None:
    """test_streams.py: test_readuntil_separator (an empty separator, an
    empty one in a tuple, an empty tuple)."""
    async with open_pair(kind) as (s, p):
        await p.send(b"data")
        with pytest.raises(ValueError):
            await s.receive_until(sep)
        # Refused before reading anything (a Connection's reader has read
        # ahead: the bytes are buffered, none consumed).
        assert s.peek() == (b"data" if kind == "connection" else b"")
        assert await s.receive_some() == b"data"


@deadline
async def test_readuntil_multi_chunks(kind: str) -> None:
    """test_streams.py: test_readuntil_multi_chunks."""
    async with open_pair(kind) as (s, p):
        await p.send(b"lineAAA")
        assert await s.receive_until(b"AAA", keep_delimiter=True) == b"lineAAA"
        assert s.peek() == b""
        await p.send(b"lineAAA")
        assert await s.receive_until(b"AAA", keep_delimiter=True) == b"lineAAA"
        assert s.peek() == b""
        await p.send(b"lineAAAxxx")
        assert await s.receive_until(b"AAA", keep_delimiter=True) == b"lineAAA"
        assert s.peek() == b"xxx"


@deadline
@pytest.mark.parametrize("keep", [True, False])
async def test_readuntil_multi_chunks_1(kind: str, keep: bool) -> None:
    """test_streams.py: test_readuntil_multi_chunks_1: one stream, the cases
    in sequence, each chunk read on its own (with and without the
    delimiter kept)."""
    cases = [
        ([b"QWEaa", b"XYaa", b"a"], b"QWEaaXYaaa"),
        ([b"QWEaa", b"XYa", b"aa"], b"QWEaaXYaaa"),
        ([b"aaa"], b"aaa"),
        ([b"Xaaa"], b"Xaaa"),
        ([b"XXX", b"a", b"a", b"a"], b"XXXaaa"),
    ]
    async with open_pair(kind) as (s, p):
        for chunks, expected in cases:
            got = await feed_and_read(p, lambda: s.receive_until(b"aaa", keep_delimiter=keep), chunks)
            assert got == (expected if keep else expected[:-3])
            assert s.peek() == b""


@deadline
async def test_readuntil_eof(kind: str) -> None:
    """test_streams.py: test_readuntil_eof. asyncio empties its buffer;
    here nothing is consumed (documented)."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some dataAA")
        await p.eof()
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_until(b"AAA")
        assert info.value.partial == b"some dataAA"
        assert info.value.expected is None
        assert s.peek() == b"some dataAA"


@deadline
async def test_readuntil_limit_found_sep(kind: str) -> None:
    """test_streams.py: test_readuntil_limit_found_sep (limit 3 ->
    ``max_size=6``): over the limit without the separator, then with it
    found beyond the limit; nothing consumed either time."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some dataAA")
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"AAA", max_size=6)
        assert s.peek() == b"some dataAA"
        await p.send(b"A")
        while len(s.peek()) < 12:  # the separator buffered, beyond the limit
            assert await s.fill() > 0
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"AAA", max_size=6)
        assert s.peek() == b"some dataAAA"
        assert await s.receive_until(b"AAA") == b"some data"


@deadline
async def test_readuntil_multi_separator(kind: str) -> None:
    """test_streams.py: test_readuntil_multi_separator: the first end wins,
    even when that match is the longer separator."""
    async with open_pair(kind) as (s, p):
        await p.send(b"line 1\nline 2\r")
        assert await s.receive_until((b"\r", b"\n"), keep_delimiter=True) == b"line 1\n"
        assert await s.receive_until((b"\r", b"\n"), keep_delimiter=True) == b"line 2\r"
        assert s.peek() == b""
        await p.send(b"ABCDEFG")
        assert await s.receive_until((b"DEF", b"BCDE"), keep_delimiter=True) == b"ABCDE"
        assert s.peek() == b"FG"


@deadline
async def test_readuntil_multi_separator_limit(kind: str) -> None:
    """test_streams.py: test_readuntil_multi_separator_limit (limit 3 and
    a separator of 1 byte -> ``max_size=4``)."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some dataA")
        with pytest.raises(FrameTooLongError):
            await s.receive_until((b"A", b"ome dataA"), max_size=4)
        assert s.peek() == b"some dataA"


@deadline
async def test_readuntil_multi_separator_negative_offset(kind: str) -> None:
    """test_streams.py: test_readuntil_multi_separator_negative_offset."""
    async with open_pair(kind) as (s, p):
        await p.send(b"data")
        got = await feed_and_read(p, lambda: s.receive_until((b"A", b"long sep"), keep_delimiter=True), [b"Z", b"Aaaa"])
        assert got == b"dataZA"
        assert s.peek() == b"aaa"


@deadline
async def test_readuntil_bytearray(kind: str) -> None:
    """test_streams.py: test_readuntil_bytearray."""
    async with open_pair(kind) as (s, p):
        await p.send(b"some data\r\n")
        assert await s.receive_until(bytearray(b"\r\n"), keep_delimiter=True) == b"some data\r\n"
        assert s.peek() == b""


@deadline
async def test_readexactly_zero_or_less(kind: str) -> None:
    """test_streams.py: test_readexactly_zero_or_less."""
    async with open_pair(kind) as (s, p):
        await p.send(DATA)
        assert await s.receive_exactly(0) == b""
        with pytest.raises(ValueError):
            await s.receive_exactly(-1)
        assert await s.receive_exactly(len(DATA)) == DATA


@deadline
async def test_readexactly(kind: str) -> None:
    """test_streams.py: test_readexactly."""
    async with open_pair(kind) as (s, p):
        n = 2 * len(DATA)
        assert await feed_and_read(p, lambda: s.receive_exactly(n), [DATA, DATA, DATA]) == DATA + DATA
        assert await s.receive_exactly(len(DATA)) == DATA  # the third chunk, left for the next receive


@deadline
async def test_readexactly_limit(kind: str) -> None:
    """test_streams.py: test_readexactly_limit. ``readexactly`` ignores the
    limit; ``receive_exactly`` refuses ``n`` over ``max_buffer_size``
    (documented) and ``receive_exactly_into`` takes it."""
    async with open_pair(kind, max_buffer_size=3) as (s, p):
        await p.send(b"chunk")
        with pytest.raises(ValueError):
            await s.receive_exactly(5)
        buf = bytearray(5)
        await s.receive_exactly_into(buf)
        assert buf == b"chunk"
        assert s.peek() == b""


@deadline
async def test_readexactly_eof(kind: str) -> None:
    """test_streams.py: test_readexactly_eof (not its message). asyncio
    empties its buffer; here the bytes stay."""
    async with open_pair(kind) as (s, p):
        n = 2 * len(DATA)
        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, lambda: s.receive_exactly(n), [DATA], eof=True)
        assert info.value.partial == DATA
        assert info.value.expected == n
        assert s.peek() == DATA


@deadline
async def test_readexactly_exception() -> None:
    """test_streams.py: test_readexactly_exception. The bytes that arrived
    before the error stay buffered."""
    transport = Script()
    async with BufferedStream(transport) as s:
        transport.feed(b"line\n")
        assert await s.receive_exactly(2) == b"li"
        transport.feed_error(ValueError())
        with pytest.raises(ValueError):
            await s.receive_exactly(5)
        assert s.peek() == b"ne\n"


@deadline
async def test_exception_cancel(kind: str) -> None:
    """test_streams.py: test_exception_cancel: a pending ``readline`` is
    cancelled; the stream stays usable and the partial line is kept."""
    async with open_pair(kind) as (s, p):
        await p.send(b"par")
        assert await cancel_when_blocked(s.receive_line)
        assert s.peek() == b"par"
        await p.send(b"tial\n")
        assert await s.receive_line() == b"partial"


@deadline
async def test_start_server() -> None:
    """test_streams.py: test_start_server (the coroutine handler; a
    server on 127.0.0.1 echoes one line)."""

    async def handle(conn: Connection) -> None:
        line = await conn.receive_line()
        conn.write(line + b"\n")
        await conn.drain()

    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            functools.partial(triostream.serve_tcp, handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with triostream.connect_tcp("127.0.0.1", port) as conn:
            conn.write(b"hello world!\n")
            assert await conn.receive_line() == b"hello world!"
        nursery.cancel_scope.cancel()


def test_incomplete_read_error_pickleable() -> None:
    """test_streams.py: test_IncompleteReadError_pickleable."""
    e = IncompleteReadError(b"abc", 10)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        e2 = pickle.loads(pickle.dumps(e, protocol=proto))
        assert isinstance(e2, IncompleteReadError)
        assert str(e2) == str(e)
        assert (e2.partial, e2.expected, e2.skipped) == (b"abc", 10, 0)


def test_frame_too_long_error_pickleable() -> None:
    """test_streams.py: test_LimitOverrunError_pickleable (its counterpart,
    `FrameTooLongError`)."""
    e = FrameTooLongError(10, declared=12)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        e2 = pickle.loads(pickle.dumps(e, protocol=proto))
        assert isinstance(e2, FrameTooLongError)
        assert str(e2) == str(e)
        assert (e2.max_size, e2.declared, e2.discarding) == (10, 12, False)


@deadline
async def test_read_all_from_pipe_reader() -> None:
    """test_streams.py: test_read_all_from_pipe_reader (asyncio issue 168:
    ``read(-1)`` with limit 1 of a pipe holding 4 bytes, written here
    without a subprocess). ``receive_until_eof`` is bounded: a buffer of
    exactly 4 bytes holds them and tells EOF by a one-byte probe
    (documented); a buffer of 1 byte is too small."""
    r, w = os.pipe()
    os.write(w, b"data")
    os.close(w)
    async with BufferedStream(trio.lowlevel.FdStream(r), max_buffer_size=4) as stream:
        assert await stream.receive_until_eof() == b"data"

    r, w = os.pipe()
    os.write(w, b"data")
    os.close(w)
    async with BufferedStream(trio.lowlevel.FdStream(r), max_buffer_size=1) as stream:
        with pytest.raises(FrameTooLongError) as info:
            await stream.receive_until_eof()
        assert info.value.max_size == 1
