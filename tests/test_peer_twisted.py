"""Ports of Twisted's basic protocol tests (src/twisted/protocols/test/test_basic.py:
LineReceiverTests, LineReceiverLineLengthExceededTests,
LineOnlyReceiverTests, NetstringReceiverTests and the IntN tests of
Int32Tests, Int16Tests, Int8Tests with RecvdAttributeMixin) to
`BufferedStream` and its codecs.

The API, mapped: Twisted's protocols are pushed data (``dataReceived``) and
call back (``lineReceived``, ``stringReceived``); here a task pulls.

* ``dataReceived(chunk)`` -> the peer sends the chunk (each read on its
  own, as Twisted's tests feed packets of 1 to 9 bytes).
* ``lineReceived`` -> ``receive_until(b"\\n")``, ``receive_line()`` or the
  ``lines()`` / ``iter_until()`` iterators; ``setRawMode()`` and raw data
  -> ``receive_exactly(n)`` between line reads; ``pauseProducing`` -> not
  receiving for a while; ``stopProducing`` -> leaving the ``async for``;
  ``clearLineBuffer()`` -> ``detach()``.
* ``MAX_LENGTH`` -> ``max_size``, which counts the delimiter
  (``MAX_LENGTH + len(delimiter)``); ``lineLengthExceeded`` and the
  disconnect of an over-long line -> `FrameTooLongError`, nothing
  consumed (``discard_until`` or ``receive_exactly`` skips the line).
* NetstringReceiver -> `Netstring` (``MAX_LENGTH`` -> ``max_size``);
  Int8/16/32StringReceiver -> `LengthPrefixed` with ``length_size`` 1, 2,
  4; ``sendString`` -> ``codec.encode``; a refused netstring (the
  transport disconnecting) -> `CorruptFrameError` or `FrameTooLongError`;
  ``lengthLimitExceeded(length)`` -> `FrameTooLongError` with ``.declared``;
  ``recvd`` (the data not yet parsed) -> ``peek()``.

Left out: the tests of Twisted's callback plumbing (test_rawDataError, the
``*NotImplemented`` tests, test_recvdChanged: a callback replacing the
buffer), of private methods (test_consumeLength*, except their border
cases, ported through ``max_size``), test_data and test_tooLongSend (the
codec's own tests cover encoding), and ProducerTests and FileSenderTests
(Twisted's producer/consumer API).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio
import trio.testing
from peer_harness import deadline, feed_and_read, open_pair, packets, reading
from peer_harness import kind as kind  # the fixture (pytest finds it by name)

from triostream import (
    BufferedStream,
    CorruptFrameError,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Netstring,
)

T = TypeVar("T")

# ------------------------------------------------------------- LineReceiver

LINE_BUFFER = b"""\
len 10

0123456789len 5

1234
len 20
foo 123

0123456789
012345678len 0
foo 5

1234567890123456789012345678901234567890123456789012345678901234567890
len 1

a"""

LINE_OUTPUT = [
    b"len 10",
    b"0123456789",
    b"len 5",
    b"1234\n",
    b"len 20",
    b"foo 123",
    b"0123456789\n012345678",
    b"len 0",
    b"foo 5",
    b"",
    b"67890",
    b"len 1",
    b"a",
]

MAX_LENGTH = 64


async def line_tester(s: BufferedStream, use_line: bool) -> list[bytes]:
    """Twisted's LineTester (delimiter ``\\n``, MAX_LENGTH 64) as a receive
    loop, until EOF: an empty line switches to raw mode for the ``len``
    bytes announced before it; an over-long line skips MAX_LENGTH + 1 bytes,
    as ``LineTester.lineLengthExceeded`` does."""
    received: list[bytes] = []
    length = 0
    while True:
        try:
            if use_line:
                line = await s.receive_line(max_size=MAX_LENGTH + 1)
            else:
                line = await s.receive_until(b"\n", max_size=MAX_LENGTH + 1)
        except FrameTooLongError:
            await s.receive_exactly(MAX_LENGTH + 1)
            continue
        except IncompleteReadError:
            return received
        received.append(line)
        if line == b"":
            try:
                received[-1] = await s.receive_exactly(length)
            except IncompleteReadError as exc:  # raw data cut short by EOF
                received[-1] = exc.partial
                return received
            length = 0
        elif line[:4] == b"len ":
            length = int(line[4:])


@deadline
@pytest.mark.parametrize("packet_size", range(1, 10))
@pytest.mark.parametrize("use_line", [False, True], ids=["receive_until", "receive_line"])
async def test_buffer(kind: str, packet_size: int, use_line: bool) -> None:
    """test_basic.py: LineReceiverTests.test_buffer (lines, raw data,
    over-long lines, in packets of 1 to 9 bytes)."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(p, lambda: line_tester(s, use_line), packets(LINE_BUFFER, packet_size), eof=True)
        assert got == LINE_OUTPUT


