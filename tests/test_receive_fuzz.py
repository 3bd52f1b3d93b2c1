"""Differential fuzzing of the receive paths against a reference model.

Each case (one seed) builds a random wire, delivers it in a random chunking
and runs a random script of receives on it, each checked against a model
that knows the whole wire: what a receive returns (``bytes``), which error
it raises (consuming nothing), and where the next one starts; that every
per-call receive is a checkpoint on every path; that another task's receive
is refused (`trio.BusyResourceError`) whenever it runs while the script is
in a receive; and at the end that the rest of the wire is still there.

Unlike `test_contract.py` (short frames, small chunks), the frame sizes here
cross every size at which the fast paths change route: batches of short
frames (`_BATCH_FRAME_MAX`), one split against a find per frame
(`_SPLIT_FRAME_MAX`), the scan for ``\\r`` (`_CR_SCAN_FRAME_MAX`), the join of
two chunks (`_JOIN_COPY_MAX`), the frame iterators' medium and long frames
(`_LONG_FRAME`), the batch loop's own cut (`_OWN_LINE`), and frames
longer than a read; reads come in sizes from one
byte to more than 64 KiB, exact (a scripted transport) or as a socket pair
gives them, under a `BufferedStream` or a `Connection` (its read-ahead task,
or without). The script mixes per-call receives, ``_nowait`` ones, frame
and batch loops left early (with other receives, ``unreceive`` and
``detach`` between their steps), cancelled receives and receives cancelled
at a read, ``peek``, ``unreceive``, raw reads and ``detach``, with limits at,
under and over the next frame; codecs raise over-long frames or discard
them. Another test drives a `Connection`'s writes, and the last one a
`ReceiveBuffer` on its own (sans I/O, every public method) against a model
of one ``bytes`` object.

These tests found five bugs: a batch loop that yielded a bare line as a
batch (a line longer than ``receive_size``), a discarding codec's report
lost when a loop was left after a batch, bytes lost by ``Connection.detach``
while the read-ahead task held them, a loop's failing step that let
another task receive during its checkpoint, and ``ReceiveBuffer.offset``
moved forward, not back, by ``unreceive``. More seeds for a long local run:
``TRIOSTREAM_FUZZ_SEEDS=2000 pytest tests/test_receive_fuzz.py``.
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Literal

import pytest
import trio
import trio.lowlevel
import trio.testing
from scripted import ScriptedStream

from triostream import (
    BufferedStream,
    Codec,
    Delimited,
    FixedSize,
    FrameChannel,
    FrameParser,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Lines,
    Netstring,
    ReceiveBuffer,
    VarintPrefixed,
    WriteBufferFullError,
    open_connection,
)
from triostream._buffer import LINE_MODE, PLAIN_MODE

SEEDS = int(os.environ.get("TRIOSTREAM_FUZZ_SEEDS", "100"))

# Frame sizes around each threshold of the fast paths (see the module docstring).
_EDGES = [255, 256, 257, 511, 512, 513, 1023, 1024, 2047, 2048, 2049, 4096, 8191, 8192, 8193, 16384]
_REGIMES = ["tiny", "small", "medium", "long", "edge"]


def _frame_size(rnd: random.Random, regime: str) -> int:
    if regime == "mixed" or rnd.random() < 0.05:
        regime = rnd.choice(_REGIMES)
    if regime == "tiny":
        return rnd.randint(0, 20)
    if regime == "small":
        return rnd.randint(20, 300)
    if regime == "medium":
        return rnd.randint(300, 3000)
    if regime == "long":
        return rnd.randint(3000, 20000)
    return max(0, rnd.choice(_EDGES) + rnd.randint(-3, 2))


def _body(rnd: random.Random, size: int, alphabet: bytes) -> bytes:
    """``size`` bytes of ``alphabet``: a random pattern of up to 40 repeated."""
    pattern = bytes(rnd.choice(alphabet) for _ in range(min(size, 40)))
    return (pattern * (size // max(1, len(pattern)) + 1))[:size]


def _chunks(rnd: random.Random, wire: bytes) -> list[bytes]:
    """The wire cut as reads of one size, of sizes in a range, or tiny ones
    (only for short wires: a long one in one-byte reads is slow)."""
    kind = rnd.choice(["fixed", "range", "large", "tiny" if len(wire) < 30_000 else "large"])
    sizes: Callable[[], int]
    if kind == "fixed":
        n = rnd.choice([1 if len(wire) < 30_000 else 997, 100, 1000, 4096, 65000, 65536, rnd.randint(1, 70000)])
        sizes = lambda: n  # noqa: E731
    elif kind == "range":
        low = rnd.randint(1, 30000)
        high = rnd.randint(low, 70000)
        sizes = lambda: rnd.randint(low, high)  # noqa: E731
    elif kind == "large":
        sizes = lambda: rnd.randint(30000, 65536)  # noqa: E731
    else:
        sizes = lambda: rnd.randint(1, 50)  # noqa: E731
    chunks, i = [], 0
    while i < len(wire):
        n = sizes()
        chunks.append(wire[i : i + n])
        i += n
    return chunks


class _Reads(ScriptedStream):
    """Scripted reads (`ScriptedStream`: the chunks one per ``receive_some``,
    split when ``max_bytes`` is smaller, then EOF; each a checkpoint), with
    ``cancel``: a scope to cancel, and at which read (counted in ``reads``):
    that read's checkpoint is then cancelled when it runs in that scope, as
    a read waiting for the peer is (nothing read)."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.reads = 0
        self.cancel: tuple[trio.CancelScope, int] | None = None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.reads += 1
        if self.cancel is not None and self.reads >= self.cancel[1]:
            self.cancel[0].cancel()
            self.cancel = None
        return await super().receive_some(max_bytes)


@asynccontextmanager
async def _stream_over(
    rnd: random.Random, wire: bytes, how: str, max_buffer_size: int, receive_size: int
) -> AsyncIterator[BufferedStream]:
    """A stream that receives ``wire`` then EOF: over scripted reads or a
    socket pair (a task sends the chunks), as a BufferedStream or a
    Connection with or without its read-ahead task."""
    chunks = _chunks(rnd, wire)
    async with trio.open_nursery() as nursery:
        transport: trio.abc.Stream
        if how.endswith("socket"):
            near, far = trio.socket.socketpair()
            sender, transport = trio.SocketStream(near), trio.SocketStream(far)
            pauses = random.Random(rnd.random())

            async def send() -> None:
                async with sender:
                    for chunk in chunks:
                        await sender.send_all(chunk)
                        if pauses.random() < 0.3:
                            await trio.lowlevel.checkpoint()
                    await sender.send_eof()

            nursery.start_soon(send)
        else:
            transport = _Reads(chunks)
        if how.startswith("connection"):
            async with open_connection(
                transport,
                max_buffer_size=max_buffer_size,
                receive_size=receive_size,
                read_ahead=rnd.random() < 0.7,
            ) as conn:
                yield conn
        else:
            async with BufferedStream(transport, max_buffer_size=max_buffer_size, receive_size=receive_size) as stream:
                yield stream


