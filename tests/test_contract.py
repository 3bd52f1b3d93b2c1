"""The receive contract, end to end: any chunking, cancellation, faults.

* Property tests: a random script of receive calls, its frames encoded and
  delivered in any chunking, reads back exactly the frames written.
* Cancellation fuzz: thousands of cancellations at random moments; what was
  received, concatenated, is exactly what was sent.
* Faults (`triostream.testing.run_with_each_fault`): EOF, a reset or another
  transport error at every byte offset of a small exchange, in three
  chunkings; the frames before it arrive whole, and every received byte not
  handed out is still buffered afterwards.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triostream import BufferedStream, FrameTooLongError, IncompleteReadError
from triostream.testing import ChunkedStream, Fault, FaultyStream, chunkings, run_with_each_fault

# ---------------------------------------------------------------- a protocol script


@dataclass
class Step:
    """One receive call: how its frame is encoded, and how it is read back."""

    method: str
    payload: bytes
    wire: bytes


NO_NEWLINES = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
NO_SPECIALS = NO_NEWLINES.map(lambda b: b.replace(b";", b"").replace(b"#", b"").replace(b"|", b""))


@st.composite
def steps(draw: st.DrawFn) -> Step:
    method = draw(
        st.sampled_from(
            [
                "line",
                "line_nowait",
                "until",
                "until_nowait",
                "iter_until",
                "until_tuple",
                "regex",
                "exactly",
                "exactly_nowait",
                "exactly_into",
                "discard",
                "iter_lines",
            ]
        )
    )
    if method in ("line", "line_nowait", "regex", "iter_lines"):
        payload = draw(NO_NEWLINES)
        return Step(method, payload, payload + draw(st.sampled_from([b"\n", b"\r\n"])))
    if method in ("until", "until_nowait", "iter_until"):
        payload = draw(NO_SPECIALS)
        return Step(method, payload, payload + b"||")
    if method == "until_tuple":
        payload = draw(NO_SPECIALS)
        return Step(method, payload, payload + draw(st.sampled_from([b";", b"\r\n", b"\n"])))
    if method == "discard":
        payload = draw(NO_SPECIALS)
        return Step(method, payload, payload + b"#")
    payload = draw(st.binary(max_size=60))
    return Step(method, payload, payload)


async def run_step(stream: BufferedStream, step: Step) -> object:
    m = step.method
    if m == "line":
        return await stream.receive_line()
    if m == "line_nowait":
        try:
            return stream.receive_line_nowait()
        except trio.WouldBlock:
            return await stream.receive_line()
    if m == "iter_lines":
        async for line in stream.lines():
            return line
        raise AssertionError("no line")
    if m == "until":
        return await stream.receive_until(b"||")
    if m == "until_nowait":
        try:
            return stream.receive_until_nowait(b"||")
        except trio.WouldBlock:
            return await stream.receive_until(b"||")
    if m == "iter_until":
        async for frame in stream.iter_until(b"||"):
            return frame
        raise AssertionError("no frame")
    if m == "until_tuple":
        return await stream.receive_until((b";", b"\r", b"\r\n", b"\n"))
    if m == "regex":
        return await stream.receive_until_regex(rb"\r?\n")
    if m == "exactly":
        return await stream.receive_exactly(len(step.payload))
    if m == "exactly_nowait":
        try:
            return stream.receive_exactly_nowait(len(step.payload))
        except trio.WouldBlock:
            return await stream.receive_exactly(len(step.payload))
    if m == "exactly_into":
        target = bytearray(len(step.payload))
        await stream.receive_exactly_into(target)
        return bytes(target)
    if m == "discard":
        return await stream.discard_until(b"#")
    raise AssertionError(m)


async def delivering(data: bytes, chunking: list[int]) -> ChunkedStream:
    """A transport that delivers ``data`` in the given chunking, then EOF."""
    peer, end = trio.testing.memory_stream_pair()
    await peer.send_all(data)
    await peer.send_eof()
    return ChunkedStream(end, chunking)


def expected_result(step: Step) -> object:
    return len(step.wire) if step.method == "discard" else step.payload


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(steps(), max_size=12),
    chunking=chunkings(max_chunk=40),
    trailer=st.binary(max_size=20),
    receive_size=st.integers(min_value=1, max_value=80),
)
def test_any_script_any_chunking(script: list[Step], chunking: list[int], trailer: bytes, receive_size: int) -> None:
    data = b"".join(step.wire for step in script) + trailer

    async def main() -> None:
        transport = await delivering(data, chunking)
        stream = BufferedStream(transport, max_buffer_size=256, receive_size=receive_size)
        for step in script:
            assert await run_step(stream, step) == expected_result(step), step
        assert await stream.receive_until_eof() == trailer

    trio.run(main)


@settings(deadline=None)
@given(payload=st.binary(max_size=300), chunking=chunkings(max_chunk=40))
def test_receive_some_reassembles_anything(payload: bytes, chunking: list[int]) -> None:
    async def main() -> None:
        stream = BufferedStream(await delivering(payload, chunking), max_buffer_size=64, receive_size=7)
        out = bytearray()
        # Mix receive_some with an occasional small receive_exactly.
        while True:
            try:
                piece = await stream.receive_exactly(3) if len(out) % 2 else await stream.receive_some(5)
            except IncompleteReadError as exc:
                out += exc.partial
                assert await stream.receive_some() == exc.partial
                assert await stream.receive_some() == b""
                break
            if not piece:
                break
            out += piece
        assert out == payload

    trio.run(main)


# ---------------------------------------------------------------- cancellation fuzz


Receiver = Callable[[BufferedStream, random.Random], Awaitable[bytes]]


async def _line(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_line() + b"\n"


async def _until(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_until(b"\n", keep_delimiter=True)


async def _until_tuple(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_until((b"\n", b"x", b"xy"), keep_delimiter=True)


async def _regex(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_until_regex(rb"\n|yx", keep_delimiter=True)


async def _exactly(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_exactly(rng.randrange(0, 40))


async def _exactly_into(stream: BufferedStream, rng: random.Random) -> bytes:
    target = bytearray(rng.randrange(0, 200))
    await stream.receive_exactly_into(target)
    return bytes(target)


async def _some(stream: BufferedStream, rng: random.Random) -> bytes:
    return await stream.receive_some(rng.randrange(1, 50))


RECEIVERS: list[Receiver] = [_line, _until, _until_tuple, _regex, _exactly, _exactly_into, _some]


async def fuzz_once(seed: int) -> tuple[int, int]:
    """One fuzz run; returns (cancellations, iterator frames) for the caller's tally."""
    rng = random.Random(seed)
    alphabet = b"abxy\n"
    data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(2000, 6000)))
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right, max_buffer_size=128, receive_size=rng.choice([1, 3, 16, 64]))
    received = bytearray()
    cancelled = 0
    iterated = 0

    async def sender() -> None:
        pos = 0
        while pos < len(data):
            size = rng.randrange(1, 30)
            await left.send_all(data[pos : pos + size])
            pos += size
            await trio.sleep(rng.choice([0, 0, 0.001, 0.01]))
        await left.send_eof()

    scopes_in, scopes_out = trio.open_memory_channel[trio.CancelScope](float("inf"))

    async def canceller() -> None:
        # Cancels each receive from another task after a random number of
        # schedule points (a deadline only strikes at cancel points). It
        # blocks while the receiver does, so the mock clock can jump.
        async for scope in scopes_out:
            for _ in range(rng.randrange(0, 6)):
                await trio.lowlevel.checkpoint()
            if rng.random() < 0.3:
                scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(canceller)
        while True:
            timeout = rng.choice([0, 0, 0.0005, 0.001, 0.002, 0.01, 1])
            with trio.move_on_after(timeout) as scope:
                scopes_in.send_nowait(scope)
                try:
                    if rng.random() < 0.15:
                        async for line in stream.lines():
                            received += line + b"\n"
                            iterated += 1
                    else:
                        received += await rng.choice(RECEIVERS)(stream, rng)
                except IncompleteReadError as exc:
                    # receive_exactly_into may have pushed back more than
                    # max_buffer_size: drain with receive_some.
                    assert stream.peek() == exc.partial
                    while rest := await stream.receive_some():
                        received += rest
                    break
                except FrameTooLongError:
                    received += await stream.receive_exactly(1)
            if scope.cancelled_caught:
                cancelled += 1
            elif stream._buffer.eof and not stream.peek():
                break
        nursery.cancel_scope.cancel()
    assert bytes(received) == data, f"seed {seed}: data lost or duplicated"
    return cancelled, iterated


