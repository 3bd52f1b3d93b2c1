"""A frame iterator's hand-out: the frames it cut ahead are handed out one
per step while the buffer's cursor stays where the cut began, and whatever
else looks at the stream meanwhile settles the hand-out first (see
`FrameIterator` and `BufferedStream._settle`). Each test stops a loop in the
middle of a cut, or right after its last frame, and checks that what the
stream then does is what it would do with its cursor moved frame by frame."""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from unittest.mock import patch

import pytest
import trio
import trio.testing
from attack_kit import tls_contexts
from scripted import AsBytes, LateStream, ScriptedStream, calls_to, closed_during_a_late_read

import triostream._stream
from triostream import (
    BufferedStream,
    CloseReason,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    ReceiveBuffer,
    StartTLSRefusedError,
    open_connection,
)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts()


async def stream_with(data: bytes) -> BufferedStream:
    """A stream whose peer sent ``data`` (in one piece) and nothing more yet."""
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(data)
    stream = BufferedStream(right)
    stream._peer = left  # type: ignore[attr-defined]  # (kept alive for the test)
    return stream


async def test_start_tls_in_a_line_loop_after_the_last_buffered_line(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """STARTTLS as the last of the lines one read brought: no plaintext is
    left, and the upgrade goes ahead; a line after it in the same read is
    still refused (CVE-2011-0411)."""
    server_ctx, client_ctx = tls
    left, right = trio.testing.memory_stream_pair()
    client, server = BufferedStream(left), BufferedStream(right)
    await left.send_all(b"EHLO x\nSTARTTLS\n")
    seen = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(client.start_tls, client_ctx, server_hostname="localhost"))
        async for line in server.lines():
            seen.append(line)
            if line == b"STARTTLS":
                await server.start_tls(server_ctx, server_side=True)
                break
    await client.send_all(b"over tls\n")
    assert await server.receive_line() == b"over tls"
    assert seen == [b"EHLO x", b"STARTTLS"]

    stream = await stream_with(b"EHLO x\nSTARTTLS\nRCPT TO:<evil>\n")
    async for line in stream.lines():
        if line == b"STARTTLS":
            with pytest.raises(StartTLSRefusedError):
                await stream.start_tls(server_ctx, server_side=True)
            break
    assert stream.peek() == b"RCPT TO:<evil>\n"


@pytest.mark.parametrize("last", [False, True])
async def test_peek_and_repr_in_a_frame_loop_show_exactly_what_is_left(last: bool) -> None:
    stream = await stream_with(b"a\nbb\nccc\n")
    async for line in stream.lines():
        if line == (b"ccc" if last else b"a"):
            break
    rest = b"" if last else b"bb\nccc\n"
    assert stream.peek() == rest
    assert f"{len(rest)} bytes buffered" in repr(stream)
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"a\nbb\nccc\n")
    async with open_connection(right) as conn:
        await trio.testing.wait_all_tasks_blocked()  # (the reader task read it all)
        async for line in conn.lines():
            if line == (b"ccc" if last else b"a"):
                break
        assert f"{len(rest)} bytes buffered" in repr(conn)


async def test_detach_in_a_frame_loop_leaves_exactly_the_rest() -> None:
    stream = await stream_with(b"a\nb\nc\n")
    frames = stream.lines()
    assert await frames.__anext__() == b"a"
    transport, leftover = stream.detach()
    assert leftover == b"b\nc\n"
    with pytest.raises(trio.ClosedResourceError):
        await frames.__anext__()
    await transport.aclose()


@pytest.mark.parametrize("long_frame", [8192, 1])
@pytest.mark.parametrize("connection", [False, True])
@pytest.mark.parametrize("direct", [False, True])
async def test_closing_in_a_frame_loop_ends_it_before_the_next_frame(
    direct: bool, connection: bool, long_frame: int
) -> None:
    """The close comes after the second frame. ``long_frame`` 1: the lines
    take the long-frame route (the second is cut in the iterator's own
    loop), not the hand-out."""
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"a\nb\nc\nd\n")
    got = []
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(patch.object(triostream._stream, "_LONG_FRAME", long_frame))
        if connection:
            stream: BufferedStream = await stack.enter_async_context(open_connection(right))
            await trio.testing.wait_all_tasks_blocked()  # (the reader task read it all)
        else:
            stream = BufferedStream(right)
        with pytest.raises(trio.ClosedResourceError):
            if direct:
                frames = stream.lines()
                got.append(await frames.__anext__())
                got.append(await frames.__anext__())
                await stream.aclose()
                got.append(await frames.__anext__())
            else:
                async for line in stream.lines():
                    got.append(line)
                    if line == b"b":
                        await stream.aclose()
    assert got == [b"a", b"b"]