_HOWS = ["buffered reads", "buffered socket", "connection reads", "connection socket"]


def _limits(rnd: random.Random, longest: int) -> tuple[int, int]:
    """``max_buffer_size`` (room for the longest frame) and ``receive_size``."""
    max_buffer_size = rnd.choice([65536, longest + rnd.randint(1, 100), longest + rnd.randint(1, 70000), 1 << 20])
    max_buffer_size = max(max_buffer_size, longest + 1)
    receive_size = rnd.choice([1 if longest < 3000 else 64, 7 if longest < 3000 else 512, 100, 1000, 4096, 65536])
    return max_buffer_size, min(receive_size, max_buffer_size)


# ------------------------------------------------------------------ lines


class _Wire:
    """The model: the whole wire, and where the next receive starts."""

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.pos = 0

    def until(self, delimiter: bytes | tuple[bytes, ...], max_size: int, how: str = "until") -> tuple[object, int]:
        """What a receive of a frame ending at ``delimiter`` gives next: the
        frame (``how``: "line" strips one ``\\r``, "keep" keeps the
        delimiter), or the error's type; with where the next one starts."""
        wire, pos = self.wire, self.pos
        candidates = delimiter if isinstance(delimiter, tuple) else (delimiter,)
        matches = [(at, -len(d), d) for d in candidates if (at := wire.find(d, pos)) >= 0]
        if not matches:
            # No delimiter before EOF: max_size bytes arrive without one, or EOF.
            return (FrameTooLongError if len(wire) - pos >= max_size else IncompleteReadError), pos
        at, _, found = min(matches)  # the earliest, then the longest
        end = at + len(found)
        if end - pos > max_size:
            return FrameTooLongError, pos
        frame = wire[pos:end] if how == "keep" else wire[pos:at]
        if how == "line" and frame.endswith(b"\r"):
            frame = frame[:-1]
        return frame, end


def _line_wire(rnd: random.Random) -> tuple[bytes, int]:
    """Lines of sizes from one regime (mostly), ending in ``\\n``, ``\\r\\n``
    or both; some bodies hold a ``\\r`` too. Returns the wire and its
    longest line."""
    regime = rnd.choice([*_REGIMES, "mixed"])
    endings = rnd.choice([[b"\n"], [b"\r\n"], [b"\n", b"\r\n"], [b"\n"] * 30 + [b"\r\n"]])
    alphabet = b"abcdefgh\r" if rnd.random() < 0.3 else b"abcdefghijklmnop"
    count = rnd.randint(1, 60 if regime in ("long", "edge", "mixed") else 250)
    lines = [_body(rnd, _frame_size(rnd, regime), alphabet) + rnd.choice(endings) for _ in range(count)]
    return b"".join(lines), max(map(len, lines))