def test_cancellation_fuzz() -> None:
    """Thousands of cancellations, nothing lost, nothing duplicated."""
    total_cancelled = 0
    total_iterated = 0
    for seed in range(100):
        clock = trio.testing.MockClock(autojump_threshold=0)
        cancelled, iterated = trio.run(fuzz_once, seed, clock=clock)
        total_cancelled += cancelled
        total_iterated += iterated
    assert total_cancelled >= 2000, f"only {total_cancelled} cancellations exercised"
    assert total_iterated > 100


# ---------------------------------------------------------------- faults at every offset


EXCHANGE: list[tuple[str, bytes]] = [
    ("line", b"HELLO\r\n"),
    ("until", b"abc||"),
    ("exactly", b"12345678"),
    ("until_tuple", b"q;"),
    ("regex", b"last\n"),
    ("exactly_into", b"ZYXWVU"),
]
EXCHANGE_DATA = b"".join(wire for _, wire in EXCHANGE)


def exchange_steps() -> list[Step]:
    steps = []
    for method, wire in EXCHANGE:
        payload = {
            "line": wire[:-2],
            "until": wire[:-2],
            "until_tuple": wire[:-1],
            "regex": wire[:-1],
        }.get(method, wire)
        steps.append(Step(method, payload, wire))
    return steps