@pytest.mark.parametrize("long_frame", [8192, 1])
async def test_a_frame_loop_step_while_another_task_receives_raises_busy(long_frame: int) -> None:
    """Another task waits in a read (for more than is buffered): the loop's
    next step raises `trio.BusyResourceError`, though its next frame is
    buffered, and consumes nothing. ``long_frame`` 1: the second frame came
    from the long-frame route, 8192: from the hand-out."""
    stream = await stream_with(b"a\nb\nc\n")
    frames = stream.lines()
    with patch.object(triostream._stream, "_LONG_FRAME", long_frame):
        assert await frames.__anext__() == b"a"
        assert await frames.__anext__() == b"b"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.receive_exactly, 100)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await frames.__anext__()
            nursery.cancel_scope.cancel()
    assert stream.peek() == b"c\n"


async def test_two_frame_loops_over_one_stream_take_turns(autojump_clock: trio.testing.MockClock) -> None:
    """Each cuts ahead; the other's step settles it: every frame comes once,
    in order, whichever iterator asks, and none waits for a read while
    frames are buffered (the time limit: the peer sends nothing more)."""
    stream = await stream_with(b"".join(b"%d\n" % i for i in range(20)) + b"\x00\x00\x00\x01x" * 3)
    lines, more_lines = stream.lines(), stream.lines()
    with trio.fail_after(10):
        got = [await (lines if i % 3 else more_lines).__anext__() for i in range(20)]
        assert got == [b"%d" % i for i in range(20)]
        codec = LengthPrefixed(10)
        frames, batches = stream.frames(codec), stream.frames(codec).batches()
        assert await frames.__anext__() == b"x"
        assert await batches.__anext__() == [b"x", b"x"]


async def test_other_receives_in_a_frame_loop_take_the_next_frames() -> None:
    """A receive, a ``_nowait`` receive, a push back and a batch, each in the
    body of the loop: each sees the stream exactly after the frames the loop
    handed out."""
    stream = await stream_with(b"1\n2\n3\n4\n5\n6\n7\n8\n")
    got = []
    async for line in stream.lines():
        got.append(line)
        if line == b"1":
            assert await stream.receive_line() == b"2"
        elif line == b"3":
            assert stream.receive_line_nowait() == b"4"
        elif line == b"5":
            stream.unreceive(b"x\n")
        elif line == b"6":
            assert await stream.lines().batches().__anext__() == [b"7", b"8"]
            break
    assert got == [b"1", b"3", b"5", b"x", b"6"]


async def test_another_task_receives_while_a_frame_loop_body_waits() -> None:
    stream = await stream_with(b"a\nb\nc\n")
    got = []
    go_on = trio.Event()

    async def other() -> None:
        got.append(await stream.receive_line())
        go_on.set()

    async with trio.open_nursery() as nursery:
        async for line in stream.lines():
            got.append(line)
            if line == b"a":
                nursery.start_soon(other)
                await go_on.wait()
            else:
                break
    assert got == [b"a", b"b", b"c"]


