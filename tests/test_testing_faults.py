"""The fault-injection harness: ChunkedStream, chunkings, FaultyStream,
run_with_each_fault and the socket pairs.

Each piece is checked twice: that it does what it promises (exact bytes,
exact offsets, checkpoints, trio's stream conformance), and that it catches
the bugs it is for (a reader that assumes one receive is one message, a
reader that drops its partial buffer when the connection fails).
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import pytest
import trio
import trio.testing
from hypothesis import find, given
from hypothesis import strategies as st
from scripted import NoHalfClose, ScriptedStream

from triostream import BufferedStream, IncompleteReadError
from triostream.testing._chunking import ChunkedStream, ChunkSizes, chunkings
from triostream.testing._faults import Fault, FaultyStream, run_with_each_fault
from triostream.testing._sockets import open_socket_stream_pair, socket_stream_pair

DATA = bytes(range(40, 100))


async def loaded_pair(data: bytes = DATA) -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    """A memory stream pair whose right end has ``data`` and then EOF waiting."""
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(data)
    await left.send_eof()
    return left, right


async def read_all(stream: trio.abc.ReceiveStream, max_bytes: int | None = None) -> list[bytes]:
    """Receive until EOF; return the pieces."""
    pieces = []
    while piece := await stream.receive_some(max_bytes):
        pieces.append(bytes(piece))
    return pieces


# ================================================================ ChunkedStream


async def test_chunk_sizes_are_cycled() -> None:
    _, right = await loaded_pair()
    pieces = await read_all(ChunkedStream(right, [3, 1, 5]))
    assert b"".join(pieces) == DATA
    sizes = [len(p) for p in pieces]
    assert sizes[:-1] == list(itertools.islice(itertools.cycle([3, 1, 5]), len(sizes) - 1))
    assert 1 <= sizes[-1] <= [3, 1, 5][(len(sizes) - 1) % 3]


async def test_one_byte_at_a_time() -> None:
    _, right = await loaded_pair()
    stream = ChunkedStream(right, 1)
    pieces = await read_all(stream)
    assert pieces == [bytes([b]) for b in DATA]
    assert stream.pieces == len(DATA)
    # Over memory streams the leftover held the whole read: one inner read.
    assert await stream.receive_some() == b""


async def test_callable_gets_the_piece_index() -> None:
    _, right = await loaded_pair()
    pieces = await read_all(ChunkedStream(right, lambda k: k + 1))
    assert [len(p) for p in pieces[:-1]] == list(range(1, len(pieces)))
    assert b"".join(pieces) == DATA


async def test_iterator_is_drawn_lazily_then_cycled() -> None:
    _, right = await loaded_pair()
    pieces = await read_all(ChunkedStream(right, iter([2, 7])))
    assert [len(p) for p in pieces[:4]] == [2, 7, 2, 7]
    assert b"".join(pieces) == DATA
    # An infinite generator is drawn from one size per piece, no further.
    drawn: list[int] = []

    def sizes() -> Iterator[int]:
        for n in itertools.count(1):
            drawn.append(n)
            yield n

    _, right = await loaded_pair()
    stream = ChunkedStream(right, sizes())
    assert await stream.receive_some() == DATA[:1]
    assert await stream.receive_some() == DATA[1:3]
    assert drawn == [1, 2]


async def test_empty_iterable_means_whole_reads() -> None:
    inner = ScriptedStream([b"abc", b"defgh", b"i"])
    assert await read_all(ChunkedStream(inner, [])) == [b"abc", b"defgh", b"i"]


async def test_max_bytes_caps_the_piece_and_uses_up_its_size() -> None:
    _, right = await loaded_pair()
    stream = ChunkedStream(right, [10, 2])
    assert await stream.receive_some(4) == DATA[:4]  # size 10, capped at 4
    assert await stream.receive_some(4) == DATA[4:6]  # size 2 (read 4, 2 left over)
    assert await stream.receive_some() == DATA[6:8]  # size 10, but only the leftover: no read
    assert await stream.receive_some() == DATA[8:10]  # size 2 (read everything)
    assert await stream.receive_some() == DATA[10:20]  # size 10
    assert stream.pieces == 5


async def test_never_reads_ahead_to_fill_a_piece() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = ChunkedStream(right, 100)
    await left.send_all(b"ab")
    # Only two bytes are there: they come at once (a second read would block).
    with trio.fail_after(1):
        assert await stream.receive_some() == b"ab"


async def test_inner_read_gets_max_bytes() -> None:
    inner = ScriptedStream([DATA])
    stream = ChunkedStream(inner, [1])
    assert await stream.receive_some(8) == DATA[:1]
    assert stream.buffered == 7  # the rest of the 8-byte read
    assert inner.requests == [8]
    assert b"".join(await read_all(stream)) == DATA[1:]


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (0, ValueError),
        (-3, ValueError),
        (True, TypeError),
        ([4, 0], ValueError),
        (1.5, TypeError),
        (object(), TypeError),
    ],
)
def test_bad_chunk_sizes_refused_at_construction(chunks: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ChunkedStream(ScriptedStream([]), chunks)  # type: ignore[arg-type]


async def test_bad_lazy_size_raises_and_consumes_nothing() -> None:
    _, right = await loaded_pair()
    stream = ChunkedStream(right, lambda k: 2 if k == 0 else 0)
    assert await stream.receive_some() == DATA[:2]
    with pytest.raises(ValueError, match="chunk sizes must be >= 1"):
        await stream.receive_some()
    assert stream.buffered == len(DATA) - 2  # nothing lost


async def test_bad_max_bytes() -> None:
    stream = ChunkedStream(ScriptedStream([b"x"]), 1)
    with pytest.raises(ValueError):
        await stream.receive_some(0)
    with pytest.raises(TypeError):
        await stream.receive_some(1.5)  # type: ignore[arg-type]


async def test_leftover_read_is_a_full_checkpoint_and_cancel_safe() -> None:
    _, right = await loaded_pair()
    stream = ChunkedStream(right, 1)
    with trio.testing.assert_checkpoints():
        assert await stream.receive_some() == DATA[:1]  # reads the inner stream
    with trio.testing.assert_checkpoints():
        assert await stream.receive_some() == DATA[1:2]  # from the leftover
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_some()
    assert scope.cancelled_caught
    assert stream.buffered == len(DATA) - 2
    assert stream.pieces == 2  # the cancelled call drew no size
    assert await stream.receive_some() == DATA[2:3]


async def test_closed_drops_leftover() -> None:
    _, right = await loaded_pair()
    stream = ChunkedStream(right, 1)
    assert await stream.receive_some() == DATA[:1]
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert stream.buffered == 0
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


async def test_sends_pass_through_and_half_close() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = ChunkedStream(right, 2)
    assert isinstance(stream, trio.abc.HalfCloseableStream)
    assert stream.can_send_eof
    await stream.send_all(b"hello")
    await stream.send_eof()
    assert b"".join(await read_all(left)) == b"hello"

    plain = ChunkedStream(NoHalfClose(ScriptedStream([])), 2)
    assert not isinstance(plain, trio.abc.HalfCloseableStream)
    assert not plain.can_send_eof
    with trio.testing.assert_checkpoints(), pytest.raises(NotImplementedError):
        await plain.send_eof()


@given(payload=st.binary(max_size=300), chunking=chunkings(16), max_bytes=st.none() | st.integers(1, 40))
def test_chunked_stream_delivers_exactly_the_bytes(payload: bytes, chunking: list[int], max_bytes: int | None) -> None:
    async def main() -> None:
        _, right = await loaded_pair(payload)
        stream = ChunkedStream(right, chunking)
        pieces = await read_all(stream, max_bytes)
        assert b"".join(pieces) == payload
        limit = max_bytes or max(1, len(payload))
        if chunking:
            sizes = itertools.cycle(chunking)
            assert all(1 <= len(p) <= min(next(sizes), limit) for p in pieces)
        else:  # whole reads: one read of the memory stream takes everything
            assert [len(p) for p in pieces] == [min(limit, len(payload) - i) for i in range(0, len(payload), limit)]

    trio.run(main)


@given(chunking=chunkings(8))
def test_chunkings_shape(chunking: list[int]) -> None:
    assert chunking == [] or (1 <= len(chunking) <= 16 and all(1 <= n <= 8 for n in chunking))


def test_chunkings_special_cases_and_validation() -> None:
    assert find(chunkings(), lambda c: c == []) == []
    assert find(chunkings(), lambda c: c == [1]) == [1]
    assert len(find(chunkings(5), lambda c: len(c) >= 3 and max(c) == 5)) == 3
    with pytest.raises(ValueError):
        chunkings(0)


CONFORMANCE_CHUNKS: list[ChunkSizes] = [[1, 7, 1000, 3, 4096], 1500, [], lambda k: 1 + (k * 7919) % 3000]


HalfCloseablePair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]


def half_closeable(left: trio.abc.Stream, right: trio.abc.Stream) -> HalfCloseablePair:
    """The wrappers are half-closeable exactly when their inner stream is."""
    assert isinstance(left, trio.abc.HalfCloseableStream)
    assert isinstance(right, trio.abc.HalfCloseableStream)
    return left, right


def chunked_maker(
    make: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]], chunks: ChunkSizes
) -> Callable[[], Awaitable[HalfCloseablePair]]:
    async def maker() -> HalfCloseablePair:
        left, right = make()
        return half_closeable(ChunkedStream(left, chunks), ChunkedStream(right, chunks))

    return maker


def no_half_close_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    left, right = trio.testing.memory_stream_pair()
    return NoHalfClose(left), NoHalfClose(right)


@pytest.mark.parametrize("chunks", CONFORMANCE_CHUNKS, ids=["list", "int", "whole", "callable"])
async def test_chunked_stream_conformance(chunks: ChunkSizes) -> None:
    await trio.testing.check_half_closeable_stream(
        chunked_maker(trio.testing.memory_stream_pair, chunks),
        chunked_maker(trio.testing.lockstep_stream_pair, chunks),
    )

    async def plain() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        left, right = no_half_close_pair()
        chunked = ChunkedStream(left, chunks)
        assert not isinstance(chunked, trio.abc.HalfCloseableStream)
        return chunked, ChunkedStream(right, chunks)

    await trio.testing.check_two_way_stream(plain, None)


async def naive_read_message(stream: trio.abc.ReceiveStream) -> bytes:
    """BUG on purpose: assumes one receive_some returns one whole message."""
    data = bytes(await stream.receive_some())
    assert data.endswith(b"\n"), f"partial message {data!r}"
    return data


async def test_chunking_catches_one_receive_one_message_bug() -> None:
    _, right = await loaded_pair(b"PING\n")
    assert await naive_read_message(ChunkedStream(right, [])) == b"PING\n"  # looks fine...
    _, right = await loaded_pair(b"PING\n")
    with pytest.raises(AssertionError, match="partial message"):
        await naive_read_message(ChunkedStream(right, 1))  # ...until the transport cuts


# ================================================================ Fault


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"eof": True}, ValueError),  # no trigger
        ({"at_byte": 1, "at_call": 1, "eof": True}, ValueError),  # two triggers
        ({"at_byte": 1}, ValueError),  # no action
        ({"at_byte": 1, "eof": True, "close": True}, ValueError),  # two actions
        ({"at_byte": -1, "eof": True}, ValueError),
        ({"at_call": -1, "eof": True}, ValueError),
        ({"at_byte": True, "eof": True}, TypeError),
        ({"at_byte": 1.0, "eof": True}, TypeError),
        ({"at_byte": 1, "stall": -1}, ValueError),
        ({"at_byte": 1, "stall": math.nan}, ValueError),
        ({"at_byte": 1, "raise_": "boom"}, TypeError),
    ],
)
def test_fault_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_fault_constructors_and_repr() -> None:
    exc = OSError(errno.EPIPE, "Broken pipe")
    assert Fault.raise_(exc, at_call=2) == Fault(at_call=2, raise_=exc)
    assert Fault.eof(at_byte=5) == Fault(at_byte=5, eof=True)
    assert Fault.stall(2.5, at_byte=0) == Fault(at_byte=0, stall=2.5)
    assert Fault.close(at_call=1) == Fault(at_call=1, close=True)
    assert Fault.stall(math.inf, at_call=0).seconds == math.inf
    for fault in [Fault.reset(at_byte=10), Fault.eof(at_byte=5), Fault.stall(2.5, at_byte=0), Fault.close(at_call=1)]:
        assert (
            repr(fault)
            == {
                "raise": "Fault.reset(at_byte=10)",
                "eof": "Fault.eof(at_byte=5)",
                "stall": "Fault.stall(2.5, at_byte=0)",
                "close": "Fault.close(at_call=1)",
            }[fault.kind]
        )
    assert repr(Fault.raise_(exc, at_call=2)) == f"Fault.raise_({exc!r}, at_call=2)"
    reset = Fault.reset(at_byte=3)
    first, second = reset.new_exception(), reset.new_exception()
    assert first is not second
    assert isinstance(first, trio.BrokenResourceError)
    assert isinstance(first.__cause__, ConnectionResetError)
    assert first.__cause__.errno == errno.ECONNRESET
    with pytest.raises(TypeError):
        Fault.eof(at_byte=1).new_exception()
    with pytest.raises(TypeError, match="not an exception"):
        Fault.raise_(lambda: "boom", at_byte=1).new_exception()  # type: ignore[arg-type,return-value]


# ================================================================ FaultyStream, receive side


OFFSETS = [0, 1, 7, len(DATA) - 1, len(DATA)]


@pytest.mark.parametrize("offset", OFFSETS)
async def test_receive_reset_at_exact_offset(offset: int) -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.reset(at_byte=offset))
    got = b""
    with pytest.raises(trio.BrokenResourceError) as info:
        while True:
            piece = await stream.receive_some(1000)
            assert piece, "EOF instead of the fault"
            got += piece
    assert got == DATA[:offset]
    assert stream.bytes_received == offset
    assert stream.receive_fault_fired
    assert isinstance(info.value.__cause__, ConnectionResetError)
    # The side stays broken, chained from the injected exception.
    with trio.testing.assert_checkpoints(), pytest.raises(trio.BrokenResourceError) as again:
        await stream.receive_some()
    assert again.value.__cause__ is info.value
    # Sends are unaffected by a receive fault; the rest was never read.
    await stream.send_all(b"still works")
    assert b"".join(await read_all(right)) == DATA[offset:]


async def test_receive_raises_the_given_instance() -> None:
    exc = OSError(errno.ECONNRESET, "Connection reset by peer")
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.raise_(exc, at_byte=5))
    assert await stream.receive_some() == DATA[:5]  # cut at the offset
    with trio.testing.assert_checkpoints(), pytest.raises(OSError) as info:
        await stream.receive_some()
    assert info.value is exc


async def test_receive_raise_factory_is_fresh_per_stream() -> None:
    fault = Fault.raise_(ConnectionResetError, at_call=0)
    raised = []
    for _ in range(2):
        _, right = await loaded_pair()
        with pytest.raises(ConnectionResetError) as info:
            await FaultyStream(right, receive=fault).receive_some()
        raised.append(info.value)
    assert raised[0] is not raised[1]


@pytest.mark.parametrize("offset", OFFSETS)
async def test_receive_early_eof(offset: int) -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.eof(at_byte=offset))
    assert b"".join(await read_all(stream, 6)) == DATA[:offset]
    with trio.testing.assert_checkpoints():
        assert await stream.receive_some() == b""
    # Nothing beyond the offset was taken from the inner stream.
    assert b"".join(await read_all(right)) == DATA[offset:]


async def test_receive_fault_at_call() -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(ChunkedStream(right, 4), receive=Fault.eof(at_call=3))
    assert [await stream.receive_some() for _ in range(4)] == [DATA[:4], DATA[4:8], DATA[8:12], b""]
    assert stream.receive_calls == 4


async def test_receive_stall_with_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.stall(10, at_byte=3))
    start = trio.current_time()
    assert await stream.receive_some() == DATA[:3]  # cut at the offset, no wait
    assert trio.current_time() == start
    # A timeout shorter than the stall gives up; the retry waits the rest only.
    with trio.move_on_after(4) as scope:
        await stream.receive_some()
    assert scope.cancelled_caught
    assert trio.current_time() == start + 4
    assert await stream.receive_some() == DATA[3:]
    assert trio.current_time() == start + 10
    assert await stream.receive_some() == b""


async def test_stall_forever_ends_on_aclose(autojump_clock: trio.testing.MockClock) -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.stall(math.inf, at_call=0))

    async def receiver() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(1000)
        await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()


async def test_receive_close_fault() -> None:
    left, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.close(at_call=1))
    assert await stream.receive_some() == DATA
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await right.receive_some()  # the inner stream really is closed
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
        await left.send_all(b"x")  # the peer sees the close (memory streams call it "closed")
    await stream.aclose()


async def test_cancelled_before_firing_fires_at_next_call() -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.eof(at_call=0))
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_some()
    assert not stream.receive_fault_fired
    assert await stream.receive_some() == b""
    assert stream.receive_fault_fired


async def test_concurrent_receives_are_refused_on_injected_paths() -> None:
    _, right = await loaded_pair()
    stream = FaultyStream(right, receive=Fault.eof(at_call=0))
    with pytest.RaisesGroup(trio.BusyResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.receive_some)
            nursery.start_soon(stream.receive_some)


@given(
    payload=st.binary(max_size=200),
    chunking=chunkings(16),
    data=st.data(),
    max_bytes=st.none() | st.integers(1, 30),
)
def test_fault_delivers_exactly_the_prefix(
    payload: bytes, chunking: list[int], data: st.DataObject, max_bytes: int | None
) -> None:
    offset = data.draw(st.integers(0, len(payload)))
    fault = data.draw(st.sampled_from([Fault.eof(at_byte=offset), Fault.reset(at_byte=offset)]))

    async def main() -> None:
        _, right = await loaded_pair(payload)
        stream = FaultyStream(ChunkedStream(right, chunking), receive=fault)
        got = b""
        try:
            while piece := await stream.receive_some(max_bytes):
                got += piece
        except trio.BrokenResourceError:
            assert fault.kind == "raise"
        else:
            assert fault.kind == "eof"
        assert got == payload[:offset]

    trio.run(main)


# ================================================================ FaultyStream, send side


async def test_send_fault_cuts_at_offset_then_raises() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = FaultyStream(right, send=Fault.reset(at_byte=6))
    await stream.send_all(b"abcd")
    with pytest.raises(trio.BrokenResourceError) as info:
        await stream.send_all(b"efghij")
    assert stream.bytes_sent == 6
    assert await left.receive_some() == b"abcdef"  # exactly the bytes before the offset
    with pytest.raises(trio.BrokenResourceError) as again:
        await stream.send_all(b"k")
    assert again.value.__cause__ is info.value
    with pytest.raises(trio.BrokenResourceError):
        await stream.wait_send_all_might_not_block()
    with pytest.raises(trio.BrokenResourceError):
        await stream.send_eof()
    # The receive side is unaffected.
    await left.send_all(b"reply")
    assert await stream.receive_some() == b"reply"


async def test_empty_send_does_not_reach_the_offset() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = FaultyStream(right, send=Fault.reset(at_byte=0))
    await stream.send_all(b"")
    await stream.wait_send_all_might_not_block()
    with pytest.raises(trio.BrokenResourceError):
        await stream.send_all(b"x")
    assert stream.send_calls == 2
    assert stream.bytes_sent == 0
    await stream.aclose()
    assert await left.receive_some() == b""  # nothing was sent before the close


async def test_send_eof_reaches_the_offset() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = FaultyStream(right, send=Fault.raise_(BrokenPipeError, at_byte=3))
    await stream.send_all(b"abc")
    with trio.testing.assert_checkpoints(), pytest.raises(BrokenPipeError):
        await stream.send_eof()
    assert await left.receive_some() == b"abc"


async def test_send_stall_with_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = FaultyStream(right, send=Fault.stall(5, at_byte=2))
    arrivals: list[tuple[float, bytes]] = []

    async def receiver() -> None:
        while data := await left.receive_some():
            arrivals.append((trio.current_time(), bytes(data)))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await stream.send_all(b"abcd")
        await stream.send_eof()
    assert arrivals == [(start, b"ab"), (start + 5, b"cd")]


async def test_send_close_fault() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = FaultyStream(right, send=Fault.close(at_byte=2))
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"abc")
    assert await left.receive_some() == b"ab"
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


def test_eof_fault_refused_on_the_send_side() -> None:
    with pytest.raises(ValueError, match="receive side"):
        FaultyStream(ScriptedStream([]), send=Fault.eof(at_byte=1))
    with pytest.raises(TypeError):
        FaultyStream(ScriptedStream([]), receive="eof")  # type: ignore[arg-type]


def faulty_pair(make: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]) -> tuple[FaultyStream, FaultyStream]:
    left, right = make()
    # Faults that never fire within the checks: the cut path runs, the fault does not.
    far = Fault.reset(at_byte=1 << 40)
    return FaultyStream(left, receive=far, send=far), FaultyStream(right)


async def test_faulty_stream_conformance() -> None:
    async def memory() -> HalfCloseablePair:
        return half_closeable(*faulty_pair(trio.testing.memory_stream_pair))

    async def lockstep() -> HalfCloseablePair:
        return half_closeable(*faulty_pair(trio.testing.lockstep_stream_pair))

    async def plain() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        left, right = faulty_pair(no_half_close_pair)
        assert not isinstance(left, trio.abc.HalfCloseableStream)
        return left, right

    await trio.testing.check_half_closeable_stream(memory, lockstep)
    await trio.testing.check_two_way_stream(plain, None)


# ================================================================ run_with_each_fault


async def test_run_with_each_fault_tries_every_offset_with_a_fresh_fault() -> None:
    seen: list[Fault] = []

    async def scenario(fault: Fault) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(fault)

    await run_with_each_fault(scenario, 5)
    assert [f.at_byte for f in seen] == [0, 1, 2, 3, 4, 5]
    assert all(f == Fault.reset(at_byte=i) for i, f in enumerate(seen))
    seen.clear()
    await run_with_each_fault(scenario, 2, make_fault=lambda n: Fault.eof(at_byte=n))
    assert seen == [Fault.eof(at_byte=0), Fault.eof(at_byte=1), Fault.eof(at_byte=2)]


async def test_run_with_each_fault_reports_every_failing_offset() -> None:
    ran: list[int] = []

    async def scenario(fault: Fault) -> None:
        assert fault.at_byte is not None
        ran.append(fault.at_byte)
        if fault.at_byte in (2, 5):
            raise ValueError(f"bad at {fault.at_byte}")

    with pytest.raises(AssertionError) as info:
        await run_with_each_fault(scenario, 6)
    assert ran == list(range(7))  # the offsets after a failure still ran
    message = str(info.value)
    assert message.splitlines()[0] == "scenario failed at 2 of 7 fault offsets: [2, 5]"
    assert "offset 2: Fault.reset(at_byte=2): ValueError: bad at 2" in message
    assert "offset 5: Fault.reset(at_byte=5): ValueError: bad at 5" in message
    assert "raise ValueError" in message  # a traceback excerpt
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ValueError):
        await run_with_each_fault(scenario, -1)


async def test_run_with_each_fault_counts_pytest_failures_per_offset() -> None:
    ran: list[int] = []
    raised: dict[int, BaseException] = {}

    async def scenario(fault: Fault) -> None:
        assert fault.at_byte is not None
        ran.append(fault.at_byte)
        try:
            if fault.at_byte == 1:
                with pytest.raises(ValueError):  # nothing raised: pytest's failure, a BaseException
                    pass
            if fault.at_byte == 3:
                pytest.fail("first line\nsecond line\nthird line")
        except BaseException as exc:
            raised[fault.at_byte] = exc
            raise

    with pytest.raises(AssertionError) as info:
        await run_with_each_fault(scenario, 4)
    assert ran == [0, 1, 2, 3, 4]  # a pytest failure does not stop the other offsets
    assert sorted(raised) == [1, 3]
    assert all(isinstance(exc, pytest.fail.Exception) for exc in raised.values())
    assert not any(isinstance(exc, Exception) for exc in raised.values())  # what makes them special
    lines = str(info.value).splitlines()
    assert lines[0] == "scenario failed at 2 of 5 fault offsets: [1, 3]"
    # Our format, whatever pytest's wording: the offset, the fault's repr, the exception's type name
    # and the first line of its message, and how many lines more.
    for offset in (1, 3):
        exc = raised[offset]
        message = str(exc).strip().splitlines()
        more = f" (+{len(message) - 1} lines)" if len(message) > 1 else ""
        first = message[0] if message else ""
        expected = f"  offset {offset}: {Fault.reset(at_byte=offset)!r}: {type(exc).__name__}: {first}{more}"
        assert expected in lines
    # Our own message for offset 3 (its text is ours), spelled out:
    assert f"  offset 3: Fault.reset(at_byte=3): {type(raised[3]).__name__}: first line (+2 lines)" in lines
    assert [line for line in lines if line.startswith("  offset ")] == [
        line for line in lines if line.startswith(("  offset 1: ", "  offset 3: "))
    ]  # one line per failing offset, none for the others
    assert info.value.__cause__ is raised[1]


async def test_run_with_each_fault_is_a_full_checkpoint() -> None:
    runs: list[Fault] = []

    async def scenario(fault: Fault) -> None:  # never awaits anything
        runs.append(fault)

    with trio.testing.assert_checkpoints():
        await run_with_each_fault(scenario, 0)
    assert runs == [Fault.reset(at_byte=0)]


async def test_run_with_each_fault_lets_pytest_skip_through() -> None:
    async def scenario(fault: Fault) -> None:
        pytest.skip("not on this platform")

    with pytest.raises(pytest.skip.Exception):
        await run_with_each_fault(scenario, 3)


async def test_run_with_each_fault_times_out_hanging_runs(autojump_clock: trio.testing.MockClock) -> None:
    async def scenario(fault: Fault) -> None:
        _, right = await loaded_pair(b"abc")
        await read_all(FaultyStream(right, receive=fault))  # no timeout of its own: hangs

    with pytest.raises(AssertionError) as info:
        await run_with_each_fault(scenario, 3, make_fault=lambda n: Fault.stall(math.inf, at_byte=n), run_timeout=60)
    lines = str(info.value).splitlines()
    assert lines[0] == "scenario failed at 4 of 4 fault offsets: [0, 1, 2, 3]"
    for offset in range(4):
        fault = Fault.stall(math.inf, at_byte=offset)
        assert any(line.startswith(f"  offset {offset}: {fault!r}: {trio.TooSlowError.__name__}") for line in lines)
    assert isinstance(info.value.__cause__, trio.TooSlowError)


async def test_run_with_each_fault_lets_cancellation_through() -> None:
    runs = 0

    async def scenario(fault: Fault) -> None:
        nonlocal runs
        runs += 1
        await trio.sleep_forever()

    with trio.move_on_after(0.01) as scope:
        await run_with_each_fault(scenario, 10)
    assert scope.cancelled_caught
    assert runs == 1


# ---------------------------------------------------------------- the line-reading exchange


LINES = [b"HELLO\r\n", b"abc\n", b"a longer line, cut into several reads\n", b"\n", b"last\n"]
EXCHANGE = b"".join(LINES)
BOUNDARIES = {0, *itertools.accumulate(len(line) for line in LINES)}


class LineReader(Protocol):
    async def receive_line(self) -> bytes:
        """The next line, its ``\\n`` included."""

    def buffered(self) -> bytes:
        """Bytes received and not handed out yet."""


class BufferedLines:
    """triostream's way: a BufferedStream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = BufferedStream(stream, max_buffer_size=64, receive_size=5)

    async def receive_line(self) -> bytes:
        return await self.stream.receive_until(b"\n", keep_delimiter=True)

    def buffered(self) -> bytes:
        return self.stream.peek()