class _LineScript:
    """One seed's script of line receives (see the module docstring)."""

    def __init__(self, rnd: random.Random, stream: BufferedStream, model: _Wire) -> None:
        self.rnd = rnd
        self.stream = stream
        self.model = model
        self.limit = stream.max_buffer_size
        self.detached: tuple[trio.abc.Stream, bytes] | None = None
        self.in_receive = False  # the script is in a receive (see _refused_meanwhile)

    def max_size(self) -> int | None:
        """None, or a limit at, under or over the next line, or any."""
        rnd, model = self.rnd, self.model
        end = model.wire.find(b"\n", model.pos)
        size = end + 1 - model.pos if end >= 0 else 10
        choice = rnd.random()
        if choice < 0.4:
            return None
        if choice < 0.7:
            return max(1, min(self.limit, size + rnd.choice([-1, 0, 1, 2])))
        return rnd.randint(1, self.limit)

    def expect(
        self, max_size: int | None, how: str, delimiter: bytes | tuple[bytes, ...] = b"\n"
    ) -> tuple[object, int]:
        return self.model.until(delimiter, self.limit if max_size is None else max_size, how)

    def took(self, got: object, expected: object, new_pos: int, what: object) -> None:
        assert not isinstance(expected, type), (what, "got", got, "expected", expected)
        assert got == expected and type(got) is bytes, (what, self.model.pos, "got", got, "expected", expected)
        self.model.pos = new_pos

    async def one_frame(
        self,
        receive: Awaitable[bytes],
        max_size: int | None,
        how: str,
        delimiter: bytes | tuple[bytes, ...] = b"\n",
    ) -> bool:
        """Await ``receive`` (a full checkpoint on every path, errors too)
        and check it; False once EOF was met."""
        expected, new_pos = self.expect(max_size, how, delimiter)
        error: Exception | None = None
        with trio.testing.assert_checkpoints():
            try:
                got = await receive
            except (FrameTooLongError, IncompleteReadError) as exc:
                error = exc
        if error is not None:
            assert isinstance(expected, type) and isinstance(error, expected), (how, delimiter, max_size, error)
            return not isinstance(error, IncompleteReadError)
        self.took(got, expected, new_pos, (how, delimiter, max_size))
        return True

    async def raw(self) -> None:
        """A few raw bytes (receive_exactly), as a protocol switching framing would."""
        n = min(len(self.model.wire) - self.model.pos, self.rnd.randint(1, 30))
        if n:
            assert await self.stream.receive_exactly(n) == self.model.wire[self.model.pos : self.model.pos + n]
            self.model.pos += n

    async def loop(self, op: str, max_size: int | None) -> bool:
        """A frame or batch loop, left after some steps (with other receives
        inside it), or run to its end; False once EOF was met."""
        rnd, stream, model = self.rnd, self.stream, self.model
        delimiter = b"\n"
        how = "line" if op in ("lines", "line batches", "anext") else "until"
        if op in ("lines", "line batches", "anext"):
            frames = stream.lines(max_size=max_size)
        elif op == "keep loop":
            how = "keep"
            frames = stream.iter_until(b"\n", max_size=max_size, keep_delimiter=True)
        else:
            delimiter = rnd.choice([b"\n", b"\n", b"a", b"ab", b"||"])
            frames = stream.iter_until(delimiter, max_size=max_size)
        loop: AsyncIterator[object] = (
            frames.batches().__aiter__() if op.endswith("batches") else frames.__aiter__() if op != "anext" else frames
        )
        steps = rnd.choice([1, 2, 5, 50, 1000])
        try:
            while steps:
                try:
                    step = await loop.__anext__()
                except StopAsyncIteration:
                    assert model.pos == len(model.wire), ("the loop ended early", op, model.pos)
                    return False
                batch: Sequence[object] = step if op.endswith("batches") else [step]  # type: ignore[assignment]
                if op.endswith("batches"):
                    assert type(step) is list and step, (op, type(step))
                for frame in batch:
                    expected, new_pos = self.expect(max_size, how, delimiter)
                    self.took(frame, expected, new_pos, (op, delimiter, max_size))
                steps -= 1
                choice = rnd.random()
                if choice < 0.1:
                    await self.raw()
                elif choice < 0.15 and delimiter == b"\n":
                    await self.one_frame(stream.receive_line(), None, "line")
                elif choice < 0.2:
                    assert model.wire.startswith(stream.peek(), model.pos)
                elif choice < 0.21 and self.detached is None:
                    await self.detach()
                    return False
                elif choice < 0.25:
                    # Bytes pushed back between steps: the loop's next
                    # frames start with them.
                    n = min(model.pos, rnd.choice([1, 5, 2000]))
                    stream.unreceive(model.wire[model.pos - n : model.pos])
                    model.pos -= n
        except (FrameTooLongError, IncompleteReadError) as exc:
            expected, _ = self.expect(max_size, how, delimiter)
            assert isinstance(expected, type) and isinstance(exc, expected), (op, delimiter, max_size, exc, expected)
            return not isinstance(exc, IncompleteReadError)
        return True

    async def cancelled(self, op: str, max_size: int | None) -> None:
        """A receive in a cancelled scope: Cancelled, nothing consumed; a
        loop there gives the frames buffered (no checkpoint) and is cancelled
        at its first read."""
        stream = self.stream
        with trio.CancelScope() as scope:
            scope.cancel()
            if op == "line":
                await stream.receive_line(max_size=max_size)
            elif op == "until":
                await stream.receive_until(b"\n", max_size=max_size)
            elif op == "exactly":
                await stream.receive_exactly(1)
            elif op == "some":
                await stream.receive_some()
            else:
                frames = stream.lines(max_size=max_size)
                try:
                    async for step in frames.batches() if op == "line batches" else frames:
                        for frame in step if op == "line batches" else [step]:
                            expected, new_pos = self.expect(max_size, "line")
                            self.took(frame, expected, new_pos, ("cancelled", op))
                except (FrameTooLongError, IncompleteReadError) as exc:
                    expected, _ = self.expect(max_size, "line")
                    assert isinstance(expected, type) and isinstance(exc, expected), (op, exc, expected)
                    return
                if self.model.pos == len(self.model.wire):
                    return  # (the loop ended at EOF: cancelled there, or not)
            raise AssertionError(("not cancelled", op))
        assert scope.cancelled_caught

    async def interrupted(self, max_size: int | None) -> bool:
        """A receive or a loop whose scope is cancelled at one of the next
        reads (scripted reads only): what it returned before is checked as
        usual, and the Cancelled at the read consumed nothing."""
        transport = self.stream.transport_stream
        if not isinstance(transport, _Reads):
            return True
        going = True
        with trio.CancelScope() as scope:
            transport.cancel = (scope, transport.reads + self.rnd.randint(1, 3))
            op = self.rnd.choice(["line", "until", "lines", "line batches", "until loop", "until batches"])
            if op == "line":
                going = await self.one_frame(self.stream.receive_line(max_size=max_size), max_size, "line")
            elif op == "until":
                going = await self.one_frame(self.stream.receive_until(b"\n", max_size=max_size), max_size, "until")
            else:
                going = await self.loop(op, max_size)
        transport.cancel = None
        return going

    async def run(self) -> None:
        rnd, stream, model = self.rnd, self.stream, self.model
        for _ in range(150):
            if model.pos == len(model.wire):
                break
            max_size = self.max_size()
            self.in_receive = True
            op = rnd.choice(
                [
                    *("line", "until", "keep", "line nowait", "until nowait", "exactly", "some", "peek"),
                    *("unreceive", "discard", "until other", "until tuple", "lines", "line batches"),
                    *("until loop", "until batches", "keep loop", "anext", "cancelled", "interrupted"),
                    *("regex", "exactly into", "skip nowait"),
                ]
            )
            if op == "line":
                going = await self.one_frame(stream.receive_line(max_size=max_size), max_size, "line")
            elif op == "until":
                going = await self.one_frame(stream.receive_until(b"\n", max_size=max_size), max_size, "until")
            elif op == "keep":
                receive = stream.receive_until(b"\n", max_size=max_size, keep_delimiter=True)
                going = await self.one_frame(receive, max_size, "keep")
            elif op.endswith("nowait"):
                how = op.split()[0]
                expected, new_pos = self.expect(max_size, how)
                try:
                    if how == "line":
                        got = stream.receive_line_nowait(max_size=max_size)
                    else:
                        got = stream.receive_until_nowait(b"\n", max_size=max_size)
                except trio.WouldBlock:
                    # Then, as a parser does, the awaited call (whose read
                    # after a WouldBlock has a route of its own).
                    if how == "line":
                        going = await self.one_frame(stream.receive_line(max_size=max_size), max_size, "line")
                    else:
                        receive = stream.receive_until(b"\n", max_size=max_size)
                        going = await self.one_frame(receive, max_size, "until")
                    self.in_receive = False
                    if not going:
                        break
                    continue
                except (FrameTooLongError, IncompleteReadError) as exc:
                    assert isinstance(expected, type) and isinstance(exc, expected), (op, exc, expected)
                    continue
                self.took(got, expected, new_pos, op)
                going = True
            elif op == "exactly":
                n = min(len(model.wire) - model.pos, self.limit, rnd.choice([1, 2, 100, 3000, rnd.randint(1, 70000)]))
                with trio.testing.assert_checkpoints():
                    assert await stream.receive_exactly(n) == model.wire[model.pos : model.pos + n]
                model.pos += n
                going = True
            elif op == "some":
                max_bytes = rnd.choice([None, 1, 10, 5000, 70000])
                with trio.testing.assert_checkpoints():
                    got = await stream.receive_some(max_bytes)
                assert got and model.wire.startswith(got, model.pos) and len(got) <= (max_bytes or len(got))
                model.pos += len(got)
                going = True
            elif op == "peek":
                assert model.wire.startswith(stream.peek(), model.pos)
                going = True
            elif op == "unreceive":
                n = min(model.pos, rnd.randint(0, 50))
                stream.unreceive(model.wire[model.pos - n : model.pos])
                model.pos -= n
                going = True
            elif op == "discard":
                end = model.wire.find(b"\n", model.pos)
                with trio.testing.assert_checkpoints():
                    assert await stream.discard_until(b"\n") == end + 1 - model.pos
                model.pos = end + 1
                going = True
            elif op == "until other":
                delimiter = rnd.choice([b"a", b"ab", b"\r\n", b"||", b"b\n"])
                going = await self.one_frame(
                    stream.receive_until(delimiter, max_size=max_size), max_size, "until", delimiter
                )
            elif op == "until tuple":
                delimiters = rnd.choice([(b"\r\n", b"\n"), (b"\n", b"\r", b"\r\n"), (b"a", b"ab"), (b"b", b"\n")])
                going = await self.one_frame(stream.receive_until(delimiters), None, "until", delimiters)
            elif op == "cancelled":
                await self.cancelled(
                    rnd.choice(["line", "until", "exactly", "some", "lines", "line batches"]), max_size
                )
                going = True
            elif op == "interrupted":
                going = await self.interrupted(max_size)
            elif op == "regex":
                going = await self.one_frame(stream.receive_until_regex(rb"\r?\n", max_size=max_size), max_size, "line")
            elif op == "exactly into":
                n = min(len(model.wire) - model.pos, self.limit, rnd.choice([1, 50, 3000, rnd.randint(1, 70000)]))
                target = bytearray(n)
                with trio.testing.assert_checkpoints():
                    await stream.receive_exactly_into(memoryview(target) if rnd.random() < 0.5 else target)
                assert target == model.wire[model.pos : model.pos + n]
                model.pos += n
                going = True
            elif op == "skip nowait":
                n = min(len(model.wire) - model.pos, rnd.choice([1, 20, 2000]))
                with suppress(trio.WouldBlock):
                    stream.skip_nowait(n)
                    model.pos += n
                going = True
            else:
                going = await self.loop(op, max_size)
            self.in_receive = False
            if not going:
                break  # EOF met: the rest is checked below
        if self.detached is None and rnd.random() < 0.2:
            await self.detach()
        if self.detached is not None:
            # The transport, given up with the bytes buffered: read on from it.
            rest = bytearray(self.detached[1])
            while data := await self.detached[0].receive_some(65536):
                rest += data
            await self.detached[0].aclose()
        elif len(model.wire) - model.pos <= self.limit:
            rest = bytearray(await stream.receive_until_eof(max_size=self.limit))
        else:  # (more than the buffer holds: how much is left depends on the _nowait calls' luck)
            rest = bytearray()
            while data := await stream.receive_some():
                rest += data
        assert rest == model.wire[model.pos :], (len(rest), len(model.wire) - model.pos)

    async def detach(self) -> None:
        """``detach()`` (in a loop, too: its hand-out is settled first): the
        bytes buffered are the next ones, and the transport has the rest."""
        self.in_receive = False
        await trio.lowlevel.checkpoint()
        self.detached = self.stream.detach()
        assert self.model.wire.startswith(self.detached[1], self.model.pos)


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_line_receives_match_the_model(seed: int) -> None:
    rnd = random.Random(seed)
    wire, longest = _line_wire(rnd)
    max_buffer_size, receive_size = _limits(rnd, longest)
    async with _stream_over(rnd, wire, _HOWS[seed % len(_HOWS)], max_buffer_size, receive_size) as stream:
        script = _LineScript(rnd, stream, _Wire(wire))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_refused_meanwhile, stream, lambda: script.in_receive)
            await script.run()
            nursery.cancel_scope.cancel()


