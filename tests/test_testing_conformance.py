"""The conformance kit passes triostream's streams and fails broken wrappers.

`Wrapper` is a small correct buffered wrapper with a ``receive_line``; each
broken wrapper below changes one thing, and the kit must name what broke.
"""

from __future__ import annotations

import operator
from typing import Any

import pytest
import trio

from triostream import Connection, FrameChannel, Lines
from triostream._connection import start_connection
from triostream._options import ConnectionOptions
from triostream.testing import ConformanceReport, check_buffered_stream

MiB = 1 << 20


class Wrapper(trio.abc.HalfCloseableStream):
    """A minimal correct buffered wrapper."""

    def __init__(self, transport: trio.abc.HalfCloseableStream, max_line: int = 2 * MiB) -> None:
        self.transport = transport
        self.max_line = max_line
        self.buffer = bytearray()
        self.searched = 0  # how much of the buffer holds no b"\n": kept across cancellations
        self.receiving = False

    def _check(self, max_bytes: int | None) -> None:
        if max_bytes is not None and operator.index(max_bytes) < 1:
            raise ValueError("max_bytes must be >= 1")

    def _enter(self) -> None:
        if self.receiving:
            raise trio.BusyResourceError("another task is receiving")
        self.receiving = True

    async def _more(self, size: int = 4096) -> bytes:
        return bytes(await self.transport.receive_some(size))

    def _take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.searched = 0
        return data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        self._enter()
        try:
            if self.buffer:
                await trio.lowlevel.checkpoint()
            else:
                self.buffer += await self._more()
            return self._take(max_bytes or len(self.buffer))
        finally:
            self.receiving = False

    async def receive_line(self) -> bytes:
        self._enter()
        try:
            if b"\n" in self.buffer:
                await trio.lowlevel.checkpoint()
            while (end := self.buffer.find(b"\n", self.searched)) < 0:
                self.searched = len(self.buffer)
                room = self.max_line + 1 - len(self.buffer)
                if room <= 0:
                    raise ValueError(f"line longer than {self.max_line} bytes")
                chunk = await self._more(min(room, 4096))
                if not chunk:
                    raise EOFError
                self.buffer += chunk
            return self._take(end + 1)
        finally:
            self.receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport.send_eof()

    async def aclose(self) -> None:
        self.buffer.clear()
        await self.transport.aclose()


class DropsOnCancel(Wrapper):
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if not self.buffer:
            self.buffer += await self._more()
        data = self._take(max_bytes or len(self.buffer))
        await trio.lowlevel.checkpoint()  # cancelled here: the data is gone
        return data


class SkipsCheckpoints(Wrapper):
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if not self.buffer:
            self.buffer += await self._more()
        return self._take(max_bytes or len(self.buffer))  # buffered path: no checkpoint at all