class HandLines:
    """A hand-written line reader; ``drop_on_error`` plants the classic bug."""

    def __init__(self, stream: trio.abc.Stream, *, drop_on_error: bool = False) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.drop_on_error = drop_on_error

    async def receive_line(self) -> bytes:
        try:
            while (end := self.buffer.find(b"\n")) < 0:
                data = await self.stream.receive_some(5)
                if not data:
                    raise IncompleteReadError(bytes(self.buffer), None)
                self.buffer += data
        except BaseException:
            if self.drop_on_error:
                self.buffer.clear()  # BUG: the partial line received so far is lost
            raise
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def buffered(self) -> bytes:
        return bytes(self.buffer)


def line_scenario(
    make_reader: Callable[[trio.abc.Stream], LineReader], chunks: ChunkSizes
) -> Callable[[Fault], Awaitable[None]]:
    """Read the exchange's lines until the fault; then every byte received
    is in a whole line handed out or still buffered."""

    async def scenario(fault: Fault) -> None:
        _, right = await loaded_pair(EXCHANGE)
        faulty = FaultyStream(ChunkedStream(right, chunks), receive=fault)
        reader = make_reader(faulty)
        lines = []
        with pytest.raises((trio.BrokenResourceError, ConnectionResetError, IncompleteReadError)):
            while True:
                lines.append(await reader.receive_line())
        assert faulty.receive_fault_fired
        assert faulty.bytes_received == fault.at_byte
        assert all(line.endswith(b"\n") for line in lines)
        assert b"".join(lines) + reader.buffered() == EXCHANGE[: faulty.bytes_received]

    return scenario