PAUSE_BUF = b"twiddle1\ntwiddle2\npause\ntwiddle3\n"


@deadline
@pytest.mark.parametrize("packet_size", range(1, 10))
async def test_pausing(kind: str, packet_size: int) -> None:
    """test_basic.py: LineReceiverTests.test_pausing: pausing is not
    receiving; the line after the pause waits, and comes on resuming."""
    async with open_pair(kind) as (s, p):

        async def until_pause() -> list[bytes]:
            out = []
            while True:
                line = await s.receive_until(b"\n")
                out.append(line)
                if line == b"pause":
                    return out

        got = await feed_and_read(p, until_pause, packets(PAUSE_BUF, packet_size))
        assert got == [b"twiddle1", b"twiddle2", b"pause"]
        assert await s.receive_until(b"\n") == b"twiddle3"


RAWPAUSE_BUF = b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n"


@deadline
@pytest.mark.parametrize("packet_size", range(1, 10))
async def test_raw_pausing(kind: str, packet_size: int) -> None:
    """test_basic.py: LineReceiverTests.test_rawPausing: after ``rawpause``,
    the ``len`` bytes announced are raw data, then lines again."""
    async with open_pair(kind) as (s, p):

        async def proto() -> list[bytes]:
            out: list[bytes] = []
            length = 0
            while len(out) < 6:
                line = await s.receive_until(b"\n")
                out.append(line)
                if line.startswith(b"len "):
                    length = int(line[4:])
                elif line == b"rawpause":
                    out.append(await s.receive_exactly(length))
            return out

        got = await feed_and_read(p, proto, packets(RAWPAUSE_BUF, packet_size))
        assert got == [b"twiddle1", b"twiddle2", b"len 5", b"rawpause", b"12345", b"twiddle3"]


STOP_BUF = b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n"


@deadline
@pytest.mark.parametrize("packet_size", range(1, 10))
async def test_stop_producing(kind: str, packet_size: int) -> None:
    """test_basic.py: LineReceiverTests.test_stopProducing: no line is
    delivered after ``stop``; leaving the ``async for`` loses nothing."""
    async with open_pair(kind) as (s, p):

        async def proto() -> list[bytes]:
            out = []
            async for line in s.iter_until(b"\n"):
                out.append(line)
                if line == b"stop":
                    break
            return out

        got = await feed_and_read(p, proto, packets(STOP_BUF, packet_size), eof=True)
        assert got == [b"twiddle1", b"twiddle2", b"stop"]
        assert await s.receive_until_eof() == b"more\nstuff\n"