async def test_a_connection_answering_a_frame_loop_is_idle_between_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Requests pipelined in one read, each answered with ``write`` from a
    frame loop: once the last is answered the connection is idle (the
    offset of that last reply is exact), and read_timeout does not cut the
    quiet client; a request that then begins and stalls is cut."""
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(1000):
        async with open_connection(right, read_timeout=2) as conn:
            await left.send_all(b"PING\nPING\nPING\n")
            answered = 0
            start = 0.0

            async def quiet_then_stall() -> None:
                await trio.sleep(100)  # idle between requests: fine
                await left.send_all(b"PI")  # a request begins, and stalls

            async with trio.open_nursery() as nursery:
                with pytest.raises(trio.BrokenResourceError):
                    async for line in conn.lines():
                        assert line == b"PING"
                        conn.write(b"PONG\n")
                        answered += 1
                        if answered == 3:
                            start = trio.current_time()
                            nursery.start_soon(quiet_then_stall)
            assert answered == 3
            assert trio.current_time() - start == pytest.approx(102, abs=0.5)
            assert conn.close_reason is CloseReason.TIMEOUT


@pytest.mark.parametrize("peer_eof", [False, True])
async def test_a_frame_loop_that_cut_while_a_connection_closed_ends_with_it(peer_eof: bool) -> None:
    """Connection.aclose waits (flushing, lingering) before it ends the
    connection: a loop that cut frames meanwhile hands out none after. (The
    close lingers, dropping what is buffered, unless the peer sent its EOF.)"""
    left, right = trio.testing.lockstep_stream_pair()
    async with trio.open_nursery() as nursery, open_connection(right) as conn:
        nursery.start_soon(left.send_all, b"a\nb\nc\n")
        await trio.testing.wait_all_tasks_blocked()  # (the reader task read it all)
        if peer_eof:
            nursery.start_soon(left.send_eof)
            await trio.testing.wait_all_tasks_blocked()
        conn.write(b"reply")  # the writer task waits: the peer does not read yet
        nursery.start_soon(conn.aclose)
        await trio.testing.wait_all_tasks_blocked()  # the close waits for the flush
        frames = conn.lines()
        assert await frames.__anext__() == b"a"  # cut during the close
        assert await left.receive_some() == b"reply"
        if not peer_eof:
            await left.aclose()  # (the close sends its EOF and lingers until the peer's)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.closed
        with pytest.raises(trio.ClosedResourceError):
            await frames.__anext__()


async def test_closing_a_connection_in_a_frame_loop_after_its_last_frame_does_not_linger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Everything the peer sent was handed out: the close has no unread
    bytes to linger over (it would wait for the peer's EOF, or 0.5 s of
    quiet), and ends at once."""
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"a\nb\n")
    async with open_connection(right) as conn:
        await trio.testing.wait_all_tasks_blocked()  # (the reader task read it all)
        start = trio.current_time()
        async for line in conn.lines():
            if line == b"b":
                await conn.aclose()
                break
        assert trio.current_time() == start  # (the mock clock: no wait at all)


# The medium-frame loop (`FrameIterator._frames`, lines of 512 B-8 KiB): each
# read is fed and cut in one call, its first frame (the one that straddled
# into it) handed out alone, the others as a cut, and the next read made in
# the loop itself, for as long as nothing else looks at the buffer.


def _random_bodies(rnd: random.Random, count: int, others: bool) -> Iterator[bytes]:
    """``count`` bodies of 520-3000 bytes (with ``others``, runs of short and
    of long ones among them), drawn one at a time from ``rnd`` (a caller may
    draw between them)."""
    sizes = {"medium": (520, 3000), "short": (0, 100), "long": (8200, 12000)}
    regime = "medium"
    for n in range(count):
        if others and rnd.random() < 0.05:
            regime = rnd.choice(["medium", "medium", "short", "long"])
        yield bytes([97 + n % 26]) * rnd.randint(*sizes[regime])


def _medium_lines(
    rnd: random.Random, count: int, crlf: float, others: bool = False
) -> tuple[list[bytes], bytes, list[int]]:
    """``count`` lines of 520-3000 bytes (with ``others``, runs of short and
    of long lines among them), a share ``crlf`` of them ending in \r\n; the
    wire, and where each line's ending ends in it."""
    lines = []
    for body in _random_bodies(rnd, count, others):
        lines.append(body + (b"\r" if rnd.random() < crlf else b""))
    wire = b"".join(line + b"\n" for line in lines)
    return lines, wire, list(itertools.accumulate(len(line) + 1 for line in lines))


def _cut(rnd: random.Random, wire: bytes, low: int, high: int) -> list[bytes]:
    chunks, i = [], 0
    while i < len(wire):
        n = rnd.randint(low, high)
        chunks.append(wire[i : i + n])
        i += n
    return chunks