FAULT_MAKERS: dict[str, Callable[[int], Fault]] = {
    "reset": lambda n: Fault.reset(at_byte=n),
    "eof": lambda n: Fault.eof(at_byte=n),
    "oserror": lambda n: Fault.raise_(lambda: ConnectionResetError(errno.ECONNRESET, "reset"), at_byte=n),
}
CHUNKINGS: dict[str, ChunkSizes] = {"bytewise": 1, "whole": [], "mixed": [2, 3, 1, 9]}


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("fault", FAULT_MAKERS)
async def test_buffered_stream_keeps_every_byte_at_every_fault(fault: str, chunking: str) -> None:
    await run_with_each_fault(
        line_scenario(BufferedLines, CHUNKINGS[chunking]), len(EXCHANGE), make_fault=FAULT_MAKERS[fault]
    )


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("fault", FAULT_MAKERS)
async def test_harness_catches_a_reader_that_drops_its_partial_line(fault: str, chunking: str) -> None:
    # Without the bug, the hand-written reader passes...
    await run_with_each_fault(
        line_scenario(HandLines, CHUNKINGS[chunking]), len(EXCHANGE), make_fault=FAULT_MAKERS[fault]
    )

    # ...with it, exactly the offsets inside a line fail.
    def dropping(stream: trio.abc.Stream) -> LineReader:
        return HandLines(stream, drop_on_error=True)

    with pytest.raises(AssertionError) as info:
        await run_with_each_fault(
            line_scenario(dropping, CHUNKINGS[chunking]), len(EXCHANGE), make_fault=FAULT_MAKERS[fault]
        )
    inside = sorted(set(range(len(EXCHANGE) + 1)) - BOUNDARIES)
    first_line = str(info.value).splitlines()[0]
    assert first_line == f"scenario failed at {len(inside)} of {len(EXCHANGE) + 1} fault offsets: {inside}"