async def _refused_meanwhile(stream: BufferedStream, receiving: Callable[[], bool]) -> None:
    """Another task: whenever it runs while the script is in a receive (any
    of them, a loop's step too), its own receive is refused
    (`trio.BusyResourceError`), taking nothing."""
    while True:
        await trio.lowlevel.checkpoint()
        if receiving():
            with pytest.raises(trio.BusyResourceError):
                stream.receive_exactly_nowait(1)
            with pytest.raises(trio.BusyResourceError):
                stream.receive_line_nowait()


# ------------------------------------------------------------------ codecs


def _codec_frames(rnd: random.Random) -> tuple[Codec, list[tuple[bytes, bytes, bool]]]:
    """A codec and its frames: (payload, wire, over the limit) each; frames
    over the limit are encoded by the same codec with a larger limit."""
    kind = rnd.choice(["prefixed", "prefixed 1", "prefixed 2", "little", "netstring", "varint", "fixed"])
    kind = rnd.choice([kind, "lines", "delimited", "delimited 2"])
    regime = rnd.choice([*_REGIMES, "mixed"])
    count = rnd.randint(1, 60 if regime in ("long", "edge", "mixed") else 250)
    sizes = [_frame_size(rnd, regime) for _ in range(count)]
    if kind == "prefixed 1":
        sizes = [min(size, 255) for size in sizes]
    longest = max(sizes)
    limit = max(1, longest if rnd.random() < 0.7 else rnd.randint(1, longest + 2))

    mode: Literal["raise", "discard"] = "discard" if rnd.random() < 0.3 else "raise"

    def make(max_size: int) -> Codec:
        if kind == "prefixed":
            return LengthPrefixed(max_size, on_too_long=mode)
        if kind == "prefixed 1":
            return LengthPrefixed(min(max_size, 255), length_size=1, on_too_long=mode)
        if kind == "prefixed 2":
            return LengthPrefixed(max_size, length_size=2, on_too_long=mode)
        if kind == "little":
            return LengthPrefixed(max_size, byteorder="little", on_too_long=mode)
        if kind == "netstring":
            return Netstring(max_size, on_too_long=mode)
        if kind == "varint":
            return VarintPrefixed(max_size, on_too_long=mode)
        if kind == "lines":
            return Lines(max_size, on_too_long=mode)
        if kind == "delimited":
            return Delimited(b"\n", max_size, on_too_long=mode)
        return Delimited(b"||", max_size, on_too_long=mode)

    if kind == "fixed":
        size = max(1, sizes[0])
        return FixedSize(size), [(payload, payload, False) for payload in (_body(rnd, size, b"ab\n") for _ in sizes)]
    if kind == "netty" or rnd.random() < 0.15:
        return _netty_frames(rnd, sizes, limit, mode)
    codec, loose = make(limit), make(1 << 20)
    delimited = kind in ("lines", "delimited", "delimited 2")
    frames = []
    for size in sizes:
        payload = _body(rnd, size, b"abcdefghij\r" if delimited else b"ab\r\n|")
        if kind == "lines":
            payload = payload.rstrip(b"\r")
        elif kind == "delimited 2":
            payload = payload.replace(b"|", b"a")
        delimiter_size = 2 if kind == "delimited 2" else 1 if delimited else 0
        over = len(payload) + delimiter_size > limit
        frames.append((payload, (loose if over else codec).encode(payload), over))
    return codec, frames


