"""A conformance kit for buffered stream wrappers.

`check_buffered_stream` runs, on a user's wrapper, everything
`trio.testing.check_two_way_stream` checks (or `check_half_closeable_stream`
when the wrapper is half-closeable), plus what that suite does not check.
On the wrapper's ``receive_some``:

* **at most max_bytes per read**: ``receive_some(n)`` never returns more
  than ``n`` bytes, also when more is buffered;
* **checkpoints on buffered reads**: a read served from the wrapper's buffer
  is still a cancel point and a schedule point, and a cancelled one consumes
  nothing;
* **all or nothing under cancellation**: thousands of reads, cancelled by a
  seeded plan (before they start, after a few of their own schedule points,
  or right after the transport handed them data) while the transport
  delivers in seeded pieces, lose and duplicate nothing;
* **chunking invariance**: the bytes read do not depend on how the
  transport cut them;
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

Repeatability: the seeded checks (cancellation and chunking) read from a
transport that the kit drives from the calling task, with no peer task, so
nothing in them waits for another task. Trio's scheduler shuffles the order
of runnable tasks and offers no public way to seed that, so the kit does not
depend on it: the data, the size of the ``k``-th transport piece, and the
size and cancellation plan of the ``i``-th read are drawn from the seed and
the index alone, and a cancellation "after k schedule points" counts the
reading task's own steps. A wrapper that does its receiving in the calling
task therefore sees exactly the same run for the same seed: the same
verdict, the same message. A wrapper with helper tasks gets the same pieces
and plan, but how its tasks interleave with the reader is up to Trio, so the
read that a bug shows up in can vary from run to run.
"""

from __future__ import annotations