# ================================================================ socket pairs


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_open_socket_stream_pair(kind: str) -> None:
    client, server = await open_socket_stream_pair(kind)  # type: ignore[arg-type]
    try:
        assert isinstance(client, trio.SocketStream)
        assert isinstance(server, trio.SocketStream)
        family = trio.socket.AF_INET if kind == "tcp" else trio.socket.AF_UNIX
        assert client.socket.family == server.socket.family == family
        if kind == "tcp":
            assert client.socket.getpeername() == server.socket.getsockname()
            assert server.socket.getsockname()[0] == "127.0.0.1"
        await client.send_all(b"ping")
        assert await server.receive_some() == b"ping"
        await server.send_all(b"pong")
        await server.send_eof()
        assert b"".join(await read_all(client)) == b"pong"
        await client.send_all(b"half-closed, still sending")
        await client.send_eof()
        assert b"".join(await read_all(server)) == b"half-closed, still sending"
    finally:
        await client.aclose()
        await server.aclose()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_socket_stream_pair_closes_both_ends(kind: str) -> None:
    async with socket_stream_pair(kind) as (client, server):  # type: ignore[arg-type]
        await client.send_all(b"x")
        assert await server.receive_some() == b"x"
    for end in (client, server):
        with pytest.raises(trio.ClosedResourceError):
            await end.send_all(b"y")

    with pytest.raises(KeyError):
        async with socket_stream_pair(kind) as (client, server):  # type: ignore[arg-type]
            raise KeyError("boom")
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()