def _netty_frames(
    rnd: random.Random, sizes: list[int], limit: int, mode: Literal["raise", "discard"]
) -> tuple[Codec, list[tuple[bytes, bytes, bool]]]:
    """`LengthPrefixed` with Netty's other fields: a prefix before the length
    field, a field of 2, 3, 4 or 8 bytes either way round, a length that
    counts the header or a trailer too (an adjustment), and frames decoded
    with their header."""
    offset = rnd.choice([0, 1, 3])
    size = rnd.choice([2, 3, 4, 8])
    header = offset + size
    adjustment = rnd.choice([0, -header, 2, -1])
    fields = {
        "length_size": size,
        "byteorder": rnd.choice(["big", "little"]),
        "length_offset": offset,
        "length_adjustment": adjustment,
        "on_too_long": mode,
    }
    include = rnd.random() < 0.5
    codec = LengthPrefixed(limit, include_header=include, **fields)  # type: ignore[arg-type]
    plain, loose = LengthPrefixed(limit, **fields), LengthPrefixed(1 << 20, **fields)  # type: ignore[arg-type]
    frames = []
    for length in sizes:
        body = _body(rnd, max(length, adjustment), b"ab\r\n|")
        over = len(body) > limit
        encoded = (loose if over else plain).encode(body, header=bytes(rnd.getrandbits(8) for _ in range(offset)))
        frames.append((encoded if include else body, encoded, over))
    return codec, frames


async def _run_codec_script(
    rnd: random.Random, stream: BufferedStream, codec: Codec, frames: list[tuple[bytes, bytes, bool]]
) -> None:
    wire = b"".join(encoded for _, encoded, _ in frames)
    starts = [0]
    for _, encoded, _ in frames:
        starts.append(starts[-1] + len(encoded))
    at = 0  # the next frame
    # A codec that discards over-long frames drops one as it reports it, and
    # the rest of it on its next calls: meanwhile only its receives are made.
    discard = getattr(codec, "on_too_long", "raise") == "discard"
    skipping = False

    async def skip() -> None:
        """Past a frame over the limit (or any), as raw bytes."""
        nonlocal at
        assert await stream.receive_exactly(len(frames[at][1])) == frames[at][1]
        at += 1

    def check(got: object, what: object) -> None:
        nonlocal at, skipping
        skipping = False
        payload, _, over = frames[at]
        assert not over, (what, at, "a frame over the limit was returned", len(got), got[:20])  # type: ignore[index, arg-type]
        assert got == payload and type(got) is bytes, (what, at, got, payload)
        at += 1

    for _ in range(200):
        if at == len(frames):
            break
        op = rnd.choice(["frame", "frame", "nowait", "loop", "loop", "batches", "batches", "skip", "some", "peek"])
        op = rnd.choice([op, "unreceive", "cancelled"])
        if skipping and op in ("skip", "some", "peek", "unreceive"):
            op = "frame"
        try:
            if op == "frame":
                with trio.testing.assert_checkpoints():  # (on every path: an error is checked below)
                    try:
                        got = await stream.receive_frame(codec)
                    except (FrameTooLongError, IncompleteReadError) as exc:
                        error: Exception | None = exc
                    else:
                        error = None
                if error is not None:
                    raise error
                check(got, op)
            elif op == "nowait":
                try:
                    got = stream.receive_frame_nowait(codec)
                except trio.WouldBlock:
                    got = await stream.receive_frame(codec)  # (as a parser does)
                check(got, op)
            elif op == "skip":
                await skip()
            elif op == "some":
                got = await stream.receive_some(rnd.choice([None, 1, 10, 5000]))
                assert got and wire.startswith(got, starts[at])
                end = starts[at] + len(got)
                while starts[at + 1] <= end:
                    at += 1
                    if at == len(frames):
                        break
                else:
                    if starts[at] < end:  # inside a frame: read on to its end
                        assert await stream.receive_exactly(starts[at + 1] - end) == wire[end : starts[at + 1]]
                        at += 1
            elif op == "peek":
                assert wire.startswith(stream.peek(), starts[at])
            elif op == "unreceive":
                if at:
                    at -= 1
                    stream.unreceive(frames[at][1])
            elif op == "cancelled":
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await stream.receive_frame(codec)
                assert scope.cancelled_caught
            else:
                steps = rnd.choice([1, 2, 5, 50, 1000])
                loop = stream.frames(codec).batches() if op == "batches" else stream.frames(codec)
                async for step in loop:
                    if op == "batches":
                        assert type(step) is list and step, type(step)
                    for frame in step if op == "batches" else [step]:
                        check(frame, op)
                    choice = rnd.random()
                    if skipping:
                        pass
                    elif choice < 0.1 and at < len(frames):
                        await skip()
                    elif choice < 0.15 and at < len(frames) and not frames[at][2]:
                        check(await stream.receive_frame(codec), "frame in a loop")
                    elif choice < 0.2:
                        assert wire.startswith(stream.peek(), starts[at])
                    elif choice < 0.25 and at:
                        at -= 1  # a frame pushed back between steps: the loop gives it again
                        stream.unreceive(frames[at][1])
                    steps -= 1
                    if not steps:
                        break
                else:
                    assert at == len(frames), ("the loop ended early", op, at)
        except FrameTooLongError as exc:
            assert at < len(frames) and frames[at][2], (op, at, "FrameTooLongError for a frame within the limit")
            assert exc.discarding == discard
            if discard:
                at += 1  # dropped, in part now, the rest by the next receives
                skipping = True
            else:
                await skip()
    while skipping:
        # The rest of the frame being dropped, then the next one (or EOF).
        try:
            check(await stream.receive_frame(codec), "after a skip")
        except FrameTooLongError:
            assert at < len(frames) and frames[at][2]
            at += 1
        except IncompleteReadError as exc:
            assert at == len(frames) and not exc.partial, (at, exc)
            skipping = False
    rest = b""
    while data := await stream.receive_some():
        rest += data
    assert rest == wire[starts[at] :]


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_codec_receives_match_the_frames(seed: int) -> None:
    rnd = random.Random(seed)
    codec, frames = _codec_frames(rnd)
    longest = max(len(encoded) for _, encoded, _ in frames)
    max_buffer_size, receive_size = _limits(rnd, longest + 8)
    wire = b"".join(encoded for _, encoded, _ in frames)
    how = _HOWS[seed % len(_HOWS)]
    async with _stream_over(rnd, wire, how, max_buffer_size, receive_size) as stream, trio.open_nursery() as nursery:
        # (Every await of the script is in a receive.)
        nursery.start_soon(_refused_meanwhile, stream, lambda: True)
        await _run_codec_script(rnd, stream, codec, frames)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_a_frame_parser_gives_the_frames_in_any_chunking(seed: int) -> None:
    """`FrameParser` (no I/O) fed the codec wires of the test above in
    random chunks, drained after each: the frames in order, an over-long
    frame refused (left in place: skipped here by hand) or reported and
    dropped (``discard``), and at the end a clean EOF."""
    rnd = random.Random(seed)
    codec, frames = _codec_frames(rnd)
    parser = FrameParser(codec)
    discard = getattr(codec, "on_too_long", "raise") == "discard"
    at = 0
    left = 0  # bytes of a refused frame still to skip by hand

    def drain() -> None:
        nonlocal at, left
        while True:
            if left:
                left -= parser.buffer.skip(left)
                if left:
                    return
            try:
                frame = parser.next_frame()
            except FrameTooLongError as exc:
                assert at < len(frames) and frames[at][2] and exc.discarding == discard, at
                if not discard:
                    left = len(frames[at][1])  # (refused whole, maybe before all of it came)
                at += 1
                continue
            if frame is None:
                return
            assert at < len(frames) and not frames[at][2], at
            assert frame == frames[at][0] and type(frame) is bytes, at
            at += 1

    wire = b"".join(encoded for _, encoded, _ in frames)
    for chunk in _chunks(rnd, wire):
        parser.feed(chunk)
        drain()
    parser.feed_eof()
    drain()
    assert at == len(frames)
    assert parser.next_frame() is None


