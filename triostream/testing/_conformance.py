"""A conformance kit for buffered stream wrappers.

`check_buffered_stream` runs, on a user's wrapper, everything
`trio.testing.check_two_way_stream` checks (or `check_half_closeable_stream`
when the wrapper is half-closeable), plus what that suite does not check.
On the wrapper's ``receive_some``:

* **checkpoints on buffered reads**: a read served from the wrapper's buffer
  is still a cancel point and a schedule point, and a cancelled one consumes
  nothing;
* **all or nothing under cancellation**: thousands of reads cancelled at
  random moments (deadlines and cancellation from another task) while the
  peer sends in random pieces lose and duplicate nothing;
* **chunking invariance**: the bytes read do not depend on how the peer's
  writes were cut;
* **bounded buffering**: with a hostile peer sending far more than is read,
  the wrapper takes at most ``max_buffered`` bytes from its transport beyond
  what it handed out;
* **linear time**: reading 16 times the data in small reads costs about 16
  times the CPU time, not 256 times.

And, when the caller says how the wrapper reads a line (``receive_line``),
the same properties for whole lines: a buffered line read checkpoints and a
cancelled one consumes nothing; lines read under random cancellation arrive
whole, each once; lines do not depend on the chunking; a line that never ends
is refused (any exception) after at most ``max_buffered`` bytes; and a long
line trickling in costs time linear in its length (no rescanning from the
start on every read). The line checks also work on wrappers that are not
streams at all, such as a `triostream.FrameChannel`.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.lowlevel
import trio.testing

__all__ = ["ConformanceReport", "check_buffered_stream"]

Wrap = Callable[[trio.abc.Stream, trio.Nursery], Any]
ReceiveLine = Callable[[Any], Awaitable[bytes | bytearray]]

# The linear-time checks compare a size with 16 times that size. A linear
# wrapper takes 12-17 times as long; a wrapper that rescans or copies its
# whole buffer on every read takes 60-300 times as long at these sizes.
_TIME_FACTOR = 16
_TIME_LIMIT = 40.0
_LONG_LINE = 2 << 20
_MIN_LONG_LINE = 1 << 20
_TRICKLE = 1024


@dataclass
class ConformanceReport:
    """What `check_buffered_stream` checked.

    Attributes:
      passed: the names of the checks that ran and passed.
      not_run: ``(name, reason)`` for each check that did not apply.
      time_ratios: for each linear-time check, the measured CPU-time ratio
        (linear is about 16; the check fails above 40).
    """

    passed: list[str] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)
    time_ratios: dict[str, float] = field(default_factory=dict)


async def check_buffered_stream(
    wrap: Wrap,
    *,
    max_buffered: int = 1 << 20,
    receive_line: ReceiveLine | None = None,
    max_line: int | None = None,
    cancellations: int = 2000,
    seed: int = 0,
    phase_timeout: float = 60.0,
) -> ConformanceReport:
    """Check a buffered stream wrapper; raise AssertionError at the first failure.

    Args:
      wrap: ``wrap(transport, nursery)`` returns the wrapper around
        ``transport`` (``lambda t, n: BufferedStream(t)``), starting any helper
        tasks in ``nursery``. The wrapper must have ``aclose``; if it is a
        `trio.abc.Stream`, the stream checks run on it.
      max_buffered: the most bytes the wrapper may read from its transport
        beyond what it has handed out (its buffer bound).
      receive_line: ``await receive_line(wrapper)`` reads one line ended by
        ``b"\\n"`` and returns it (a trailing ``b"\\n"`` or ``b"\\r\\n"`` is
        ignored); when given, the line checks run too. Required for wrappers
        that are not streams.
      max_line: the longest line that ``receive_line`` accepts, its
        ``b"\n"`` included; default ``max_buffered // 2``. The
        linear-time line check needs at least 1 MiB and uses a line of
        ``min(max_line, 2 MiB)`` bytes; below 1 MiB it is not run (the
        report says so).
      cancellations: how many cancelled reads each fuzz must see at least.
      seed: seed of the random choices (failure messages repeat it).
      phase_timeout: seconds each check may take before the wrapper is
        declared hanging.

    Returns:
      A `ConformanceReport`: the checks that passed, those that did not
      apply and why, and the measured time ratios.

    Raises:
      AssertionError: a check failed; the message names the check and what
        went wrong (with the seed, where it matters).
      TypeError: the wrapper is not a stream and no ``receive_line`` was given.

    The linear-time checks compare CPU time (``time.process_time``, garbage
    collection paused) of two sizes in the same run, the best of five, and
    measure again before failing: they need no quiet machine, but a machine
    so loaded that one run is 2.5 times slower than another can still fool
    them. Must run inside a Trio task (as an async test does).
    """
    if max_line is None:
        max_line = max_buffered // 2
    async with trio.open_nursery() as nursery:
        probe = wrap(trio.testing.memory_stream_pair()[0], nursery)
        is_stream = isinstance(probe, trio.abc.Stream)
        await trio.aclose_forcefully(probe)
        nursery.cancel_scope.cancel()
    if not is_stream and receive_line is None:
        raise TypeError(f"{type(probe).__name__} is not a trio.abc.Stream: pass receive_line to check it")

    report = ConformanceReport()
    phases: list[tuple[str, Callable[[], Awaitable[object]]]] = []
    if is_stream:
        phases += [
            ("trio's stream conformance checks", lambda: _check_trio_conformance(wrap)),
            ("checkpoints on buffered reads", lambda: _check_buffered_checkpoints(wrap)),
            ("all or nothing under cancellation", lambda: _check_cancellation(wrap, cancellations, seed)),
            ("chunking invariance", lambda: _check_chunking_invariance(wrap, seed)),
            ("bounded buffering", lambda: _check_bounded(wrap, max_buffered)),
            ("linear time of small reads", lambda: _check_receive_time(wrap)),
        ]
    else:
        report.not_run.append(("stream checks", f"{type(probe).__name__} is not a trio.abc.Stream"))
    if receive_line is not None:
        read_line = receive_line
        phases += [
            ("checkpoints on buffered lines", lambda: _check_line_checkpoints(wrap, read_line)),
            ("whole lines under cancellation", lambda: _check_line_cancellation(wrap, read_line, cancellations, seed)),
            ("line chunking invariance", lambda: _check_line_chunking(wrap, read_line, seed)),
            ("a line that never ends", lambda: _check_endless_line(wrap, read_line, max_buffered)),
        ]
        if max_line >= _MIN_LONG_LINE:
            long_line = min(max_line, _LONG_LINE)
            phases.append(("linear time of a trickling line", lambda: _check_line_time(wrap, read_line, long_line)))
        else:
            report.not_run.append(
                ("linear time of a trickling line", f"max_line={max_line} is below {_MIN_LONG_LINE} (1 MiB)")
            )
    else:
        report.not_run.append(("line checks", "no receive_line given"))

    for name, phase in phases:
        # A wrapper that hangs (a receive that never returns) fails, too.
        with trio.move_on_after(phase_timeout) as scope:
            try:
                result = await phase()
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from exc
        if scope.cancelled_caught:
            raise AssertionError(f"{name}: did not finish within {phase_timeout} s (a read or send hangs)")
        if isinstance(result, float):
            report.time_ratios[name] = result
        report.passed.append(name)
    return report


# ------------------------------------------------------------------ transports


class _CountingStream(trio.abc.HalfCloseableStream):
    """The transport under the wrapper: counts the bytes the wrapper reads,
    and hands out at most ``cap()`` bytes per receive when ``cap`` is set."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.cap: Callable[[], int] | None = None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.cap is not None:
            max_bytes = min(max_bytes or 65536, self.cap())
        data = await self.inner.receive_some(max_bytes)
        self.bytes_read += len(data)
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _PreloadedStream(trio.abc.Stream):
    """A transport holding ``data``: each receive hands out at most ``cap``
    bytes (64 KiB when the caller gives no size) without a checkpoint, so a
    timing measures the wrapper, not the transport; empty, it waits forever."""

    def __init__(self, data: bytes, cap: int) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.cap = cap

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.pos >= len(self.data):
            await trio.sleep_forever()
        size = min(max_bytes or 65536, self.cap)
        chunk = bytes(self.data[self.pos : self.pos + size])
        self.pos += len(chunk)
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def _wrapped_pair(
    wrap: Wrap, *, maker: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] = trio.testing.memory_stream_pair
) -> AsyncIterator[tuple[trio.abc.HalfCloseableStream, Any, _CountingStream]]:
    """(raw peer, wrapper, counting transport under the wrapper)."""
    peer, transport = maker()
    counting = _CountingStream(transport)  # type: ignore[arg-type]
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        wrapper = wrap(counting, nursery)
        try:
            yield peer, wrapper, counting  # type: ignore[misc]
        except BaseException as exc:
            error = exc  # re-raised outside the nursery: no exception group
        finally:
            await trio.aclose_forcefully(wrapper)
            await trio.aclose_forcefully(peer)
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