@pytest.mark.parametrize("until", [False, True])
async def test_a_loop_over_medium_lines_reads_and_cuts_in_its_own_loop(until: bool) -> None:
    """The loop's reads after the first medium cuts are made and cut in the
    loop itself: the buffer's feeds, searches and cutters are called at the
    start (while the peek's window grows), not once per read. (The takes are
    not spied on: the loop knows the buffer's own by their identity.)"""
    rnd = random.Random(5)
    lines, wire, _ = _medium_lines(rnd, 800, 0.0)
    chunks = _cut(rnd, wire, 8192, 65536)
    transport = ScriptedStream(chunks)
    stream = BufferedStream(transport)
    with calls_to(ReceiveBuffer, "feed", "_feed_first", "_feed_batch", "_search", "peek_frames") as calls:
        frames = stream.iter_until(b"\n") if until else stream.lines()
        assert [line async for line in frames] == lines
    assert len(transport.requests) > len(chunks) >= 40  # (every chunk read, and EOF)
    assert "feed" not in calls and "_feed_batch" not in calls
    assert len(calls) < len(chunks) // 2, calls


@pytest.mark.parametrize("seed", range(24))
async def test_other_receives_between_the_steps_of_a_loop_over_medium_lines_take_the_next_lines(seed: int) -> None:
    """Between any two steps of a loop over medium lines (after a read's first
    line, inside its cut, after its last), the body receives, pushes back,
    peeks, changes ``receive_size`` or starts a new loop: every line still
    comes once, in order, and none is lost."""
    rnd = random.Random(seed)
    until = seed % 2 == 1
    lines, wire, ends = _medium_lines(rnd, 300, rnd.choice([0.0, 0.0, 0.01, 0.05, 1.0]), others=seed % 3 == 0)
    expected = lines if until else [line.removesuffix(b"\r") for line in lines]
    stream = BufferedStream(ScriptedStream(_cut(rnd, wire, 1000, 70000)))
    frames = stream.iter_until(b"\n") if until else stream.lines()
    receive = functools.partial(stream.receive_until, b"\n") if until else stream.receive_line
    await _loop_with_other_receives(rnd, stream, frames, receive, expected, wire, ends)


async def _loop_with_other_receives(
    rnd: random.Random,
    stream: BufferedStream,
    frames: AsyncIterable[bytes],
    receive: Callable[[], Awaitable[bytes]],
    expected: list[bytes],
    wire: bytes,
    ends: list[int],
) -> None:
    """Run a loop over ``frames`` to its end, ``expected`` coming one by one;
    between two steps, at random, the body takes the next frame with
    ``receive``, pushes the last one back (``wire`` up to ``ends[k]`` is
    frame ``k``'s end), peeks, changes ``receive_size`` or starts a new
    loop. Every frame comes once, in order, as bytes; every read is
    counted."""
    loop = aiter(frames)
    i = 0
    while True:
        try:
            frame = await loop.__anext__()
        except StopAsyncIteration:
            break
        assert frame == expected[i], i
        assert type(frame) is bytes  # (also when the buffer held a bytearray: after unreceive)
        i += 1
        r = rnd.random()
        if i == len(expected):
            continue
        if r < 0.06:
            assert await receive() == expected[i]
            i += 1
        elif r < 0.12:
            start = ends[i - 2] if i > 1 else 0
            stream.unreceive(wire[start : ends[i - 1]])
            i -= 1
        elif r < 0.16:
            assert wire.startswith(stream.peek(), ends[i - 1])
        elif r < 0.2:
            stream.receive_size = rnd.choice([700, 4096, 65536])
        elif r < 0.22:
            loop = aiter(frames)
    assert i == len(expected)
    assert stream._buffer.offset == len(wire)  # (every read counted, those the loop cut itself too)


@pytest.mark.parametrize("until", [False, True])
async def test_a_loop_over_medium_lines_stops_before_a_line_over_the_limit(until: bool) -> None:
    """A read whose cut stops before a line over ``max_size``: its lines come,
    then the step raises `FrameTooLongError` with that line still buffered."""
    lines = [bytes([97 + n]) * 1000 for n in range(10)]
    wire = b"".join(line + b"\n" for line in lines)
    too_long = b"z" * 2500
    stream = BufferedStream(ScriptedStream([wire[:5300], wire[5300:] + too_long + b"\nafter\n"]))
    frames = stream.iter_until(b"\n", max_size=2000) if until else stream.lines(max_size=2000)
    got = []
    with pytest.raises(FrameTooLongError):
        async for line in frames:
            got.append(line)
    assert got == lines
    assert stream.peek() == too_long + b"\nafter\n"
    await stream.discard_until(b"\n")
    assert [line async for line in frames] == [b"after"]