async def test_socket_stream_pair_bad_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        await open_socket_stream_pair("udp")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_harness_over_real_sockets(kind: str) -> None:
    """The pieces stack over a kernel transport: chunked, faulted, buffered."""
    async with socket_stream_pair(kind) as (client, server):  # type: ignore[arg-type]
        faulty = FaultyStream(ChunkedStream(server, [1, 3]), receive=Fault.reset(at_byte=len(LINES[0]) + 2))
        reader = BufferedStream(faulty)
        await client.send_all(EXCHANGE)
        assert await reader.receive_line() == b"HELLO"
        with pytest.raises(trio.BrokenResourceError):
            await reader.receive_line()
        assert reader.peek() == LINES[1][:2]
        # A pending fault far away does not make reads ask the socket for huge sizes.
        far = FaultyStream(client, receive=Fault.reset(at_byte=1 << 40))
        await server.send_all(b"back")
        assert await far.receive_some() == b"back"


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_chunked_stream_conformance_over_sockets(kind: str) -> None:
    async def maker() -> HalfCloseablePair:
        client, server = await open_socket_stream_pair(kind)  # type: ignore[arg-type]
        return half_closeable(ChunkedStream(client, [1, 1000, 7, 4000]), ChunkedStream(server, 3000))

    await trio.testing.check_half_closeable_stream(maker, None)


