"""Write-side benchmark: many small writes over loopback TCP.

Compares, for messages of 16 B and 1 KiB:

* ``trio send_all``      - ``await stream.send_all(msg)`` per message on a raw
                           ``trio.SocketStream`` (one syscall per message);
* ``triostream write``   - ``conn.write(msg)`` per message on a
                           `triostream.Connection`, ``await conn.drain()`` when
                           the queue is over the high-water mark, and
                           ``await conn.flush()`` at the end (the writer task
                           coalesces the queue into few sends);
* ``triostream send_all`` - ``await conn.send_all(msg)`` per message (queues
                           with backpressure; a full Trio checkpoint each);
* ``asyncio write``      - ``writer.write(msg); await writer.drain()`` per
                           message, and the same under uvloop if installed.

The reader is another process (a blocking socket that reads to EOF and
answers with the byte count), so the clock covers the delivery of every
byte. Methods run interleaved, best of N; ratios are to ``trio send_all``.

    python benchmarks/bench_write.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import trio

if importlib.util.find_spec("triostream") is None:  # run from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import triostream

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

SINK = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
total = 0
while True:
    data = s.recv(1 << 20)
    if not data:
        break
    total += len(data)
s.sendall(total.to_bytes(8, "big"))
s.close()
"""

Writer = Callable[[socket.socket, list[bytes]], float]


def sink_connection() -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """A connected socket whose peer is a reader process."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
        conn, _ = server.accept()
    conn.setblocking(False)
    return conn, process


def check_count(count: bytes, expected: int) -> None:
    got = int.from_bytes(count, "big")
    if got != expected:
        raise RuntimeError(f"the reader got {got} bytes, expected {expected}")


def on_trio(body: Callable[[trio.SocketStream, list[bytes]], Awaitable[None]]) -> Writer:
    def run(sock: socket.socket, messages: list[bytes]) -> float:
        async def main() -> float:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            start = time.perf_counter()
            await body(stream, messages)
            await stream.send_eof()
            count = await triostream.BufferedStream(stream).receive_exactly(8)
            elapsed = time.perf_counter() - start
            check_count(count, sum(map(len, messages)))
            await stream.aclose()
            return elapsed

        return trio.run(main)

    return run


async def trio_send_all(stream: trio.SocketStream, messages: list[bytes]) -> None:
    for message in messages:
        await stream.send_all(message)


async def triostream_write(stream: trio.SocketStream, messages: list[bytes]) -> None:
    """The bulk idiom: write() (synchronous, queues), drain() only when the
    queue is over the high-water mark, flush() at the end."""
    conn = triostream.Connection(stream, read_ahead=False)
    async with trio.open_nursery() as nursery:
        conn._start(nursery)  # the helpers, without closing the stream at the end
        high = conn.write_high_water
        for message in messages:
            conn.write(message)
            if conn.write_buffer_size > high:
                await conn.drain()
        await conn.flush()
        nursery.cancel_scope.cancel()


async def triostream_send_all(stream: trio.SocketStream, messages: list[bytes]) -> None:
    """``await conn.send_all(msg)`` per message: a full Trio checkpoint each."""
    conn = triostream.Connection(stream, read_ahead=False)
    async with trio.open_nursery() as nursery:
        conn._start(nursery)
        for message in messages:
            await conn.send_all(message)
        await conn.flush()
        nursery.cancel_scope.cancel()


def on_asyncio(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> Writer:
    def run(sock: socket.socket, messages: list[bytes]) -> float:
        async def main() -> float:
            reader, writer = await asyncio.open_connection(sock=sock)
            start = time.perf_counter()
            for message in messages:
                writer.write(message)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
            count = await reader.readexactly(8)
            elapsed = time.perf_counter() - start
            check_count(count, sum(map(len, messages)))
            writer.close()
            return elapsed

        loop = loop_factory()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    return run


def methods() -> dict[str, Writer]:
    found: dict[str, Writer] = {
        "trio send_all": on_trio(trio_send_all),
        "triostream write": on_trio(triostream_write),
        "triostream send_all": on_trio(triostream_send_all),
        "asyncio write": on_asyncio(asyncio.new_event_loop),
    }
    if uvloop is not None:
        found["uvloop write"] = on_asyncio(uvloop.new_event_loop)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/10 of the messages")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    div = 10 if args.quick else 1
    workloads = {"16B": (16, 200_000 // div), "1KiB": (1024, 50_000 // div)}
    found = methods()
    print(f"triostream {triostream.__version__}, Python {sys.version.split()[0]}, trio {trio.__version__}")
    best: dict[tuple[str, str], float] = {}
    for name, (size, count) in workloads.items():
        messages = [bytes([65 + i % 26]) * size for i in range(count)]
        order = list(found)
        for rep in range(args.reps):
            for method in order[rep % len(order) :] + order[: rep % len(order)]:
                sock, process = sink_connection()
                try:
                    elapsed = found[method](sock, messages)
                finally:
                    if sock.fileno() != -1:
                        sock.close()
                    process.wait(timeout=60)
                best[name, method] = min(elapsed, best.get((name, method), float("inf")))
        base = best[name, "trio send_all"]
        print(f"\nwrites of {name}: {count:,} messages, best of {args.reps}")
        print(f"  {'method':20} {'time':>10} {'MB/s':>9} {'kmsg/s':>9} {'vs send_all':>12}")
        for method in found:
            t = best[name, method]
            rates = f"{size * count / t / 1e6:9.1f} {count / t / 1e3:9.1f}"
            print(f"  {method:20} {t * 1e3:8.1f} ms {rates} {base / t:11.2f}x")
    ratio_send_all = best["16B", "trio send_all"] / best["16B", "triostream write"]
    ratio_asyncio = best["16B", "asyncio write"] / best["16B", "triostream write"]
    print("\ntargets")
    print(
        f"  {'PASS' if ratio_send_all >= 2 else 'FAIL'}  triostream write vs per-write send_all at 16B: "
        f"{ratio_send_all:.2f}x (target >= 2x)"
    )
    print(
        f"  {'PASS' if ratio_asyncio >= 1 else 'FAIL'}  triostream write vs asyncio write at 16B: "
        f"{ratio_asyncio:.2f}x (target >= 1x)"
    )
    for size_name in workloads:
        r = best[size_name, "asyncio write"] / best[size_name, "triostream write"]
        print(f"        triostream write vs asyncio write at {size_name}: {r:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