@pytest.mark.parametrize("closing", ["stream", "transport"])
async def test_closing_a_stream_while_a_loop_over_medium_lines_waits_for_its_read(closing: str) -> None:
    """Another task closes the stream (or its transport) while the loop waits
    for a read it made in its own loop: the step raises
    `trio.ClosedResourceError`, saying so when the stream was closed."""
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(AsBytes(right))  # (a socket's reads are bytes)
    lines = [bytes([97 + n]) * 1000 for n in range(10)]
    wire = b"".join(line + b"\n" for line in lines)
    got = []
    async with trio.open_nursery() as nursery:
        await left.send_all(wire[:5300])
        with pytest.raises(trio.ClosedResourceError) as raised:
            async for line in stream.lines():
                got.append(line)
                if len(got) == 5:
                    await left.send_all(wire[5300:] + b"x" * 300)  # the next read: lines and a head
                elif len(got) == len(lines):
                    # (Runs while the next step waits for a read.)
                    nursery.start_soon(stream.aclose if closing == "stream" else right.aclose)
    assert got == lines
    assert ("closed by another task" in str(raised.value)) == (closing == "stream")


# 40 lines of 999 bytes and their \n, read 5,000 bytes at a time: by their
# end the loop cuts each read itself (see the test above), and the chunks
# after them are cut so, from a buffer that holds nothing.
_ENGAGE = [bytes([97 + n % 26]) * 999 for n in range(40)]
_ENGAGE_CHUNKS = _cut(random.Random(0), b"".join(line + b"\n" for line in _ENGAGE), 5000, 5000)


async def _frames_after_engaging(
    stream: BufferedStream, until: bool, max_size: int | None = None
) -> tuple[AsyncIterator[bytes], list[bytes]]:
    """The stream's frame loop (lines, or ``iter_until(b"\n")``), run over the
    engaging lines; returns it and what it gave."""
    frames = aiter(stream.iter_until(b"\n", max_size=max_size) if until else stream.lines(max_size=max_size))
    got = [await frames.__anext__() for _ in _ENGAGE]
    assert got == _ENGAGE
    return frames, got


@pytest.mark.parametrize("until", [False, True])
async def test_a_loop_cutting_its_reads_of_medium_lines_sees_a_cr_that_ends_the_read_before_its_lf(
    until: bool,
) -> None:
    """A read cut in the loop ends with the \r of a line's \r\n, the next
    begins with its \n: the line comes whole (stripped of \r\n by lines())."""
    tail = [b"b" * 999 + b"\r\n" + b"c" * 999 + b"\r\n" + b"d" * 500 + b"\r", b"\n" + b"e" * 999 + b"\r\n"]
    stream = BufferedStream(ScriptedStream(_ENGAGE_CHUNKS + tail))
    frames, _ = await _frames_after_engaging(stream, until)
    cr = b"\r" if until else b""
    assert [line async for line in frames] == [b"b" * 999 + cr, b"c" * 999 + cr, b"d" * 500 + cr, b"e" * 999 + cr]


@pytest.mark.parametrize("until", [False, True])
@pytest.mark.parametrize("over", [False, True], ids=["at-the-limit", "over-it"])
async def test_a_loop_cutting_its_reads_of_medium_lines_holds_a_line_that_straddles_to_its_limit(
    until: bool, over: bool
) -> None:
    """The line that straddles into a read the loop cuts itself: at
    ``max_size`` bytes with its \n it comes; one byte more, and the loop
    raises `FrameTooLongError` with it still buffered."""
    head = b"c" * 700
    rest = b"c" * (800 if over else 799) + b"\n" + b"d" * 999 + b"\n"
    tail = [b"b" * 999 + b"\n" + b"b" * 999 + b"\n" + head, rest]
    stream = BufferedStream(ScriptedStream(_ENGAGE_CHUNKS + tail))
    frames, _ = await _frames_after_engaging(stream, until, max_size=1500)
    assert [await frames.__anext__(), await frames.__anext__()] == [b"b" * 999] * 2
    if over:
        with pytest.raises(FrameTooLongError):
            await frames.__anext__()
        assert stream.peek() == head + rest
    else:
        with calls_to(ReceiveBuffer, "feed", "_feed_first", "_feed_batch") as calls:
            assert [line async for line in frames] == [b"c" * 1499, b"d" * 999]
        assert calls == []  # (the loop cut the read itself: the engaging lines did engage it)