@deadline
async def test_line_receiver_as_producer(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_lineReceiverAsProducer: four
    lines in one chunk, through ``lines()``."""
    async with open_pair(kind) as (s, p):
        await p.send(b"produce\nhello world\nunproduce\ngoodbye\n")
        await p.eof()
        assert [line async for line in s.lines()] == [b"produce", b"hello world", b"unproduce", b"goodbye"]


@deadline
async def test_clear_line_buffer(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_clearLineBuffer:
    ``clearLineBuffer`` -> ``detach``, which returns the buffered bytes
    and the transport; a new stream over it reads only what comes next."""
    async with open_pair(kind) as (s, p):
        await p.send(b"foo\r\nbar\r\nbaz")
        assert await s.receive_until(b"\r\n") == b"foo"
        transport, rest = s.detach()
        assert rest == b"bar\r\nbaz"
        async with BufferedStream(transport) as s2:
            await p.send(b"quux\r\n")
            assert await s2.receive_until(b"\r\n") == b"quux"
            assert s2.peek() == b""


@deadline
async def test_stack_recursion(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_stackRecursion (FlippingLineTester:
    a line, then raw mode for one byte, many times over one chunk)."""
    limit = min(sys.getrecursionlimit(), 1000)
    async with open_pair(kind) as (s, p):
        await p.send(b"x\nx" * limit)
        lines = []
        for _ in range(limit):
            lines.append(await s.receive_until(b"\n"))
            await s.receive_exactly(1)
        assert b"".join(lines) == b"x" * limit
        assert s.peek() == b""


@deadline
async def test_stack_recursion_nowait(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_stackRecursion again, through
    the ``*_nowait`` methods and ``fill`` (a sans-I/O parser's loop)."""
    limit = min(sys.getrecursionlimit(), 1000)
    async with open_pair(kind) as (s, p):
        await p.send(b"x\nx" * limit)
        await p.eof()

        async def when_buffered(take: Callable[[], T]) -> T:
            while True:
                try:
                    return take()
                except trio.WouldBlock:
                    assert await s.fill() > 0

        lines = []
        for _ in range(limit):
            lines.append(await when_buffered(lambda: s.receive_until_nowait(b"\n")))
            await when_buffered(lambda: s.skip_nowait(1))
        assert b"".join(lines) == b"x" * limit
        assert await s.receive_some() == b""


@deadline
async def test_maximum_line_length(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_maximumLineLength (and the
    same test of LineReceiverLineLengthExceededTests): MAX_LENGTH 16384
    with ``\\r\\n`` -> ``max_size=16386``; a line of 16385 bytes is over."""
    async with open_pair(kind) as (s, p):
        data = b"x" * 16385 + b"\r\nr"
        await p.send(data)
        with pytest.raises(FrameTooLongError) as info:
            await s.receive_until(b"\r\n", max_size=16386)
        assert info.value.max_size == 16386
        assert data.startswith(s.peek())
        assert len(s.peek()) >= 16386
        assert await s.discard_until(b"\r\n") == 16387
        assert await s.receive_some() == b"r"


@deadline
@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n"])
async def test_maximum_line_length_partial_delimiter(kind: str, delimiter: bytes) -> None:
    """test_basic.py: LineReceiverTests.test_maximumLineLengthPartialDelimiter
    (MAX_LENGTH 4): a line of MAX_LENGTH - 1 bytes whose delimiter's last
    byte comes with more data is not too long (also with ``\\r\\n``)."""
    max_length = 4
    async with open_pair(kind) as (s, p):
        line = b"x" * (max_length - 1)
        got = await feed_and_read(
            p,
            lambda: s.receive_until(delimiter, max_size=max_length + len(delimiter)),
            [line, delimiter[:-1], delimiter[-1:] + line],
        )
        assert got == line
        assert s.peek() == line


@deadline
async def test_maximum_line_length_partial_delimiter_border(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_maximumLineLengthPartialDelimiter
    at the border: a line of exactly MAX_LENGTH (4) bytes whose ``\\r\\n`` is
    split between two reads."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(p, lambda: s.receive_until(b"\r\n", max_size=6), [b"xxxx\r", b"\nyy"])
        assert got == b"xxxx"
        assert s.peek() == b"yy"


@deadline
async def test_not_quite_maximum_line_length_unfinished(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_notQuiteMaximumLineLengthUnfinished:
    MAX_LENGTH bytes and the first byte of ``\\r\\n`` are not over the
    limit: the read waits (no FrameTooLongError) and then gets the line."""
    async with open_pair(kind) as (s, p):
        async with reading(lambda: s.receive_until(b"\r\n", max_size=16386)) as reader:
            await p.send(b"x" * 16384 + b"\r")
            assert not reader.done.is_set()
            await p.send(b"\n")
        assert await reader.result() == b"x" * 16384


@deadline
async def test_not_quite_maximum_line_length_then_eof(kind: str) -> None:
    """test_basic.py: LineReceiverTests.test_notQuiteMaximumLineLengthUnfinished,
    then EOF: the unfinished line is an IncompleteReadError, not too long."""
    async with open_pair(kind) as (s, p):
        await p.send(b"x" * 16384 + b"\r")
        await p.eof()
        with pytest.raises(IncompleteReadError) as info:
            await s.receive_until(b"\r\n", max_size=16386)
        assert info.value.partial == b"x" * 16384 + b"\r"


# LineReceiverLineLengthExceededTests: MAX_LENGTH 6 with \r\n -> max_size 8.
MAX6 = 8
EXCESSIVE = b"x" * (6 * 2 + 2)


@deadline
async def test_long_unended_line(kind: str) -> None:
    """test_basic.py: LineReceiverLineLengthExceededTests.test_longUnendedLine."""
    async with open_pair(kind) as (s, p):
        await p.send(EXCESSIVE)
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"\r\n", max_size=MAX6)
        assert s.peek() == EXCESSIVE


@deadline
async def test_long_line_after_short_line(kind: str) -> None:
    """test_basic.py: LineReceiverLineLengthExceededTests.test_longLineAfterShortLine."""
    async with open_pair(kind) as (s, p):
        await p.send(b"x\r\n" + EXCESSIVE)
        assert await s.receive_until(b"\r\n", max_size=MAX6) == b"x"
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"\r\n", max_size=MAX6)
        assert s.peek() == EXCESSIVE


@deadline
async def test_long_line_with_delimiter(kind: str) -> None:
    """test_basic.py: LineReceiverLineLengthExceededTests.test_longLineWithDelimiter."""
    async with open_pair(kind) as (s, p):
        await p.send(b"\r\n".join([EXCESSIVE] * 2))
        await p.eof()
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"\r\n", max_size=MAX6)
        assert await s.discard_until(b"\r\n") == len(EXCESSIVE) + 2
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"\r\n", max_size=MAX6)
        assert await s.receive_until_eof() == EXCESSIVE


