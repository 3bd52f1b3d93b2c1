"""BufferedStream behaviour: each receive method, errors, checkpoints, misuse."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from scripted import NoHalfClose, ScriptedStream, calls_to, results_of

from triostream import BufferedStream, FrameTooLongError, IncompleteReadError, ReceiveBuffer


def scripted(*chunks: bytes, error: BaseException | None = None, **kwargs: int) -> BufferedStream:
    return BufferedStream(ScriptedStream(chunks, error), **kwargs)


# ---------------------------------------------------------------- receive methods


async def test_receive_some_serves_buffer_first_then_transport() -> None:
    stream = scripted(b"line\nrest", b"more")
    assert await stream.receive_line() == b"line"
    assert await stream.receive_some(2) == b"re"
    assert await stream.receive_some() == b"st"
    assert await stream.receive_some() == b"more"
    assert await stream.receive_some() == b""
    assert await stream.receive_some() == b"", "EOF is sticky"
    with pytest.raises(ValueError):
        await stream.receive_some(0)


async def test_receive_exactly() -> None:
    stream = scripted(b"ab", b"cdef", b"g")
    assert await stream.receive_exactly(0) == b""
    assert await stream.receive_exactly(3) == b"abc"
    assert await stream.receive_exactly(3) == b"def"
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_exactly(2)
    assert info.value.partial == b"g"
    assert info.value.expected == 2
    assert stream.peek() == b"g", "the partial frame stays buffered"
    with pytest.raises(ValueError):
        await stream.receive_exactly(-1)
    with pytest.raises(ValueError):
        await stream.receive_exactly(stream.max_buffer_size + 1)


async def test_receive_exactly_reads_ahead() -> None:
    transport = ScriptedStream([b"x" * 1000])
    stream = BufferedStream(transport, receive_size=512)
    assert await stream.receive_exactly(10) == b"x" * 10
    assert transport.requests == [512], "one read of receive_size, not of the 10 missing bytes"
    assert len(stream.peek()) == 502


async def test_reads_never_exceed_room_or_receive_size() -> None:
    transport = ScriptedStream([b"y" * 10_000])
    stream = BufferedStream(transport, max_buffer_size=100, receive_size=64)
    with pytest.raises(FrameTooLongError):
        await stream.receive_line()
    assert transport.requests == [64, 36]
    assert len(stream.peek()) == 100


async def test_receive_exactly_into_large_payload() -> None:
    payload = bytes(range(256)) * 1000
    transport = ScriptedStream([b"hdr", payload[:100_000], payload[100_000:] + b"tail"])
    stream = BufferedStream(transport, max_buffer_size=1024, receive_size=4096)
    assert await stream.receive_exactly(3) == b"hdr"
    target = bytearray(len(payload))
    await stream.receive_exactly_into(target)
    assert target == payload
    assert await stream.receive_until_eof() == b"tail"
    assert all(r is not None and r <= 4096 for r in transport.requests)


async def test_receive_exactly_into_eof_pushes_back() -> None:
    stream = scripted(b"abc", b"def")
    target = bytearray(10)
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_exactly_into(target)
    assert info.value.partial == b"abcdef"
    assert info.value.expected == 10
    assert stream.peek() == b"abcdef", "nothing lost"
    with pytest.raises(TypeError):
        await stream.receive_exactly_into(b"readonly")
    empty = bytearray()
    await stream.receive_exactly_into(empty)


async def test_receive_exactly_into_leaves_the_buffer_resizable_on_every_way_out() -> None:
    # (Found while porting Tornado's read_into tests: see
    # tests/test_peer_tornado.py, whose resizable cases are our own, not Tornado's.)
    # The exception is kept alive, with its traceback and the frames in it:
    # the call's view of the buffer must not be among what they hold.
    stream = scripted(b"ab")
    target = bytearray(10)
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_exactly_into(target)
    del target[:]  # BufferError while a view is held
    assert info.value.partial == b"ab" and info.traceback
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"123")
    target = bytearray(8)
    with trio.move_on_after(0.05) as scope:
        await stream.receive_exactly_into(target)
    assert scope.cancelled_caught
    target.extend(b"x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_exactly_into, bytearray(100))
        await trio.testing.wait_all_tasks_blocked()
        other = bytearray(4)
        with pytest.raises(trio.BusyResourceError) as busy:
            await stream.receive_exactly_into(other)
        other.extend(b"x")
        assert busy.traceback
        await left.send_all(b"y" * 97)
    target = bytearray(2)
    await left.send_all(b"ok")
    await stream.receive_exactly_into(target)
    assert target == b"ok"
    target.extend(b"!")


async def test_receive_exactly_into_releases_its_view_when_it_refuses_the_buffer() -> None:
    # A read-only buffer and a non-contiguous one are refused (TypeError)
    # before anything is read; the call's own view of the buffer, left in
    # its frame in the traceback, is released all the same.
    stream = BufferedStream(trio.testing.memory_stream_pair()[1])
    backing = bytearray(8)
    for buffer in (b"read-only", memoryview(backing)[::2]):
        with pytest.raises(TypeError) as info:
            await stream.receive_exactly_into(buffer)
        frames = [entry.frame for entry in info.traceback if entry.frame.code.name == "receive_exactly_into"]
        assert len(frames) == 1
        with pytest.raises(ValueError):  # (a released view refuses every operation)
            frames[0].f_locals["view"].tobytes()
    assert stream.peek() == b""


async def test_receive_exactly_into_cancelled_pushes_back() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"12345")
    target = bytearray(8)
    with trio.move_on_after(0.05):
        await stream.receive_exactly_into(target)
    assert stream.peek() == b"12345"
    await left.send_all(b"678")
    await stream.receive_exactly_into(target)
    assert target == b"12345678"


async def test_receive_until_nowait_from_the_buffers_batch_keeps_the_limit_and_keep_delimiter() -> None:
    # The first call splits the lines after "a" into the buffer's batch; the
    # calls after it take from that batch, each with its own arguments.
    stream = BufferedStream(ScriptedStream([b"a\n" + b"bbbbb\n" + b"c\n" * 40]))
    await stream.fill()
    assert stream.receive_until_nowait(b"\n", max_size=100) == b"a"
    assert stream._buffer._batch_len  # (the batch this test is about)
    with pytest.raises(FrameTooLongError):
        stream.receive_until_nowait(b"\n", max_size=3)
    assert stream.receive_until_nowait(b"\n", max_size=100, keep_delimiter=True) == b"bbbbb\n"
    assert stream.receive_until_nowait(b"\n", max_size=2) == b"c"  # exactly the limit, delimiter included


async def test_receive_until_from_the_buffers_batch_with_any_equal_delimiter_and_a_bad_one() -> None:
    # receive_until takes the batch's next frame without checking the
    # delimiter again only when it is the batch's own key (that object);
    # an equal delimiter that is another object, the same in a tuple, and
    # a bad delimiter go the checked way: the same frames, and an error
    # that consumes nothing and leaves the stream usable.
    crlf = b"\r\n"
    other = bytes(bytearray(crlf))  # equal to crlf, another object
    assert other == crlf and other is not crlf
    stream = BufferedStream(ScriptedStream([b"first\r\n" + b"".join(b"%d\r\n" % n for n in range(40))]))
    with trio.testing.assert_checkpoints():
        assert await stream.receive_until(crlf) == b"first"
    assert stream._buffer._batch_len and stream._buffer._batch_key is crlf  # (the batch this test is about)
    cases: list[tuple[bytes | tuple[bytes, ...], dict[str, Any], bytes]] = [
        (crlf, {}, b"0"),
        (other, {}, b"1"),
        ((crlf,), {}, b"2"),
        ((other, crlf), {}, b"3"),
        (crlf, {"keep_delimiter": True}, b"4\r\n"),
        (other, {"keep_delimiter": True}, b"5\r\n"),
        (crlf, {"max_size": 3}, b"6"),  # exactly the limit, delimiter included
    ]
    for delimiter, options, expected in cases:
        with trio.testing.assert_checkpoints():
            assert await stream.receive_until(delimiter, **options) == expected
    for bad, error in [(b"", ValueError), ((), ValueError), ("\r\n", TypeError), ((crlf, 1), TypeError)]:
        with pytest.raises(error):
            await stream.receive_until(bad)  # type: ignore[arg-type]
        assert stream.peek().startswith(b"7\r\n")
    with pytest.raises(FrameTooLongError):
        await stream.receive_until(crlf, max_size=2)
    assert [await stream.receive_until(d) for d in (other, crlf, (crlf,), crlf, other)] == [
        b"7",
        b"8",
        b"9",
        b"10",
        b"11",
    ]
    assert stream._buffer._batch_next < stream._buffer._batch_len  # (the last from the batch too)


async def test_receive_until_and_keep_delimiter() -> None:
    stream = scripted(b"a;b", b";;c;")
    assert await stream.receive_until(b";") == b"a"
    assert await stream.receive_until(b";", keep_delimiter=True) == b"b;"
    assert await stream.receive_until(b";") == b""
    assert stream.receive_until_nowait(b";") == b"c"
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_until(b";")
    assert info.value.partial == b""
    assert info.value.expected is None


async def test_receive_until_tuple_waits_for_deciding_byte() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"abc\r")
    with trio.move_on_after(0.05) as scope:
        await stream.receive_until((b"\r", b"\r\n"))
    assert scope.cancelled_caught, "b'\\r' alone must wait for the next byte"
    await left.send_all(b"\nxyz\r")
    assert await stream.receive_until((b"\r", b"\r\n"), keep_delimiter=True) == b"abc\r\n"
    await left.send_eof()
    assert await stream.receive_until((b"\r", b"\r\n"), keep_delimiter=True) == b"xyz\r"


async def test_receive_until_max_size() -> None:
    stream = scripted(b"0123456789\n", b"ok\n")
    with pytest.raises(FrameTooLongError) as info:
        await stream.receive_until(b"\n", max_size=10)
    assert info.value.max_size == 10
    assert await stream.receive_until(b"\n", max_size=11) == b"0123456789"
    assert await stream.receive_line(max_size=3) == b"ok"
    for bad in (0, -1, stream.max_buffer_size + 1):
        with pytest.raises(ValueError):
            await stream.receive_until(b"\n", max_size=bad)


MAX_SIZE_METHODS: dict[str, Callable[[BufferedStream, object], Awaitable[bytes] | bytes]] = {
    "receive_line": lambda s, m: s.receive_line(max_size=m),  # type: ignore[arg-type]
    "receive_until": lambda s, m: s.receive_until(b"\n", max_size=m),  # type: ignore[arg-type]
    "receive_line_nowait": lambda s, m: s.receive_line_nowait(max_size=m),  # type: ignore[arg-type]
    "receive_until_nowait": lambda s, m: s.receive_until_nowait(b"\n", max_size=m),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("method", MAX_SIZE_METHODS)
async def test_max_size_is_checked_at_the_call_and_a_bad_one_consumes_nothing(method: str) -> None:
    call = MAX_SIZE_METHODS[method]
    stream = scripted(b"ab\ncd\nef\n", max_buffer_size=16)
    await stream.fill()
    for bad, error in ((0, ValueError), (-1, ValueError), (17, ValueError), (2.0, TypeError), ("3", TypeError)):
        with pytest.raises(error) as info:
            result = call(stream, bad)
            if not isinstance(result, bytes):
                await result
        assert not isinstance(info.value, FrameTooLongError)  # the argument is refused, not the frame
    # The last int accepted is remembered (the same object passes without
    # a test): a value equal to it that is not an int is still refused.
    limit = 15
    result = call(stream, limit)
    assert (result if isinstance(result, bytes) else await result) == b"ab"
    for bad, error in ((15.0, TypeError), (limit + 2, ValueError)):
        with pytest.raises(error) as info:
            result = call(stream, bad)
            if not isinstance(result, bytes):
                await result
        assert not isinstance(info.value, FrameTooLongError)  # the argument is refused, not the frame
    for good, expected in ((16, b"cd"), (3, b"ef")):  # the largest, and one just fitting "ef\n"
        result = call(stream, good)
        assert (result if isinstance(result, bytes) else await result) == expected


async def test_receive_line_lf_and_crlf() -> None:
    stream = scripted(b"one\r\ntwo\nthree\r", b"\nfour")
    assert [await stream.receive_line() for _ in range(3)] == [b"one", b"two", b"three"]
    with pytest.raises(IncompleteReadError) as info:
        await stream.receive_line()
    assert info.value.partial == b"four"


async def _receive_lines(stream: BufferedStream, how: str, count: int, ending: bytes) -> list[bytes]:
    """``count`` lines by ``receive_line``, ``receive_until(ending)``, or
    ("nowait") ``receive_line_nowait`` with ``receive_line`` when it would
    block."""
    got = []
    for _ in range(count):
        if how == "receive_line":
            got.append(await stream.receive_line())
        elif how == "receive_until":
            got.append(await stream.receive_until(ending))
        else:
            try:
                got.append(stream.receive_line_nowait())
            except trio.WouldBlock:
                got.append(await stream.receive_line())
    return got


@pytest.mark.parametrize("how", ["receive_line", "receive_until", "nowait"])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
async def test_a_read_that_ends_a_long_line_is_fed_and_the_line_joined_in_one_step(how: str, ending: bytes) -> None:
    """A receive that had to read for the rest of a long line (its head, the
    bytes of it buffered, or what the read brings of it, 256 bytes or more):
    the read that brings its end is fed and the line joined in one step
    (`ReceiveBuffer._feed_first` with its ``short``), not queued (`feed`) and
    searched again by the take. A short line goes the take's way, which
    cuts the short lines after it into a batch. Lines of 40 to 600 bytes,
    reads of 1000: the head is what the last read left of a line."""
    sizes = [600, 40, 40, 300, 40, 120, 40, 500, 40, 40, 40, 250] * 10
    bodies = [bytes([97 + i % 26]) * size for i, size in enumerate(sizes)]
    wire = b"".join(body + ending for body in bodies)
    stream = BufferedStream(ScriptedStream([wire[i : i + 1000] for i in range(0, len(wire), 1000)]))
    with results_of(ReceiveBuffer, "_feed_first") as fed_first, calls_to(ReceiveBuffer, "feed") as calls:
        assert await _receive_lines(stream, how, len(bodies), ending) == bodies
    joins = sum(result is not None for _, _, result in fed_first)
    reads = range(0, len(wire), 1000)
    heads = [at - (wire.rfind(b"\n", 0, at) + 1) for at in reads]
    firsts = [wire.find(b"\n", at) - at for at in reads]  # where each read's first \n is
    long = [head >= 256 or not first < 256 - head for head, first in zip(heads, firsts, strict=True)]
    joined = sum(long)  # (ReceiveBuffer's _BATCH_FRAME_MAX)
    assert 4 <= joined < len(reads) - 4  # both ways taken
    assert sum(head < 256 for head, is_long in zip(heads, long, strict=True) if is_long) >= 2  # (long by the read)
    if how == "receive_until" and ending == b"\r\n":
        # A two-byte delimiter may straddle two reads: always the take's way.
        assert calls.count("feed") == len(reads)
        assert joins == 0
    else:
        # (A read that starts with the \n of a \r\n is fed by _feed_first
        # and left to the take: rare.)
        split_crlf = sum(wire[at - 1 : at + 1] == b"\r\n" and is_long for at, is_long in zip(reads, long, strict=True))
        assert joins == joined - split_crlf
        assert calls.count("feed") == len(reads) - joined + split_crlf


@pytest.mark.parametrize("how", ["receive_line", "nowait"])
async def test_short_lines_after_a_read_are_cut_into_the_buffer_s_batch(how: str) -> None:
    """The other way: the lines a read brings, when short, are cut in one
    go into the buffer's batch, which the next calls pop (by `_join_across`
    with the line the read completes, by `_take_single` when the read
    starts with a line); joined alone (`_feed_first`), the next lines would
    each be searched for by their own call. Lines of 24 bytes, reads of
    1000: a batch per read."""
    bodies = [b"%023d" % i for i in range(200)]
    wire = b"".join(body + b"\n" for body in bodies)
    stream = BufferedStream(ScriptedStream([wire[i : i + 1000] for i in range(0, len(wire), 1000)]))
    with calls_to(ReceiveBuffer, "_join_across", "_take_single") as cuts:
        assert await _receive_lines(stream, how, len(bodies), b"\n") == bodies
    assert len(cuts) == len(range(0, len(wire), 1000))
    assert "_join_across" in cuts


@pytest.mark.parametrize("how", ["receive_line", "receive_until"])
async def test_short_lines_are_popped_from_the_buffer_s_batches_past_its_first_window(how: str) -> None:
    """Reads longer than the batch's first window (1 KiB): once a batch is
    used up, the next short line is left to the take, which cuts the next
    batch (its window doubled), as the ``_nowait`` loop's takes do. Before,
    the per-call methods cut every line after the first window with a
    search of their own: one batch per read."""
    bodies = [b"%023d" % i for i in range(1000)]
    wire = b"".join(body + b"\n" for body in bodies)
    reads = [wire[i : i + 8000] for i in range(0, len(wire), 8000)]
    counts = {}
    for way in (how, "nowait"):
        stream = BufferedStream(ScriptedStream(reads))
        with calls_to(ReceiveBuffer, "_join_across", "_take_single") as cuts:
            assert await _receive_lines(stream, way, len(bodies), b"\n") == bodies
        counts[way] = len(cuts)
    assert counts[how] == counts["nowait"] > len(reads)


async def test_receive_until_regex() -> None:
    stream = scripted(b"GET / HTTP/1.1\r", b"\nHost: x\n\r\n")
    pattern = rb"\r?\n"
    assert await stream.receive_until_regex(pattern) == b"GET / HTTP/1.1"
    assert await stream.receive_until_regex(re.compile(pattern), keep_delimiter=True) == b"Host: x\n"
    assert await stream.receive_until_regex(pattern) == b""
    stream = scripted(b"x" * 20)
    with pytest.raises(FrameTooLongError):
        await stream.receive_until_regex(rb"\n", max_size=10)


async def test_receive_until_regex_rescans_at_most_max_size_per_read() -> None:
    # White-box: each search is bounded to max_size bytes from the frame start.
    calls: list[tuple[int, int]] = []

    class Spy:
        pattern = b"\n"

        def search(self, data: bytes, pos: int, endpos: int) -> re.Match[bytes] | None:
            calls.append((pos, endpos))
            return re.compile(rb"\n").search(data, pos, endpos)

    stream = scripted(*[b"z"] * 100, b"\n")
    with pytest.raises(FrameTooLongError):
        await stream._receive(stream._buffer.take_regex, (Spy(), 50, False))
    assert all(end - start <= 50 for start, end in calls)


async def test_receive_until_eof() -> None:
    stream = scripted(b"abc", b"def")
    assert await stream.receive_until_eof() == b"abcdef"
    assert await stream.receive_until_eof() == b""
    stream = scripted(b"abc", b"def")
    with pytest.raises(FrameTooLongError):
        await stream.receive_until_eof(max_size=5)
    assert stream.peek() == b"abcdef"


async def test_receive_until_eof_exactly_max_buffer_size() -> None:
    stream = scripted(b"a" * 8, max_buffer_size=8)
    assert await stream.receive_until_eof() == b"a" * 8
    stream = scripted(b"a" * 9, max_buffer_size=8)
    with pytest.raises(FrameTooLongError):
        await stream.receive_until_eof()
    assert stream.peek() == b"a" * 9, "the one-byte EOF probe is kept"


async def test_discard_until() -> None:
    stream = scripted(b"x" * 1000, b"y" * 1000 + b"\r", b"\nnext\r\n", max_buffer_size=64, receive_size=64)
    assert await stream.discard_until(b"\r\n") == 2002
    assert await stream.receive_line() == b"next"
    stream = scripted(b"abc\r")
    with pytest.raises(IncompleteReadError) as info:
        await stream.discard_until(b"\r\n")
    assert info.value.partial == b"\r"


async def test_discard_until_bounded_memory() -> None:
    transport = ScriptedStream([b"q" * 100] * 100 + [b"\nok\n"])
    stream = BufferedStream(transport, max_buffer_size=256, receive_size=100)
    peak = 0
    original = stream._fill

    async def spy() -> None:
        nonlocal peak
        await original()
        peak = max(peak, len(stream._buffer))

    stream._fill = spy  # type: ignore[method-assign]
    assert await stream.discard_until(b"\n") == 10_001
    assert peak <= 256
    assert await stream.receive_line() == b"ok"


async def test_frame_too_long_then_discard_resyncs() -> None:
    stream = scripted(b"short\n" + b"L" * 300 + b"\nafter\n", max_buffer_size=128)
    assert await stream.receive_line() == b"short"
    with pytest.raises(FrameTooLongError):
        await stream.receive_line()
    assert await stream.discard_until(b"\n") == 301
    assert await stream.receive_line() == b"after"


# ---------------------------------------------------------------- nowait, peek, unreceive, detach


async def test_nowait_methods() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    with pytest.raises(trio.WouldBlock):
        stream.receive_line_nowait()
    await left.send_all(b"l1\nl2\r\n12345abc|")
    assert await stream.receive_line() == b"l1"
    assert stream.receive_line_nowait() == b"l2"
    assert stream.receive_exactly_nowait(5) == b"12345"
    with pytest.raises(trio.WouldBlock):
        stream.receive_exactly_nowait(5)
    assert stream.receive_until_nowait(b"|") == b"abc"
    with pytest.raises(trio.WouldBlock):
        stream.receive_until_nowait(b"|")
    await left.send_all(b"tail")
    await left.send_eof()
    assert await stream.receive_exactly(1) == b"t"
    assert await stream.receive_some() == b"ail"
    assert await stream.receive_some() == b""
    stream.unreceive(b"zz")
    with pytest.raises(IncompleteReadError):
        stream.receive_line_nowait()


async def test_skip_nowait_drops_exactly_n_or_nothing() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right, max_buffer_size=64)
    with pytest.raises(trio.WouldBlock):
        stream.skip_nowait(1)
    stream.skip_nowait(0)
    await left.send_all(b"abc")
    assert await stream.fill() == 3
    await left.send_all(b"defgh")
    assert await stream.fill() == 5  # two chunks buffered: the skip spans them
    with trio.testing.assert_no_checkpoints():
        stream.skip_nowait(4)
        assert stream.peek() == b"efgh"
        with pytest.raises(trio.WouldBlock):
            stream.skip_nowait(5)
        assert stream.peek() == b"efgh"  # nothing dropped
    for bad in (-1, 65):
        with pytest.raises(ValueError):
            stream.skip_nowait(bad)
    with pytest.raises(TypeError):
        stream.skip_nowait(1.5)  # type: ignore[arg-type]
    await left.send_eof()
    assert await stream.fill() == 0
    with pytest.raises(IncompleteReadError) as info:
        stream.skip_nowait(5)
    assert info.value.partial == b"efgh" and info.value.expected == 5
    stream.skip_nowait(4)
    assert await stream.receive_some() == b""


async def test_peek_unreceive() -> None:
    stream = scripted(b"world\n")
    assert stream.peek() == b""
    assert await stream.receive_exactly(0) == b""
    stream.unreceive(b"hello ")
    assert stream.peek(3) == b"hel"
    assert await stream.receive_line() == b"hello world"


async def test_peek_refuses_a_negative_size() -> None:
    """A negative size is an error, not "all" (asyncio's ``read(-1)``) nor
    nothing: before, ``peek(-1)`` returned ``b""`` with bytes buffered."""
    stream = scripted(b"hello\n")
    await stream.fill()
    with pytest.raises(ValueError):
        stream.peek(-1)
    with pytest.raises(TypeError):
        stream.peek(1.5)  # type: ignore[arg-type]
    assert stream.peek(0) == b"" and stream.peek() == b"hello\n"


async def test_detach_returns_leftover_and_closes() -> None:
    transport = ScriptedStream([b"STARTTLS\r\nleftover", b"later"])
    stream = BufferedStream(transport)
    assert await stream.receive_line() == b"STARTTLS"
    raw, leftover = stream.detach()
    assert raw is transport
    assert leftover == b"leftover"
    assert not transport.closed, "detach does not close the transport"
    assert await raw.receive_some() == b"later"
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_line()
    with pytest.raises(trio.ClosedResourceError):
        stream.detach()
    await stream.aclose()
    assert not transport.closed


async def test_detach_leftover_spans_queued_chunks() -> None:
    stream = scripted(b"ab")
    assert await stream.receive_exactly(1) == b"a"
    # White-box: chunks fed behind a tail wait, unjoined, in the buffer.
    stream._buffer.feed(b"cd")
    stream._buffer.feed(b"ef")
    assert len(stream._buffer._more) == 2
    _, leftover = stream.detach()
    assert leftover == b"bcdef"


async def test_closed_stream_raises() -> None:
    transport = ScriptedStream([b"a\nb\n"])
    stream = BufferedStream(transport)
    assert await stream.receive_line() == b"a"
    await stream.aclose()
    assert transport.closed
    await stream.aclose()  # idempotent
    for call in (
        stream.receive_line(),
        stream.receive_some(),
        stream.receive_exactly(1),
        stream.receive_until_eof(),
        stream.discard_until(b"\n"),
        stream.send_all(b"x"),
        stream.send_eof(),
        stream.wait_send_all_might_not_block(),
        stream.receive_exactly_into(bytearray(1)),
    ):
        with pytest.raises(trio.ClosedResourceError):
            await call
    with pytest.raises(trio.ClosedResourceError):
        stream.receive_line_nowait()
    with pytest.raises(trio.ClosedResourceError):
        stream.peek()
    with pytest.raises(trio.ClosedResourceError):
        async for _ in stream.lines():
            pass


async def test_send_side_passes_through() -> None:
    transport = ScriptedStream([])
    stream = BufferedStream(transport)
    await stream.send_all(b"abc")
    await stream.wait_send_all_might_not_block()
    assert stream.can_send_eof
    await stream.send_eof()
    assert transport.sent == b"abc"
    assert transport.eof_sent


async def test_send_eof_without_half_close() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(NoHalfClose(right))
    assert not stream.can_send_eof
    with trio.testing.assert_checkpoints(), pytest.raises(NotImplementedError):
        await stream.send_eof()
    await stream.send_all(b"still works")
    assert await left.receive_some() == b"still works"


def test_constructor_validation() -> None:
    left, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError):
        BufferedStream(left, max_buffer_size=0)
    with pytest.raises(ValueError):
        BufferedStream(left, receive_size=0)
    stream = BufferedStream(left, max_buffer_size=10)
    assert stream.transport_stream is left
    assert stream.max_buffer_size == 10
    assert "BufferedStream" in repr(stream)


# ---------------------------------------------------------------- iteration


async def test_lines_iteration_and_eof() -> None:
    stream = scripted(b"a\nb\r\n", b"c", b"\n")
    assert [line async for line in stream.lines()] == [b"a", b"b", b"c"]
    stream = scripted(b"a|b|c")
    with pytest.raises(IncompleteReadError) as info:
        async for _ in stream.iter_until(b"|"):
            pass
    assert info.value.partial == b"c", "a trailing partial frame is not dropped silently"


async def test_iteration_tuple_delimiter_settled_at_eof() -> None:
    stream = scripted(b"a\r\nb\r")
    assert [f async for f in stream.iter_until((b"\r", b"\r\n"))] == [b"a", b"b"]


async def test_iteration_break_leaves_next_frame() -> None:
    stream = scripted(b"1\n2\n3\n")
    async for line in stream.lines():
        assert line == b"1"
        break
    assert await stream.receive_line() == b"2"
    assert [x async for x in stream.iter_until(b"\n", keep_delimiter=True)] == [b"3\n"]


async def test_iteration_too_long_consumes_nothing() -> None:
    stream = scripted(b"ok\n" + b"x" * 50 + b"\n", max_buffer_size=16)
    seen = []
    with pytest.raises(FrameTooLongError):
        async for line in stream.lines():
            seen.append(line)
    assert seen == [b"ok"]
    assert stream.peek().startswith(b"x")


async def test_iteration_checkpoints_only_on_refill() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"a\nb\nc\n")
    iterator = stream.lines().__aiter__()
    with trio.testing.assert_checkpoints():
        assert await iterator.__anext__() == b"a"  # refill: a checkpoint
    with trio.testing.assert_no_checkpoints():
        assert await iterator.__anext__() == b"b"
        assert await iterator.__anext__() == b"c"
    await left.send_eof()
    with trio.testing.assert_checkpoints(), pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


# ---------------------------------------------------------------- checkpoints


ReceiveCall = Callable[[BufferedStream], Awaitable[object]]

RECEIVES: dict[str, ReceiveCall] = {
    "receive_some": lambda s: s.receive_some(),
    "receive_exactly": lambda s: s.receive_exactly(2),
    "receive_exactly_into": lambda s: s.receive_exactly_into(bytearray(2)),
    "receive_until": lambda s: s.receive_until(b"\n"),
    "receive_until_tuple": lambda s: s.receive_until((b"\n", b"\r\n")),
    "receive_line": lambda s: s.receive_line(),
    "receive_until_regex": lambda s: s.receive_until_regex(rb"\n"),
    "discard_until": lambda s: s.discard_until(b"\n"),
}


@pytest.mark.parametrize("name", sorted(RECEIVES))
async def test_every_receive_checkpoints_buffered_and_unbuffered(name: str) -> None:
    call = RECEIVES[name]
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"ab\n")
    # Unbuffered: reads the transport.
    assert stream.peek() == b""
    with trio.testing.assert_checkpoints():
        await call(stream)
    # Buffered: the answer is there, still a checkpoint.
    stream.unreceive(b"ab\nab\n")
    with trio.testing.assert_checkpoints():
        await call(stream)
    assert len(stream.peek()) < 6


@pytest.mark.parametrize("name", sorted(RECEIVES))
async def test_buffered_receive_is_a_cancel_point_and_consumes_nothing(name: str) -> None:
    call = RECEIVES[name]
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"ab\nab\n")
    assert await stream.receive_exactly(1) == b"a"
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await call(stream)
    assert stream.peek() == b"b\nab\n"


async def test_receive_until_eof_checkpoints() -> None:
    stream = scripted(b"abc")
    with trio.testing.assert_checkpoints():
        assert await stream.receive_until_eof() == b"abc"
    with trio.testing.assert_checkpoints():
        assert await stream.receive_until_eof() == b""


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.receive_line(max_size=3),
        lambda s: s.receive_until(b"|"),
        lambda s: s.receive_exactly(10),
        lambda s: s.receive_until_eof(max_size=3),
    ],
)
async def test_errors_from_buffered_data_are_checkpoints(call: ReceiveCall) -> None:
    stream = scripted(b"abcdef")
    await stream.receive_exactly(1)
    assert await stream.receive_some() == b"bcdef"
    stream.unreceive(b"bcdef")
    assert await stream.receive_some(1) == b"b"
    # Now EOF is known? Not yet: force it.
    assert await stream.receive_until_eof() == b"cdef"
    stream.unreceive(b"cdef")
    with trio.testing.assert_checkpoints(), pytest.raises((FrameTooLongError, IncompleteReadError)):
        await call(stream)
    assert stream.peek() == b"cdef"


async def test_discard_until_at_eof_checkpoints() -> None:
    stream = scripted(b"abc")
    assert await stream.receive_until_eof() == b"abc"
    stream.unreceive(b"abc")
    with trio.testing.assert_checkpoints(), pytest.raises(IncompleteReadError):
        await stream.discard_until(b"|")


async def test_nowait_methods_never_checkpoint() -> None:
    stream = scripted(b"line\n12345xy|")
    await stream.receive_exactly(0)
    stream.unreceive(b"line\n12345xy|")
    with trio.testing.assert_no_checkpoints():
        assert stream.receive_line_nowait() == b"line"
        assert stream.receive_exactly_nowait(5) == b"12345"
        assert stream.receive_until_nowait(b"|") == b"xy"
        with pytest.raises(trio.WouldBlock):
            stream.receive_line_nowait()
        stream.peek()
        stream.unreceive(b"x")


async def test_send_side_checkpoints() -> None:
    stream = scripted()
    with trio.testing.assert_checkpoints():
        await stream.send_all(b"x")
    with trio.testing.assert_checkpoints():
        await stream.wait_send_all_might_not_block()
    with trio.testing.assert_checkpoints():
        await stream.send_eof()
    with trio.testing.assert_checkpoints():
        await stream.aclose()
    with trio.testing.assert_checkpoints():
        await stream.aclose()
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await stream.receive_line()


# ---------------------------------------------------------------- misuse


async def test_concurrent_receives_are_busy() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_line)
        await trio.testing.wait_all_tasks_blocked()
        for call in (
            stream.receive_line(),
            stream.receive_some(),
            stream.receive_exactly(1),
            stream.discard_until(b"x"),
        ):
            with pytest.raises(trio.BusyResourceError):
                await call
        with pytest.raises(trio.BusyResourceError):
            stream.receive_line_nowait()
        with pytest.raises(trio.BusyResourceError):
            stream.unreceive(b"x")
        with pytest.raises(trio.BusyResourceError):
            stream.detach()
        with pytest.raises(trio.BusyResourceError):
            await stream.lines().__anext__()
        with pytest.raises(trio.BusyResourceError):
            stream.skip_nowait(0)
        with pytest.raises(trio.BusyResourceError):  # at once, as Trio's own streams do
            await stream.lines().batches().__anext__()
        await left.send_all(b"done\n")


async def test_concurrent_sends_are_busy() -> None:
    left, right = trio.testing.lockstep_stream_pair()
    stream = BufferedStream(right)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, b"x")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.send_all(b"y")
        with pytest.raises(trio.BusyResourceError):
            await stream.wait_send_all_might_not_block()
        with pytest.raises(trio.BusyResourceError):
            await stream.send_eof()
        assert await left.receive_some() == b"x"


async def test_transport_error_passes_through_and_keeps_buffer() -> None:
    error = trio.BrokenResourceError("reset")
    stream = scripted(b"a\nbc", error=error)
    assert await stream.receive_line() == b"a"
    with pytest.raises(trio.BrokenResourceError) as info:
        await stream.receive_line()
    assert info.value is error
    assert stream.peek() == b"bc"
    assert stream.receive_exactly_nowait(2) == b"bc"


async def test_receive_until_nowait_finds_a_two_byte_delimiter_split_between_reads() -> None:
    # The first call searches the buffered bytes (WouldBlock): what it
    # remembers must not skip the \r that ends them, which the next read's
    # \n completes.
    stream = BufferedStream(ScriptedStream([b"abc\r", b"\ndef\r\n"]))
    assert await stream.fill() == 4
    with pytest.raises(trio.WouldBlock):
        stream.receive_until_nowait(b"\r\n")
    assert await stream.fill() == 6
    assert stream.receive_until_nowait(b"\r\n") == b"abc"
    assert stream.receive_until_nowait(b"\r\n") == b"def"


@pytest.mark.parametrize("size", [10, 600])
async def test_receive_until_nowait_keeps_the_delimiter_when_asked(size: int) -> None:
    body = b"x" * size
    stream = BufferedStream(ScriptedStream([body + b"\n" + body + b"\n" + body + b"\n"]))
    await stream.fill()
    assert stream.receive_until_nowait(b"\n", keep_delimiter=True) == body + b"\n"
    assert stream.receive_until_nowait(b"\n") == body
    assert stream.receive_until_nowait(b"\n", keep_delimiter=True) == body + b"\n"
