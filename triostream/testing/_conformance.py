"""A conformance kit for buffered stream wrappers.

`check_buffered_stream` runs, on a user's wrapper, everything
`trio.testing.check_two_way_stream` checks (or `check_half_closeable_stream`
when the wrapper is half-closeable), plus what that suite does not check:

* **checkpoints on buffered reads**: ``receive_some`` served from the
  wrapper's buffer is still a cancel point and a schedule point, and a
  cancelled one consumes nothing;
* **all or nothing under cancellation**: thousands of reads cancelled at
  random moments (deadlines and cancellation from another task) while the
  peer sends in random pieces lose and duplicate nothing;
* **chunking invariance**: the bytes read do not depend on how the peer's
  writes were cut;
* **bounded buffering**: with a hostile peer sending far more than is read,
  the wrapper takes at most ``max_buffered`` bytes from its transport beyond
  what it handed out.

Not yet checked here: linear time under trickling (see
``benchmarks/bench_receive.py``'s scaling workloads for that).

The wrapper is described by ``wrap(transport, nursery)``, which returns the
wrapper around ``transport``; wrappers with helper tasks start them in
``nursery`` (for `triostream.Connection`: ``triostream.start_connection``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.lowlevel
import trio.testing

__all__ = ["check_buffered_stream"]

Wrap = Callable[[trio.abc.Stream, trio.Nursery], trio.abc.Stream]


class _CountingStream(trio.abc.HalfCloseableStream):
    """The transport under the wrapper: counts the bytes the wrapper reads."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.bytes_read = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
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


async def check_buffered_stream(
    wrap: Wrap,
    *,
    max_buffered: int = 1 << 20,
    cancellations: int = 2000,
    seed: int = 0,
    phase_timeout: float = 60.0,
) -> None:
    """Check a buffered stream wrapper; raise AssertionError at the first failure.

    Args:
      wrap: ``wrap(transport, nursery)`` returns the wrapper around
        ``transport`` (``lambda t, n: BufferedStream(t)``), starting any helper
        tasks in ``nursery``.
      max_buffered: the most bytes the wrapper may read from its transport
        beyond what it has handed out (its buffer bound).
      cancellations: how many cancelled reads the fuzz must see at least.
      seed: seed of the random choices (the failure message repeats it).
      phase_timeout: seconds each group of checks may take before the
        wrapper is declared hanging.

    Must run inside a Trio task (as an async test does).
    """
    phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("trio's stream conformance checks", lambda: _check_trio_conformance(wrap)),
        ("checkpoints on buffered reads", lambda: _check_buffered_checkpoints(wrap)),
        ("all or nothing under cancellation", lambda: _check_cancellation(wrap, cancellations, seed)),
        ("chunking invariance", lambda: _check_chunking_invariance(wrap, seed)),
        ("bounded buffering", lambda: _check_bounded(wrap, max_buffered)),
    ]
    for name, phase in phases:
        # A wrapper that hangs (a receive that never returns) fails, too.
        with trio.move_on_after(phase_timeout) as scope:
            await phase()
        if scope.cancelled_caught:
            raise AssertionError(f"{name}: did not finish within {phase_timeout} s (a read or send hangs)")


@asynccontextmanager
async def _wrapped_pair(
    wrap: Wrap, *, maker: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] = trio.testing.memory_stream_pair
) -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream, _CountingStream]]:
    """(raw peer, wrapper, counting transport under the wrapper)."""
    peer, transport = maker()
    counting = _CountingStream(transport)  # type: ignore[arg-type]
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        wrapper = wrap(counting, nursery)
        try:
            yield peer, wrapper, counting
        except BaseException as exc:
            error = exc  # re-raised outside the nursery: no exception group
        finally:
            await trio.aclose_forcefully(wrapper)
            await trio.aclose_forcefully(peer)
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error


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
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                lost = await stream.receive_some(1)
            except trio.Cancelled:
                lost = b""
            else:
                raise AssertionError(f"receive_some in a cancelled scope returned {lost!r} instead of raising")
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
    cancelled = 0
    async with _wrapped_pair(wrap) as (peer, stream, _):
        scopes_in, scopes_out = trio.open_memory_channel[trio.CancelScope](float("inf"))

        async def sender() -> None:
            pos = 0
            while pos < len(data):
                size = rng.randrange(1, 100)
                await peer.send_all(data[pos : pos + size])
                pos += size
                await trio.lowlevel.checkpoint()
            await peer.send_eof()  # type: ignore[attr-defined]

        async def canceller() -> None:
            async for scope in scopes_out:
                for _ in range(rng.randrange(0, 4)):
                    await trio.lowlevel.checkpoint()
                if rng.random() < 0.5:
                    scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(canceller)
            while True:
                with trio.CancelScope() as scope:
                    if rng.random() < 0.3:
                        scope.cancel()  # cancelled before it starts
                    scopes_in.send_nowait(scope)
                    chunk = await stream.receive_some(rng.randrange(1, 33))
                    if not chunk:
                        break
                    received += chunk
                cancelled += scope.cancelled_caught
            nursery.cancel_scope.cancel()
    if bytes(received) != data:
        where = next(
            (i for i, (a, b) in enumerate(zip(received, data, strict=False)) if a != b), min(len(received), len(data))
        )
        raise AssertionError(
            f"cancelled reads lost or duplicated data (seed={seed}): {len(received)} bytes read of {len(data)}, "
            f"first difference at offset {where}"
        )
    if cancelled < cancellations:
        raise AssertionError(f"only {cancelled} cancelled reads happened (seed={seed}); wanted {cancellations}")


async def _check_chunking_invariance(wrap: Wrap, seed: int) -> None:
    rng = random.Random(seed + 1)
    data = rng.randbytes(5000)
    for chunking in ([1], [7, 1, 300], [len(data)], [rng.randrange(1, 50) for _ in range(20)]):
        async with _wrapped_pair(wrap) as (peer, stream, _):

            async def sender(chunking: list[int] = chunking) -> None:
                pos = index = 0
                while pos < len(data):
                    size = chunking[index % len(chunking)]
                    await peer.send_all(data[pos : pos + size])
                    pos += size
                    index += 1
                await peer.send_eof()  # type: ignore[attr-defined]

            got = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                while chunk := await stream.receive_some(rng.randrange(1, 200)):
                    got += chunk
            if bytes(got) != data:
                raise AssertionError(
                    f"with chunks of {chunking[:5]}..., read {len(got)} bytes that differ from the sent"
                )


async def _check_bounded(wrap: Wrap, max_buffered: int) -> None:
    """A hostile peer floods; the wrapper may read at most max_buffered
    bytes beyond what it handed out (lockstep: the peer blocks otherwise)."""
    flood = b"\x00" * 4096
    async with _wrapped_pair(wrap, maker=trio.testing.lockstep_stream_pair) as (peer, stream, counting):

        async def flooder() -> None:
            while True:
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
