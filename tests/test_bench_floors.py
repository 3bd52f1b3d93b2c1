"""The benchmark's contract floors do what they claim.

``benchmarks/bench_receive.py``'s `_UntilFloor` is the hand-written floor of
the per-call targets for lines: a target it misses too is reported as out of
reach for a ``receive_until`` with triostream's contract. That claim holds
only if the floor keeps the contract it names (a second task refused, a close
during the checkpoint seen, a frame over ``max_size`` left in place, the
arguments checked, a cursor kept); these tests hold it to that.
`_LinesBatchFloor` is the same for the batch targets for lines
(``lines().batches()``: ``\\r`` stripped, a line over ``max_size`` left in
place, a second task refused, a close during the read seen, EOF inside a
line reported, where the reader stands kept), and `_LinesGenFloor` for the
per-frame targets for lines (``lines()``: the same lines a step at a time,
and after each, the bytes not handed out known). (Their speed is the
benchmark's business: no timing here.)
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing
from scripted import ScriptedStream

from triostream import FrameTooLongError, IncompleteReadError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_receive", ROOT / "benchmarks" / "bench_receive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_receive"] = module  # (its dataclasses look their module up)
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["bench_receive"]
    return module


@asynccontextmanager
async def opened_floor(bench: ModuleType) -> AsyncIterator[tuple[trio.testing.MemorySendStream, Any]]:
    """A sending end, and the floor over its receiving end (reads of up to
    64 bytes, frames of up to 16: a limit of 16 + 64); its generator of
    frames is closed at the end."""
    send, receive = trio.testing.memory_stream_one_way_pair()
    wl = bench.Workload("lines-test", "test", "lines", 3, 10, receive_size=64, max_frame=16)
    floor = bench._UntilFloor(receive, wl)
    try:
        yield send, floor
    finally:
        await floor._batches.aclose()


async def test_frames_come_in_order_and_the_cursor_counts_what_was_handed_out(bench: ModuleType) -> None:
    async with opened_floor(bench) as (send, floor):
        await send.send_all(b"ab\ncde\n\nf")
        assert await floor.receive_until(b"\n") == b"ab"
        assert floor._cursor == 3
        assert await floor.receive_until(b"\n", max_size=8) == b"cde"
        assert await floor.receive_until(b"\n") == b""
        assert floor._cursor == 8
        await send.send_all(b"g\n")
        assert await floor.receive_until(b"\n") == b"fg"
        assert floor._cursor == 11


async def test_a_frame_over_max_size_stays_for_the_next_call(bench: ModuleType) -> None:
    async with opened_floor(bench) as (send, floor):
        await send.send_all(b"x\ny\n")  # a first read's frames, all handed out
        assert [await floor.receive_until(b"\n"), await floor.receive_until(b"\n")] == [b"x", b"y"]
        await send.send_all(b"abcd\nef\ngh\n")
        with pytest.raises(FrameTooLongError):
            await floor.receive_until(b"\n", max_size=4)  # 5 bytes with the delimiter
        assert floor._cursor == 4
        assert await floor.receive_until(b"\n", max_size=5) == b"abcd"
        with pytest.raises(FrameTooLongError):
            await floor.receive_until(b"\n", max_size=2)  # a buffered frame, too
        assert await floor.receive_until(b"\n", max_size=3) == b"ef"
        assert floor._cursor == 12


async def test_a_call_cancelled_in_its_checkpoint_leaves_its_frame_and_the_reader_free(bench: ModuleType) -> None:
    # (Not in its read: that is the split loop's generator, shared with the
    # other floors, which a cancellation ends; see _UntilFloor.)
    async with opened_floor(bench) as (send, floor):
        await send.send_all(b"a\nb\n")
        assert await floor.receive_until(b"\n") == b"a"
        with trio.CancelScope() as scope:
            scope.cancel()
            await floor.receive_until(b"\n")
        assert scope.cancelled_caught
        assert (floor._next, floor._cursor) == (1, 2)
        assert await floor.receive_until(b"\n") == b"b"  # not refused as busy
        assert floor._cursor == 4


async def test_a_second_task_is_refused(bench: ModuleType) -> None:
    async with opened_floor(bench) as (send, floor):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(floor.receive_until, b"\n")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await floor.receive_until(b"\n")
            await send.send_all(b"x\n")
        assert floor._cursor == 2


async def test_a_close_during_the_checkpoint_is_seen_and_the_frame_stays(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened_floor(bench) as (send, floor):
        await send.send_all(b"a\nb\n")
        assert await floor.receive_until(b"\n") == b"a"  # "b" is now buffered
        closes = 0

        async def checkpoint_while_another_task_closes() -> None:
            # The receive's checkpoint, during which another task closes the
            # floor (a task of its own, run to its end before this returns:
            # Trio's scheduling order alone would not say which runs first).
            nonlocal closes
            closes += 1
            monkeypatch.setattr(bench, "trio_checkpoint", trio.lowlevel.checkpoint)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(floor.aclose)

        monkeypatch.setattr(bench, "trio_checkpoint", checkpoint_while_another_task_closes)
        with pytest.raises(trio.ClosedResourceError):
            await floor.receive_until(b"\n")
        assert closes == 1
        assert (floor._next, floor._cursor) == (1, 2)
        with pytest.raises(trio.ClosedResourceError):
            await floor.receive_until(b"\n")


@pytest.mark.parametrize(
    ("delimiter", "max_size", "error"),
    [("\n", None, TypeError), (b"", None, TypeError), (b"\n", 0, ValueError), (b"\n", 16 + 65, ValueError)],
)
async def test_bad_arguments_are_refused_before_anything_is_read(
    bench: ModuleType, delimiter: Any, max_size: Any, error: type[Exception]
) -> None:
    async with opened_floor(bench) as (send, floor):
        await send.send_all(b"a\n")
        with pytest.raises(error):
            await floor.receive_until(delimiter, max_size=max_size)
        assert await floor.receive_until(b"\n", max_size=None) == b"a"  # None: the limit (16 + 64)


# ---------------------------------------------------------------- _LinesBatchFloor


@asynccontextmanager
async def opened_batch_floor(
    bench: ModuleType, body: int
) -> AsyncIterator[tuple[trio.testing.MemorySendStream, Any, AsyncIterator[Any]]]:
    """A sending end, the lines batch floor over its receiving end (lines of
    ``body`` bytes: the split loop under 512, the find loop above), and its
    batches with a limit of 40 bytes; closed at the end."""
    send, receive = trio.testing.memory_stream_one_way_pair()
    wl = bench.Workload("lines-test", "test", "lines", body, 10, receive_size=4096, max_frame=4096)
    floor = bench._LinesBatchFloor(receive, wl)
    batches = floor.batches(40)
    try:
        with trio.fail_after(10):  # (a step that would wait for bytes never sent fails)
            yield send, floor, batches
    finally:
        await batches.aclose()


BODIES = pytest.mark.parametrize("body", [16, 1000], ids=["split", "find"])


@BODIES
async def test_lines_come_in_order_stripped_of_cr_and_the_reader_keeps_the_rest(bench: ModuleType, body: int) -> None:
    async with opened_batch_floor(bench, body) as (send, floor, batches):
        await send.send_all(b"ab\r\ncd\ne\r\n\r\nf")
        assert await batches.__anext__() == [b"ab", b"cd", b"e", b""]
        assert bytes(floor._chunk[floor._pos :]) == b"f"
        await send.send_all(b"g\r")
        got = []
        async with trio.open_nursery() as nursery:

            async def step() -> None:
                got.append(await batches.__anext__())

            nursery.start_soon(step)
            await trio.testing.wait_all_tasks_blocked()  # "g\r" read, no line: the next read waits
            await send.send_all(b"\nh\n")
        assert got == [[b"fg", b"h"]]
        assert bytes(floor._chunk[floor._pos :]) == b""
        await send.send_all(b"x\r\n" * 20)  # (more than the limit: tested at once)
        assert await batches.__anext__() == [b"x"] * 20


@BODIES
async def test_a_line_over_max_size_ends_the_batch_and_stays(bench: ModuleType, body: int) -> None:
    async with opened_batch_floor(bench, body) as (send, floor, batches):
        await send.send_all(b"ok\n")
        assert await batches.__anext__() == [b"ok"]
        await send.send_all(b"a\nb\n" + b"y" * 40 + b"\nz\n")  # 41 bytes with its delimiter
        assert await batches.__anext__() == [b"a", b"b"]
        assert bytes(floor._chunk[floor._pos :]) == b"y" * 40 + b"\nz\n"
        with pytest.raises(FrameTooLongError):
            await batches.__anext__()


@BODIES
async def test_a_first_line_or_an_unfinished_one_over_max_size_stays(bench: ModuleType, body: int) -> None:
    async with opened_batch_floor(bench, body) as (send, floor, batches):
        await send.send_all(b"ok\n" + b"y" * 30)
        assert await batches.__anext__() == [b"ok"]
        await send.send_all(b"y" * 10 + b"\nz\n")  # the line it ends is over the limit
        with pytest.raises(FrameTooLongError):
            await batches.__anext__()
        assert bytes(floor._chunk[floor._pos :]) == b"y" * 40 + b"\nz\n"
    async with opened_batch_floor(bench, body) as (send, floor, batches):
        await send.send_all(b"ok\n" + b"y" * 45)  # no delimiter yet, already over
        assert await batches.__anext__() == [b"ok"]
        with pytest.raises(FrameTooLongError):
            await batches.__anext__()
        assert bytes(floor._chunk[floor._pos :]) == b"y" * 45


async def test_a_second_task_is_refused_during_a_batch_read(bench: ModuleType) -> None:
    async with opened_batch_floor(bench, 16) as (send, floor, batches):
        got = []

        async def step() -> None:
            got.append(await batches.__anext__())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(step)
            await trio.testing.wait_all_tasks_blocked()
            other = floor.batches(40)
            with pytest.raises(trio.BusyResourceError):
                await other.__anext__()
            await send.send_all(b"x\n")
        assert got == [[b"x"]]


async def test_a_read_returning_after_a_close_hands_nothing_out(bench: ModuleType) -> None:
    async with opened_batch_floor(bench, 16) as (send, floor, batches):
        async with trio.open_nursery() as nursery:

            async def step() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await batches.__anext__()

            nursery.start_soon(step)
            await trio.testing.wait_all_tasks_blocked()
            await floor.aclose()
            await send.send_all(b"late\n")
        assert bytes(floor._chunk[floor._pos :]) == b""


@BODIES
async def test_eof_inside_a_line_is_reported_and_a_clean_eof_ends_the_batches(bench: ModuleType, body: int) -> None:
    async with opened_batch_floor(bench, body) as (send, _floor, batches):
        await send.send_all(b"a\nb")
        assert await batches.__anext__() == [b"a"]
        await send.aclose()
        with pytest.raises(IncompleteReadError):
            await batches.__anext__()
    async with opened_batch_floor(bench, body) as (send, _floor, batches):
        await send.send_all(b"a\n")
        await send.aclose()
        assert [batch async for batch in batches] == [[b"a"]]


# ---------------------------------------------------------------- _LinesGenFloor


class _Counting(ScriptedStream):
    """A scripted transport that counts the bytes it has returned."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.returned = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await super().receive_some(max_bytes)
        self.returned += len(data)
        return data