class TransportFault(Exception):
    pass


FAULTS: dict[str, Callable[[int], Fault]] = {
    "eof": lambda n: Fault.eof(at_byte=n),
    "error": lambda n: Fault.raise_(TransportFault, at_byte=n),
    "reset": lambda n: Fault.reset(at_byte=n),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("chunks", [1, 2, 1 << 20], ids=["bytewise", "pairs", "whole"])
async def test_fault_at_every_offset(fault: str, chunks: int) -> None:
    async def scenario(injected: Fault) -> None:
        peer, end = trio.testing.memory_stream_pair()
        await peer.send_all(EXCHANGE_DATA)
        await peer.send_eof()
        faulty = FaultyStream(ChunkedStream(end, chunks), receive=injected)
        stream = BufferedStream(faulty, max_buffer_size=64, receive_size=5)
        consumed = 0
        raised: BaseException | None = None
        for step in exchange_steps():
            try:
                result = await run_step(stream, step)
            except (IncompleteReadError, TransportFault, trio.BrokenResourceError) as exc:
                raised = exc
                break
            assert result == expected_result(step)
            consumed += len(step.wire)
        offset = injected.at_byte
        assert offset is not None
        head = EXCHANGE_DATA[:offset]
        # Exactly the frames that were wholly delivered came out...
        ends = list(itertools.accumulate(len(wire) for _, wire in EXCHANGE))
        assert consumed == max([end for end in ends if end <= offset], default=0)
        if offset == len(EXCHANGE_DATA):
            assert raised is None
            return
        expected = {"eof": IncompleteReadError, "error": TransportFault, "reset": trio.BrokenResourceError}[fault]
        assert isinstance(raised, expected)
        if isinstance(raised, IncompleteReadError):
            assert raised.partial == head[consumed:]
        # ... and every received byte that was not handed out is still buffered.
        assert stream.peek() == head[consumed:]

    await run_with_each_fault(scenario, len(EXCHANGE_DATA), make_fault=FAULTS[fault])