@deadline
async def test_multiple_long_lines(kind: str) -> None:
    """test_basic.py: LineReceiverLineLengthExceededTests.test_multipleLongLines."""
    async with open_pair(kind) as (s, p):
        await p.send((EXCESSIVE + b"\r\n") * 2)
        for _ in range(2):
            with pytest.raises(FrameTooLongError):
                await s.receive_until(b"\r\n", max_size=MAX6)
            assert await s.discard_until(b"\r\n") == len(EXCESSIVE) + 2
        assert s.peek() == b""


@deadline
async def test_maximum_line_length_remaining(kind: str) -> None:
    """test_basic.py: LineReceiverLineLengthExceededTests.test_maximumLineLengthRemaining:
    MAX_LENGTH + len(delimiter) bytes without the delimiter are over."""
    async with open_pair(kind) as (s, p):
        data = b"x" * (16384 + 2)
        await p.send(data)
        with pytest.raises(FrameTooLongError):
            await s.receive_until(b"\r\n", max_size=16386)
        assert s.peek() == data


# ------------------------------------------------------------- LineOnlyReceiver

LINE_ONLY_BUFFER = b"""foo
    bleakness
    desolation
    plastic forks
    """


@deadline
async def test_line_only_buffer(kind: str) -> None:
    """test_basic.py: LineOnlyReceiverTests.test_buffer (one byte per read).
    The unterminated tail is not a line: with EOF after it, ``lines()``
    raises IncompleteReadError with the tail as ``.partial``."""
    async with open_pair(kind) as (s, p):
        got: list[bytes] = []

        async def collect() -> None:
            async for line in s.lines(max_size=MAX_LENGTH + 1):
                got.append(line)

        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, collect, packets(LINE_ONLY_BUFFER, 1), eof=True)
        assert got == LINE_ONLY_BUFFER.split(b"\n")[:-1]
        assert info.value.partial == b"    "


@deadline
async def test_line_only_buffer_batches(kind: str) -> None:
    """test_basic.py: LineOnlyReceiverTests.test_buffer again, through
    ``lines().batches()``: no empty batch, the same lines."""
    async with open_pair(kind) as (s, p):
        got: list[bytes] = []

        async def collect() -> None:
            async for batch in s.lines(max_size=MAX_LENGTH + 1).batches():
                assert batch
                got.extend(batch)

        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, collect, packets(LINE_ONLY_BUFFER, 1), eof=True)
        assert got == LINE_ONLY_BUFFER.split(b"\n")[:-1]
        assert info.value.partial == b"    "


@deadline
async def test_line_only_greater_than_maximum_line_length(kind: str) -> None:
    """test_basic.py: LineOnlyReceiverTests.test_greaterThanMaximumLineLength."""
    async with open_pair(kind) as (s, p):
        data = b"x" * (MAX_LENGTH + 1 + 1) + b"\r\nr"
        await p.send(data)
        with pytest.raises(FrameTooLongError):
            async for _ in s.lines(max_size=MAX_LENGTH + 1):
                pass
        assert s.peek() == data


# ------------------------------------------------------------- NetstringReceiver

STRINGS = [b"hello", b"world", b"how", b"are", b"you123", b":today", b"a" * 515]