class CopiesOnEveryRead(Wrapper):
    """Takes all the transport offers and copies the rest of its buffer on every read."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if self.buffer:
            await trio.lowlevel.checkpoint()
        else:
            self.buffer += await self._more(1 << 30)
        n = max_bytes or len(self.buffer)
        data, rest = bytes(self.buffer[:n]), bytes(self.buffer[n:])
        self.buffer = bytearray(rest)
        return data


class DropsPartialLineOnCancel(Wrapper):
    """Collects the pieces of a line in a local list: a cancelled read loses them."""

    async def receive_line(self) -> bytes:
        if b"\n" in self.buffer:
            await trio.lowlevel.checkpoint()
            return self._take(self.buffer.find(b"\n") + 1)
        pieces = [bytes(self.buffer)]
        while b"\n" not in pieces[-1]:
            chunk = await self._more()
            if not chunk:
                raise EOFError
            pieces.append(chunk)
        whole = b"".join(pieces)
        end = whole.find(b"\n") + 1
        self.buffer = bytearray(whole[end:])
        return whole[:end]


class SkipsLineCheckpoints(Wrapper):
    async def receive_line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            self.buffer += await self._more()
        return self._take(end + 1)  # a buffered line: no checkpoint


class RescansLines(Wrapper):
    """Searches the whole buffer again after every read: quadratic."""

    async def receive_line(self) -> bytes:
        if b"\n" in self.buffer:
            await trio.lowlevel.checkpoint()
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > self.max_line:
                raise ValueError("line too long")
            self.buffer += await self._more(4096)
        return self._take(end + 1)


class UnboundedLines(Wrapper):
    """No line limit: a peer that never sends b"\\n" fills memory."""

    async def receive_line(self) -> bytes:
        self.max_line = 1 << 62
        return await super().receive_line()


class LimitTooLate(Wrapper):
    """Checks its limit only after reading far past it."""

    async def receive_line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            self.buffer += await self._more(1 << 30)
            if len(self.buffer) > 2 * self.max_line:
                raise ValueError("line too long")
        await trio.lowlevel.checkpoint()
        return self._take(end + 1)


class ReadsAheadWithoutBound(Wrapper):
    """A helper task reads ahead for as long as the peer sends."""

    def start(self, nursery: trio.Nursery) -> ReadsAheadWithoutBound:
        self.arrived = trio.Event()
        self.ended = False
        self.closed = False
        nursery.start_soon(self._read_ahead)
        return self

    async def _read_ahead(self) -> None:
        try:
            while chunk := await self.transport.receive_some(4096):
                self.buffer += chunk
                self.arrived.set()
        except trio.ClosedResourceError:
            pass
        self.ended = True
        self.arrived.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        self._enter()
        try:
            await trio.lowlevel.checkpoint()
            while not self.buffer and not self.ended and not self.closed:
                self.arrived = trio.Event()
                await self.arrived.wait()
            if self.closed:
                raise trio.ClosedResourceError
            return self._take(max_bytes or len(self.buffer))
        finally:
            self.receiving = False

    async def aclose(self) -> None:
        self.closed = True
        self.arrived.set()
        await super().aclose()


class HoldsBytesAcrossACheckpoint(Wrapper):
    """Keeps the bytes just read from the transport in a local across one
    more checkpoint: cancelled there, they are lost."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        self._enter()
        try:
            if self.buffer:
                await trio.lowlevel.checkpoint()
            else:
                data = await self._more()
                await trio.lowlevel.checkpoint()  # cancelled here: data is lost
                self.buffer += data
            return self._take(max_bytes or len(self.buffer))
        finally:
            self.receiving = False