@pytest.mark.parametrize("until", [False, True])
async def test_a_loop_cutting_its_reads_of_medium_lines_sees_a_crlf_after_lf_lines(until: bool) -> None:
    """In a read the loop cuts itself, lines under 2 KiB after its first
    are cut by the find loop and scanned for \r once: a \r\n among \n
    endings is found (and stripped by lines())."""
    tail = [b"b" * 999 + b"\n" + b"c" * 999 + b"\n" + b"d" * 999 + b"\r\n" + b"e" * 999 + b"\n" + b"f" * 10]
    tail.append(b"f" * 989 + b"\n")
    stream = BufferedStream(ScriptedStream(_ENGAGE_CHUNKS + tail))
    frames, _ = await _frames_after_engaging(stream, until)
    cr = b"\r" if until else b""
    assert [line async for line in frames] == [b"b" * 999, b"c" * 999, b"d" * 999 + cr, b"e" * 999, b"f" * 999]


@pytest.mark.parametrize("until", [False, True])
async def test_a_loop_cutting_its_reads_of_crlf_lines_stops_before_a_line_over_the_limit(until: bool) -> None:
    """\r\n lines are cut with a test per line (for \r and the limit): a line
    over ``max_size`` in the middle of a read ends the cut; the lines before
    it come, then `FrameTooLongError`, and it stays buffered."""
    too_long = b"z" * 1600 + b"\r\n"
    tail = [b"b" * 999 + b"\r\n" + b"c" * 999 + b"\r\n" + b"d" * 999 + b"\r\n" + too_long + b"e" * 999 + b"\r\n"]
    stream = BufferedStream(ScriptedStream(_ENGAGE_CHUNKS + tail))
    frames, _ = await _frames_after_engaging(stream, until, max_size=1500)
    cr = b"\r" if until else b""
    assert [await frames.__anext__() for _ in range(3)] == [b"b" * 999 + cr, b"c" * 999 + cr, b"d" * 999 + cr]
    with pytest.raises(FrameTooLongError):
        await frames.__anext__()
    assert stream.peek() == too_long + b"e" * 999 + b"\r\n"


@pytest.mark.parametrize("until", [False, True])
async def test_a_read_the_loop_cuts_itself_returning_after_a_close_hands_nothing_out(until: bool) -> None:
    """The loop's own read of medium lines returns after another task closed
    the stream: `trio.ClosedResourceError`, and its lines are not handed
    out."""
    transport = LateStream(_ENGAGE_CHUNKS, b"x" * 999 + b"\n" + b"y" * 999 + b"\n")
    stream = BufferedStream(transport)
    frames, _ = await _frames_after_engaging(stream, until)
    await closed_during_a_late_read(stream, transport, frames.__anext__)
    assert not stream._buffer


# The same loop for a codec's medium frames (`LengthPrefixed`, bodies of
# 512 B-8 KiB): each of its own reads fed and cut in one call (the codec's
# feed_batch), the first frame handed out alone, the others as a cut.


def _medium_frames(rnd: random.Random, count: int, others: bool = False) -> tuple[list[bytes], bytes, list[int]]:
    """``count`` bodies of 520-3000 bytes (with ``others``, runs of short and
    of long ones among them), the wire (4-byte big-endian lengths), and where
    each frame ends in it."""
    bodies = list(_random_bodies(rnd, count, others))
    return bodies, _prefixed(*bodies), list(itertools.accumulate(4 + len(body) for body in bodies))


def _prefixed(*bodies: bytes) -> bytes:
    return b"".join(len(body).to_bytes(4, "big") + body for body in bodies)


async def test_a_loop_over_a_codecs_medium_frames_reads_and_cuts_in_its_own_loop() -> None:
    """After the first cuts, the loop's reads are fed and cut in one call
    each, in the loop: the codec's one-frame feed and its peek are called at
    the start, not once per read."""
    rnd = random.Random(7)
    bodies, wire, _ = _medium_frames(rnd, 1000)
    chunks = _cut(rnd, wire, 8192, 65536)
    transport = ScriptedStream(chunks)
    stream = BufferedStream(transport)
    codec_class = type(stream._decoder(LengthPrefixed(16384)))
    with (
        calls_to(codec_class, "_feed_first", "peek_frames", "_feed_batch") as calls,
        calls_to(ReceiveBuffer, "feed") as feeds,
    ):
        assert [frame async for frame in stream.frames(LengthPrefixed(16384))] == bodies
    assert len(transport.requests) > len(chunks) >= 30  # (every chunk read, and EOF)
    assert calls.count("_feed_batch") >= len(chunks) - 10
    assert calls.count("_feed_first") + calls.count("peek_frames") + len(feeds) < 10, (calls, feeds)