@BODIES
async def test_the_lines_frame_floor_hands_out_a_line_a_step_and_knows_what_follows_it(
    bench: ModuleType, body: int
) -> None:
    """Lines of mixed endings in reads not aligned to them: a line a step,
    stripped of its \\r; after each, `unread` is what the transport brought
    after that line's ending (what a stream's other receive would continue
    from)."""
    rnd = random.Random(body)
    lines = [bytes([97 + i % 26]) * rnd.randint(0, 2 * body) for i in range(80)]
    endings = [rnd.choice([b"\n", b"\r\n"]) for _ in lines]
    wire = b"".join(line + end for line, end in zip(lines, endings, strict=True))
    ends = list(itertools.accumulate(len(line) + len(end) for line, end in zip(lines, endings, strict=True)))
    chunks, at = [], 0
    while at < len(wire):
        size = rnd.randint(1, 3 * body)
        chunks.append(wire[at : at + size])
        at += size
    transport = _Counting(chunks)
    wl = bench.Workload("lines-test", "test", "lines", body, 10, receive_size=1 << 16, max_frame=1 << 16)
    floor = bench._LinesGenFloor(transport, wl)
    got: list[bytes] = []
    async for frame in floor.frames(1 << 16):
        got.append(bytes(frame))
        assert floor.unread() == wire[ends[len(got) - 1] : transport.returned]
    assert got == lines