class ReturnsMoreThanMaxBytes(Wrapper):
    """Hands out its whole buffer, whatever ``max_bytes`` says."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        self._enter()
        try:
            if self.buffer:
                await trio.lowlevel.checkpoint()
            else:
                self.buffer += await self._more()
            return self._take(len(self.buffer))
        finally:
            self.receiving = False


class ReceivesAfterClose(Wrapper):
    """After ``aclose``, ``receive_some`` returns b"" instead of raising
    `trio.ClosedResourceError`: only trio's own checks see it."""

    closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.closed:
            await trio.lowlevel.checkpoint()
            return b""
        return await super().receive_some(max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


class RaisesOnRead(Wrapper):
    """Raises an exception no stream should raise from ``receive_some``."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("the wrapper's own bug")


def line_of(stream: Any) -> Any:
    return stream.receive_line()


async def test_a_correct_wrapper_passes() -> None:
    report = await check_buffered_stream(
        lambda t, n: Wrapper(t),  # type: ignore[arg-type]
        max_buffered=4 * MiB,
        receive_line=line_of,
        max_line=2 * MiB,
    )
    assert len(report.passed) == 12, report
    assert report.not_run == []
    # Linear is about 16; the check fails above 40.
    assert all(ratio <= 40 for ratio in report.time_ratios.values()), report.time_ratios
    assert set(report.time_ratios) == {"linear time of small reads", "linear time of a trickling line"}


async def test_the_report_says_what_did_not_run() -> None:
    report = await check_buffered_stream(
        lambda t, n: Wrapper(t, max_line=8192),  # type: ignore[arg-type]
        max_buffered=8193,
        receive_line=line_of,
        cancellations=200,
    )
    assert report.not_run == [("linear time of a trickling line", "max_line=4096 is below 1048576 (1 MiB)")]
    report = await check_buffered_stream(lambda t, n: Wrapper(t), cancellations=200)  # type: ignore[arg-type]
    assert report.not_run == [("line checks", "no receive_line given")]
    assert "linear time of small reads" in report.passed


# BufferedStream passes too: test_testing_plugin.test_buffered_stream_passes_the_conformance_kit,
# shown in docs/testing.md.


async def test_connection_passes() -> None:
    def wrap(transport: trio.abc.Stream, nursery: trio.Nursery) -> Connection:
        return start_connection(nursery, transport, ConnectionOptions(max_buffer_size=4 * MiB))

    report = await check_buffered_stream(
        wrap, max_buffered=4 * MiB, receive_line=lambda c: c.receive_line(max_size=2 * MiB), max_line=2 * MiB
    )
    assert len(report.passed) == 12 and report.not_run == [], report


async def test_frame_channel_passes_the_line_checks() -> None:
    codec = Lines(2 * MiB)
    report = await check_buffered_stream(
        lambda t, n: FrameChannel(t, codec),
        max_buffered=max(codec.wire_limit, 65536),
        receive_line=lambda channel: channel.receive(),
        max_line=2 * MiB,
    )
    assert report.passed == [
        "checkpoints on buffered lines",
        "whole lines under cancellation",
        "line chunking invariance",
        "a line that never ends",
        "linear time of a trickling line",
    ]
    assert report.not_run == [("stream checks", "FrameChannel is not a trio.abc.Stream")]


async def test_a_channel_needs_receive_line() -> None:
    with pytest.raises(TypeError, match="pass receive_line"):
        await check_buffered_stream(lambda t, n: FrameChannel(t, Lines(100)))


async def test_fails_a_wrapper_that_drops_data_on_cancellation() -> None:
    with pytest.raises(AssertionError, match=r"^checkpoints on buffered reads: read b'abdef' around a cancelled read"):
        await check_buffered_stream(lambda t, n: DropsOnCancel(t))  # type: ignore[arg-type]


async def test_fails_a_wrapper_that_skips_checkpoints() -> None:
    with pytest.raises(
        AssertionError,
        match=r"^checkpoints on buffered reads: a receive_some served from the buffer is not a checkpoint$",
    ):
        await check_buffered_stream(lambda t, n: SkipsCheckpoints(t))  # type: ignore[arg-type]


async def test_fails_a_wrapper_that_copies_its_buffer_on_every_read() -> None:
    with pytest.raises(AssertionError, match=r"^linear time of small reads: .* times as long"):
        await check_buffered_stream(lambda t, n: CopiesOnEveryRead(t), cancellations=200)  # type: ignore[arg-type]


async def line_check(wrapper: type[Wrapper], **options: Any) -> ConformanceReport:
    options = {"max_buffered": 4 * MiB, "max_line": 2 * MiB, "cancellations": 300, **options}
    return await check_buffered_stream(
        lambda t, n: wrapper(t, max_line=options["max_line"]),  # type: ignore[arg-type]
        receive_line=line_of,
        **options,
    )


async def test_fails_a_line_reader_that_drops_a_partial_line_on_cancellation() -> None:
    with pytest.raises(AssertionError, match=r"^whole lines under cancellation: line \d+ of \d+ .*differs \(seed=0\)"):
        await line_check(DropsPartialLineOnCancel)


async def test_fails_a_line_reader_that_skips_checkpoints() -> None:
    with pytest.raises(
        AssertionError, match=r"^checkpoints on buffered lines: a line served from the buffer is not a checkpoint$"
    ):
        await line_check(SkipsLineCheckpoints)


async def test_fails_a_line_reader_that_rescans_quadratically() -> None:
    with pytest.raises(AssertionError, match=r"^linear time of a trickling line: .* rescans or copies"):
        await line_check(RescansLines)


async def test_fails_a_line_reader_without_a_limit() -> None:
    with pytest.raises(AssertionError, match=r"^a line that never ends: receive_line was still waiting"):
        await line_check(UnboundedLines, max_buffered=MiB, max_line=MiB // 2)


async def test_fails_a_line_reader_that_enforces_its_limit_too_late() -> None:
    with pytest.raises(AssertionError, match=r"^a line that never ends: receive_line read \d+ bytes .* ValueError"):
        await line_check(LimitTooLate, max_buffered=MiB, max_line=MiB // 2)


async def test_fails_a_wrapper_that_reads_ahead_without_bound() -> None:
    with pytest.raises(AssertionError, match=r"^bounded buffering: the wrapper read .* nobody asked for"):
        await check_buffered_stream(
            lambda t, n: ReadsAheadWithoutBound(t).start(n),  # type: ignore[arg-type]
            max_buffered=65536,
            cancellations=200,
        )


async def test_fails_a_wrapper_that_holds_bytes_across_a_checkpoint() -> None:
    # Cancelled right after the transport read returned, at the wrapper's next
    # checkpoint: reported as the loss it is, with the seed, not as a hang.
    pattern = r"^all or nothing under cancellation: lost \d+ bytes at offset \d+ \(seed=7\)"
    with pytest.raises(AssertionError, match=pattern) as info:
        await check_buffered_stream(
            lambda t, n: HoldsBytesAcrossACheckpoint(t),  # type: ignore[arg-type]
            cancellations=200,
            seed=7,
            phase_timeout=30,
        )
    assert "right after the transport delivered" in str(info.value)


async def test_fails_a_wrapper_that_returns_more_than_max_bytes() -> None:
    with pytest.raises(AssertionError, match=r"^at most max_bytes per read: receive_some\(\d+\) returned \d+ bytes"):
        await check_buffered_stream(
            lambda t, n: ReturnsMoreThanMaxBytes(t),  # type: ignore[arg-type]
            cancellations=200,
            phase_timeout=30,
        )


def leaves(exc: BaseException) -> list[BaseException]:
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for sub in inner for leaf in leaves(sub)]
    return [exc]


async def test_a_failure_of_trios_checks_is_an_assertion_error_naming_the_check() -> None:
    with pytest.raises(BaseException) as info:  # what escapes is the point of the test
        await check_buffered_stream(lambda t, n: ReceivesAfterClose(t), cancellations=200)  # type: ignore[arg-type]
    failure = info.value
    assert type(failure) is AssertionError, repr(failure)  # not an exception group
    message = str(failure)
    assert message.startswith("trio's stream conformance checks: ")
    # The original is kept as __cause__; trio's own assertion is in it, and its
    # message (whatever trio's wording) is repeated in ours.
    assert failure.__cause__ is not None
    trio_failures = [leaf for leaf in leaves(failure.__cause__) if isinstance(leaf, AssertionError)]
    assert trio_failures
    assert str(trio_failures[0]) in message


class Recording(Wrapper):
    """A correct wrapper that logs what happens to it: each transport read,
    each read it returns, each cancellation."""

    def __init__(self, transport: trio.abc.HalfCloseableStream, log: list[tuple[object, ...]]) -> None:
        super().__init__(transport, max_line=8192)
        self.log = log

    async def _more(self, size: int = 4096) -> bytes:
        data = await super()._more(size)
        self.log.append(("transport", size, len(data)))
        return data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await super().receive_some(max_bytes)
        except trio.Cancelled:
            self.log.append(("cancelled", max_bytes))
            raise
        self.log.append(("read", max_bytes, len(data)))
        return data

    async def receive_line(self) -> bytes:
        try:
            line = await super().receive_line()
        except trio.Cancelled:
            self.log.append(("cancelled line",))
            raise
        self.log.append(("line", len(line)))
        return line


async def fuzz_logs(seed: int) -> tuple[ConformanceReport, list[list[tuple[object, ...]]]]:
    """The logs of the wrappers the cancellation checks ran on (those
    cancelled many times), and the report."""
    logs: list[list[tuple[object, ...]]] = []

    def wrap(transport: trio.abc.Stream, nursery: trio.Nursery) -> Recording:
        logs.append([])
        return Recording(transport, logs[-1])  # type: ignore[arg-type]

    report = await check_buffered_stream(wrap, max_buffered=8193, receive_line=line_of, cancellations=300, seed=seed)
    return report, [log for log in logs if sum(entry[0].startswith("cancelled") for entry in log) >= 100]  # type: ignore[attr-defined]


async def test_same_seed_same_cancellation_points_and_pieces() -> None:
    first_report, first = await fuzz_logs(3)
    assert len(first) == 2  # the reads fuzz and the lines fuzz
    for _ in range(2):
        report, again = await fuzz_logs(3)
        # The same transport pieces, read sizes and cancellation points, in the same order...
        assert again == first
        assert report.cancelled_reads == first_report.cancelled_reads
    # ...which the seed chooses.
    other_report, other = await fuzz_logs(4)
    assert other != first
    assert set(first_report.cancelled_reads) == {"all or nothing under cancellation", "whole lines under cancellation"}
    assert all(count >= 300 for count in first_report.cancelled_reads.values())
    assert all(count >= 300 for count in other_report.cancelled_reads.values())


async def test_same_seed_same_verdict_for_a_broken_wrapper() -> None:
    messages = set()
    for _ in range(3):
        with pytest.raises(AssertionError) as info:
            await line_check(DropsPartialLineOnCancel, seed=11)
        messages.add(str(info.value))
    assert len(messages) == 1
    assert messages.pop().startswith("whole lines under cancellation: line ")


async def test_an_unexpected_exception_from_the_wrapper_is_an_assertion_error_naming_the_check() -> None:
    with pytest.raises(BaseException) as info:  # what escapes is the point of the test
        await check_buffered_stream(lambda t, n: RaisesOnRead(t), cancellations=200)  # type: ignore[arg-type]
    failure = info.value
    assert type(failure) is AssertionError, repr(failure)
    assert str(failure).startswith(
        "trio's stream conformance checks: the wrapper raised RuntimeError: the wrapper's own bug"
    )
    assert failure.__cause__ is not None
    assert any(isinstance(leaf, RuntimeError) for leaf in leaves(failure.__cause__))