async def _send_in_pieces(peer: trio.abc.SendStream, data: bytes, sizes: Callable[[int], int]) -> None:
    """Send ``data`` in pieces of ``sizes(index)`` bytes, with a schedule
    point between pieces."""
    pos = index = 0
    while pos < len(data):
        size = sizes(index)
        await peer.send_all(data[pos : pos + size])
        pos += size
        index += 1
        await trio.lowlevel.checkpoint()


def _first_difference(got: bytes | list[bytes], want: bytes | list[bytes]) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))


def _random_lines(rng: random.Random, count: int, max_length: int) -> list[bytes]:
    """Lines of random bytes with no b"\\r" or b"\\n" in them, empty ones included."""
    no_line_ends = bytes.maketrans(b"\r\n", b"RN")
    return [rng.randbytes(rng.randrange(0, max_length + 1)).translate(no_line_ends) for _ in range(count)]


def _strip(line: bytes | bytearray) -> bytes:
    line = bytes(line)
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


async def _expect_cancelled(name: str, call: Callable[[], Awaitable[object]]) -> None:
    """``call()`` in an already cancelled scope must raise Cancelled."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            lost = await call()
        except trio.Cancelled:
            return
    raise AssertionError(f"{name} in a cancelled scope returned {lost!r} instead of raising")


def _chunkings(rng: random.Random, total: int) -> list[list[int]]:
    """The peer's send sizes the chunking checks try: one byte, mixed, all at once, random."""
    return [[1], [7, 1, 300], [total], [rng.randrange(1, 50) for _ in range(20)]]