# ------------------------------------------------ differential: random faults, random calls

_FUZZ_SEEDS = int(os.environ.get("TRIOSTREAM_FUZZ_SEEDS", "150"))  # (as in test_receive_fuzz.py)


def _random_fault(rnd: random.Random, size: int, side: str) -> tuple[Fault, str]:
    """A fault of a random action and trigger, and the action's name (a
    reset is a ``raise`` fault whose exception is made afresh)."""
    kinds = ["reset", "raise", "stall", "close"] + (["eof"] if side == "receive" else [])
    kind = rnd.choice(kinds)
    trigger = (
        {"at_byte": rnd.choice([0, size, size + 1, rnd.randint(0, size + 2)])}
        if rnd.random() < 0.6
        else {"at_call": rnd.randint(0, 12)}
    )
    if kind == "reset":
        return Fault.reset(**trigger), kind
    if kind == "raise":
        return Fault.raise_(OSError(errno.EPIPE, "Broken pipe"), **trigger), kind
    if kind == "stall":
        return Fault.stall(rnd.choice([0, 0.5, 30]), **trigger), kind
    if kind == "eof":
        return Fault.eof(**trigger), kind
    return Fault.close(**trigger), kind


@pytest.mark.parametrize("seed", range(_FUZZ_SEEDS))
async def test_a_receive_fault_strikes_exactly_where_it_says(seed: int, autojump_clock: trio.testing.MockClock) -> None:
    """Random data, a random receive fault (every action, at a byte offset
    in, at the end of or past the data, or at a call), read in random sizes
    (through a `ChunkedStream` half the time): the bytes before the fault
    arrive exactly, no read crosses its offset, the call it names gets the
    action, and afterwards the side stays as the action left it (broken,
    at EOF, closed, or going on after a stall); the counters agree."""
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, rnd.randint(1, 300), rnd.randint(300, 5000)])))
    fault, kind = _random_fault(rnd, len(data), "receive")
    sender, receiver = trio.testing.memory_stream_pair()
    await sender.send_all(data)
    await sender.send_eof()
    inner: trio.abc.Stream = receiver if rnd.random() < 0.5 else ChunkedStream(receiver, rnd.choice([1, 7, 100]))
    stream = FaultyStream(inner, receive=fault)
    got = b""
    calls = 0
    outcome: object = None  # how the stream ended: b"" (EOF) or the exception's type
    start = trio.current_time()
    after = 0  # calls after the end (EOF or a failure): the side stays so
    while outcome is None or after < 3 or (fault.at_call is not None and calls <= fault.at_call):
        after += outcome is not None
        max_bytes = rnd.choice([None, 1, rnd.randint(1, 500), 65536])
        if fault.at_byte is not None and fault.at_byte >= len(got) and rnd.random() < 0.3:
            max_bytes = max(1, fault.at_byte - len(got) + rnd.randint(0, 2))
        fires_now = not stream.receive_fault_fired and (
            fault.at_call == calls if fault.at_call is not None else fault.at_byte == len(got)
        )
        calls += 1
        try:
            chunk = await stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            assert fires_now or outcome not in (None, b""), (seed, calls)
            if fires_now:
                expected = {"reset": trio.BrokenResourceError, "close": trio.ClosedResourceError}
                assert exc is fault.exception if kind == "raise" else type(exc) is expected[kind], seed
            elif kind in ("raise", "reset"):
                assert type(exc) is trio.BrokenResourceError and exc.__cause__ is not None, seed
            else:
                assert type(exc) is trio.ClosedResourceError and kind == "close", seed
            outcome = type(exc) if fires_now else outcome
            continue
        assert outcome in (None, b""), (seed, calls)  # (no bytes after a failure)
        if fires_now and kind == "eof":
            assert chunk == b"", seed
        if fault.at_byte is not None and not stream.receive_fault_fired:
            assert len(got) + len(chunk) <= fault.at_byte, seed  # cut at the offset
        assert max_bytes is None or len(chunk) <= max_bytes, seed
        if not chunk:
            outcome = b""
        got += chunk
        assert stream.bytes_received == len(got), seed
    assert stream.receive_calls == calls, seed
    fired = stream.receive_fault_fired
    reached = fault.at_byte <= len(data) if fault.at_byte is not None else True
    assert fired == reached, seed
    if not fired or kind == "stall":
        assert got == data and outcome == b"", seed
    else:
        assert fault.at_byte is None or got == data[: fault.at_byte], seed
        assert data.startswith(got), seed
        assert outcome == {"eof": b"", "close": trio.ClosedResourceError, "reset": trio.BrokenResourceError}.get(
            kind, BrokenPipeError
        ), seed
    stalled = trio.current_time() - start
    assert stalled == (fault.seconds if fired and kind == "stall" else 0), seed
    await stream.aclose()