@pytest.mark.parametrize("seed", range(16))
async def test_other_receives_between_the_steps_of_a_loop_over_a_codecs_medium_frames_take_the_next_frames(
    seed: int,
) -> None:
    """Between any two steps of a loop over medium length-prefixed frames
    (after a read's first frame, inside its cut, after its last), the body
    receives a frame, pushes one back, peeks, changes ``receive_size`` or
    starts a new loop: every frame still comes once, in order."""
    rnd = random.Random(seed)
    bodies, wire, ends = _medium_frames(rnd, 300, others=seed % 3 == 0)
    codec = LengthPrefixed(16384)
    stream = BufferedStream(ScriptedStream(_cut(rnd, wire, 1000, 70000)))
    receive = functools.partial(stream.receive_frame, codec)
    await _loop_with_other_receives(rnd, stream, stream.frames(codec), receive, bodies, wire, ends)


# The engaging lines' bodies as 40 length-prefixed frames, read 5,000 bytes
# at a time: by their end the loop feeds and cuts each read itself (see the
# test above).
_ENGAGE_FRAME_CHUNKS = _cut(random.Random(0), _prefixed(*_ENGAGE), 5000, 5000)


async def _codec_frames_after_engaging(stream: BufferedStream, max_size: int = 4096) -> AsyncIterator[bytes]:
    frames = aiter(stream.frames(LengthPrefixed(max_size)))
    assert [await frames.__anext__() for _ in _ENGAGE] == _ENGAGE
    return frames


async def test_a_loop_cutting_its_reads_of_a_codecs_medium_frames_stops_before_a_frame_over_the_limit() -> None:
    """A read the loop cuts itself holds a frame whose declared size is over
    ``max_size``: the frames before it come, then `FrameTooLongError`, and
    it stays buffered, header and all."""
    too_long = _prefixed(b"z" * 1600)
    tail = [_prefixed(b"b" * 999, b"c" * 999) + too_long + _prefixed(b"d" * 999)]
    stream = BufferedStream(ScriptedStream(_ENGAGE_FRAME_CHUNKS + tail))
    with calls_to(type(stream._decoder(LengthPrefixed(1500))), "_feed_first", "_feed_batch") as calls:
        frames = await _codec_frames_after_engaging(stream, max_size=1500)
        engaged = len(calls)
        assert [await frames.__anext__() for _ in range(2)] == [b"b" * 999, b"c" * 999]
    assert calls[engaged:] == ["_feed_batch"]  # (the loop's own cut: the engaging frames did engage it)
    with pytest.raises(FrameTooLongError):
        await frames.__anext__()
    assert stream.peek() == too_long + _prefixed(b"d" * 999)


async def test_a_loop_cutting_its_reads_of_a_codecs_medium_frames_raises_at_eof_inside_a_frame() -> None:
    """EOF after a read the loop cut itself, inside the frame that read
    began: the whole frames come, then `IncompleteReadError` with the
    frame's bytes."""
    tail = [_prefixed(b"b" * 999, b"c" * 999) + _prefixed(b"d" * 999)[:600]]
    stream = BufferedStream(ScriptedStream(_ENGAGE_FRAME_CHUNKS + tail))
    frames = await _codec_frames_after_engaging(stream)
    assert [await frames.__anext__() for _ in range(2)] == [b"b" * 999, b"c" * 999]
    with pytest.raises(IncompleteReadError) as raised:
        await frames.__anext__()
    assert raised.value.partial == _prefixed(b"d" * 999)[:600]


async def test_a_read_the_loop_cuts_itself_for_a_codec_returning_after_a_close_hands_nothing_out() -> None:
    """The loop's own read of medium length-prefixed frames returns after
    another task closed the stream: `trio.ClosedResourceError`, and its
    frames are not handed out."""
    transport = LateStream(_ENGAGE_FRAME_CHUNKS, _prefixed(b"x" * 999, b"y" * 999))
    stream = BufferedStream(transport)
    frames = await _codec_frames_after_engaging(stream)
    await closed_during_a_late_read(stream, transport, frames.__anext__)
    assert not stream._buffer