@pytest.mark.parametrize("seed", range(SEEDS // 4))
async def test_frame_channels_carry_the_frames_over_a_socket(seed: int) -> None:
    """Two `FrameChannel` ends over a socket pair, for the codecs of the
    tests above: what one sends (the frames within the limit), the other
    receives in order, then `trio.EndOfChannel` when the sender closes."""
    rnd = random.Random(seed)
    codec, frames = _codec_frames(rnd)
    payloads = [payload for payload, _, over in frames if not over]
    near, far = trio.socket.socketpair()
    sender = FrameChannel(trio.SocketStream(near), codec)
    receiver = FrameChannel(trio.SocketStream(far), codec)

    async def send_all() -> None:
        async with sender:
            for payload in payloads:
                await sender.send(payload)

    got = []
    async with trio.open_nursery() as nursery, receiver:
        nursery.start_soon(send_all)
        async for frame in receiver:
            got.append(frame)
    assert got == payloads


# ------------------------------------------------------------------ writes


@pytest.mark.parametrize("seed", range(SEEDS // 4))
async def test_connection_writes_arrive_whole_and_in_order(seed: int) -> None:
    """A Connection's write side under a random script over a socket pair:
    `write` (bytes, a bytearray changed right after, a memoryview of
    another format), `send_all`, `drain` and ``drain(flush=True)``, with
    small and large writes, limits small enough to refuse some writes
    (`WriteBufferFullError`: nothing queued), a peer that reads in random
    sizes with pauses and now and then sends a request (so that the next
    write goes straight to the socket). Every byte of every accepted write
    arrives once, in order, and nothing of a refused one; a close flushes."""
    rnd = random.Random(seed)
    max_write = rnd.choice([1024, 65536, 1 << 20])
    high = rnd.choice([None if max_write >= 65536 else max_write, max_write // 2, max_write])
    near, far = trio.socket.socketpair()
    peer = trio.SocketStream(far)
    received = bytearray()
    expected = bytearray()
    pauses = random.Random(seed + 1)

    async def read_all() -> None:
        while data := await peer.receive_some(pauses.choice([1, 100, 4096, 65536])):
            received.extend(data)
            if pauses.random() < 0.2:
                await trio.sleep(0.0005)
            if pauses.random() < 0.05:
                with suppress(trio.BrokenResourceError):  # (the connection may be closing)
                    await peer.send_all(b"?")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        options: dict[str, int] = {"max_write_buffer_size": max_write}
        if high is not None:
            options["write_high_water"] = high
        async with open_connection(trio.SocketStream(near), **options) as conn:  # type: ignore[arg-type]
            for _ in range(80):
                size = rnd.choice([0, 1, 10, 1000, 5000, 70000, rnd.randint(1, 300_000)])
                payload = bytes(rnd.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
                payload = payload[:size]
                op = rnd.choice(["write", "write", "bytearray", "memoryview", "send_all", "drain", "flush", "answer"])
                if op == "answer":
                    # Take what the peer sent (the next write may go directly).
                    with trio.move_on_after(0.001):
                        await conn.receive_some()
                elif op == "drain":
                    await conn.drain()
                elif op == "flush":
                    await conn.drain(flush=True)
                elif op == "send_all":
                    await conn.send_all(payload)
                    expected += payload
                else:
                    data: bytes | bytearray | memoryview = payload
                    if op == "bytearray":
                        data = bytearray(payload)
                    elif op == "memoryview" and size % 4 == 0 and size:
                        data = memoryview(payload).cast("i")
                    try:
                        conn.write(data)
                    except WriteBufferFullError:
                        assert size > 0
                        continue
                    assert size <= max_write
                    expected += payload
                    if isinstance(data, bytearray):
                        data[:] = b"\0" * len(data)  # changed once written: what was queued stays
    await peer.aclose()
    assert received == expected


# ------------------------------------------------------------ ReceiveBuffer, sans I/O

# Delimiters for the buffer's own script: one byte, two bytes (a prefix of
# the other), and tuples where a shorter match must wait for a longer one.
_BUFFER_DELIMITERS: list[bytes | tuple[bytes, ...]] = [
    b"\n",
    b"\r\n",
    b";",
    b"ab",
    b"\r\n\r\n",
    (b"\r\n", b"\n"),
    (b"\r", b"\r\n"),
    (b";", b"ab", b"abc"),
]
_BUFFER_PATTERNS = [re.compile(rb"\r?\n"), re.compile(rb"[;,]"), re.compile(rb"ab?c")]


class _BufferModel:
    """A `ReceiveBuffer` as one ``bytes`` object, each method from its
    docstring: the unconsumed bytes, EOF, and the stream offset."""

    def __init__(self, capacity: int) -> None:
        self.data = b""
        self.eof = False
        self.offset = 0
        self.capacity = capacity

    def consume(self, n: int) -> bytes:
        taken, self.data = self.data[:n], self.data[n:]
        self.offset += len(taken)
        return taken

    def match(self, delimiters: bytes | tuple[bytes, ...]) -> tuple[int, int] | None:
        """Where the winning delimiter starts and ends: the earliest, then the
        longest, not while a delimiter that would beat it may still complete
        (unless no more can come: EOF or a full buffer); None: no winner yet."""
        data = self.data
        candidates = delimiters if isinstance(delimiters, tuple) else (delimiters,)
        found = [(at, -len(d)) for d in candidates if (at := data.find(d)) >= 0]
        if not found:
            return None
        at, length = min(found)
        length = -length
        if self.eof or len(data) >= self.capacity:
            return at, at + length
        for d in candidates:
            for q in range(max(0, len(data) - len(d) + 1), len(data)):
                beats = q < at or (q == at and len(d) > length)
                if beats and d.startswith(data[q:]):
                    return None
        return at, at + length

    def until(self, delimiters: bytes | tuple[bytes, ...], max_size: int, how: str) -> bytes | None:
        """`take_until` (``how`` "plain" or "keep") or `take_line` ("line")."""
        found = self.match(delimiters)
        if found is None:
            pending = any(d in self.data for d in (delimiters if isinstance(delimiters, tuple) else (delimiters,)))
            if not pending and len(self.data) >= max_size:
                raise FrameTooLongError(max_size)
            return None
        at, end = found
        if end > max_size:
            raise FrameTooLongError(max_size)
        frame = self.consume(end)
        if how == "keep":
            return frame
        frame = frame[:at]
        return frame[:-1] if how == "line" and frame.endswith(b"\r") else frame

    def batch(self, delimiter: bytes, max_size: int, how: str) -> list[bytes] | None:
        """`take_lines` / `take_until_batch`: every whole frame, at least one;
        one over ``max_size`` after the first ends the batch before it."""
        first = self.until(delimiter, max_size, how)
        if first is None:
            return None
        frames = [first]
        while True:
            data, offset = self.data, self.offset
            try:
                frame = self.until(delimiter, max_size, how)
            except FrameTooLongError:
                self.data, self.offset = data, offset
                return frames
            if frame is None:
                return frames
            frames.append(frame)


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except FrameTooLongError as exc:
        return FrameTooLongError, exc.max_size


def _buffer_wire(rnd: random.Random) -> bytes:
    """Frames of one size regime (mostly) ended by the script's delimiters,
    bodies that hold pieces of them."""
    regime = rnd.choice([*_REGIMES, "mixed"])
    endings = rnd.sample([b"\n", b"\r\n", b";", b"ab", b"abc", b"\r", b",", b"\r\n\r\n"], rnd.randint(1, 4))
    alphabet = rnd.choice([b"xyz", b"xyza\r", b"abcxyz;\n", b"0123456789"])
    count = rnd.randint(1, 40 if regime in ("long", "edge", "mixed") else 200)
    return b"".join(_body(rnd, _frame_size(rnd, regime), alphabet) + rnd.choice(endings) for _ in range(count))


def _as_fed(rnd: random.Random, chunk: bytes) -> bytes | bytearray | memoryview:
    """The chunk as bytes (mostly), a bytearray, a memoryview, or a typed one."""
    kind = rnd.random()
    if kind < 0.7:
        return chunk
    if kind < 0.85:
        return bytearray(chunk)
    if kind < 0.95 or len(chunk) % 2:
        return memoryview(chunk)
    return memoryview(chunk).cast("H")


class _BufferScript:
    """One seed's script for `test_a_receive_buffer_matches_its_model`: each
    method one kind of step, on the real buffer and on the model."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        rnd = self.rnd = random.Random(seed)
        wire = _buffer_wire(rnd)
        if rnd.random() < 0.4:
            # Small chunks, so that frames span many of them (queued unjoined).
            most = rnd.choice([10, 200, 3000])
            cuts = [0]
            while cuts[-1] < len(wire):
                cuts.append(cuts[-1] + rnd.randint(1, most))
            self.chunks = [wire[i:j] for i, j in itertools.pairwise(cuts)]
        else:
            self.chunks = _chunks(rnd, wire)
        self.capacity = rnd.choice([65536, 1 << 20, rnd.randint(100, 20000)])
        self.real = ReceiveBuffer(self.capacity)
        self.model = _BufferModel(self.capacity)
        self.taken: list[bytes] = []  # recent frames, to push back
        self.step = 0

    def run(self) -> None:
        rnd, real, model = self.rnd, self.real, self.model
        steps = [
            (0.15, self.takes),
            (0.10, self.batches),
            (0.07, self.peek_frames),
            (0.05, self.regex),
            (0.06, self.exactly),
            (0.04, self.into),
            (0.04, self.some),
            (0.03, self.all),
            (0.04, self.peek),
            (0.03, self.skip),
            (0.03, self.discard),
            (0.05, self.unreceive),
            (0.01, self.clear),
        ]
        while (self.chunks or rnd.random() < 0.9) and self.step < 1000:
            self.step += 1
            op = rnd.random()
            if op < 0.3:
                self.feed()
            else:
                op -= 0.3
                for weight, step in steps:
                    if op < weight:
                        step()
                        break
                    op -= weight
            assert len(real) == len(model.data) and bool(real) == bool(model.data), self.where()
            assert real.offset == model.offset and real.eof == model.eof, self.where()
            assert real.room == max(0, self.capacity - len(model.data)), self.where()
        assert real.peek() == model.data, self.where()

    def where(self, what: object = "") -> tuple[object, ...]:
        return self.seed, self.step, what

    def limit(self) -> int:
        """A limit at, under or over the next frame, at what is buffered (no
        frame within max_size bytes?), or anywhere."""
        data = self.model.data
        ends = [end for d in (b"\n", b";", b"ab", b"\r\n") if (end := data.find(d)) >= 0]
        if ends and self.rnd.random() < 0.7:
            return max(1, min(ends) + self.rnd.randint(-1, 3))
        if self.rnd.random() < 0.5:
            return max(1, len(data) + self.rnd.randint(-2, 2))
        return self.rnd.choice([1, 2, 50, 1000, 9000, 70000, 1 << 20])

    def check(self, what: str, got: object, want: object) -> None:
        """The same outcome; frames as ``bytes``, remembered for unreceive."""
        assert got == want, self.where(what)
        frames = want if isinstance(want, list) else [want] if isinstance(want, bytes) else []
        assert all(type(frame) is bytes for frame in (got if isinstance(got, list) else [got])[: len(frames)])
        self.taken.extend(frames[-2:])

    def feed(self) -> None:
        rnd, real, model = self.rnd, self.real, self.model
        if not self.chunks:
            if not model.eof:
                real.feed_eof()
                model.eof = True
                with pytest.raises(RuntimeError):
                    real.feed(b"x")
            return
        for _ in range(1 if rnd.random() < 0.7 else rnd.randint(2, 20)):
            if self.chunks:
                chunk = self.chunks.pop(0)
                real.feed(_as_fed(rnd, chunk))
                model.data += chunk

    def takes(self) -> None:
        how = self.rnd.choice(["line", "plain", "keep"])
        delimiters = b"\n" if how == "line" else self.rnd.choice(_BUFFER_DELIMITERS)
        max_size = self.limit()
        if how == "line":
            got = _outcome(lambda: self.real.take_line(max_size))
        else:
            got = _outcome(lambda: self.real.take_until(delimiters, max_size, how == "keep"))
        want = _outcome(lambda: self.model.until(delimiters, max_size, how))
        self.check(f"{how} {delimiters!r} {max_size}", got, want)

    def batches(self) -> None:
        how = self.rnd.choice(["line", "plain"])
        delimiter = b"\n" if how == "line" else self.rnd.choice([b"\n", b";", b"ab"])
        max_size = self.limit()
        if how == "line":
            got = _outcome(lambda: self.real.take_lines(max_size))
        else:
            got = _outcome(lambda: self.real.take_until_batch(delimiter, max_size))
        want = _outcome(lambda: self.model.batch(delimiter, max_size, how))
        self.check(f"batch {how} {delimiter!r} {max_size}", got, want)

    def peek_frames(self) -> None:
        """The frame iterators' peek: whole frames cut, nothing consumed
        (then, half the time, consumed as a hand-out does)."""
        rnd, real, model = self.rnd, self.real, self.model
        how = rnd.choice(["line", "plain"])
        delimiter = b"\n" if how == "line" else rnd.choice([b"\n", b";"])
        max_size = self.limit()
        before = len(real)
        found = real.peek_frames(
            delimiter, max_size, LINE_MODE if how == "line" else PLAIN_MODE, rnd.choice([1, 256, 4096, 1 << 18])
        )
        assert len(real) == before, self.where()
        if found is None:
            return
        frames, extra, drained, size = found
        assert frames and sum(len(frame) + extra for frame in frames) == size, self.where()
        data, offset = model.data, model.offset
        assert frames == [model.until(delimiter, max_size, how) for _ in frames], self.where()
        assert model.offset - offset == size, self.where()
        if drained and not real._more_len:
            assert model.until(delimiter, max_size, how) is None, self.where("drained")
        if rnd.random() < 0.5:
            model.data, model.offset = data, offset
            return
        assert real.skip(size) == size  # handed out: consumed

    def regex(self) -> None:
        pattern = self.rnd.choice(_BUFFER_PATTERNS)
        max_size, keep = self.limit(), self.rnd.random() < 0.3
        model = self.model

        def regex() -> bytes | None:
            match = pattern.search(model.data, 0, min(len(model.data), max_size))
            if match is None:
                if len(model.data) >= max_size:
                    raise FrameTooLongError(max_size)
                return None
            frame = model.consume(match.end())
            return frame if keep else frame[: match.start()]

        got = _outcome(lambda: self.real.take_regex(pattern, max_size, keep))
        self.check(f"regex {pattern.pattern!r} {max_size}", got, _outcome(regex))

    def exactly(self) -> None:
        n = self.rnd.choice([0, 1, 3, self.rnd.randint(0, 5000), self.rnd.randint(0, 70000)])
        want = self.model.consume(n) if len(self.model.data) >= n else None
        self.check(f"exactly {n}", self.real.take_exactly(n), want)

    def into(self) -> None:
        view = memoryview(bytearray(self.rnd.choice([1, 100, self.rnd.randint(1, 70000)])))
        got = self.real.take_into(view)
        assert bytes(view[:got]) == self.model.consume(len(view)), self.where()

    def some(self) -> None:
        max_bytes = self.rnd.choice([None, 1, self.rnd.randint(1, 70000)])
        got = self.real.take_some(max_bytes)
        assert type(got) is bytes and (got == b"") == (self.model.data == b""), self.where()
        assert max_bytes is None or len(got) <= max_bytes, self.where()
        self.check("some", got, self.model.consume(len(got)))  # (only what is contiguous)

    def all(self) -> None:
        model = self.model
        max_size = self.rnd.choice([len(model.data), len(model.data) - 1, 1 << 20])

        def take_all() -> bytes | None:
            if len(model.data) > max_size:
                raise FrameTooLongError(max_size)
            return model.consume(len(model.data)) if model.eof else None

        self.check(f"all {max_size}", _outcome(lambda: self.real.take_all(max_size)), _outcome(take_all))

    def peek(self) -> None:
        max_bytes = self.rnd.choice([None, 0, 1, self.rnd.randint(0, 70000)])
        assert self.real.peek(max_bytes) == self.model.data[:max_bytes], self.where()

    def skip(self) -> None:
        n = self.rnd.choice([0, 1, self.rnd.randint(0, 70000)])
        assert self.real.skip(n) == len(self.model.consume(n)), self.where()

    def discard(self) -> None:
        """All through the winning delimiter, or all but what may start one."""
        delimiters = self.rnd.choice(_BUFFER_DELIMITERS)
        found = self.model.match(delimiters)
        if found is not None:
            want = (found[1], True)
        else:
            keep = max(map(len, delimiters if isinstance(delimiters, tuple) else (delimiters,))) - 1
            want = (max(0, len(self.model.data) - keep), False)
        self.model.consume(want[0])
        assert self.real.discard_until(delimiters) == want, self.where(delimiters)

    def unreceive(self) -> None:
        """A frame taken before (or other bytes) pushed back: not consumed."""
        rnd = self.rnd
        back = (
            rnd.choice(self.taken) if self.taken and rnd.random() < 0.8 else _body(rnd, rnd.randint(1, 3000), b"xa\n;")
        )
        self.real.unreceive(_as_fed(rnd, back))
        self.model.data = back + self.model.data
        self.model.offset = max(0, self.model.offset - len(back))

    def clear(self) -> None:
        self.real.clear()
        self.model.consume(len(self.model.data))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_receive_buffer_matches_its_model(seed: int) -> None:
    """`ReceiveBuffer` on its own, as a codec or a sans-I/O parser uses it: a
    random wire fed in random chunks (of every bytes-like type), with every
    public method at random between the feeds (takes of every kind with
    limits at, under and over the next frame, batches, peeks, the peek of
    the frame iterators, skips, discards, bytes pushed back, a clear), each
    checked against `_BufferModel`, and its length, offset, room and EOF
    after every step."""
    _BufferScript(seed).run()