async def _cancelled_reads(read: Callable[[], Awaitable[bool]], rng: random.Random, nursery: trio.Nursery) -> int:
    """Call ``read()`` until it returns False, each call in its own cancel
    scope, cancelled at random: before it starts, or from another task after
    a random number of schedule points. Returns how many calls were cancelled."""
    scopes_in, scopes_out = trio.open_memory_channel[trio.CancelScope](float("inf"))

    async def canceller() -> None:
        async for scope in scopes_out:
            for _ in range(rng.randrange(0, 4)):
                await trio.lowlevel.checkpoint()
            if rng.random() < 0.5:
                scope.cancel()

    nursery.start_soon(canceller)
    cancelled = 0
    more = True
    while more:
        with trio.CancelScope() as scope:
            if rng.random() < 0.3:
                scope.cancel()  # cancelled before it starts
            scopes_in.send_nowait(scope)
            more = await read()
        cancelled += scope.cancelled_caught
    scopes_in.close()
    return cancelled


# ------------------------------------------------------------ the stream checks


async def _check_trio_conformance(wrap: Wrap) -> None:
    async with trio.open_nursery() as nursery:

        async def maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
            left, right = trio.testing.memory_stream_pair()
            return wrap(left, nursery), wrap(right, nursery)

        probe, other = await maker()
        half_closeable = isinstance(probe, trio.abc.HalfCloseableStream)
        await trio.aclose_forcefully(probe)
        await trio.aclose_forcefully(other)
        if half_closeable:
            await trio.testing.check_half_closeable_stream(maker, None)  # type: ignore[arg-type]
        else:
            await trio.testing.check_two_way_stream(maker, None)
        nursery.cancel_scope.cancel()


async def _check_buffered_checkpoints(wrap: Wrap) -> None:
    async with _wrapped_pair(wrap) as (peer, stream, _):
        await peer.send_all(b"abcdef")
        first = await stream.receive_some(1)
        # Whatever the wrapper keeps buffered now is served without the
        # transport: that path must still be a full checkpoint...
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_checkpoints():
            second = await stream.receive_some(1)
        # ... and a cancelled buffered read must consume nothing.
        await _expect_cancelled("receive_some", lambda: stream.receive_some(1))
        rest = b""
        with trio.move_on_after(2):
            while len(first + second + rest) < 6:
                rest += await stream.receive_some()
        if first + second + rest != b"abcdef":
            raise AssertionError(f"read {first + second + rest!r} around a cancelled read, expected b'abcdef'")


