"""Receive-side benchmark: triostream against a hand-written loop and its peers.

Every receiver reads the same payload and counts its frames and bytes; a run
whose count is wrong is reported as an error, so a broken receiver cannot look
fast. Over TCP the sender is a separate process (a blocking socket that
connects to 127.0.0.1, waits for a one-byte "go" and sends a pre-built
payload); the clock runs from the "go" to the receiver's last frame.

Run ``python benchmarks/bench_receive.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Literal

import trio

if importlib.util.find_spec("triostream") is None:  # run from a checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import triostream
from triostream import BufferedStream, IncompleteReadError, LengthPrefixed

PEERS: dict[str, str | None] = {}  # peer -> version, or None when it is not installed

try:
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream

    PEERS["anyio"] = version("anyio")
except ImportError:  # pragma: no cover
    PEERS["anyio"] = None

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
    reps_factor: int = 1  # runs per method per repetition (more for the short, noisy scaling runs)

    @property
    def frame_size(self) -> int:
        return self.body + (1 if self.kind == "lines" else 4)

    @property
    def wire_bytes(self) -> int:
        return self.count * self.frame_size

    @property
    def expected(self) -> Tally:
        return self.count, self.count * self.body

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


def make_workloads(quick: bool) -> list[Workload]:
    div = 8 if quick else 1
    fixed = [
        Workload("lines-16B", "lines", "lines", 15, 262_144 // div),
        Workload("lines-128B", "lines", "lines", 127, 131_072 // div),
        Workload("lines-1KiB", "lines", "lines", 1023, 32_768 // div),
        Workload("lines-16KiB", "lines", "lines", 16383, 2048 // div),
        Workload("prefixed-64B", "prefixed", "prefixed", 64, 65_536 // div),
        Workload("prefixed-4KiB", "prefixed", "prefixed", 4096, 4096 // div),
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
        return time.perf_counter()


Runner = Callable[[Workload, Feed], tuple[float, Tally]]


class Harness:
    """The listening socket, the sender process and the in-process payloads."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(60)
        self.port = self.listener.getsockname()[1]
        self.sender = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--sender"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._chunks: tuple[Workload, list[bytes]] | None = None

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
                return time.perf_counter() - start, tally

        return trio.run(main)

    return run


