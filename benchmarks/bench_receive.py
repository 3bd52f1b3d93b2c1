"""Receive-side benchmark: triostream against the hand-written split loop and its peers.

Every receiver reads the same payload and counts its frames and bytes; a run
whose count is wrong is reported as an error, so a broken receiver cannot look
fast. Over TCP the sender is a separate process (a blocking socket that
connects to 127.0.0.1, waits for a one-byte "go" and sends a pre-built
payload); the clock runs from the "go" to the receiver's last frame.

The reference is ``split``, the pure-Python limit: ``receive_some(65536)`` and
``bytes.split`` (short lines), a ``find`` loop (long lines) or
``struct.unpack_from`` (length prefixes). The runs are interleaved rounds
(every method once per workload per round, in a shuffled order); ratios are
taken within each round and the median over rounds is reported.

Run ``python benchmarks/bench_receive.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import gc
import importlib.util
import json
import operator
import os
import platform
import random
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Literal

import trio
from trio.lowlevel import checkpoint as trio_checkpoint

if importlib.util.find_spec("triostream") is None:  # run from a checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import triostream
from triostream import BufferedStream, IncompleteReadError, LengthPrefixed
from triostream._socketio import direct_socket_stream, read_socket

# A figure just under its target printed with the digits that show it, as the
# benchmarks page prints it: plot_receive.py's (which reads the JSON written
# here and needs the standard library only). Its directory is on the path when
# this runs as a script; loaded by path (the tests), it is added.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_receive import fmt_figure

PEERS: dict[str, str | None] = {}  # peer -> version, or None when it is not installed

try:
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream

    PEERS["anyio"] = version("anyio")
except ImportError:  # pragma: no cover
    PEERS["anyio"] = None

PEERS["asyncio"] = f"Python {sys.version.split()[0]}"

try:
    import uvloop

    PEERS["uvloop"] = version("uvloop")
except ImportError:  # pragma: no cover
    PEERS["uvloop"] = None

try:
    import tornado.iostream

    PEERS["tornado"] = version("tornado")
except ImportError:  # pragma: no cover
    PEERS["tornado"] = None

try:
    from tricycle import BufferedReceiveStream, TextReceiveStream

    PEERS["tricycle"] = version("tricycle")
except ImportError:  # pragma: no cover
    PEERS["tricycle"] = None

KiB = 1024
MiB = 1024 * KiB
HOST = "127.0.0.1"

# The split reference cuts lines of up to SPLIT_MAX_FRAME bytes (with the \n)
# with bytes.split, longer ones with a find loop: bytes.split looks for a
# one-byte separator byte by byte (about 3 GB/s here), bytes.find with memchr,
# so past ~512 B per line the find loop's per-line Python cost is the smaller
# one (measured here: equal at 512 B, find 1.4x faster at 1 KiB, 4x at 16 KiB;
# split 1.7x faster at 256 B, 3.5x at 16 B).
SPLIT_MAX_FRAME = 512

Kind = Literal["lines", "prefixed"]
Transport = Literal["tcp", "mem"]
Tally = tuple[int, int]  # (frames, payload bytes) a receiver counted


class WrongResult(Exception):
    """A receiver returned the wrong frames: its time means nothing."""


# ----------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """One payload and how it reaches the receivers.

    ``body`` is the size of each frame as handed to the application (a line
    without its ``\\n``, a length-prefixed payload without its 4-byte header).
    """

    name: str
    group: str
    kind: Kind
    body: int
    count: int
    transport: Transport = "tcp"
    receive_size: int = 64 * KiB  # the most bytes a receiver asks its transport for
    max_frame: int = 64 * KiB  # the frame / buffer limit every receiver is given
    reps_factor: int = 1  # runs per method per round, the fastest kept (more for the short runs)

    @property
    def frame_size(self) -> int:
        return self.body + (1 if self.kind == "lines" else 4)

    @property
    def wire_bytes(self) -> int:
        return self.count * self.frame_size

    @property
    def reads(self) -> int:
        """Transport reads of ``receive_size`` the payload needs (at least)."""
        return -(-self.wire_bytes // self.receive_size)

    @property
    def expected(self) -> Tally:
        return self.count, self.count * self.body

    @property
    def scaling(self) -> bool:
        return self.group.startswith("scale-")

    @property
    def split_by_find(self) -> bool:
        """Whether the split reference uses the find loop (long lines)."""
        return self.kind == "lines" and self.frame_size > SPLIT_MAX_FRAME

    def matches(self, selector: str) -> bool:
        return selector in (self.name, self.group, self.kind, self.group.split("-")[0])

    def describe(self) -> str:
        where = "over TCP from another process" if self.transport == "tcp" else "in-process"
        return (
            f"{self.count:,} frame(s) of {size_label(self.frame_size)}, {size_label(self.wire_bytes)} {where}, "
            f"reads of {size_label(self.receive_size)}"
        )


def size_label(n: int) -> str:
    for unit, scale in (("MiB", MiB), ("KiB", KiB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    if n >= MiB:
        return f"{n / MiB:.1f}MiB"
    return f"{n}B"


# Runs per method per round at the large-frame workloads, the fastest kept
# (see make_workloads).
_LARGE_FRAME_RUNS = 9


def make_workloads(quick: bool) -> list[Workload]:
    div = 8 if quick else 1
    # The large-frame workloads run at the speed of loopback TCP and of the
    # sending process, in 5-40 ms: one run per method per round left their
    # per-round ratios spread over 0.3x-1.6x (methods with the same code per
    # read differed by 30 % in medians). They run nine times per round, the
    # fastest kept. With three, as the scaling runs do, two runs of 15
    # rounds of the same code at 4 KiB frames gave the split batches floor
    # 0.855x and 0.896x (the middle half of its per-round ratios
    # 0.79-0.97x), `frames().batches()` 0.913x and 0.903x (0.70-1.12x);
    # with nine, 0.978x and 0.985x (0.96-1.01x), 0.941x and 0.962x
    # (0.90-1.00x). Nine cost about a minute more per run of 15 rounds.
    fixed = [
        Workload("lines-16B", "lines", "lines", 15, 262_144 // div),
        Workload("lines-128B", "lines", "lines", 127, 131_072 // div),
        Workload("lines-1KiB", "lines", "lines", 1023, 32_768 // div, reps_factor=_LARGE_FRAME_RUNS),
        Workload("lines-16KiB", "lines", "lines", 16383, 2048 // div, reps_factor=_LARGE_FRAME_RUNS),
        Workload("prefixed-64B", "prefixed", "prefixed", 64, 65_536 // div),
        Workload("prefixed-4KiB", "prefixed", "prefixed", 4096, 4096 // div, reps_factor=_LARGE_FRAME_RUNS),
    ]
    # Scaling: ONE long line delivered in 1 KiB reads, at two sizes 16x apart.
    small, big = (64 * KiB, 1 * MiB) if quick else (256 * KiB, 4 * MiB)
    scale = [
        Workload(
            f"scale-{transport}-{size_label(size)}",
            f"scale-{transport}",
            "lines",
            size,
            1,
            transport,
            receive_size=KiB,
            max_frame=8 * MiB,
            reps_factor=3,
        )
        for transport in ("tcp", "mem")
        for size in (small, big)
    ]
    return fixed + scale


def build_payload(kind: str, body: int, count: int) -> bytes:
    pattern = bytes(range(0x20, 0x7F))  # printable, no \r or \n
    content = (pattern * (body // len(pattern) + 1))[:body]
    if kind == "lines":
        return (content + b"\n") * count
    return (body.to_bytes(4, "big") + content) * count


# The receivers' clock: wall time by default; ``--clock cpu`` takes the
# receiving thread's CPU time instead (time.thread_time: its own work and
# its system calls, not the time it waits for bytes). On a shared machine the
# CPU clock is the steadier one: prefixed-4KiB, 15 pinned rounds, per-round
# ratios to split ranged 0.47-1.6 by the wall clock and 0.65-1.24 by CPU.
clock: Callable[[], float] = time.perf_counter


# ------------------------------------------------------ the sender process


def sender_main() -> None:
    """The sender process: for each ``port kind body count`` line on stdin,
    connect, wait for the receiver's "go" byte, send the payload, close, and
    answer ``ok``."""
    key: tuple[str, int, int] | None = None
    payload = b""
    for command in sys.stdin:
        port, kind, body, count = command.split()
        if key != (kind, int(body), int(count)):
            key = (kind, int(body), int(count))
            payload = build_payload(*key)
        try:
            with socket.create_connection((HOST, int(port))) as sock:
                if sock.recv(1):
                    sock.sendall(payload)
        except OSError:
            pass  # the receiver failed and closed the connection
        sys.stdout.write("ok\n")
        sys.stdout.flush()


@dataclass
class Feed:
    """Where a receiver's bytes come from: an accepted TCP connection, or
    (``conn`` None) a list of chunks handed out one per transport read."""

    conn: socket.socket | None
    chunks: list[bytes] = field(default_factory=list)

    def go(self) -> float:
        """Start the clock (and the sender)."""
        if self.conn is not None:
            self.conn.send(b"g")
        return clock()


Runner = Callable[[Workload, Feed], tuple[float, Tally]]


class Harness:
    """The listening socket, the sender process and the in-process payloads."""

    def __init__(self, pin: bool) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(60)
        self.port = self.listener.getsockname()[1]
        self.sender = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--sender"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pinned = pin and self._pin()
        self._chunks: tuple[Workload, list[bytes]] | None = None

    def _pin(self) -> str:
        """Receiver and sender on two different CPUs, each on its own one:
        unpinned, on this 2-core machine, the scheduler sometimes put both
        on one core, and the same method's time varied 3-4x between rounds
        (the asyncio rows were bimodal: 17 or 50 ms). '' when not possible."""
        try:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                return ""
            os.sched_setaffinity(self.sender.pid, {cpus[1]})
            os.sched_setaffinity(0, {cpus[0]})
        except (AttributeError, OSError):
            return ""
        return f"receiver on CPU {cpus[0]}, sender on CPU {cpus[1]}"

    def close(self) -> None:
        assert self.sender.stdin is not None
        self.sender.stdin.close()
        self.sender.wait(timeout=30)
        self.listener.close()

    def chunks(self, wl: Workload) -> list[bytes]:
        if self._chunks is None or self._chunks[0] != wl:
            payload = build_payload(wl.kind, wl.body, wl.count)
            pieces = [payload[i : i + wl.receive_size] for i in range(0, len(payload), wl.receive_size)]
            self._chunks = (wl, pieces)
        return list(self._chunks[1])

    def run(self, runner: Runner, wl: Workload) -> float:
        """One timed run; raises `WrongResult` if the receiver miscounted."""
        gc.collect()
        if wl.transport == "mem":
            elapsed, tally = runner(wl, Feed(None, self.chunks(wl)))
        else:
            assert self.sender.stdin is not None and self.sender.stdout is not None
            self.sender.stdin.write(f"{self.port} {wl.kind} {wl.body} {wl.count}\n")
            self.sender.stdin.flush()
            conn, _ = self.listener.accept()
            try:
                elapsed, tally = runner(wl, Feed(conn))
            finally:
                conn.close()
                if self.sender.stdout.readline() != "ok\n":
                    raise RuntimeError("the sender process died")
        if tally != wl.expected:
            raise WrongResult(f"counted (frames, bytes) = {tally}, expected {wl.expected}")
        return elapsed


# ------------------------------------------------------------ trio receivers

TrioReader = Callable[[trio.abc.Stream, Workload], Awaitable[Tally]]


class ChunkStream(trio.abc.Stream):
    """An in-process trio stream: each ``receive_some`` is a checkpoint that
    returns the next pre-cut chunk (so the receiver sees exactly those reads)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._next = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self._next == len(self._chunks):
            return b""
        chunk = self._chunks[self._next]
        if max_bytes is not None and len(chunk) > max_bytes:
            self._chunks[self._next] = chunk[max_bytes:]
            return chunk[:max_bytes]
        self._next += 1
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise trio.BrokenResourceError("ChunkStream is receive-only")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def on_trio(reader: TrioReader) -> Runner:
    def run(wl: Workload, feed: Feed) -> tuple[float, Tally]:
        async def main() -> tuple[float, Tally]:
            stream: trio.abc.Stream
            if feed.conn is not None:
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(feed.conn))
            else:
                stream = ChunkStream(feed.chunks)
            async with stream:
                start = feed.go()
                tally = await reader(stream, wl)
                return clock() - start, tally

        return trio.run(main)

    return run