@pytest.mark.parametrize("seed", range(_FUZZ_SEEDS))
async def test_a_send_fault_strikes_exactly_where_it_says(seed: int, autojump_clock: trio.testing.MockClock) -> None:
    """The send side: random data sent in random pieces through a random
    fault: the peer receives exactly the bytes before the fault (at a byte
    offset the failing call sends those first), the call it names fails
    (or stalls, then goes on), and later sends stay broken or closed."""
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, rnd.randint(1, 300), rnd.randint(300, 5000)])))
    fault, kind = _random_fault(rnd, len(data), "send")
    sender, receiver = trio.testing.memory_stream_pair()
    stream = FaultyStream(sender, send=fault)
    sent = 0  # bytes of data handed to send_all without an error
    calls = 0
    failed: type[BaseException] | None = None
    start = trio.current_time()
    while sent < len(data) or (calls < 3 and rnd.random() < 0.5):
        size = rnd.choice([1, rnd.randint(1, 400), 5000])
        if fault.at_byte is not None and fault.at_byte >= sent and rnd.random() < 0.3:
            size = max(1, fault.at_byte - sent + rnd.randint(0, 2))  # (just to, over or past it)
        piece = data[sent : sent + size]
        if fault.at_call is not None:
            fires_now = not stream.send_fault_fired and fault.at_call == calls
        else:
            assert fault.at_byte is not None
            fires_now = not stream.send_fault_fired and bool(piece) and sent <= fault.at_byte < sent + len(piece)
        calls += 1
        try:
            await stream.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            assert fires_now or failed is not None, (seed, calls)
            if failed is not None:
                assert exc.__cause__ is not None or type(exc) is trio.ClosedResourceError, seed  # (stays broken)
                break
            failed = type(exc)
            continue  # once more: the side stays broken or closed
        assert failed is None and not (fires_now and kind != "stall"), (seed, calls)
        sent += len(piece)
        if sent >= len(data) and calls > 3:
            break
    if failed is None:
        # send_eof counts as a send call, and at the fault's offset fires it.
        fires_now = not stream.send_fault_fired and (
            fault.at_call == calls if fault.at_call is not None else fault.at_byte == sent
        )
        calls += 1
        try:
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            assert fires_now, seed
            failed = type(exc)
        else:
            assert not fires_now or kind == "stall", seed
    stalled = trio.current_time() - start
    await stream.aclose()  # (the peer then sees EOF after what was sent)
    received = b""
    while chunk := await receiver.receive_some():
        received += chunk
    fired = stream.send_fault_fired
    if not fired or kind == "stall":
        assert received == data and failed is None, seed
    else:
        want = data[: fault.at_byte] if fault.at_byte is not None else data[:sent]
        assert received == want, seed
        assert failed is {"close": trio.ClosedResourceError, "reset": trio.BrokenResourceError}.get(
            kind, BrokenPipeError
        ), seed
    assert stalled == (fault.seconds if fired and kind == "stall" else 0), seed
    assert stream.send_calls == calls, seed