@deadline
@pytest.mark.parametrize("packet_size", range(1, 10))
async def test_netstring_buffer(kind: str, packet_size: int) -> None:
    """test_basic.py: NetstringReceiverTests.test_buffer (MAX_LENGTH 699)."""
    codec = Netstring(max_size=699)
    out = b"".join(codec.encode(x) for x in STRINGS)
    async with open_pair(kind) as (s, p):

        async def collect() -> list[bytes]:
            return [frame async for frame in s.frames(codec)]

        assert await feed_and_read(p, collect, packets(out, packet_size), eof=True) == STRINGS


@deadline
@pytest.mark.parametrize(
    "data, expected",
    [
        pytest.param(b"0:,", b"", id="receiveEmptyNetstring"),
        pytest.param(b"1:a,", b"a", id="receiveOneCharacter"),
        pytest.param(b"2:ab,", b"ab", id="receiveTwoCharacters"),
        pytest.param(b"4:1:a,,", b"1:a,", id="receiveNestedNetstring"),
    ],
)
async def test_netstring_receive(kind: str, data: bytes, expected: bytes) -> None:
    """test_basic.py: NetstringReceiverTests.test_receiveEmptyNetstring,
    test_receiveOneCharacter, test_receiveTwoCharacters,
    test_receiveNestedNetstring."""
    async with open_pair(kind) as (s, p):
        await p.send(data)
        await p.eof()
        assert [frame async for frame in s.frames(Netstring(max_size=50))] == [expected]