async def baseline_lines(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """The pure-Python limit: split each chunk with ``bytes.find``; keep an
    unfinished line as a list of pieces (joined once, so long lines stay linear)."""
    frames = nbytes = 0
    pending: list[bytes | bytearray] = []
    while data := await stream.receive_some(wl.receive_size):
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


async def baseline_prefixed(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """The pure-Python limit for 4-byte big-endian length prefixes."""
    frames = nbytes = 0
    buf: bytes | bytearray = b""
    while data := await stream.receive_some(wl.receive_size):
        buf = buf + data if buf else data
        pos, size = 0, len(buf)
        while pos + 4 <= size:
            end = pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
            if end > size:
                break
            payload = buf[pos + 4 : end]
            frames += 1
            nbytes += len(payload)
            pos = end
        buf = buf[pos:]
    return frames, nbytes


def _buffered(stream: trio.abc.Stream, wl: Workload) -> BufferedStream:
    return BufferedStream(stream, max_buffer_size=wl.max_frame, receive_size=wl.receive_size)


async def ts_call_line(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            line = await s.receive_line()
            frames += 1
            nbytes += len(line)
    except IncompleteReadError as exc:
        if exc.partial:
            raise
    return frames, nbytes


async def ts_call_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            line = await s.receive_until(b"\n")
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


async def ts_nowait_line(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``receive_line_nowait()`` while lines are buffered; on `trio.WouldBlock`
    one ``await receive_line()`` (which refills) and back to the fast path."""
    s = _buffered(stream, wl)
    frames = nbytes = 0
    try:
        while True:
            try:
                line = s.receive_line_nowait()
            except trio.WouldBlock:
                line = await s.receive_line()
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
                line = s.receive_until_nowait(b"\n")
            except trio.WouldBlock:
                line = await s.receive_until(b"\n")
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
    async for line in _buffered(stream, wl).lines():
        frames += 1
        nbytes += len(line)
    return frames, nbytes


async def ts_iter_frames(stream: trio.abc.Stream, wl: Workload) -> Tally:
    """``frames(LengthPrefixed(...))``: the framing codec's fast iterator."""
    frames = nbytes = 0
    s = _buffered(stream, wl)
    async for payload in s.frames(LengthPrefixed(s.max_buffer_size - 4)):
        frames += 1
        nbytes += len(payload)
    return frames, nbytes


async def ts_iter_until(stream: trio.abc.Stream, wl: Workload) -> Tally:
    frames = nbytes = 0
    async for line in _buffered(stream, wl).iter_until(b"\n"):
        frames += 1
        nbytes += len(line)
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
                elapsed = time.perf_counter() - start
                writer.close()
                await writer.wait_closed()
                return elapsed, tally
            stream = asyncio.StreamReader(limit=wl.max_frame)
            start = feed.go()
            feeder = asyncio.ensure_future(feed_reader(stream, feed.chunks))
            tally = await reader(stream, wl)
            elapsed = time.perf_counter() - start
            await feeder
            return elapsed, tally

        return run_on_loop(main, loop_factory)

    return run


async def asyncio_lines(reader: asyncio.StreamReader, wl: Workload) -> Tally:
    frames = nbytes = 0
    while line := await reader.readline():
        frames += 1
        nbytes += len(line) - 1  # an unterminated last line would miscount
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
                return time.perf_counter() - start, tally

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
            elapsed = time.perf_counter() - start
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


@dataclass(frozen=True)
class Method:
    name: str
    lines: Entry | None = None
    prefixed: Entry | None = None
    small_tcp_reads: bool = True  # can it be told to read 1 KiB at a time from a socket?
    skipped: str | None = None

    def entry(self, wl: Workload) -> Entry | None:
        if wl.transport == "tcp" and wl.receive_size < 64 * KiB and not self.small_tcp_reads:
            return None
        return self.lines if wl.kind == "lines" else self.prefixed

    def applies(self, wl: Workload) -> bool:
        return self.skipped is not None or self.entry(wl) is not None


BASELINE = "baseline"
TS_CALL, TS_CALL_UNTIL = "triostream call", "triostream call-until"
TS_NOWAIT, TS_NOWAIT_UNTIL = "triostream nowait", "triostream nowait-until"
TS_ITER, TS_ITER_UNTIL = "triostream iter", "triostream iter-until"
TRIOSTREAM_METHODS = (TS_CALL, TS_CALL_UNTIL, TS_NOWAIT, TS_NOWAIT_UNTIL, TS_ITER, TS_ITER_UNTIL)


def optional(peer: str, make: Callable[[], Method]) -> Method:
    """The peer's method, or a placeholder row when the peer is not installed."""
    return make() if PEERS[peer] else Method(peer, skipped="skipped (not installed)")


def build_methods(anyio_backend: str) -> list[Method]:
    trio_methods = [
        Method(
            BASELINE,
            (on_trio(baseline_lines), "receive_some + bytes.find"),
            (on_trio(baseline_prefixed), "receive_some + int.from_bytes"),
        ),
        Method(
            TS_CALL, (on_trio(ts_call_line), "await receive_line()"), (on_trio(ts_call_exactly), "receive_exactly()")
        ),
        Method(TS_CALL_UNTIL, (on_trio(ts_call_until), "await receive_until(b'\\n')")),
        Method(
            TS_NOWAIT,
            (on_trio(ts_nowait_line), "receive_line_nowait()"),
            (on_trio(ts_nowait_exactly), "receive_exactly_nowait()"),
        ),
        Method(TS_NOWAIT_UNTIL, (on_trio(ts_nowait_until), "receive_until_nowait(b'\\n')")),
        Method(
            TS_ITER,
            (on_trio(ts_iter_lines), "async for in lines()"),
            (on_trio(ts_iter_frames), "async for in frames(LengthPrefixed)"),
        ),
        Method(TS_ITER_UNTIL, (on_trio(ts_iter_until), "async for in iter_until(b'\\n')")),
    ]
    peers = [
        optional(
            "anyio",
            lambda: Method(
                f"anyio ({anyio_backend})",
                (on_anyio(anyio_lines, anyio_backend), "BufferedByteReceiveStream.receive_until"),
                (on_anyio(anyio_prefixed, anyio_backend), "BufferedByteReceiveStream.receive_exactly"),
                small_tcp_reads=False,
            ),
        ),
        Method(
            "asyncio",
            (on_asyncio(asyncio_lines, asyncio.new_event_loop), "StreamReader.readline"),
            (on_asyncio(asyncio_prefixed, asyncio.new_event_loop), "StreamReader.readexactly"),
            small_tcp_reads=False,
        ),
        optional(
            "uvloop",
            lambda: Method(
                "uvloop",
                (on_asyncio(asyncio_lines, uvloop.new_event_loop), "asyncio StreamReader.readline"),
                (on_asyncio(asyncio_prefixed, uvloop.new_event_loop), "asyncio StreamReader.readexactly"),
                small_tcp_reads=False,
            ),
        ),
        optional(
            "tornado",
            lambda: Method(
                "tornado",
                (on_tornado(tornado_lines), "IOStream.read_until"),
                (on_tornado(tornado_prefixed), "IOStream.read_bytes"),
            ),
        ),
        optional(
            "tricycle",
            lambda: Method(
                "tricycle",
                (on_trio(tricycle_lines), "TextReceiveStream.receive_line"),
                (on_trio(tricycle_prefixed), "BufferedReceiveStream.receive_exactly"),
            ),
        ),
    ]
    return trio_methods + peers


# --------------------------------------------------------------- measuring


@dataclass
class Results:
    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    checkpoint_ns: list[float] = field(default_factory=list)

    def best(self, wl: str, method: str) -> float | None:
        """The fastest run: what the ratios and targets use (noise only adds time)."""
        times = self.times.get((wl, method))
        return min(times) if times else None

    def median(self, wl: str, method: str) -> float | None:
        times = self.times.get((wl, method))
        return statistics.median(times) if times else None


CHECKPOINT_WORKLOAD = "lines-16B"


def measure_checkpoint(n: int) -> float:
    """Nanoseconds per ``await trio.lowlevel.checkpoint()`` in a bare loop."""

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await trio.lowlevel.checkpoint()
        return (time.perf_counter() - start) / n * 1e9

    return trio.run(main)


def run_workload(wl: Workload, methods: list[Method], reps: int, harness: Harness, results: Results) -> None:
    """Every method once per repetition, in an order rotated per repetition."""
    entries = [(m.name, e) for m in methods if m.skipped is None and (e := m.entry(wl)) is not None]
    checkpoint_calls = max(wl.count // 4, 10_000)
    for rep in range(reps * wl.reps_factor):
        k = rep % len(entries)
        for name, (runner, _) in entries[k:] + entries[:k]:
            key = (wl.name, name)
            if key in results.errors:
                continue
            try:
                results.times.setdefault(key, []).append(harness.run(runner, wl))
            except Exception as exc:
                results.errors[key] = f"{type(exc).__name__}: {exc}"
        if wl.name == CHECKPOINT_WORKLOAD:
            results.checkpoint_ns.append(measure_checkpoint(checkpoint_calls))


# ----------------------------------------------------------------- reporting


def print_workload(wl: Workload, methods: list[Method], reps: int, results: Results) -> None:
    print(f"\n{wl.name}: {wl.describe()}; {reps * wl.reps_factor} runs each")
    header = f"  {'method':<24} {'api':<43} {'best':>10} {'median':>10} {'MB/s':>8} {'kframe/s':>9} {'vs base':>8}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    base = results.best(wl.name, BASELINE)
    for m in methods:
        if not m.applies(wl):
            continue
        entry = m.entry(wl)
        api = entry[1] if entry else ""
        key = (wl.name, m.name)
        best = results.best(*key)
        if m.skipped is not None or key in results.errors or best is None:
            note = m.skipped or f"ERROR {results.errors.get(key, 'not measured')}"
            print(f"  {m.name:<24} {api:<43} {note}")
            continue
        median = statistics.median(results.times[key])
        ratio = f"{base / best:7.2f}x" if base else "     n/a"
        mbps = wl.wire_bytes / best / 1e6
        kfps = wl.count / best / 1e3
        print(f"  {m.name:<24} {api:<43} {best * 1e3:7.1f} ms {median * 1e3:7.1f} ms {mbps:8.1f} {kfps:9.1f} {ratio}")


def scaling_ratios(workloads: list[Workload], methods: list[Method], results: Results) -> dict[tuple[str, str], float]:
    """(group, method) -> t(big line) / t(small line) for every scaling group."""
    ratios: dict[tuple[str, str], float] = {}
    groups: dict[str, list[Workload]] = {}
    for wl in workloads:
        if wl.group.startswith("scale-"):
            groups.setdefault(wl.group, []).append(wl)
    for group, (small, big) in ((g, sorted(ws, key=lambda w: w.body)) for g, ws in groups.items() if len(ws) == 2):
        for m in methods:
            t_small, t_big = results.best(small.name, m.name), results.best(big.name, m.name)
            if t_small and t_big:
                ratios[group, m.name] = t_big / t_small
    return ratios


def print_scaling(workloads: list[Workload], methods: list[Method], results: Results) -> None:
    ratios = scaling_ratios(workloads, methods, results)
    if not ratios:
        return
    print("\nscaling: t(big line) / t(small line), one line 16x longer in 1 KiB reads (16 = linear, 256 = quadratic)")
    groups = sorted({g for g, _ in ratios})
    print(f"  {'method':<24} " + " ".join(f"{g:>12}" for g in groups))
    for m in methods:
        cells = [f"{ratios[g, m.name]:12.1f}" if (g, m.name) in ratios else f"{'-':>12}" for g in groups]
        if any(c.strip() != "-" for c in cells):
            print(f"  {m.name:<24} " + " ".join(cells))


@dataclass
class Target:
    label: str
    value: float | None
    limit: float
    higher_is_better: bool
    unit: str = "x"

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        op = ">=" if self.higher_is_better else "<="
        shown = "not measured" if self.value is None else f"{self.value:.3f}{self.unit}"
        return f"  {verdict}  {self.label:<62} {shown:>14} (target {op} {self.limit:g}{self.unit})"


def throughput_ratio(results: Results, wl: str, method: str, reference: str) -> float | None:
    t, ref = results.best(wl, method), results.best(wl, reference)
    return ref / t if t and ref else None


def compute_targets(workloads: list[Workload], methods: list[Method], results: Results) -> list[Target]:
    """The project's performance targets, for the workloads that were run."""
    names = {w.name for w in workloads}
    targets: list[Target] = []
    for wl, limit in (("lines-16B", 0.40), ("lines-1KiB", 0.85), ("lines-16KiB", 0.95)):
        if wl in names:
            for m in (TS_ITER, TS_ITER_UNTIL):
                ratio = throughput_ratio(results, wl, m, BASELINE)
                targets.append(Target(f"{m} vs baseline at {wl}", ratio, limit, True))
    if CHECKPOINT_WORKLOAD in names:
        anyio_name = next((m.name for m in methods if m.name.startswith("anyio") and m.skipped is None), None)
        for m in (TS_NOWAIT, TS_NOWAIT_UNTIL):
            ratio = throughput_ratio(results, CHECKPOINT_WORKLOAD, m, anyio_name) if anyio_name else None
            targets.append(Target(f"{m} vs {anyio_name or 'anyio'} at {CHECKPOINT_WORKLOAD}", ratio, 1.5, True))
        for m in (TS_CALL, TS_CALL_UNTIL):
            ratio = per_frame_ns(workloads, results, m)
            if ratio is not None and results.checkpoint_ns:
                ratio /= min(results.checkpoint_ns)
            targets.append(Target(f"{m} per frame / bare checkpoint at {CHECKPOINT_WORKLOAD}", ratio, 1.2, False))
    # Framing: frames(LengthPrefixed) against uvloop-asyncio and the baseline.
    if "prefixed-64B" in names:
        uv = next((m.name for m in methods if m.name == "uvloop" and m.skipped is None), None)
        ratio = throughput_ratio(results, "prefixed-64B", TS_ITER, uv) if uv else None
        targets.append(Target(f"{TS_ITER} frames(LengthPrefixed) vs uvloop at prefixed-64B", ratio, 1.5, True))
    if "prefixed-4KiB" in names:
        ratio = throughput_ratio(results, "prefixed-4KiB", TS_ITER, BASELINE)
        targets.append(Target(f"{TS_ITER} frames(LengthPrefixed) vs baseline at prefixed-4KiB", ratio, 0.9, True))
    ratios = scaling_ratios(workloads, methods, results)
    for group in sorted({w.group for w in workloads if w.group.startswith("scale-")}):
        for m in TRIOSTREAM_METHODS:
            targets.append(Target(f"{m} scaling ratio, {group}", ratios.get((group, m)), 17, False))
    return targets


def per_frame_ns(workloads: list[Workload], results: Results, method: str) -> float | None:
    """Nanoseconds per frame of ``method`` at the checkpoint workload (16 B lines)."""
    wl = next((w for w in workloads if w.name == CHECKPOINT_WORKLOAD), None)
    t = results.best(CHECKPOINT_WORKLOAD, method)
    return t / wl.count * 1e9 if wl and t else None


def print_summary(workloads: list[Workload], methods: list[Method], results: Results) -> list[Target]:
    print_scaling(workloads, methods, results)
    if results.checkpoint_ns:
        checkpoint = min(results.checkpoint_ns)
        print(f"\ncheckpoint cost: a bare `await trio.lowlevel.checkpoint()` loop takes {checkpoint:.0f} ns per call")
        for m in methods:
            per_frame = per_frame_ns(workloads, results, m.name)
            if per_frame:
                print(f"  {m.name:<24} {per_frame:7.0f} ns/frame = {per_frame / checkpoint:5.2f} checkpoints")
    targets = compute_targets(workloads, methods, results)
    print("\ntargets")
    for target in targets:
        print(target.line())
    return targets


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/8 of the payloads, 3 repetitions: under 30 s")
    parser.add_argument("--reps", type=int, help="repetitions per method and workload (default 5, quick 3)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="WORKLOAD",
        help="a workload name (lines-16B), group (scale-mem) or kind (lines, prefixed, scale); repeatable",
    )
    parser.add_argument("--anyio-backend", choices=("asyncio", "trio"), default="asyncio", help="default asyncio")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sender:
        sender_main()
        return 0
    reps: int = args.reps or (3 if args.quick else 5)
    workloads = make_workloads(args.quick)
    if args.only:
        workloads = [w for w in workloads if any(w.matches(s) for s in args.only)]
        if not workloads:
            print(f"no workload matches {args.only}", file=sys.stderr)
            return 2
    methods = build_methods(args.anyio_backend)
    peers = ", ".join(f"{name} {ver or 'skipped (not installed)'}" for name, ver in PEERS.items())
    where = os.path.dirname(os.path.abspath(triostream.__file__))
    print(f"triostream {triostream.__version__} ({where}), Python {sys.version.split()[0]}, trio {trio.__version__}")
    print(f"peers: {peers}")
    print(f"anyio backend: {args.anyio_backend}; {reps} repetition(s), methods in rotated order")
    print("times: receive only (the clock starts when the sender is told to go); 'vs base' = baseline time / time;")
    print("MB/s, kframe/s, 'vs base', scaling ratios and targets use the best run (noise only adds time)")
    results = Results()
    harness = Harness()
    started = time.perf_counter()
    try:
        for wl in workloads:
            run_workload(wl, methods, reps, harness, results)
            print_workload(wl, methods, reps, results)
            sys.stdout.flush()
    finally:
        harness.close()
    targets = print_summary(workloads, methods, results)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if results.errors:
        print(f"{len(results.errors)} receiver run(s) failed; see ERROR rows above")
        return 2
    if args.check and any(t.passed is False for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
