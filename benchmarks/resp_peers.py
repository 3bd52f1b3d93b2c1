"""The peers `bench_resp.py` measures `examples/redis_server.py` against:
RESP servers written without triostream, all sharing the example's command
code (`Commands`, `Keyspace`), so that only the I/O and the framing differ.

* ``trio``: a hand-written Trio server: ``trio.serve_tcp``, ``await
  stream.receive_some(65536)`` into a `bytearray`, `parse` (below) cuts every
  complete command out of it, and all their replies go out in one ``await
  stream.send_all``. The pure-Trio baseline: no buffering layer, no helper
  tasks, no write queue.
* ``asyncio`` / ``uvloop``: an `asyncio.Protocol` whose ``data_received``
  runs the same `parse` and answers with one ``transport.write`` (asyncio's
  fastest server style), on the default event loop or on uvloop.

    python benchmarks/resp_peers.py {trio,asyncio,uvloop} [--host H] [--port P]

Each prints ``listening on HOST:PORT`` (flushed) once it accepts, like the
example. Multibulk commands only (what redis-benchmark sends), plus inline
commands split on blanks; a protocol error closes the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redis_server.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("redis_server", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class BadRequest(Exception):
    pass


def parse(buf: bytearray, max_bulk: int = 1 << 20) -> tuple[list[list[bytes]], int]:
    """Every complete command at the start of ``buf``: (commands, bytes used)."""
    commands: list[list[bytes]] = []
    pos = 0
    end = len(buf)
    find = buf.find
    while pos < end:
        if buf[pos] != 0x2A:  # inline
            eol = find(b"\n", pos)
            if eol < 0:
                if end - pos > 65536:
                    raise BadRequest("too big inline request")
                break
            argv = bytes(buf[pos:eol]).split()
            pos = eol + 1
            if argv:
                commands.append(argv)
            continue
        eol = find(b"\r\n", pos)
        if eol < 0:
            break
        count = int(buf[pos + 1 : eol])
        p = eol + 2
        argv = []
        for _ in range(count):
            eol = find(b"\r\n", p)
            if eol < 0:
                break
            if buf[p] != 0x24:
                raise BadRequest("expected '$'")
            n = int(buf[p + 1 : eol])
            if not 0 <= n <= max_bulk:
                raise BadRequest("invalid bulk length")
            p = eol + 2
            if p + n + 2 > end:
                break
            argv.append(bytes(buf[p : p + n]))
            p += n + 2
        else:
            pos = p
            if argv:
                commands.append(argv)
            continue
        break  # an incomplete command
    return commands, pos


def _replies(commands: Any, session: Any, argvs: list[list[bytes]]) -> bytes:
    parts: list[bytes] = []
    for argv in argvs:
        reply = commands.execute(session, argv)
        if type(reply) is bytes:
            parts.append(reply)
        else:
            parts.extend(reply)
    return b"".join(parts)


# ------------------------------------------------------------ trio


async def serve_trio(host: str, port: int) -> None:
    example = load_example()
    server = example.RedisServer()
    commands = server.commands

    async def handle(stream: trio.SocketStream) -> None:
        session = example.Session(server, 0, "?")
        buf = bytearray()
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                argvs, used = parse(buf)
                if used:
                    del buf[:used]
                if argvs:
                    await stream.send_all(_replies(commands, session, argvs))
        except (BadRequest, ValueError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, port, host=host))
        print(f"listening on {host}:{listeners[0].socket.getsockname()[1]}", flush=True)


# ------------------------------------------------------------ asyncio


class RespProtocol(asyncio.Protocol):
    def __init__(self, example: ModuleType, server: Any) -> None:
        self.commands = server.commands
        self.session = example.Session(server, 0, "?")
        self.buf = bytearray()
        self.transport: Any = None  # an asyncio.Transport (uvloop's is not a subclass)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        try:
            argvs, used = parse(self.buf)
        except (BadRequest, ValueError):
            self.transport.close()
            return
        if used:
            del self.buf[:used]
        if argvs:
            self.transport.write(_replies(self.commands, self.session, argvs))


async def serve_asyncio(host: str, port: int) -> None:
    example = load_example()
    server = example.RedisServer()
    loop = asyncio.get_running_loop()
    aserver = await loop.create_server(lambda: RespProtocol(example, server), host, port)
    sockets = aserver.sockets
    print(f"listening on {host}:{sockets[0].getsockname()[1]}", flush=True)
    async with aserver:
        await aserver.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("impl", choices=["trio", "asyncio", "uvloop"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        if args.impl == "trio":
            trio.run(serve_trio, args.host, args.port)
        elif args.impl == "asyncio":
            asyncio.run(serve_asyncio(args.host, args.port))
        else:
            import uvloop

            uvloop.run(serve_asyncio(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