async def test_the_lines_frame_floor_stops_before_a_line_over_max_size(bench: ModuleType) -> None:
    wl = bench.Workload("lines-test", "test", "lines", 16, 10, receive_size=4096, max_frame=4096)
    floor = bench._LinesGenFloor(ScriptedStream([b"a\nb\r\n" + b"y" * 40 + b"\nz\n"]), wl)
    frames = floor.frames(40)
    assert [await frames.__anext__(), await frames.__anext__()] == [b"a", b"b"]
    with pytest.raises(FrameTooLongError):
        await frames.__anext__()
    assert floor.unread() == b"y" * 40 + b"\nz\n"


async def test_the_floors_read_a_plain_socket_as_triostream_does(bench: ModuleType) -> None:
    # Over a plain trio.SocketStream the floors read with triostream's own
    # read (so a floor pays no more per read than the receiver it bounds);
    # over anything else, and in the references, with receive_some.
    from triostream._socketio import read_socket
    from triostream.testing import open_socket_stream_pair

    client, server = await open_socket_stream_pair("tcp")
    async with client, server:
        reader = bench.floor_reader(server)
        assert reader.func is read_socket and reader.args == (server,)
        wl = bench.Workload("lines-test", "test", "lines", 3, 10, receive_size=64, max_frame=16)
        floor = bench._UntilFloor(server, wl)
        try:
            await client.send_all(b"ab\ncde\n")
            with trio.fail_after(10):
                assert await floor.receive_until(b"\n") == b"ab"
                assert await floor.receive_until(b"\n") == b"cde"
        finally:
            await floor._batches.aclose()
    _send, receive = trio.testing.memory_stream_one_way_pair()
    assert bench.floor_reader(receive) == receive.receive_some