async def _check_cancellation(wrap: Wrap, cancellations: int, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(max(20_000, cancellations * 64))
    received = bytearray()
    async with _wrapped_pair(wrap) as (peer, stream, _):

        async def read() -> bool:
            chunk = await stream.receive_some(rng.randrange(1, 33))
            received.extend(chunk)
            return len(received) < len(data) and bool(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, peer, data, lambda _: rng.randrange(1, 100))
            cancelled = await _cancelled_reads(read, rng, nursery)
            nursery.cancel_scope.cancel()
    if bytes(received) != data:
        raise AssertionError(
            f"cancelled reads lost or duplicated data (seed={seed}): {len(received)} bytes read of {len(data)}, "
            f"first difference at offset {_first_difference(bytes(received), data)}"
        )
    if cancelled < cancellations:
        raise AssertionError(f"only {cancelled} cancelled reads happened (seed={seed}); wanted {cancellations}")


async def _check_chunking_invariance(wrap: Wrap, seed: int) -> None:
    rng = random.Random(seed + 1)
    data = rng.randbytes(5000)
    for chunking in _chunkings(rng, len(data)):
        async with _wrapped_pair(wrap) as (peer, stream, _):
            got = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_in_pieces, peer, data, lambda i, c=chunking: c[i % len(c)])
                while len(got) < len(data) and (chunk := await stream.receive_some(rng.randrange(1, 200))):
                    got += chunk
                nursery.cancel_scope.cancel()
            if bytes(got) != data:
                raise AssertionError(
                    f"with chunks of {chunking[:5]}..., read {len(got)} bytes that differ from the sent at offset "
                    f"{_first_difference(bytes(got), data)} (seed={seed})"
                )


async def _check_bounded(wrap: Wrap, max_buffered: int) -> None:
    """A hostile peer floods; the wrapper may read at most max_buffered
    bytes beyond what it handed out (lockstep: the peer blocks otherwise)."""
    flood = b"\x00" * 4096
    async with _wrapped_pair(wrap, maker=trio.testing.lockstep_stream_pair) as (peer, stream, counting):

        async def flooder() -> None:
            # Far more than allowed, but not forever: an unbounded reader
            # would otherwise keep every task busy.
            for _ in range((2 * max_buffered + 65536) // len(flood)):
                await peer.send_all(flood)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flooder)
            handed_out = len(await stream.receive_some(1))
            for _ in range(50):
                await trio.testing.wait_all_tasks_blocked()
                with trio.move_on_after(0.01):
                    await trio.sleep_forever()
            held = counting.bytes_read - handed_out
            nursery.cancel_scope.cancel()
    if held > max_buffered:
        raise AssertionError(f"the wrapper read {held} bytes nobody asked for (max_buffered={max_buffered})")


async def _check_time(what: str, measure: Callable[[int], Awaitable[float]], size: int) -> float:
    """Fail if ``measure(size)`` costs far more than _TIME_FACTOR times
    ``measure(size // _TIME_FACTOR)``; return the ratio of the best times.
    A ratio over the limit is measured again (up to five times) before
    failing, so one slow run on a loaded machine does not fail the check."""
    small = size // _TIME_FACTOR
    small_times = [await measure(small) for _ in range(5)]
    large_times: list[float] = []
    for attempt in range(5):
        large_times.append(await measure(size))
        if attempt:
            small_times.append(await measure(small))
        ratio = min(large_times) / max(min(small_times), 1e-6)
        if ratio <= _TIME_LIMIT:
            return ratio
    raise AssertionError(
        f"reading {size} bytes ({what}) took {ratio:.0f} times as long as reading {small} bytes "
        f"({min(large_times) * 1e3:.2f} ms vs {min(small_times) * 1e3:.3f} ms CPU time, best of "
        f"{len(large_times)} and {len(small_times)}; linear is about {_TIME_FACTOR}): "
        "the wrapper rescans or copies its buffer on every read"
    )


async def _timed(wrap: Wrap, data: bytes, cap: int, consume: Callable[[Any], Awaitable[object]]) -> float:
    """CPU seconds ``consume(wrapper)`` takes over a transport preloaded with ``data``."""
    async with trio.open_nursery() as nursery:
        stream = wrap(_PreloadedStream(data, cap), nursery)
        collecting = gc.isenabled()
        gc.disable()
        try:
            start = time.process_time()
            await consume(stream)
            elapsed = time.process_time() - start
        finally:
            if collecting:
                gc.enable()
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()
    return elapsed


async def _check_receive_time(wrap: Wrap) -> float:
    async def measure(size: int) -> float:
        async def consume(stream: trio.abc.Stream) -> None:
            got = 0
            while got < size:
                got += len(await stream.receive_some(1024))

        return await _timed(wrap, b"\x00" * size, 1 << 30, consume)

    return await _check_time("in receive_some(1024) calls", measure, 2 << 20)


# -------------------------------------------------------------- the line checks