# The hand-written loops. Every receiver, these included, does the same work
# per frame (count it and its length), so the loops differ only in framing.


async def split_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """The pure-Python limit for short lines: ``bytes.split`` each read
    (after the unfinished line of the previous one, kept as the tail)."""
    frames = nbytes = 0
    tail: bytes | bytearray = b""
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        lines = (tail + data if tail else data).split(b"\n")
        tail = lines.pop()
        for line in lines:
            frames += 1
            nbytes += len(line)
    return frames, nbytes


async def split_lines_checkpoint(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """`split_lines` with one ``await trio.lowlevel.checkpoint()`` per line."""
    checkpoint = trio.lowlevel.checkpoint
    frames = nbytes = 0
    tail: bytes | bytearray = b""
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        lines = (tail + data if tail else data).split(b"\n")
        tail = lines.pop()
        for line in lines:
            await checkpoint()
            frames += 1
            nbytes += len(line)
    return frames, nbytes


async def find_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """The pure-Python limit for long lines: ``bytes.find`` each line; an
    unfinished line is kept as a list of pieces, joined once (linear in the
    line's length however many reads it takes)."""
    frames = nbytes = 0
    pending: list[bytes | bytearray] = []
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            line = data[start:end]
            if pending:
                pending.append(line)
                line = b"".join(pending)
                pending.clear()
            frames += 1
            nbytes += len(line)
            start = end + 1
        if start < len(data):
            pending.append(data[start:])
    return frames, nbytes


async def find_lines_checkpoint(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """`find_lines` with one ``await trio.lowlevel.checkpoint()`` per line."""
    checkpoint = trio.lowlevel.checkpoint
    frames = nbytes = 0
    pending: list[bytes | bytearray] = []
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            line = data[start:end]
            if pending:
                pending.append(line)
                line = b"".join(pending)
                pending.clear()
            await checkpoint()
            frames += 1
            nbytes += len(line)
            start = end + 1
        if start < len(data):
            pending.append(data[start:])
    return frames, nbytes


_unpack_header = struct.Struct(">I").unpack_from


async def split_prefixed(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """The pure-Python limit for 4-byte big-endian length prefixes:
    ``struct.unpack_from`` and slicing; the unfinished frame is the tail."""
    unpack = _unpack_header
    frames = nbytes = 0
    buf: bytes | bytearray = b""
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        buf = buf + data if buf else data
        pos, stop = 0, len(buf)
        while pos + 4 <= stop:
            end = pos + 4 + unpack(buf, pos)[0]
            if end > stop:
                break
            payload = buf[pos + 4 : end]
            frames += 1
            nbytes += len(payload)
            pos = end
        buf = buf[pos:]
    return frames, nbytes


async def split_prefixed_checkpoint(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """`split_prefixed` with one ``await trio.lowlevel.checkpoint()`` per frame."""
    checkpoint = trio.lowlevel.checkpoint
    unpack = _unpack_header
    frames = nbytes = 0
    buf: bytes | bytearray = b""
    receive_some, size = stream.receive_some, wl.receive_size
    while data := await receive_some(size):
        buf = buf + data if buf else data
        pos, stop = 0, len(buf)
        while pos + 4 <= stop:
            end = pos + 4 + unpack(buf, pos)[0]
            if end > stop:
                break
            payload = buf[pos + 4 : end]
            await checkpoint()
            frames += 1
            nbytes += len(payload)
            pos = end
        buf = buf[pos:]
    return frames, nbytes


# The floors of the two iterator APIs: the split loop itself, wrapped in the
# least an iterator needs (an async generator). "split gen" yields one frame
# per step, "split batches" the list of a read's frames: what a per-frame
# iterator and a batch iterator cost when the framing costs nothing more
# than the hand-written loop's. A target that these miss is out of reach for
# any iterator in pure Python.


def floor_reader(stream: trio.abc.Stream) -> Callable[[int], Awaitable[bytes | bytearray]]:
    """The floors' transport read: over a plain `trio.SocketStream`,
    triostream's own (``triostream._socketio.read_socket``: the socket read
    directly, a full checkpoint as ``receive_some`` is), so that a floor
    pays no more per read than triostream's receivers do; else the stream's
    ``receive_some``. The references (``split``, ``split+checkpoint``, the
    ``find`` and ``bytes.split`` rows) read through ``receive_some``, as
    the split loop is defined."""
    if direct_socket_stream(stream) is not None:
        return functools.partial(read_socket, stream)
    return stream.receive_some


async def _split_read_batches(stream: trio.abc.Stream, wl: Workload) -> AsyncIterator[Sequence[bytes | bytearray]]:
    """The split reference's loops, yielding each read's whole frames (read
    as the floors read: `floor_reader`)."""
    receive_some, size = floor_reader(stream), wl.receive_size
    if wl.kind == "prefixed":
        unpack = _unpack_header
        buf: bytes | bytearray = b""
        while data := await receive_some(size):
            buf = buf + data if buf else data
            pos, stop = 0, len(buf)
            batch: list[bytes | bytearray] = []
            while pos + 4 <= stop:
                end = pos + 4 + unpack(buf, pos)[0]
                if end > stop:
                    break
                batch.append(buf[pos + 4 : end])
                pos = end
            buf = buf[pos:]
            if batch:
                yield batch
    elif wl.split_by_find:
        pending: list[bytes | bytearray] = []
        while data := await receive_some(size):
            start = 0
            found: list[bytes | bytearray] = []
            while (end := data.find(b"\n", start)) >= 0:
                line = data[start:end]
                if pending:
                    pending.append(line)
                    line = b"".join(pending)
                    pending.clear()
                found.append(line)
                start = end + 1
            if start < len(data):
                pending.append(data[start:])
            if found:
                yield found
    else:
        tail: bytes | bytearray = b""
        while data := await receive_some(size):
            lines = (tail + data if tail else data).split(b"\n")
            tail = lines.pop()
            if lines:
                yield lines


async def split_batches(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for batch in _split_read_batches(stream, wl):
        for frame in batch:
            frames += 1
            nbytes += len(frame)
    return frames, nbytes


async def _split_frames(stream: trio.abc.Stream, wl: Workload) -> AsyncIterator[bytes | bytearray]:
    async for batch in _split_read_batches(stream, wl):
        for frame in batch:
            yield frame


async def split_gen(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for frame in _split_frames(stream, wl):
        frames += 1
        nbytes += len(frame)
    return frames, nbytes


# `_LinesBatchFloor`: lines at least this long (the second of a read) are
# tested for \r and the limit one by one, shorter ones by a scan of the read
# (triostream's ReceiveBuffer._feed_batch chooses at the same size).
_LONG_LINES = 2048


class _LinesBatchFloor:
    """The floor of ``lines().batches()``'s contract: `split batches` (a
    read's lines a step, by the split reference's loop for the workload:
    ``bytes.split`` for short lines, a ``find`` per line for long ones) and
    what that contract adds to it, each written the cheapest way found (as
    triostream's loop is):

    - a line's ``\\r`` before its ``\\n`` stripped (lines under
      `_LONG_LINES`: one scan of the read for ``\\r``, the lines that end
      in one stripped when it finds one; longer lines: a test per line);
    - ``max_size`` per line: a line over it ends the batch before it and
      stays, with everything after it, and the next step raises
      `triostream.FrameTooLongError` (so does an unfinished line already
      over it); lines under `_LONG_LINES`: tested once per read, at C
      speed (short lines: a step per ``max_size`` bytes), unless the read
      is shorter than the limit;
    - one state for the task receiving and the close, set around each read:
      a second task is refused (`trio.BusyResourceError`), and a read that
      returns after a close (`aclose`) hands nothing out
      (`trio.ClosedResourceError`);
    - where the reader stands after each step (the bytes after the last
      line handed out, and the cursor in them), for a stream's other
      receives to continue from: two attribute stores per read;
    - EOF inside a line raises `triostream.IncompleteReadError`.

    (Its errors come without the checkpoint that triostream's make: no error
    path is timed.) A batch target for lines that this misses too is out of
    reach for a pure-Python ``lines().batches()``."""

    __slots__ = ("_chunk", "_pos", "_state", "_stream", "_wl")

    # _state: a task is receiving (_BUSY), the reader is closed (_SHUT).
    _BUSY, _SHUT = 1, 2

    def __init__(self, stream: trio.abc.Stream, wl: Workload) -> None:
        self._stream = stream
        self._wl = wl
        self._state = 0
        self._chunk: bytes | bytearray = b""  # the bytes not handed out start at _chunk[_pos]
        self._pos = 0

    async def aclose(self) -> None:
        self._state |= self._SHUT
        await trio_checkpoint()

    async def batches(self, max_size: int) -> AsyncIterator[Sequence[bytes | bytearray]]:
        """The lines of each read, as `triostream.FrameIterator.batches`
        yields them."""
        receive_some, size, by_find = floor_reader(self._stream), self._wl.receive_size, self._wl.split_by_find
        chunk, pos = self._chunk, self._pos
        over = False  # the bytes kept start with a line over max_size
        batch: Sequence[bytes | bytearray]
        while True:
            if over:
                raise triostream.FrameTooLongError(max_size)
            if self._state:
                raise (
                    trio.ClosedResourceError("the reader is closed")
                    if self._state & self._SHUT
                    else (trio.BusyResourceError("another task is receiving"))
                )
            self._state = self._BUSY
            try:
                data = await receive_some(size)
            finally:
                self._state &= self._SHUT
            if self._state:
                raise trio.ClosedResourceError("closed by another task meanwhile")
            if not data:
                if pos < len(chunk):
                    raise IncompleteReadError(bytes(chunk[pos:]), None)
                return
            held = len(chunk) - pos
            if by_find:
                j = data.find(b"\n")
                if j < 0 or held + j >= max_size:
                    chunk, pos = chunk[pos:] + data, 0
                    self._chunk, self._pos = chunk, 0
                    over = j >= 0 or len(chunk) >= max_size
                    continue
                e = j - 1 if j and data[j - 1] == 13 else j
                found: list[bytes | bytearray]
                if not held:
                    found = [data[:e]]
                elif j:
                    found = [chunk[pos:] + data[:e]]
                else:  # (the \r may end the bytes held)
                    found = [chunk[pos:-1] if chunk[-1] == 13 else chunk[pos:]]
                start = at = j + 1
                i = data.find(b"\n", start)
                if i - start >= _LONG_LINES:
                    # Long lines: the tests per line cost less than a scan.
                    while i >= 0 and i - start < max_size:
                        found.append(data[start : i - 1] if data[i - 1] == 13 else data[start:i])
                        start = i + 1
                        i = data.find(b"\n", start)
                    over = i >= 0
                else:
                    # Shorter ones: the find loop alone, then the limit tested
                    # once at C speed, and one scan for \r.
                    while i >= 0:
                        found.append(data[start:i])
                        start = i + 1
                        i = data.find(b"\n", start)
                    if start - at > max_size and max(map(len, found)) >= max_size:
                        k = next(k for k, line in enumerate(found) if len(line) >= max_size)
                        start = at + sum(map(len, found[1:k])) + k - 1
                        del found[k:]
                        over = True
                    if data.find(b"\r", at, start) >= 0:
                        found[1:] = [line[:-1] if line[-1:] == b"\r" else line for line in found[1:]]
                over = over or len(data) - start >= max_size
                chunk, pos, batch = data, start, found
            else:
                buf = chunk[pos:] + data if held else data
                lines = buf.split(b"\n")
                tail = lines.pop()
                if len(buf) >= max_size:
                    # A line over the limit? A step per max_size bytes, to the
                    # last \n within reach (triostream's _has_long_frame): a
                    # step that finds none stops at such a line.
                    start, stop = 0, len(buf) - len(tail)
                    while stop - start > max_size and (last := buf.rfind(b"\n", start, start + max_size)) >= 0:
                        start = last + 1
                    if stop - start > max_size or len(tail) >= max_size:
                        over = True
                        k = next((k for k, line in enumerate(lines) if len(line) >= max_size), len(lines))
                        tail = b"\n".join([*lines[k:], tail])
                        del lines[k:]
                batch = lines if buf.find(b"\r") < 0 else [line[:-1] if line[-1:] == b"\r" else line for line in lines]
                chunk, pos = buf, len(buf) - len(tail)
            self._chunk, self._pos = chunk, pos
            if batch:
                yield batch


async def split_lines_batches(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for batch in _LinesBatchFloor(stream, wl).batches(wl.max_frame):
        for frame in batch:
            frames += 1
            nbytes += len(frame)
    return frames, nbytes


class _LinesGenFloor(_LinesBatchFloor):
    """The floor of ``lines()``'s contract (the per-frame iterator): the
    lines of `_LinesBatchFloor`, with all that its contract adds, handed
    out a frame a step, and where the reader stands after each frame kept
    as cheaply as it can be: the read's list iterator, stored once per read
    (the bytes not handed out follow from it, the read's bytes and the
    cursor after its lines: `unread`, O(lines not handed out), for a
    stream's other receives to continue from; triostream's frame loops
    hand their cut frames out the same way). A per-frame target for lines
    that this misses too is out of reach for a pure-Python ``lines()``."""

    __slots__ = ("_rest",)

    def __init__(self, stream: trio.abc.Stream, wl: Workload) -> None:
        super().__init__(stream, wl)
        self._rest: Iterator[bytes | bytearray] | None = None  # the read's lines not handed out yet

    async def frames(self, max_size: int) -> AsyncIterator[bytes | bytearray]:
        async for batch in self.batches(max_size):
            self._rest = rest = iter(batch)
            for frame in rest:
                yield frame
            self._rest = None

    def unread(self) -> bytes:
        """The bytes not handed out yet: the read's lines still in the list
        iterator (found again from the cursor back, a line ending per line),
        then the unfinished line."""
        chunk, pos = self._chunk, self._pos
        if self._rest is not None:
            for _ in range(operator.length_hint(self._rest)):
                pos = chunk.rfind(b"\n", 0, pos - 1) + 1
        return bytes(chunk[pos:])


async def split_lines_gen(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for frame in _LinesGenFloor(stream, wl).frames(wl.max_frame):
        frames += 1
        nbytes += len(frame)
    return frames, nbytes


class _CallFloor:
    """The floor of the per-call methods: the split loop behind an awaited
    method per frame, doing what any public per-call receive must and no
    more: a keyword ``max_size`` checked per frame, a second task refused
    (`trio.BusyResourceError`), a full checkpoint per call (a plain one
    before a buffered frame, else the transport read), and all or nothing
    (a frame is handed out after the checkpoint, or stays). Frames are cut a
    read at a time by the split reference's own loops (`_split_read_batches`).
    A per-call target that this misses is out of reach for any per-call API
    in pure Python."""

    __slots__ = ("_batches", "_busy", "_frames", "_next")

    def __init__(self, stream: trio.abc.Stream, wl: Workload) -> None:
        self._batches = _split_read_batches(stream, wl)
        self._frames: Sequence[bytes | bytearray] = ()
        self._next = 0
        self._busy = False

    async def receive(self, *, max_size: int) -> bytes | bytearray:
        if self._busy:
            raise trio.BusyResourceError("another task is receiving")
        self._busy = True
        try:
            i = self._next
            if i < len(self._frames):
                await trio_checkpoint()
            else:
                self._frames = await self._batches.__anext__()  # StopAsyncIteration at EOF
                i = 0
            frame = self._frames[i]
            if len(frame) > max_size:
                raise ValueError("frame over max_size")
            self._next = i + 1
            return frame
        finally:
            self._busy = False


async def split_call(stream: trio.abc.Stream, wl: Workload) -> Tally:
    receive, max_frame = _CallFloor(stream, wl).receive, wl.max_frame
    frames = nbytes = 0
    try:
        while True:
            frame = await receive(max_size=max_frame)
            frames += 1
            nbytes += len(frame)
    except StopAsyncIteration:
        pass
    return frames, nbytes


class _UntilFloor(_CallFloor):
    """The floor of ``receive_until``'s contract (and so of
    ``receive_line``'s, which also strips a ``\\r``): `_CallFloor` and what
    that contract adds to it, each written the cheapest way found (as
    triostream's method is):

    - the delimiter checked (non-empty bytes; frames are cut at the
      workload's ``\\n``), ``max_size`` optional (None: the reader's limit)
      and checked when it changes (an int from 1 to the limit);
    - one state for the task receiving and the close (``aclose``): a call
      refuses a second task or a closed reader with one test, and a close by
      another task while a call waits in its checkpoint is seen after it
      (the call raises `trio.ClosedResourceError`; the frame stays);
    - a cursor, the offset of the next byte not handed out, which a
      stream's other receives (``peek``, ``receive_some``,
      ``receive_exactly``) would continue from;
    - a frame over ``max_size`` stays (`triostream.FrameTooLongError`).

    (Its errors come without the checkpoint that triostream's make, and a
    cancellation during its read ends the split loop's generator that it
    shares with the other floors, where triostream's loses nothing: no
    error path is timed, and reads are one in 64 KiB.) A per-call target
    for lines that this misses too is out of reach for a pure-Python
    ``receive_until`` with triostream's contract."""

    __slots__ = ("_cursor", "_limit", "_limit_ok", "_state")

    # _state: a task is receiving (_BUSY), the reader is closed (_SHUT).
    _BUSY, _SHUT = 1, 2

    def __init__(self, stream: trio.abc.Stream, wl: Workload) -> None:
        super().__init__(stream, wl)
        self._state = 0
        self._cursor = 0
        self._limit = wl.max_frame + wl.receive_size  # as _buffered's max_buffer_size
        self._limit_ok: int | None = None

    async def aclose(self) -> None:
        self._state |= self._SHUT
        await trio_checkpoint()

    def _refuse(self) -> BaseException:
        if self._state & self._SHUT:
            return trio.ClosedResourceError("the reader is closed")
        return trio.BusyResourceError("another task is receiving")

    async def receive_until(self, delimiter: bytes, *, max_size: int | None = None) -> bytes | bytearray:
        if type(delimiter) is not bytes or not delimiter:
            raise TypeError("the delimiter is non-empty bytes")
        if max_size is None:
            max_size = self._limit
        elif max_size is not self._limit_ok:
            if type(max_size) is int and 0 < max_size <= self._limit:
                self._limit_ok = max_size
            else:
                raise ValueError("max_size is an int from 1 to the reader's limit")
        if self._state:
            raise self._refuse()
        self._state = self._BUSY
        i = self._next
        try:
            if i < len(self._frames):
                await trio_checkpoint()
            else:
                self._frames = await self._batches.__anext__()  # StopAsyncIteration at EOF
                self._next = i = 0
        except BaseException:
            self._state &= self._SHUT
            raise
        if self._state == self._BUSY and (n := len(frame := self._frames[i])) < max_size:
            self._state = 0
            self._next = i + 1
            self._cursor += n + 1
            return frame
        self._state &= self._SHUT
        if self._state:
            raise trio.ClosedResourceError("closed by another task meanwhile")
        raise triostream.FrameTooLongError(max_size)


async def split_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    receive_until, max_frame = _UntilFloor(stream, wl).receive_until, wl.max_frame
    frames = nbytes = 0
    try:
        while True:
            frame = await receive_until(b"\n", max_size=max_frame)
            frames += 1
            nbytes += len(frame)
    except StopAsyncIteration:
        pass
    return frames, nbytes


class _NowaitFloor(_CallFloor):
    """The floor of the ``_nowait`` loops: `_CallFloor` and a synchronous
    twin of its method, which hands out the next frame of the read's cut
    (``max_size`` checked, a second task refused) or raises
    `trio.WouldBlock`; the loop then awaits the method, which reads. A
    ``_nowait`` target that this misses is out of reach for any such pair
    of methods in pure Python."""

    __slots__ = ()

    def receive_nowait(self, *, max_size: int) -> bytes | bytearray:
        if self._busy:
            raise trio.BusyResourceError("another task is receiving")
        i = self._next
        if i >= len(self._frames):
            raise trio.WouldBlock
        frame = self._frames[i]
        if len(frame) > max_size:
            raise ValueError("frame over max_size")
        self._next = i + 1
        return frame


async def split_nowait(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """`_NowaitFloor`'s method while frames are cut; on `trio.WouldBlock`
    one awaited call (which reads), as `ts_nowait_line` does."""
    floor = _NowaitFloor(stream, wl)
    receive_nowait, receive, max_frame = floor.receive_nowait, floor.receive, wl.max_frame
    frames = nbytes = 0
    try:
        while True:
            try:
                frame = receive_nowait(max_size=max_frame)
            except trio.WouldBlock:
                frame = await receive(max_size=max_frame)
            frames += 1
            nbytes += len(frame)
    except StopAsyncIteration:
        pass
    return frames, nbytes


def _buffered(stream: trio.abc.Stream, wl: Workload) -> BufferedStream:
    """Room for the longest frame and one whole read behind it: the memory
    every peer holds (the split loop keeps its tail and reads 64 KiB, anyio
    and tricycle read 64 KiB whatever they hold, asyncio reads on until twice
    its limit). Every receive is given the workload's ``max_frame`` as its
    frame limit, as every peer is. With a buffer of just ``max_frame``, a
    read behind an unfinished frame asks for less: over TCP 4 KiB frames
    took 12 % more reads than the split loop (292 against 261 per run), 16 KiB
    lines 3 % more."""
    return BufferedStream(stream, max_buffer_size=wl.max_frame + wl.receive_size, receive_size=wl.receive_size)


def _codec(wl: Workload) -> LengthPrefixed:
    """4-byte big-endian lengths (the default ``length_size``); ``max_size``
    counts the body, so header + body are at most ``max_frame``."""
    return LengthPrefixed(wl.max_frame - 4)


async def ts_call_line(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    max_frame = wl.max_frame  # (a local, as in split_call's loop)
    frames = nbytes = 0
    try:
        while True:
            line = await s.receive_line(max_size=max_frame)
            frames += 1
            nbytes += len(line)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_call_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    max_frame = wl.max_frame  # (a local, as in split_call's loop)
    frames = nbytes = 0
    try:
        while True:
            line = await s.receive_until(b"\n", max_size=max_frame)
            frames += 1
            nbytes += len(line)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_call_exactly(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            header = await s.receive_exactly(4)
            payload = await s.receive_exactly(int.from_bytes(header, "big"))
            frames += 1
            nbytes += len(payload)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_call_frame(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``await receive_frame(LengthPrefixed(...))``: one awaited call per frame."""
    s = _buffered(stream, wl)
    codec = _codec(wl)
    frames = nbytes = 0
    try:
        while True:
            payload = await s.receive_frame(codec)
            frames += 1
            nbytes += len(payload)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_nowait_line(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``receive_line_nowait()`` while lines are buffered; on `trio.WouldBlock`
    one ``await receive_line()`` (which refills) and back to the fast path."""
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            try:
                line = s.receive_line_nowait(max_size=wl.max_frame)
            except trio.WouldBlock:
                line = await s.receive_line(max_size=wl.max_frame)
            frames += 1
            nbytes += len(line)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_nowait_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            try:
                line = s.receive_until_nowait(b"\n", max_size=wl.max_frame)
            except trio.WouldBlock:
                line = await s.receive_until(b"\n", max_size=wl.max_frame)
            frames += 1
            nbytes += len(line)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_nowait_exactly(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            try:
                header = s.receive_exactly_nowait(4)
            except trio.WouldBlock:
                header = await s.receive_exactly(4)
            size = int.from_bytes(header, "big")
            try:
                payload = s.receive_exactly_nowait(size)
            except trio.WouldBlock:
                payload = await s.receive_exactly(size)
            frames += 1
            nbytes += len(payload)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_iter_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for line in _buffered(stream, wl).lines(max_size=wl.max_frame):
        frames += 1
        nbytes += len(line)
    return frames, nbytes


async def ts_iter_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for line in _buffered(stream, wl).iter_until(b"\n", max_size=wl.max_frame):
        frames += 1
        nbytes += len(line)
    return frames, nbytes


async def ts_iter_frames(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``frames(LengthPrefixed(...))``: the framing codec's fast iterator."""
    frames = nbytes = 0
    s = _buffered(stream, wl)
    async for payload in s.frames(_codec(wl)):
        frames += 1
        nbytes += len(payload)
    return frames, nbytes


async def ts_batch_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``lines().batches()``: a list of every buffered line per step."""
    frames = nbytes = 0
    async for batch in _buffered(stream, wl).lines(max_size=wl.max_frame).batches():
        for line in batch:
            frames += 1
            nbytes += len(line)
    return frames, nbytes


async def ts_batch_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for batch in _buffered(stream, wl).iter_until(b"\n", max_size=wl.max_frame).batches():
        for line in batch:
            frames += 1
            nbytes += len(line)
    return frames, nbytes


async def ts_batch_frames(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    s = _buffered(stream, wl)
    async for batch in s.frames(_codec(wl)).batches():
        for payload in batch:
            frames += 1
            nbytes += len(payload)
    return frames, nbytes


async def tricycle_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """tricycle's only line API is TextReceiveStream (it decodes to str)."""
    text = TextReceiveStream(stream, "latin-1", newline="\n", chunk_size=wl.receive_size)
    frames = nbytes = 0
    while line := await text.receive_line(wl.max_frame):
        frames += 1
        nbytes += len(line) - 1  # an unterminated last line would miscount
    return frames, nbytes


async def tricycle_prefixed(stream: trio.abc.Stream, wl: Workload) -> Tally:
    buffered = BufferedReceiveStream(stream, chunk_size=wl.receive_size)
    frames = nbytes = 0
    while (header := await buffered.receive_all_or_none(4)) is not None:
        payload = await buffered.receive_exactly(int.from_bytes(header, "big"))
        frames += 1
        nbytes += len(payload)
    return frames, nbytes


# --------------------------------------------------------- asyncio receivers

AsyncioReader = Callable[[asyncio.StreamReader, Workload], Awaitable[Tally]]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run_on_loop(main: Callable[[], Awaitable[tuple[float, Tally]]], loop_factory: LoopFactory) -> tuple[float, Tally]:
    loop = loop_factory()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def feed_reader(reader: asyncio.StreamReader, chunks: list[bytes]) -> None:
    """Feed one chunk per event-loop iteration: the reader wakes for each."""
    for chunk in chunks:
        reader.feed_data(chunk)
        await asyncio.sleep(0)
    reader.feed_eof()


def on_asyncio(reader: AsyncioReader, loop_factory: LoopFactory) -> Runner:
    def run(wl: Workload, feed: Feed) -> tuple[float, Tally]:
        async def main() -> tuple[float, Tally]:
            if feed.conn is not None:
                stream, writer = await asyncio.open_connection(sock=feed.conn, limit=wl.max_frame)
                start = feed.go()
                tally = await reader(stream, wl)
                elapsed = clock() - start
                writer.close()
                await writer.wait_closed()
                return elapsed, tally
            stream = asyncio.StreamReader(limit=wl.max_frame)
            start = feed.go()
            feeder = asyncio.ensure_future(feed_reader(stream, feed.chunks))
            tally = await reader(stream, wl)
            elapsed = clock() - start
            await feeder
            return elapsed, tally

        return run_on_loop(main, loop_factory)

    return run


async def asyncio_readline(reader: asyncio.StreamReader, wl: Workload) -> Tally:
    frames = nbytes = 0
    while line := await reader.readline():
        frames += 1
        nbytes += len(line) - 1  # an unterminated last line would miscount
    return frames, nbytes


async def asyncio_readuntil(reader: asyncio.StreamReader, wl: Workload) -> Tally:
    """``readuntil(b"\\n")``: what ``readline`` calls, without its wrapper."""
    frames = nbytes = 0
    try:
        while True:
            line = await reader.readuntil(b"\n")
            frames += 1
            nbytes += len(line) - 1
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def asyncio_prefixed(reader: asyncio.StreamReader, wl: Workload) -> Tally:
    frames = nbytes = 0
    try:
        while True:
            header = await reader.readexactly(4)
            payload = await reader.readexactly(int.from_bytes(header, "big"))
            frames += 1
            nbytes += len(payload)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


# ----------------------------------------------------------- anyio receivers

AnyioReader = Callable[["BufferedByteReceiveStream", Workload], Awaitable[Tally]]


def on_anyio(reader: AnyioReader, backend: str) -> Runner:
    """TCP through ``SocketStream.from_socket``; in-process through a memory
    object stream of chunks (one chunk per ``receive()``, a checkpoint)."""

    def run(wl: Workload, feed: Feed) -> tuple[float, Tally]:
        async def main() -> tuple[float, Tally]:
            if feed.conn is not None:
                stream = BufferedByteReceiveStream(await anyio.abc.SocketStream.from_socket(feed.conn))
            else:
                send, receive = anyio.create_memory_object_stream[bytes](len(feed.chunks))
                with send:
                    for chunk in feed.chunks:
                        send.send_nowait(chunk)
                stream = BufferedByteReceiveStream(receive)
            async with stream:
                start = feed.go()
                tally = await reader(stream, wl)
                return clock() - start, tally

        return anyio.run(main, backend=backend)

    return run


async def anyio_lines(stream: BufferedByteReceiveStream, wl: Workload) -> Tally:
    frames = nbytes = 0
    try:
        while True:
            line = await stream.receive_until(b"\n", wl.max_frame)
            frames += 1
            nbytes += len(line)
    except anyio.IncompleteRead:
        if stream.buffer:
            raise
    return frames, nbytes


async def anyio_prefixed(stream: BufferedByteReceiveStream, wl: Workload) -> Tally:
    frames = nbytes = 0
    try:
        while True:
            header = await stream.receive_exactly(4)
            payload = await stream.receive_exactly(int.from_bytes(header, "big"))
            frames += 1
            nbytes += len(payload)
    except anyio.IncompleteRead:
        if stream.buffer:
            raise
    return frames, nbytes


# --------------------------------------------------------- tornado receivers

TornadoReader = Callable[["tornado.iostream.BaseIOStream", Workload], Awaitable[Tally]]

if PEERS["tornado"]:

    class ChunkIOStream(tornado.iostream.BaseIOStream):
        """An in-process tornado stream that delivers one chunk per event-loop
        wakeup: its "fd" is a pipe that is always readable, and every second
        read reports "would block", ending tornado's read loop."""

        def __init__(self, chunks: list[bytes], read_chunk_size: int) -> None:
            self._chunks: Iterator[bytes] = iter(chunks)
            self._blocked = False
            self._rfd, self._wfd = os.pipe()
            os.write(self._wfd, b"!")
            super().__init__(read_chunk_size=read_chunk_size)

        def fileno(self) -> int:
            return self._rfd

        def close_fd(self) -> None:
            os.close(self._rfd)
            os.close(self._wfd)

        def write_to_fd(self, data: memoryview) -> int:
            raise OSError("ChunkIOStream is receive-only")

        def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
            self._blocked = not self._blocked
            if not self._blocked:
                return None
            chunk = next(self._chunks, b"")
            buf[: len(chunk)] = chunk
            return len(chunk)


def on_tornado(reader: TornadoReader) -> Runner:
    def run(wl: Workload, feed: Feed) -> tuple[float, Tally]:
        async def main() -> tuple[float, Tally]:
            stream: tornado.iostream.BaseIOStream
            if feed.conn is not None:
                stream = tornado.iostream.IOStream(feed.conn, read_chunk_size=wl.receive_size)
            else:
                stream = ChunkIOStream(feed.chunks, wl.receive_size)
            start = feed.go()
            tally = await reader(stream, wl)
            elapsed = clock() - start
            stream.close()
            return elapsed, tally

        return run_on_loop(main, asyncio.new_event_loop)

    return run


async def tornado_lines(stream: tornado.iostream.BaseIOStream, wl: Workload) -> Tally:
    frames = nbytes = 0
    try:
        while True:
            line = await stream.read_until(b"\n", max_bytes=wl.max_frame)
            frames += 1
            nbytes += len(line) - 1
    except tornado.iostream.StreamClosedError:
        pass  # a truncated last frame would make the count wrong
    return frames, nbytes


async def tornado_prefixed(stream: tornado.iostream.BaseIOStream, wl: Workload) -> Tally:
    frames = nbytes = 0
    try:
        while True:
            header = await stream.read_bytes(4)
            payload = await stream.read_bytes(int.from_bytes(header, "big"))
            frames += 1
            nbytes += len(payload)
    except tornado.iostream.StreamClosedError:
        pass
    return frames, nbytes


# ------------------------------------------------------------------ registry

Entry = tuple[Runner, str]  # (runner, the API it exercises)
Picker = Callable[[Workload], Entry | None]


@dataclass(frozen=True)
class Method:
    """One row of the tables: ``pick`` gives its receiver for a workload
    (None: it does not apply there)."""

    name: str
    pick: Picker = lambda wl: None
    peer: str | None = None  # the peer this row measures (targets group its rows)
    small_tcp_reads: bool = True  # can it be told to read 1 KiB at a time from a socket?
    skipped: str | None = None

    def entry(self, wl: Workload) -> Entry | None:
        if wl.transport == "tcp" and wl.receive_size < 64 * KiB and not self.small_tcp_reads:
            return None
        return self.pick(wl)

    def applies(self, wl: Workload) -> bool:
        return self.skipped is not None or self.entry(wl) is not None


def by_kind(lines: Entry | None = None, prefixed: Entry | None = None, *, scaling: bool = True) -> Picker:
    """The lines receiver for line workloads, the prefixed one for the others;
    ``scaling=False``: not at the scaling workloads."""

    def pick(wl: Workload) -> Entry | None:
        if wl.scaling and not scaling:
            return None
        return lines if wl.kind == "lines" else prefixed

    return pick


SPLIT, CHECKPOINT, FIND, BYTES_SPLIT = "split", "split+checkpoint", "find", "bytes.split"
SPLIT_GEN, SPLIT_BATCHES, SPLIT_CALL, SPLIT_NOWAIT = "split gen", "split batches", "split call", "split nowait"
SPLIT_UNTIL, SPLIT_LINES_BATCHES, SPLIT_LINES_GEN = "split until", "split lines batches", "split lines gen"
TS_CALL_LINE, TS_CALL_UNTIL, TS_CALL_EXACTLY, TS_CALL_FRAME = (
    "ts call line",
    "ts call until",
    "ts call exactly",
    "ts call frame",
)
TS_NOWAIT_LINE, TS_NOWAIT_UNTIL, TS_NOWAIT_EXACTLY = "ts nowait line", "ts nowait until", "ts nowait exactly"
TS_ITER_LINES, TS_ITER_UNTIL, TS_ITER_FRAMES = "ts iter lines", "ts iter until", "ts iter frames"
TS_BATCH_LINES, TS_BATCH_UNTIL, TS_BATCH_FRAMES = "ts batch lines", "ts batch until", "ts batch frames"
# The triostream methods that read lines (the scaling workloads are lines).
TS_LINE_METHODS = (
    TS_CALL_LINE,
    TS_CALL_UNTIL,
    TS_NOWAIT_LINE,
    TS_NOWAIT_UNTIL,
    TS_ITER_LINES,
    TS_ITER_UNTIL,
    TS_BATCH_LINES,
    TS_BATCH_UNTIL,
)
TS_PREFIXED_METHODS = (TS_CALL_EXACTLY, TS_CALL_FRAME, TS_NOWAIT_EXACTLY, TS_ITER_FRAMES, TS_BATCH_FRAMES)
REFERENCES = (
    SPLIT,
    CHECKPOINT,
    FIND,
    BYTES_SPLIT,
    SPLIT_GEN,
    SPLIT_BATCHES,
    SPLIT_LINES_BATCHES,
    SPLIT_LINES_GEN,
    SPLIT_CALL,
    SPLIT_UNTIL,
    SPLIT_NOWAIT,
)


def optional(peer: str, make: Callable[[], list[Method]], names: Sequence[str]) -> list[Method]:
    """The peer's methods, or placeholder rows when the peer is not installed."""
    if PEERS[peer]:
        return make()
    return [Method(name, peer=peer, skipped="skipped (not installed)") for name in names]


def build_methods(anyio_backend: str) -> list[Method]:
    split_entry = (on_trio(split_lines), "receive_some + bytes.split")
    find_entry = (on_trio(find_lines), "receive_some + bytes.find, pieces joined")
    prefixed_entry = (on_trio(split_prefixed), "receive_some + struct.unpack_from")
    gen_entry = (on_trio(split_gen), "split in an async generator, a frame a step")
    batches_entry = (on_trio(split_batches), "split in an async generator, a read a step")
    call_entry = (on_trio(split_call), "split behind an awaited method per frame")
    until_entry = (on_trio(split_until), "split behind receive_until's contract, per frame")
    lines_batches_entry = (on_trio(split_lines_batches), "split batches behind lines().batches()'s contract")
    lines_gen_entry = (on_trio(split_lines_gen), "split lines batches a frame a step: lines()'s contract")
    nowait_entry = (on_trio(split_nowait), "split behind a _nowait method, awaited on WouldBlock")

    def split(wl: Workload) -> Entry:
        if wl.kind == "prefixed":
            return prefixed_entry
        return find_entry if wl.split_by_find else split_entry

    def checkpoint(wl: Workload) -> Entry | None:
        if wl.scaling:
            return None
        if wl.kind == "prefixed":
            return (on_trio(split_prefixed_checkpoint), "split (unpack_from) + checkpoint/frame")
        if wl.split_by_find:
            return (on_trio(find_lines_checkpoint), "split (find) + checkpoint/frame")
        return (on_trio(split_lines_checkpoint), "split (bytes.split) + checkpoint/frame")

    def other_loop(loop_uses_find: bool) -> Picker:
        """The line loop the split reference does not use (fixed workloads)."""
        entry = find_entry if loop_uses_find else split_entry
        return lambda wl: (
            entry if wl.kind == "lines" and not wl.scaling and wl.split_by_find != loop_uses_find else None
        )

    trio_methods = [
        Method(SPLIT, split),
        Method(CHECKPOINT, checkpoint),
        Method(FIND, other_loop(True)),
        Method(BYTES_SPLIT, other_loop(False)),
        Method(SPLIT_GEN, by_kind(gen_entry, gen_entry, scaling=False)),
        Method(SPLIT_BATCHES, by_kind(batches_entry, batches_entry, scaling=False)),
        Method(SPLIT_CALL, by_kind(call_entry, call_entry, scaling=False)),
        Method(SPLIT_UNTIL, by_kind(until_entry, None, scaling=False)),
        Method(SPLIT_LINES_BATCHES, by_kind(lines_batches_entry, None, scaling=False)),
        Method(SPLIT_LINES_GEN, by_kind(lines_gen_entry, None, scaling=False)),
        Method(SPLIT_NOWAIT, by_kind(nowait_entry, nowait_entry, scaling=False)),
        Method(TS_CALL_LINE, by_kind((on_trio(ts_call_line), "await receive_line()"))),
        Method(TS_CALL_UNTIL, by_kind((on_trio(ts_call_until), "await receive_until(b'\\n')"))),
        Method(TS_CALL_EXACTLY, by_kind(None, (on_trio(ts_call_exactly), "await receive_exactly() x2"))),
        Method(TS_CALL_FRAME, by_kind(None, (on_trio(ts_call_frame), "await receive_frame(LengthPrefixed)"))),
        Method(TS_NOWAIT_LINE, by_kind((on_trio(ts_nowait_line), "receive_line_nowait()"))),
        Method(TS_NOWAIT_UNTIL, by_kind((on_trio(ts_nowait_until), "receive_until_nowait(b'\\n')"))),
        Method(TS_NOWAIT_EXACTLY, by_kind(None, (on_trio(ts_nowait_exactly), "receive_exactly_nowait() x2"))),
        Method(TS_ITER_LINES, by_kind((on_trio(ts_iter_lines), "async for in lines()"))),
        Method(TS_ITER_UNTIL, by_kind((on_trio(ts_iter_until), "async for in iter_until(b'\\n')"))),
        Method(TS_ITER_FRAMES, by_kind(None, (on_trio(ts_iter_frames), "async for in frames(LengthPrefixed)"))),
        Method(TS_BATCH_LINES, by_kind((on_trio(ts_batch_lines), "async for in lines().batches()"))),
        Method(TS_BATCH_UNTIL, by_kind((on_trio(ts_batch_until), "async for in iter_until(b'\\n').batches()"))),
        Method(TS_BATCH_FRAMES, by_kind(None, (on_trio(ts_batch_frames), "frames(LengthPrefixed).batches()"))),
    ]
    anyio_name = f"anyio ({anyio_backend})"
    peers = [
        *optional(
            "anyio",
            lambda: [
                Method(
                    anyio_name,
                    by_kind(
                        (on_anyio(anyio_lines, anyio_backend), "BufferedByteReceiveStream.receive_until"),
                        (on_anyio(anyio_prefixed, anyio_backend), "BufferedByteReceiveStream.receive_exactly"),
                    ),
                    peer="anyio",
                    small_tcp_reads=False,
                )
            ],
            [anyio_name],
        ),
        *asyncio_methods("asyncio", asyncio.new_event_loop),
        *optional("uvloop", lambda: asyncio_methods("uvloop", uvloop.new_event_loop), ["uvloop", "uvloop readuntil"]),
        *optional(
            "tornado",
            lambda: [
                Method(
                    "tornado",
                    by_kind(
                        (on_tornado(tornado_lines), "IOStream.read_until"),
                        (on_tornado(tornado_prefixed), "IOStream.read_bytes"),
                    ),
                    peer="tornado",
                )
            ],
            ["tornado"],
        ),
        *optional(
            "tricycle",
            lambda: [
                Method(
                    "tricycle",
                    by_kind(
                        (on_trio(tricycle_lines), "TextReceiveStream.receive_line"),
                        (on_trio(tricycle_prefixed), "BufferedReceiveStream.receive_exactly"),
                    ),
                    peer="tricycle",
                )
            ],
            ["tricycle"],
        ),
    ]
    return trio_methods + peers


def asyncio_methods(peer: str, loop_factory: LoopFactory) -> list[Method]:
    """StreamReader on an event loop: ``readline`` / ``readexactly``, and
    ``readuntil`` for lines."""
    return [
        Method(
            peer,
            by_kind(
                (on_asyncio(asyncio_readline, loop_factory), "StreamReader.readline"),
                (on_asyncio(asyncio_prefixed, loop_factory), "StreamReader.readexactly"),
            ),
            peer=peer,
            small_tcp_reads=False,
        ),
        Method(
            f"{peer} readuntil",
            by_kind((on_asyncio(asyncio_readuntil, loop_factory), "StreamReader.readuntil(b'\\n')")),
            peer=peer,
            small_tcp_reads=False,
        ),
    ]


# --------------------------------------------------------------- measuring


@dataclass
class Results:
    """Times per (workload, method) and round; ratios are taken within a round."""

    times: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    checkpoint_ns: list[float] = field(default_factory=list)

    def series(self, wl: str, methods: str | Sequence[str]) -> dict[int, float]:
        """round -> time; for several methods (a peer's APIs) the fastest of
        them in each round where all of them ran."""
        if isinstance(methods, str):
            return self.times.get((wl, methods), {})
        runs = [self.times.get((wl, m), {}) for m in methods]
        runs = [r for r in runs if r]
        if not runs:
            return {}
        rounds = set.intersection(*(set(r) for r in runs))
        return {k: min(r[k] for r in runs) for k in sorted(rounds)}

    def median(self, wl: str, method: str) -> float | None:
        times = self.series(wl, method)
        return statistics.median(times.values()) if times else None

    def best(self, wl: str, method: str) -> float | None:
        times = self.series(wl, method)
        return min(times.values()) if times else None

    def round_ratios(self, wl: str, method: str | Sequence[str], reference: str | Sequence[str]) -> list[float]:
        """Per round: the reference's time / the method's time (a throughput ratio)."""
        t, ref = self.series(wl, method), self.series(wl, reference)
        return [ref[k] / t[k] for k in t if k in ref]

    def ratio(self, wl: str, method: str | Sequence[str], reference: str | Sequence[str]) -> float | None:
        """The median of the per-round throughput ratios."""
        ratios = self.round_ratios(wl, method, reference)
        return statistics.median(ratios) if ratios else None


CHECKPOINT_WORKLOAD = "lines-16B"


def measure_checkpoint(n: int) -> float:
    """Nanoseconds per ``await trio.lowlevel.checkpoint()`` in a bare loop."""

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await trio.lowlevel.checkpoint()
        return (time.perf_counter() - start) / n * 1e9

    return trio.run(main)


def run_round(rnd: int, workloads: list[Workload], methods: list[Method], harness: Harness, results: Results) -> None:
    """Every workload once, every method once per workload (``reps_factor``
    times for the scaling and large-frame workloads, the fastest kept), in a shuffled order
    that differs per workload and round (seeded: the same in every run)."""
    for w, wl in enumerate(workloads):
        entries = [(m.name, e) for m in methods if m.skipped is None and (e := m.entry(wl)) is not None]
        for rep in range(wl.reps_factor):
            random.Random(1000 * rnd + 10 * w + rep).shuffle(entries)
            for name, (runner, _) in entries:
                key = (wl.name, name)
                if key in results.errors:
                    continue
                try:
                    elapsed = harness.run(runner, wl)
                except Exception as exc:
                    results.errors[key] = f"{type(exc).__name__}: {exc}"
                    continue
                per_round = results.times.setdefault(key, {})
                per_round[rnd] = min(elapsed, per_round.get(rnd, elapsed))
        if wl.name == CHECKPOINT_WORKLOAD:
            results.checkpoint_ns.append(measure_checkpoint(max(wl.count // 4, 10_000)))


# ----------------------------------------------------------------- reporting


def print_workload(wl: Workload, methods: list[Method], rounds: int, results: Results) -> None:
    runs = f"{rounds} round(s)" + (f" x {wl.reps_factor} runs, fastest per round" if wl.reps_factor > 1 else "")
    print(f"\n{wl.name}: {wl.describe()}; {runs}")
    # ns per frame; for the one-line scaling workloads, ns per 1 KiB transport read.
    per, per_label = (wl.reads, "ns/read") if wl.scaling else (wl.count, "ns/frame")
    header = (
        f"  {'method':<20} {'api':<42} {'median':>10} {'best':>10} {'MB/s':>7} {per_label:>9}"
        f" {'x split':>8} {'rounds':>11}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for m in methods:
        if not m.applies(wl):
            continue
        entry = m.entry(wl)
        api = entry[1] if entry else ""
        key = (wl.name, m.name)
        median, best = results.median(*key), results.best(*key)
        if m.skipped is not None or key in results.errors or median is None or best is None:
            note = m.skipped or f"ERROR {results.errors.get(key, 'not measured')}"
            print(f"  {m.name:<20} {api:<42} {note}")
            continue
        ratios = results.round_ratios(wl.name, m.name, SPLIT)
        ratio = f"{statistics.median(ratios):7.2f}x" if ratios else f"{'n/a':>8}"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
        mbps = wl.wire_bytes / median / 1e6
        ns = median / per * 1e9
        print(
            f"  {m.name:<20} {api:<42} {median * 1e3:7.1f} ms {best * 1e3:7.1f} ms {mbps:7.0f} {ns:9.0f}"
            f" {ratio} {spread:>11}"
        )


def scaling_pairs(workloads: list[Workload]) -> dict[str, tuple[Workload, Workload]]:
    """group -> (small line, big line) for every scaling group that was run whole."""
    groups: dict[str, list[Workload]] = {}
    for wl in workloads:
        if wl.scaling:
            groups.setdefault(wl.group, []).append(wl)
    pairs: dict[str, tuple[Workload, Workload]] = {}
    for group, members in groups.items():
        if len(members) == 2:
            small, big = sorted(members, key=lambda w: w.body)
            pairs[group] = (small, big)
    return pairs


def scaling_ratio(pair: tuple[Workload, Workload], method: str, results: Results) -> float | None:
    """The median over rounds of t(big line) / t(small line)."""
    small, big = (results.series(w.name, method) for w in pair)
    ratios = [big[k] / small[k] for k in big if k in small]
    return statistics.median(ratios) if ratios else None


def print_scaling(workloads: list[Workload], methods: list[Method], results: Results) -> None:
    pairs = scaling_pairs(workloads)
    if not pairs:
        return
    print("\nscaling: t(big line) / t(small line), one line 16x longer in 1 KiB reads (16 = linear, 256 = quadratic);")
    print("median of the per-round ratios")
    groups = sorted(pairs)
    print(f"  {'method':<20} " + " ".join(f"{g:>12}" for g in groups))
    for m in methods:
        cells = [scaling_ratio(pairs[g], m.name, results) for g in groups]
        if any(c is not None for c in cells):
            print(f"  {m.name:<20} " + " ".join(f"{c:12.1f}" if c is not None else f"{'-':>12}" for c in cells))


def print_costs(workloads: list[Workload], methods: list[Method], results: Results) -> None:
    """ns per frame (fixed workloads) and per 1 KiB transport read (scaling),
    from the median run, for the reference loops and triostream."""
    rows = [m.name for m in methods if m.name in REFERENCES or m.name.startswith("ts ")]
    for title, wls, per in (
        ("per-frame cost: ns per frame (median run)", [w for w in workloads if not w.scaling], "count"),
        ("scaling cost: ns per transport read of 1 KiB (median run)", [w for w in workloads if w.scaling], "reads"),
    ):
        if not wls:
            continue
        print(f"\n{title}")
        print(f"  {'method':<20} " + " ".join(f"{w.name:>16}" for w in wls))
        for name in rows:
            cells = []
            for w in wls:
                t = results.median(w.name, name)
                n = w.count if per == "count" else w.reads
                cells.append(f"{t / n * 1e9:16.0f}" if t else f"{'-':>16}")
            if any(c.strip() != "-" for c in cells):
                print(f"  {name:<20} " + " ".join(cells))
    if results.checkpoint_ns:
        print(
            f"\na bare `await trio.lowlevel.checkpoint()` loop: {statistics.median(results.checkpoint_ns):.0f} ns"
            " per call (median of the rounds)"
        )


@dataclass
class Target:
    label: str
    value: float | None
    limit: float
    higher_is_better: bool = True
    unit: str = "x"
    skipped: str | None = None
    # The same ratio for the hand-written floor of the API measured (`split
    # gen`, `split batches`, `split call` or `split until`, `split nowait`):
    # (floor's name, its ratio).
    floor: tuple[str, float | None] | None = None

    @property
    def floor_misses(self) -> bool:
        """The target failed and its floor misses it too in this run: out
        of reach here for any pure-Python design of that API."""
        return (
            self.passed is False and self.floor is not None and self.floor[1] is not None and self.floor[1] < self.limit
        )

    @property
    def passed(self) -> bool | None:
        if self.value is None or self.skipped is not None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        goal = f"(target {op} {self.limit:g}{self.unit})"
        if self.skipped is not None:
            return f"  skip  {self.label:<60} {self.skipped} {goal}"
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        shown = "not measured" if self.value is None else f"{fmt_figure(self.value, self.limit, op)}{self.unit}"
        line = f"  {verdict}  {self.label:<60} {shown:>12} {goal}"
        if self.floor is not None and self.floor[1] is not None:
            line += f"  floor {self.floor[0]} {fmt_figure(self.floor[1], self.limit, op)}x"
            if self.floor_misses:
                line += ": misses it too"
        return line


# Fixed workload -> minimum of the batch iterator (lines().batches() /
# frames().batches()) against split.
BATCH_TARGETS = {
    "lines-16B": 0.80,
    "lines-128B": 0.80,
    "lines-1KiB": 0.90,
    "lines-16KiB": 0.95,
    "prefixed-64B": 0.95,
    "prefixed-4KiB": 0.95,
}
# ... of the per-frame iterators (lines(), iter_until(), frames()) against split.
ITER_TARGETS = {"lines-16B": 0.25, "lines-1KiB": 0.75, "lines-16KiB": 0.90, "prefixed-4KiB": 0.90}
PEER_NAMES = ("anyio", "asyncio", "uvloop", "tornado", "tricycle")


def compute_targets(workloads: list[Workload], methods: list[Method], results: Results) -> list[Target]:
    """The project's performance targets, for the workloads that were run.
    Every ratio is a throughput ratio (reference time / method time), the
    median of the per-round ratios."""
    targets: list[Target] = []
    fixed = [w for w in workloads if not w.scaling]

    def ratio_target(
        label: str, wl: str, method: str, ref: str | Sequence[str], limit: float, floor: str | None = None
    ) -> Target:
        return Target(
            label,
            results.ratio(wl, method, ref),
            limit,
            floor=None if floor is None else (floor, results.ratio(wl, floor, ref)),
        )

    # 1. Batches against the split loop. Their floor: for lines `split lines
    # batches` (`_LinesBatchFloor`: lines().batches()'s contract; `split
    # batches` is in the tables), for frames `split batches`.
    for wl in fixed:
        if wl.name in BATCH_TARGETS:
            m, floor = (TS_BATCH_LINES, SPLIT_LINES_BATCHES) if wl.kind == "lines" else (TS_BATCH_FRAMES, SPLIT_BATCHES)
            targets.append(ratio_target(f"{m} vs split at {wl.name}", wl.name, m, SPLIT, BATCH_TARGETS[wl.name], floor))

    # 2. Per-frame iterators: against split, and ahead of every peer.
    # Their floor: for lines `split lines gen` (`_LinesGenFloor`: lines()'s
    # contract; `split gen` is in the tables), for frames `split gen`.
    for wl in fixed:
        if wl.name in ITER_TARGETS:
            floor = SPLIT_LINES_GEN if wl.kind == "lines" else SPLIT_GEN
            for m in (TS_ITER_LINES, TS_ITER_UNTIL) if wl.kind == "lines" else (TS_ITER_FRAMES,):
                targets.append(
                    ratio_target(f"{m} vs split at {wl.name}", wl.name, m, SPLIT, ITER_TARGETS[wl.name], floor)
                )
    for wl in fixed:
        m = TS_ITER_LINES if wl.kind == "lines" else TS_ITER_FRAMES
        for peer in PEER_NAMES:
            rows = [p.name for p in methods if p.peer == peer and (p.skipped is not None or p.entry(wl))]
            label = f"{m} vs {peer} at {wl.name}"
            if any(p.peer == peer and p.skipped is not None for p in methods):
                targets.append(Target(label, None, 1.0, skipped="skipped (peer not installed)"))
            elif rows:
                # A peer with two line APIs (asyncio readline / readuntil): its
                # faster one, per round. The floor: the generator over the
                # split loop against the same peer.
                targets.append(ratio_target(label, wl.name, m, rows, 1.0, SPLIT_GEN))
    if any(w.name == "prefixed-64B" for w in fixed):
        label = f"{TS_ITER_FRAMES} vs uvloop at prefixed-64B"
        if PEERS["uvloop"]:
            targets.append(ratio_target(label, "prefixed-64B", TS_ITER_FRAMES, "uvloop", 1.5, SPLIT_GEN))
        else:
            targets.append(Target(label, None, 1.5, skipped="skipped (peer not installed)"))

    # 3. One long line in 1 KiB reads: against split, and linear.
    for _, big in scaling_pairs(workloads).values():
        for m in TS_LINE_METHODS:
            targets.append(ratio_target(f"{m} vs split at {big.name}", big.name, m, SPLIT, 0.90))
    for pair in scaling_pairs(workloads).values():
        for m in TS_LINE_METHODS:
            ratio = scaling_ratio(pair, m, results)
            targets.append(Target(f"{m} t({pair[1].name})/t({pair[0].name})", ratio, 17, False, ""))

    # 4. Per-call methods: against one checkpoint per frame, and anyio.
    # `ts call exactly` is two awaited calls per frame (header, body), two
    # checkpoints against the reference's one: it is reported, not judged
    # (the per-call method for one length-prefixed frame is receive_frame).
    # Their floor: for lines `split until` (`_UntilFloor`: receive_until's
    # contract; `split call` is in the tables), for frames `split call`.
    for wl in fixed:
        calls = (TS_CALL_LINE, TS_CALL_UNTIL) if wl.kind == "lines" else (TS_CALL_FRAME,)
        floor = SPLIT_UNTIL if wl.kind == "lines" else SPLIT_CALL
        for m in calls:
            targets.append(ratio_target(f"{m} vs split+checkpoint at {wl.name}", wl.name, m, CHECKPOINT, 0.90, floor))
    anyio_rows = [m.name for m in methods if m.peer == "anyio"]
    for wl in fixed:
        limit = 1.5 if wl.name == "lines-16B" else 1.0
        for m in (TS_NOWAIT_LINE, TS_NOWAIT_UNTIL) if wl.kind == "lines" else (TS_NOWAIT_EXACTLY,):
            label = f"{m} vs anyio at {wl.name}"
            if not PEERS["anyio"]:
                targets.append(Target(label, None, limit, skipped="skipped (peer not installed)"))
            else:
                targets.append(ratio_target(label, wl.name, m, anyio_rows, limit, SPLIT_NOWAIT))
    return targets


def print_summary(workloads: list[Workload], methods: list[Method], results: Results) -> list[Target]:
    print_scaling(workloads, methods, results)
    print_costs(workloads, methods, results)
    targets = compute_targets(workloads, methods, results)
    passed = sum(t.passed is True for t in targets)
    failed = sum(t.passed is False for t in targets)
    print(f"\ntargets: {passed} pass, {failed} fail, {len(targets) - passed - failed} skipped or not measured")
    missed = sum(t.floor_misses for t in targets)
    print(f"({missed} of the failures are missed by their hand-written floor too, in this run)")
    print("(median of the per-round throughput ratios: reference time / method time, within a round)")
    for target in targets:
        print(target.line())
    print(f"  (no target for {TS_CALL_EXACTLY}: two awaited calls per frame against one checkpoint per frame)")
    return targets


# ------------------------------------------------------------------ --json

JSON_FORMAT = 1  # bumped when a key changes meaning; readers such as plot_receive.py check it


def cpu_model() -> str | None:
    """The CPU's name from /proc/cpuinfo (Linux), None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def ratio_summary(ratios: list[float]) -> dict[str, object] | None:
    """The median of the per-round ratios, its range and the ratios themselves."""
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def method_json(wl: Workload, m: Method, rounds: int, results: Results) -> dict[str, object]:
    """One row of a workload table, with the numbers the table prints (and the
    per-round times they come from, so that other summaries can be derived)."""
    entry = m.entry(wl)
    key = (wl.name, m.name)
    series = results.series(*key)
    median, best = results.median(*key), results.best(*key)
    per = wl.reads if wl.scaling else wl.count
    ns = median / per * 1e9 if median is not None else None
    row: dict[str, object] = {
        "name": m.name,
        "api": entry[1] if entry else None,
        "peer": m.peer,
        "skipped": m.skipped,
        "error": results.errors.get(key),
        "times_s": [series.get(rnd) for rnd in range(rounds)],
        "median_s": median,
        "best_s": best,
        "mb_per_s": wl.wire_bytes / median / 1e6 if median else None,
        "ns_per_frame": None if wl.scaling else ns,
        "ns_per_read": ns if wl.scaling else None,
        "x_split": ratio_summary(results.round_ratios(wl.name, m.name, SPLIT)),
    }
    if results.series(wl.name, CHECKPOINT):
        row["x_split_checkpoint"] = ratio_summary(results.round_ratios(wl.name, m.name, CHECKPOINT))
    return row


def results_json(
    args: argparse.Namespace,
    argv: list[str] | None,
    workloads: list[Workload],
    methods: list[Method],
    rounds: int,
    results: Results,
    targets: list[Target],
    pinned: str,
    elapsed: float,
) -> dict[str, object]:
    """Everything the run printed, as data: what ran where (so that a page
    built from it can say so), per workload and method the table's figures,
    the scaling ratios, the checkpoint cost and the target verdicts."""
    command = [sys.executable, *(sys.argv if argv is None else [os.path.relpath(__file__), *argv])]
    loop = asyncio.new_event_loop()
    default_loop = type(loop).__name__
    loop.close()
    pairs = scaling_pairs(workloads)
    passed = sum(t.passed is True for t in targets)
    failed = sum(t.passed is False for t in targets)
    return {
        "format": JSON_FORMAT,
        "metadata": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(command),
            "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "trio": trio.__version__,
            "triostream": triostream.__version__,
            "peers": dict(PEERS),
            "asyncio_default_loop": default_loop,
            "anyio_backend": args.anyio_backend,
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_model": cpu_model()},
            "pinned": pinned or None,
            "clock": args.clock,
            "rounds": rounds,
            "quick": args.quick,
            "only": args.only,
            "split_max_frame": SPLIT_MAX_FRAME,
            "duration_s": elapsed,
        },
        "workloads": [
            {
                "name": wl.name,
                "group": wl.group,
                "kind": wl.kind,
                "transport": wl.transport,
                "frame_size": wl.frame_size,
                "count": wl.count,
                "wire_bytes": wl.wire_bytes,
                "receive_size": wl.receive_size,
                "reads": wl.reads,
                "runs_per_round": wl.reps_factor,
                "description": wl.describe(),
                "methods": [method_json(wl, m, rounds, results) for m in methods if m.applies(wl)],
            }
            for wl in workloads
        ],
        "scaling": {
            group: {
                "small": pair[0].name,
                "big": pair[1].name,
                "ratios": {
                    m.name: ratio for m in methods if (ratio := scaling_ratio(pair, m.name, results)) is not None
                },
            }
            for group, pair in sorted(pairs.items())
        },
        "checkpoint_ns": statistics.median(results.checkpoint_ns) if results.checkpoint_ns else None,
        "targets": [
            {
                "name": t.label,
                "figure": t.value,
                "target": t.limit,
                "op": ">=" if t.higher_is_better else "<=",
                "unit": t.unit,
                "passed": t.passed,
                "skipped": t.skipped,
                "floor": None if t.floor is None else {"method": t.floor[0], "figure": t.floor[1]},
                "floor_misses": t.floor_misses,
            }
            for t in targets
        ],
        "summary": {"passed": passed, "failed": failed, "other": len(targets) - passed - failed},
    }


def write_json(path: str, data: dict[str, object]) -> None:
    """Write ``data`` to ``path`` (its directory is created), then say so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"results written to {path}")


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="1/8 of the payloads, 64 KiB/1 MiB scaling lines, 3 rounds: under 60 s"
    )
    parser.add_argument(
        "--rounds",
        "--reps",
        dest="rounds",
        type=int,
        metavar="N",
        help="interleaved rounds, every method once per workload in each (default 7, quick 3)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="WORKLOAD",
        help="a workload name (lines-16B), group (scale-mem) or kind (lines, prefixed, scale); repeatable",
    )
    parser.add_argument("--anyio-backend", choices=("asyncio", "trio"), default="asyncio", help="default asyncio")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--no-pin", action="store_true", help="leave receiver and sender to the scheduler")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time receivers by the wall clock (default) or by the receiving thread's CPU time",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="after the run, write its metadata, figures and target verdicts to PATH as JSON"
    )
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sender:
        sender_main()
        return 0
    rounds: int = args.rounds or (3 if args.quick else 7)
    global clock
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    workloads = make_workloads(args.quick)
    if args.only:
        workloads = [w for w in workloads if any(w.matches(s) for s in args.only)]
        if not workloads:
            print(f"no workload matches {args.only}", file=sys.stderr)
            return 2
    methods = build_methods(args.anyio_backend)
    peers = ", ".join(f"{name} {ver or 'skipped (not installed)'}" for name, ver in PEERS.items())
    where = os.path.dirname(os.path.abspath(triostream.__file__))
    loop = asyncio.new_event_loop()
    default_loop = type(loop).__name__
    loop.close()
    print(f"triostream {triostream.__version__} ({where}), Python {sys.version.split()[0]}, trio {trio.__version__}")
    print(f"peers: {peers}; asyncio's default loop: {default_loop}; anyio backend: {args.anyio_backend}")
    print(f"{rounds} interleaved round(s): each runs every method once per workload, in a shuffled order")
    what = "the receiving thread's CPU time" if args.clock == "cpu" else "wall time"
    print(f"times: {what}, receive only (the clock starts when the sender is told to go); 'x split' =")
    print("split's time / the method's time in the same round, median over rounds ('rounds' = lowest-highest);")
    print(f"MB/s and ns/frame from the median run; split cuts lines of up to {SPLIT_MAX_FRAME} B with bytes.split,")
    print("longer ones with find")
    results = Results()
    harness = Harness(pin=not args.no_pin)
    print(f"pinned: {harness.pinned}" if harness.pinned else "not pinned")
    started = time.perf_counter()
    try:
        for rnd in range(rounds):
            round_start = time.perf_counter()
            run_round(rnd, workloads, methods, harness, results)
            print(f"round {rnd + 1}/{rounds}: {time.perf_counter() - round_start:.1f} s", flush=True)
    finally:
        harness.close()
    for wl in workloads:
        print_workload(wl, methods, rounds, results)
    targets = print_summary(workloads, methods, results)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.1f} s")
    if args.json:
        data = results_json(args, argv, workloads, methods, rounds, results, targets, harness.pinned or "", elapsed)
        write_json(args.json, data)
    if results.errors:
        print(f"{len(results.errors)} receiver(s) failed; see ERROR rows above")
        return 2
    if args.check and any(t.passed is False for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