import gc
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
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
      cancelled_reads: for each cancellation check, how many reads were
        cancelled (at least ``cancellations``); for a wrapper that does its
        receiving in the calling task, a function of the seed.
    """

    passed: list[str] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)
    time_ratios: dict[str, float] = field(default_factory=dict)
    cancelled_reads: dict[str, int] = field(default_factory=dict)


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
        ``b"\\n"`` included; default ``max_buffered // 2``. The
        linear-time line check needs at least 1 MiB and uses a line of
        ``min(max_line, 2 MiB)`` bytes; below 1 MiB it is not run (the
        report says so).
      cancellations: how many cancelled reads each fuzz must see at least
        (once reached, the fuzz ends its data at the current position and
        reads the rest to EOF).
      seed: seed of the random choices (failure messages repeat it): the
        data, the transport's pieces and the reads' sizes and cancellation
        points, each by its index. For a wrapper that receives in the
        calling task (no helper tasks), the same seed gives the same run and
        verdict; with helper tasks, Trio's scheduling order (not seedable)
        decides how they interleave with the reads.
      phase_timeout: seconds each check may take before the wrapper is
        declared hanging.

    Returns:
      A `ConformanceReport`: the checks that passed, those that did not
      apply and why, the measured time ratios and the number of cancelled
      reads.

    Raises:
      AssertionError: a check failed: the message starts with the check's
        name and says what went wrong (with the seed, where it matters:
        ``"all or nothing under cancellation: lost 56 bytes at offset 0
        (seed=7); before it, read 0 was cancelled right after the transport
        delivered 56 bytes"``). Always a plain AssertionError: a failure
        inside trio's own checks, or an unexpected exception from the
        wrapper, that escapes as an exception group or as another exception
        type is turned into one (its first AssertionError's message, or
        ``"the wrapper raised <type>: <message>"``), with the original as
        ``__cause__``. A check still running after ``phase_timeout``
        seconds fails as hanging.
      TypeError: the wrapper is not a stream and no ``receive_line`` was given.

    Cancellation, KeyboardInterrupt and other BaseExceptions propagate as
    they are. A full checkpoint (it runs the wrapper under Trio).

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
            ("at most max_bytes per read", lambda: _check_max_bytes(wrap, seed)),
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
            except BaseException as exc:
                failure = _as_failure(name, exc)
                if failure is None:
                    raise
                raise failure from exc
        if scope.cancelled_caught:
            raise AssertionError(f"{name}: did not finish within {phase_timeout} s (a read or send hangs)")
        if isinstance(result, _Fuzzed):
            report.cancelled_reads[name] = result.cancelled
        elif isinstance(result, float):
            report.time_ratios[name] = result
        report.passed.append(name)
    return report


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``, exception groups (nested ones too) opened."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and callable(getattr(exc, "split", None)):
        return [leaf for sub in inner if isinstance(sub, BaseException) for leaf in _leaves(sub)]
    return [exc]


def _as_failure(name: str, exc: BaseException) -> AssertionError | None:
    """The documented failure for ``exc`` escaping check ``name``: an
    AssertionError whose message starts with the name, also when ``exc`` is
    an exception group (as trio's own checks and nurseries raise) or an
    unexpected error from the wrapper. None for what must propagate as it
    is: cancellation, KeyboardInterrupt and other BaseExceptions."""
    leaves = _leaves(exc)
    if not all(isinstance(leaf, Exception) for leaf in leaves):
        return None
    assertions = [leaf for leaf in leaves if isinstance(leaf, AssertionError)]
    first = assertions[0] if assertions else leaves[0]
    if isinstance(first, AssertionError):
        message = f"{name}: {first}"
    else:
        message = f"{name}: the wrapper raised {type(first).__name__}: {first}"
    if len(leaves) > 1:
        message += f" (and {len(leaves) - 1} more exceptions, in __cause__)"
    return AssertionError(message)


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


class _PlannedTransport(trio.abc.HalfCloseableStream):
    """The transport of the seeded checks: no peer task, nothing to wait for.

    Holds ``data`` and hands it out in pieces: receive call ``k`` (counting
    every call, a cancelled one too) passes ``1 + waits(k)`` checkpoints,
    then returns at most ``piece(k)`` bytes (and at most ``max_bytes``, or
    64 KiB for None), then b"" at the end. Since the transport never waits
    for another task, a wrapper that receives in the calling task runs the
    same way whatever order Trio schedules tasks in. ``on_delivery(n)`` is
    called just before a call returns ``n`` > 0 bytes, with no checkpoint
    left in the call: a cancellation it requests lands after the transport
    read, at the wrapper's next checkpoint. Sends are discarded."""

    def __init__(self, data: bytes, piece: Callable[[int], int], waits: Callable[[int], int] = lambda k: 0) -> None:
        self.data = data
        self.end = len(data)
        self.pos = 0
        self.calls = 0
        self.piece = piece
        self.waits = waits
        self.on_delivery: Callable[[int], None] | None = None
        self.closed = False

    def end_soon(self, at_line_end: bool = False) -> None:
        """End the data where the transport is now (at the end of the current
        line with ``at_line_end``): EOF comes after what was handed out."""
        end = self.pos
        if at_line_end and end and self.data[end - 1 : end] != b"\n":
            end = self.data.index(b"\n", end) + 1
        self.end = min(end, self.end)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        call = self.calls
        self.calls += 1
        size, waits = self.piece(call), self.waits(call)
        for _ in range(1 + waits):
            await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError("the transport was closed")
        size = min(size, max_bytes or 65536, self.end - self.pos)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        if chunk and self.on_delivery is not None:
            self.on_delivery(len(chunk))
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError("the transport was closed")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def _wrapped(wrap: Wrap, transport: trio.abc.Stream) -> AsyncIterator[Any]:
    """The wrapper over ``transport``, closed on leaving; errors come out
    of the nursery as they are."""
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        wrapper = wrap(transport, nursery)
        try:
            yield wrapper
        except BaseException as exc:
            error = exc  # re-raised outside the nursery: no exception group
        finally:
            await trio.aclose_forcefully(wrapper)
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


@dataclass
class _Fuzzed:
    cancelled: int


@dataclass
class _History:
    """The last cancelled read of a fuzz, for failure messages."""

    last: str = ""

    def __str__(self) -> str:
        return f"; before it, {self.last}" if self.last else ""


class _Canceller(trio.abc.Instrument):
    """Cancels the current read of one task at a planned point.

    ``steps`` > 0: when the reading task resumes for the ``steps``-th time
    during the read (so the cancellation lands at a later checkpoint of the
    read); ``on_delivery``: when the transport is about to return data.
    Counting the reading task's own steps, not another task's, keeps the
    point independent of how Trio orders tasks."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.scope: trio.CancelScope | None = None
        self.steps = 0
        self.on_delivery = False
        self.how = ""

    def arm(self, scope: trio.CancelScope, *, steps: int = 0, on_delivery: bool = False) -> None:
        self.task = trio.lowlevel.current_task()
        self.scope, self.steps, self.on_delivery = scope, steps, on_delivery

    def disarm(self) -> None:
        self.scope, self.steps, self.on_delivery = None, 0, False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.steps and task is self.task and self.scope is not None:
            self.steps -= 1
            if not self.steps:
                self.scope.cancel()

    def delivered(self, size: int) -> None:
        if self.on_delivery and self.scope is not None:
            self.on_delivery = False
            self.how = f"right after the transport delivered {size} bytes"
            self.scope.cancel()


async def _cancelled_reads(
    read: Callable[[int], Awaitable[bool]],
    plan: random.Random,
    transport: _PlannedTransport,
    cancellations: int,
    history: _History,
    at_line_end: bool = False,
) -> int:
    """Call ``read(size)`` until it returns False, each call in its own
    cancel scope, cancelled by plan: before it starts, after 1 to 4 of its
    schedule points, right after the transport delivers data, or not at
    all. Every choice for read ``i`` is the ``i``-th draw of ``plan``,
    whatever happened before. Once ``cancellations`` reads were cancelled,
    the transport's data ends at the current line (no more cancellations)
    and the reads go on to EOF. Returns the number of cancelled reads;
    ``history`` describes the last one."""
    canceller = _Canceller()
    transport.on_delivery = canceller.delivered
    cancelled = index = 0
    trio.lowlevel.add_instrument(canceller)
    try:
        more = True
        while more:
            roll, steps, size = plan.random(), plan.randrange(1, 5), plan.randrange(1, 33)
            if cancelled >= cancellations:
                transport.end_soon(at_line_end)
                roll = 1.0
            with trio.CancelScope() as scope:
                if roll < 0.15:
                    scope.cancel()
                    canceller.how = "before it started"
                elif roll < 0.4:
                    canceller.arm(scope, steps=steps)
                    canceller.how = f"after {steps} of its schedule points"
                elif roll < 0.65:
                    canceller.arm(scope, on_delivery=True)
                    canceller.how = "by plan when the transport delivered data"
                try:
                    more = await read(size)
                finally:
                    canceller.disarm()
            if scope.cancelled_caught:
                cancelled += 1
                history.last = f"read {index} was cancelled {canceller.how}"
            index += 1
    finally:
        trio.lowlevel.remove_instrument(canceller)
        transport.on_delivery = None
    return cancelled


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


@contextmanager
def _our_message(message: str) -> Iterator[None]:
    """Replace the AssertionError of a trio.testing helper with ``message``
    (trio's is kept as ``__cause__``)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(message) from exc


def _cycling(sizes: list[int]) -> Callable[[int], int]:
    return lambda k: sizes[k % len(sizes)]


def _chunkings(rng: random.Random, total: int) -> list[list[int]]:
    """The peer's send sizes the chunking checks try: one byte, mixed, all at once, random."""
    return [[1], [7, 1, 300], [total], [rng.randrange(1, 50) for _ in range(20)]]


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
        await peer.send_eof()  # a lost byte shows as an early EOF, not as a wait
        first = await stream.receive_some(1)
        # Whatever the wrapper keeps buffered now is served without the
        # transport: that path must still be a full checkpoint...
        await trio.testing.wait_all_tasks_blocked()
        with (
            _our_message("a receive_some served from the buffer is not a checkpoint"),
            trio.testing.assert_checkpoints(),
        ):
            second = await stream.receive_some(1)
        # ... and a cancelled buffered read must consume nothing.
        await _expect_cancelled("receive_some", lambda: stream.receive_some(1))
        rest = b""
        with trio.move_on_after(2):
            while len(first + second + rest) < 6 and (chunk := await stream.receive_some()):
                rest += chunk
        if first + second + rest != b"abcdef":
            raise AssertionError(f"read {first + second + rest!r} around a cancelled read, expected b'abcdef'")


def _difference(chunk: bytes, data: bytes, pos: int, handed_out: int) -> str:
    """What is wrong with ``chunk``, read at offset ``pos`` of ``data``."""
    if len(chunk) >= 4:
        found = data.find(chunk, pos + 1, handed_out)
        if found > pos:
            return f"lost {found - pos} bytes at offset {pos}"
        if data.find(chunk, 0, pos + len(chunk) - 1) >= 0:
            return f"read {len(chunk)} bytes at offset {pos} that were already read (duplicated)"
    first = pos + _first_difference(chunk, data[pos : pos + len(chunk)])
    return f"the {len(chunk)} bytes read at offset {pos} differ from those sent from offset {first} on"


async def _check_max_bytes(wrap: Wrap, seed: int) -> None:
    data = random.Random(f"{seed}:max_bytes").randbytes(20_000)
    pieces = [5000, 1, 300, 65536]
    sizes = [1, 2, 3, 5, 8, 13, 100, 1000, 1, 4096, 7]
    async with _wrapped(wrap, _PlannedTransport(data, lambda k: pieces[k % len(pieces)])) as stream:
        got = 0
        for index in itertools.count():
            size = sizes[index % len(sizes)]
            chunk = await stream.receive_some(size)
            if len(chunk) > size:
                raise AssertionError(f"receive_some({size}) returned {len(chunk)} bytes (at offset {got})")
            if not chunk:
                break
            got += len(chunk)


async def _check_cancellation(wrap: Wrap, cancellations: int, seed: int) -> _Fuzzed:
    data = random.Random(f"{seed}:data").randbytes(max(20_000, cancellations * 160))
    pieces = random.Random(f"{seed}:transport")
    transport = _PlannedTransport(data, lambda k: pieces.randrange(1, 100), lambda k: pieces.randrange(0, 3))
    received = bytearray()
    history = _History()
    async with _wrapped(wrap, transport) as stream:

        async def read(size: int) -> bool:
            chunk = bytes(await stream.receive_some(size))
            pos = len(received)
            if len(chunk) > size:
                raise AssertionError(f"receive_some({size}) returned {len(chunk)} bytes (seed={seed})")
            if chunk != data[pos : pos + len(chunk)] or (not chunk and pos < transport.end):
                what = (
                    f"lost {transport.end - pos} bytes at offset {pos}: EOF came after {pos} of {transport.end}"
                    if not chunk
                    else _difference(chunk, data, pos, transport.pos)
                )
                raise AssertionError(f"{what} (seed={seed}){history}")
            received.extend(chunk)
            return bool(chunk)

        cancelled = await _cancelled_reads(read, random.Random(f"{seed}:reads"), transport, cancellations, history)
    if cancelled < cancellations:
        raise AssertionError(f"only {cancelled} cancelled reads happened (seed={seed}); wanted {cancellations}")
    return _Fuzzed(cancelled)


async def _check_chunking_invariance(wrap: Wrap, seed: int) -> None:
    rng = random.Random(f"{seed}:chunking")
    data = rng.randbytes(5000)
    for chunking in _chunkings(rng, len(data)):
        reads = random.Random(f"{seed}:chunking reads")
        transport = _PlannedTransport(data, _cycling(chunking))
        async with _wrapped(wrap, transport) as stream:
            got = bytearray()
            while len(got) <= len(data) and (chunk := await stream.receive_some(reads.randrange(1, 200))):
                got += chunk
        if bytes(got) != data:
            raise AssertionError(
                f"with the transport's pieces of {chunking[:5]}..., read {len(got)} bytes that differ from the sent "
                f"at offset {_first_difference(bytes(got), data)} (seed={seed})"
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
            # Time for a read-ahead to go as far as it will: until nothing
            # has been read for five windows of 10 ms in a row (at most 50).
            quiet, last = 0, counting.bytes_read
            for _ in range(50):
                await trio.testing.wait_all_tasks_blocked()
                with trio.move_on_after(0.01):
                    await trio.sleep_forever()
                quiet = quiet + 1 if counting.bytes_read == last else 0
                last = counting.bytes_read
                if quiet == 5:
                    break
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
        await peer.send_eof()  # a lost line shows as an early EOF, not as a wait
        lines: list[bytes | str] = [_strip(await receive_line(stream))]
        await trio.testing.wait_all_tasks_blocked()
        with _our_message("a line served from the buffer is not a checkpoint"), trio.testing.assert_checkpoints():
            lines.append(_strip(await receive_line(stream)))
        await _expect_cancelled("receive_line", lambda: receive_line(stream))
        with trio.move_on_after(2):
            try:
                lines.append(_strip(await receive_line(stream)))
            except Exception as exc:
                lines.append(f"<{type(exc).__name__} at EOF>")
        if lines != [b"one", b"two", b"three"]:
            raise AssertionError(f"read {lines!r} around a cancelled line read, expected [b'one', b'two', b'three']")


async def _check_line_cancellation(wrap: Wrap, receive_line: ReceiveLine, cancellations: int, seed: int) -> _Fuzzed:
    lines = _random_lines(random.Random(f"{seed}:lines"), max(300, 4 * cancellations), 80)
    data = b"".join(line + b"\n" for line in lines)
    pieces = random.Random(f"{seed}:line transport")  # lines arrive in many pieces
    transport = _PlannedTransport(data, lambda k: pieces.randrange(1, 17), lambda k: pieces.randrange(0, 3))
    got: list[bytes] = []
    history = _History()
    async with _wrapped(wrap, transport) as stream:

        def expected() -> int:
            return data.count(b"\n", 0, transport.end) if transport.end < len(data) else len(lines)

        async def read(size: int) -> bool:
            i = len(got)
            if i >= expected():
                return False
            try:
                line = _strip(await receive_line(stream))
            except trio.Cancelled:
                raise
            except Exception as exc:
                raise AssertionError(
                    f"after {i} of {expected()} lines, receive_line raised {type(exc).__name__} "
                    f"(seed={seed}): the rest was lost{history}"
                ) from exc
            if line != lines[i]:
                raise AssertionError(
                    f"line {i} of {expected()} read under cancellation differs (seed={seed}): "
                    f"expected {lines[i][:40]!r} ({len(lines[i])} bytes), got {line[:40]!r} ({len(line)} bytes)"
                    f"{history}"
                )
            got.append(line)
            return True

        cancelled = await _cancelled_reads(
            read, random.Random(f"{seed}:line reads"), transport, cancellations, history, at_line_end=True
        )
    if cancelled < cancellations:
        raise AssertionError(f"only {cancelled} cancelled line reads happened (seed={seed}); wanted {cancellations}")
    return _Fuzzed(cancelled)


async def _check_line_chunking(wrap: Wrap, receive_line: ReceiveLine, seed: int) -> None:
    rng = random.Random(f"{seed}:line chunking")
    lines = _random_lines(rng, 60, 200)
    data = b"".join(line + b"\n" for line in lines)
    for chunking in _chunkings(rng, len(data)):
        transport = _PlannedTransport(data, _cycling(chunking))
        async with _wrapped(wrap, transport) as stream:
            got: list[bytes] = []
            while len(got) < len(lines):
                got.append(_strip(await receive_line(stream)))
        if got != lines:
            i = _first_difference(got, lines)
            raise AssertionError(
                f"with the transport's pieces of {chunking[:5]}..., line {i} is {got[i][:40]!r} instead of "
                f"{lines[i][:40]!r} (seed={seed})"
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