@deadline
@pytest.mark.parametrize(
    "data, error",
    [
        pytest.param(b"2:aaa,", CorruptFrameError, id="moreDataThanSpecified"),
        pytest.param(b"0:a,", CorruptFrameError, id="moreDataThanSpecifiedBorderCase"),
        pytest.param(b":aaa,", CorruptFrameError, id="missingNumber"),
        pytest.param(b"3aaa,", CorruptFrameError, id="missingColon"),
        pytest.param(b"aaa,", CorruptFrameError, id="missingNumberAndColon"),
        pytest.param(b"aaa", CorruptFrameError, id="onlyData"),
        pytest.param(b"9999999999999999999999", FrameTooLongError, id="illegal-huge-length"),
        pytest.param(b"abc", CorruptFrameError, id="illegal-abc"),
        pytest.param(b"4:abcde", CorruptFrameError, id="illegal-longer-body"),
        pytest.param(b"51:" + b"a" * 50 + b"b,", FrameTooLongError, id="illegal-over-max"),
    ],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
async def test_netstring_illegal(kind: str, data: bytes, error: type[Exception], bytewise: bool) -> None:
    """test_basic.py: NetstringReceiverTests.test_moreDataThanSpecified,
    test_moreDataThanSpecifiedBorderCase, test_missingNumber,
    test_missingColon, test_missingNumberAndColon, test_onlyData, and
    LPTestCaseMixin.test_illegal with NetstringReceiverTests'
    illegalStrings: each is refused both in one chunk (as the named tests
    feed it) and one byte per read (as test_illegal does), before EOF, and
    nothing is consumed."""
    async with open_pair(kind) as (s, p):
        with pytest.raises(error):
            await feed_and_read(
                p, lambda: s.receive_frame(Netstring(max_size=50)), packets(data, 1) if bytewise else [data]
            )
        assert data.startswith(s.peek())
        await p.eof()
        assert await s.receive_until_eof() == data


@deadline
@pytest.mark.parametrize(
    "parts, expected",
    [
        pytest.param([b"4:aa", b"aa,"], b"aaaa", id="1"),
        pytest.param([b"1", b"0:01234", b"56789", b","], b"0123456789", id="2"),
        pytest.param([b"2", b":", b"a", b"b", b","], b"ab", id="3"),
    ],
)
async def test_netstring_portions(kind: str, parts: list[bytes], expected: bytes) -> None:
    """test_basic.py: NetstringReceiverTests.test_receiveNetstringPortions_1,
    _2 and _3 (the length split between reads too)."""
    async with open_pair(kind) as (s, p):
        got = await feed_and_read(p, lambda: s.receive_frame(Netstring(max_size=50)), parts)
        assert got == expected
        assert s.peek() == b""


@deadline
async def test_netstring_two(kind: str) -> None:
    """test_basic.py: NetstringReceiverTests.test_receiveTwoNetstrings: the
    first read holds a netstring and the length of the next."""
    async with open_pair(kind) as (s, p):
        codec = Netstring(max_size=50)
        await p.send(b"1:a,1")
        assert await s.receive_frame(codec) == b"a"
        assert s.peek() == b"1"
        assert await feed_and_read(p, lambda: s.receive_frame(codec), [b":b,"]) == b"b"


@deadline
@pytest.mark.parametrize("max_size, ok", [(12, True), (11, False)], ids=["BorderCase1", "BorderCase2"])
async def test_netstring_length_border(kind: str, max_size: int, ok: bool) -> None:
    """test_basic.py: NetstringReceiverTests.test_consumeLengthBorderCase1
    and _2: a length of exactly MAX_LENGTH is accepted, one over it refused."""
    async with open_pair(kind) as (s, p):
        data = b"12:" + b"x" * 12 + b","
        await p.send(data)
        if ok:
            assert await s.receive_frame(Netstring(max_size=max_size)) == b"x" * 12
        else:
            with pytest.raises(FrameTooLongError) as info:
                await s.receive_frame(Netstring(max_size=max_size))
            assert (info.value.max_size, info.value.declared) == (11, 12)
            assert s.peek() == data


@deadline
async def test_netstring_max_receive_limit(kind: str) -> None:
    """test_basic.py: NetstringReceiverTests.test_maxReceiveLimit: a length
    over MAX_LENGTH (50) is refused before the body arrives."""
    async with open_pair(kind) as (s, p):
        await p.send(b"51:" + b"a" * 10)
        with pytest.raises(FrameTooLongError) as info:
            await s.receive_frame(Netstring(max_size=50))
        assert info.value.declared == 51


# ------------------------------------------------------------- IntNStringReceiver

INTN = [
    pytest.param(1, "!B", id="Int8"),
    pytest.param(2, "!H", id="Int16"),
    pytest.param(4, "!I", id="Int32"),
]
INT_STRINGS = [b"a", b"b" * 16]


@deadline
@pytest.mark.parametrize("size, fmt", INTN)
async def test_intn_receive(kind: str, size: int, fmt: str) -> None:
    """test_basic.py: IntNTestCaseMixin.test_receive (one byte per read)."""
    codec = LengthPrefixed(max_size=50, length_size=size)
    data = b"".join(struct.pack(fmt, len(x)) + x for x in INT_STRINGS)
    async with open_pair(kind) as (s, p):

        async def collect() -> list[bytes]:
            return [frame async for frame in s.frames(codec)]

        assert await feed_and_read(p, collect, packets(data, 1), eof=True) == INT_STRINGS


@deadline
@pytest.mark.parametrize(
    "size, partial, expected",
    [
        pytest.param(4, b"\x00\x00\x00", None, id="Int32-header"),
        pytest.param(2, b"\x00", None, id="Int16-header"),
        pytest.param(1, b"\x08", 9, id="Int8-body"),
    ],
)
async def test_intn_partial(kind: str, size: int, partial: bytes, expected: int | None) -> None:
    """test_basic.py: IntNTestCaseMixin.test_partial with the unfinished
    frames of each class's partialStrings (one byte per read, then EOF): no
    frame is delivered; IncompleteReadError, its bytes kept (``.expected``
    is the frame's size once its header has arrived)."""
    codec = LengthPrefixed(max_size=50, length_size=size)
    async with open_pair(kind) as (s, p):
        got: list[bytes] = []

        async def collect() -> None:
            async for frame in s.frames(codec):
                got.append(frame)

        with pytest.raises(IncompleteReadError) as info:
            await feed_and_read(p, collect, packets(partial, 1), eof=True)
        assert got == []
        assert (info.value.partial, info.value.expected) == (partial, expected)
        assert s.peek() == partial


@deadline
@pytest.mark.parametrize(
    "size, data",
    [
        pytest.param(4, b"hello there", id="Int32"),
        pytest.param(2, b"hello there", id="Int16"),
        pytest.param(1, b"dzadz", id="Int8"),
    ],
)
async def test_intn_partial_over_limit(kind: str, size: int, data: bytes) -> None:
    """test_basic.py: IntNTestCaseMixin.test_partial with the text of each
    class's partialStrings (``b"hello there"``, ``b"dzadz"``): read as a
    length it is over MAX_LENGTH (50), so no frame is delivered:
    FrameTooLongError (Twisted's ``lengthLimitExceeded``) once the prefix
    is in, nothing consumed."""
    codec = LengthPrefixed(max_size=50, length_size=size)
    async with open_pair(kind) as (s, p):
        got: list[bytes] = []

        async def collect() -> None:
            async for frame in s.frames(codec):
                got.append(frame)

        with pytest.raises(FrameTooLongError) as info:
            await feed_and_read(p, collect, packets(data, 1), eof=True)
        assert got == []
        assert info.value.declared == int.from_bytes(data[:size], "big")
        assert await s.receive_until_eof() == data


@deadline
@pytest.mark.parametrize("size", [4, 2, 1], ids=["Int32", "Int16", "Int8"])
async def test_intn_partial_empty(kind: str, size: int) -> None:
    """test_basic.py: IntNTestCaseMixin.test_partial with ``b""`` (in every
    class's partialStrings): EOF and nothing else is a clean end."""
    async with open_pair(kind) as (s, p):
        await p.eof()
        assert [frame async for frame in s.frames(LengthPrefixed(max_size=50, length_size=size))] == []


@pytest.mark.parametrize("size, fmt", INTN)
def test_intn_send(size: int, fmt: str) -> None:
    """test_basic.py: IntNTestCaseMixin.test_send (``sendString`` ->
    ``encode``)."""
    codec = LengthPrefixed(max_size=50, length_size=size)
    assert codec.encode(b"b" * 16) == struct.pack(fmt, 16) + b"b" * 16


@deadline
@pytest.mark.parametrize("size, fmt", INTN)
async def test_intn_length_limit_exceeded(kind: str, size: int, fmt: str) -> None:
    """test_basic.py: IntNTestCaseMixin.test_lengthLimitExceeded (the
    declared length, 11, over MAX_LENGTH 10) and
    RecvdAttributeMixin.test_recvdInLengthLimitExceeded (the unparsed data
    is all still there)."""
    async with open_pair(kind) as (s, p):
        await p.send(struct.pack(fmt, 11))
        with pytest.raises(FrameTooLongError) as info:
            await s.receive_frame(LengthPrefixed(max_size=10, length_size=size))
        assert info.value.declared == 11
        assert s.peek() == struct.pack(fmt, 11)


@deadline
@pytest.mark.parametrize("size, fmt", INTN)
async def test_intn_long_string_not_delivered(kind: str, size: int, fmt: str) -> None:
    """test_basic.py: IntNTestCaseMixin.test_longStringNotDelivered: the
    too-long string arrives whole with its length, and is not delivered."""
    async with open_pair(kind) as (s, p):
        data = struct.pack(fmt, 11) + b"x" * 11
        await p.send(data)
        await p.eof()
        got = []
        with pytest.raises(FrameTooLongError):
            async for frame in s.frames(LengthPrefixed(max_size=10, length_size=size)):
                got.append(frame)
        assert got == []
        assert s.peek() == data


@deadline
@pytest.mark.parametrize("size, fmt", INTN)
async def test_intn_recvd_contains_remaining(kind: str, size: int, fmt: str) -> None:
    """test_basic.py: RecvdAttributeMixin.test_recvdContainsRemainingData:
    after a complete message, the incomplete one that came with it is
    what is left (``recvd`` -> ``peek()``)."""
    async with open_pair(kind) as (s, p):
        complete = struct.pack(fmt, 5) + b"a" * 5
        incomplete = struct.pack(fmt, 5) + b"b" * 4
        await p.send(complete + incomplete)
        assert await s.receive_frame(LengthPrefixed(max_size=50, length_size=size)) == b"a" * 5
        assert s.peek() == incomplete


@deadline
@pytest.mark.parametrize("size, fmt", INTN)
async def test_intn_switching(kind: str, size: int, fmt: str) -> None:
    """test_basic.py: RecvdAttributeMixin.test_switching: after each string
    the protocol consumes a 4-byte marker itself; nothing is parsed twice."""
    codec = LengthPrefixed(max_size=50, length_size=size)
    switch = b"\x00\x00\x00\x00"
    data = b"".join(struct.pack(fmt, len(x)) + x + switch for x in INT_STRINGS)
    async with open_pair(kind) as (s, p):
        await p.send(data + b"\x01")
        got = []
        for _ in INT_STRINGS:
            got.append(await s.receive_frame(codec))
            assert await s.receive_exactly(4) == switch
        assert got == INT_STRINGS
        assert s.peek() == b"\x01"