async def _check_line_checkpoints(wrap: Wrap, receive_line: ReceiveLine) -> None:
    async with _wrapped_pair(wrap) as (peer, stream, _):
        await peer.send_all(b"one\ntwo\nthree\n")
        lines = [_strip(await receive_line(stream))]
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_checkpoints():
            lines.append(_strip(await receive_line(stream)))
        await _expect_cancelled("receive_line", lambda: receive_line(stream))
        with trio.move_on_after(2):
            lines.append(_strip(await receive_line(stream)))
        if lines != [b"one", b"two", b"three"]:
            raise AssertionError(f"read {lines!r} around a cancelled line read, expected [b'one', b'two', b'three']")


async def _check_line_cancellation(wrap: Wrap, receive_line: ReceiveLine, cancellations: int, seed: int) -> None:
    rng = random.Random(seed + 2)
    lines = _random_lines(rng, max(300, 3 * cancellations), 80)  # about 40% of reads are cancelled
    got: list[bytes] = []
    async with _wrapped_pair(wrap) as (peer, stream, counting):
        counting.cap = lambda: rng.randrange(1, 17)  # lines arrive in many pieces

        async def read() -> bool:
            got.append(_strip(await receive_line(stream)))
            return len(got) < len(lines)

        async with trio.open_nursery() as nursery:
            data = b"".join(line + b"\n" for line in lines)
            nursery.start_soon(_send_in_pieces, peer, data, lambda _: rng.randrange(1, 100))
            cancelled = await _cancelled_reads(read, rng, nursery)
            nursery.cancel_scope.cancel()
    if got != lines:
        i = _first_difference(got, lines)
        raise AssertionError(
            f"line {i} of {len(lines)} read under cancellation differs (seed={seed}): "
            f"expected {lines[i][:40]!r} ({len(lines[i])} bytes), got "
            + (f"{got[i][:40]!r} ({len(got[i])} bytes)" if i < len(got) else "nothing")
        )
    if cancelled < cancellations:
        raise AssertionError(f"only {cancelled} cancelled line reads happened (seed={seed}); wanted {cancellations}")


async def _check_line_chunking(wrap: Wrap, receive_line: ReceiveLine, seed: int) -> None:
    rng = random.Random(seed + 3)
    lines = _random_lines(rng, 60, 200)
    data = b"".join(line + b"\n" for line in lines)
    for chunking in _chunkings(rng, len(data)):
        async with _wrapped_pair(wrap) as (peer, stream, _):
            got: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_in_pieces, peer, data, lambda i, c=chunking: c[i % len(c)])
                while len(got) < len(lines):
                    got.append(_strip(await receive_line(stream)))
                nursery.cancel_scope.cancel()
            if got != lines:
                i = _first_difference(got, lines)
                raise AssertionError(
                    f"with chunks of {chunking[:5]}..., line {i} is {got[i][:40]!r} instead of {lines[i][:40]!r} "
                    f"(seed={seed})"
                )


async def _check_endless_line(wrap: Wrap, receive_line: ReceiveLine, max_buffered: int) -> None:
    """A peer sends far more than max_buffered bytes and never a newline:
    the wrapper must refuse (raise) without reading more than max_buffered."""
    outcome: list[BaseException | bytes] = []
    total = 2 * max_buffered + 65536
    async with _wrapped_pair(wrap) as (peer, stream, counting):

        async def reader() -> None:
            try:
                outcome.append(bytes(await receive_line(stream)))
            except Exception as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, peer, b"x" * total, lambda _: 65536)
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        read = counting.bytes_read
    if not outcome:
        raise AssertionError(
            f"receive_line was still waiting after reading {read} bytes of a line that never ends "
            f"({total} bytes sent, max_buffered={max_buffered}): it has no size limit, or it hangs at its limit"
        )
    if not isinstance(outcome[0], BaseException):
        raise AssertionError(f"receive_line returned {outcome[0][:40]!r} though no b'\\n' was sent")
    if read > max_buffered:
        raise AssertionError(
            f"receive_line read {read} bytes of a line that never ends before raising "
            f"{type(outcome[0]).__name__} (max_buffered={max_buffered})"
        )


async def _check_line_time(wrap: Wrap, receive_line: ReceiveLine, long_line: int) -> float:
    async def measure(size: int) -> float:
        async def consume(stream: Any) -> None:
            line = _strip(await receive_line(stream))
            if len(line) != size - 1:
                raise AssertionError(f"read a line of {len(line)} bytes, sent {size - 1}")

        return await _timed(wrap, b"x" * (size - 1) + b"\n", _TRICKLE, consume)

    return await _check_time(f"one line arriving in {_TRICKLE}-byte pieces", measure, long_line)
