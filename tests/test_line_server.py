"""Tests for examples/line_server.py, over real TCP sockets.

Most tests run the server in-process (``nursery.start(serve, ...)`` on
127.0.0.1, port 0) and talk to it with plain `trio.SocketStream` clients, which
read replies with their own tiny reader (not `BufferedStream`), so a bug in
the library cannot hide a bug in the server. Two tests run the example as a
real subprocess and talk to it with ``nc`` and with a stdlib socket.

Every test is bounded by a timeout, so a hang fails fast instead of stalling CI.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Literal

import pytest
import trio
from example_loader import load_example

import triostream
from triostream import BufferedStream, open_connection
from triostream.testing import socket_stream_pair

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "line_server.py"

#: Upper bound for one test; they normally take well under a second.
TIMEOUT = 15.0


line_server = load_example("line_server")


# ----------------------------------------------------------------- helpers


@asynccontextmanager
async def running_server(
    *,
    max_line: int = 64,
    idle_timeout: float = 30.0,
    max_connections: int | Literal["auto"] | None = "auto",
    shutdown_timeout: float = 0.5,
) -> AsyncIterator[int]:
    """Run `serve` in-process on 127.0.0.1 and yield its port.

    The whole ``async with`` block is bounded by TIMEOUT. If the server task
    crashes, the exception propagates out of the block and fails the test.
    (A handler's exception does not crash `triostream.serve_tcp`: it is
    logged, which the tests that care check with ``caplog``.) Leaving the
    block cancels the server: its graceful shutdown, bounded by
    ``shutdown_timeout`` and a ``close_timeout`` of 2 s.
    """
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                functools.partial(
                    line_server.serve,
                    "127.0.0.1",
                    0,
                    max_line=max_line,
                    idle_timeout=idle_timeout,
                    max_connections=max_connections,
                    shutdown_timeout=shutdown_timeout,
                    close_timeout=2.0,
                )
            )
            assert len(listeners) == 1
            port: int = listeners[0].socket.getsockname()[1]
            try:
                yield port
            finally:
                nursery.cancel_scope.cancel()


class Client:
    """A test client that reads replies with nothing but ``receive_some``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._pending = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_line(self) -> bytes:
        """The next reply line, ``\\n`` included."""
        while b"\n" not in self._pending:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise AssertionError(f"EOF before a complete line; got {bytes(self._pending)!r}")
            self._pending += chunk
        end = self._pending.index(b"\n") + 1
        line = bytes(self._pending[:end])
        del self._pending[:end]
        return line

    async def read_to_eof(self) -> bytes:
        """Everything not read yet, up to the server closing the connection."""
        while chunk := await self.stream.receive_some(65536):
            self._pending += chunk
        data = bytes(self._pending)
        self._pending.clear()
        return data

    async def ask(self, request: bytes) -> bytes:
        await self.send(request)
        return await self.read_line()


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        yield Client(stream)


async def reset(stream: trio.SocketStream) -> None:
    """Close ``stream`` abruptly: SO_LINGER with a zero timeout makes the
    kernel send a RST instead of a FIN."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


# ------------------------------------------------------------ the commands


async def test_echo() -> None:
    async with running_server() as port, connect(port) as client:
        assert await client.ask(b"ECHO hello world\n") == b"hello world\n"
        # The argument is everything after the first space, byte for byte.
        assert await client.ask(b"ECHO  two  spaces \n") == b" two  spaces \n"
        assert await client.ask(b"ECHO caf\xc3\xa9 \xff\x00\n") == b"caf\xc3\xa9 \xff\x00\n"
        assert await client.ask(b"ECHO\n") == b"\n"
        assert await client.ask(b"ECHO \n") == b"\n"
        # Command names are case-insensitive.
        assert await client.ask(b"echo lower\n") == b"lower\n"


async def test_upper() -> None:
    async with running_server() as port, connect(port) as client:
        assert await client.ask(b"UPPER hello, World 42\n") == b"HELLO, WORLD 42\n"
        assert await client.ask("UPPER grüße\n".encode()) == "GRÜSSE\n".encode()
        # Bytes that are not UTF-8 come back unchanged, the rest is upper-cased.
        assert await client.ask(b"UPPER abc\xff\xfexyz\n") == b"ABC\xff\xfeXYZ\n"
        assert await client.ask(b"Upper mixed Case\n") == b"MIXED CASE\n"


async def test_help() -> None:
    async with running_server() as port, connect(port) as client:
        assert await client.ask(b"HELP\n") == b"commands: ECHO <text>, UPPER <text>, HELP, QUIT\n"


async def test_crlf_input_lf_output() -> None:
    async with running_server() as port, connect(port) as client:
        await client.send(b"ECHO hi\r\nUPPER abc\r\nHELP\r\nQUIT\r\n")
        assert await client.read_to_eof() == (b"hi\nABC\ncommands: ECHO <text>, UPPER <text>, HELP, QUIT\nBYE\n")


async def test_unknown_command_and_empty_line() -> None:
    async with running_server() as port, connect(port) as client:
        assert await client.ask(b"FROB x y\n") == b"ERR unknown command 'FROB'\n"
        assert await client.ask(b"ECHOX hi\n") == b"ERR unknown command 'ECHOX'\n"
        assert await client.ask(b"\n") == b"ERR empty line\n"
        assert await client.ask(b"\r\n") == b"ERR empty line\n"
        # The connection carries on.
        assert await client.ask(b"ECHO still here\n") == b"still here\n"


async def test_pipelined_commands_are_answered_in_order() -> None:
    async with running_server() as port, connect(port) as client:
        await client.send(b"".join(b"ECHO %d\n" % i for i in range(500)) + b"QUIT\n")
        assert await client.read_to_eof() == b"".join(b"%d\n" % i for i in range(500)) + b"BYE\n"


async def test_quit_closes_the_connection() -> None:
    async with running_server() as port, connect(port) as client:
        assert await client.ask(b"ECHO before\n") == b"before\n"
        # Nothing after QUIT is answered; the server closes (EOF on our side).
        await client.send(b"QUIT\nECHO never\n")
        assert await client.read_to_eof() == b"BYE\n"
        assert await client.stream.receive_some(100) == b""


async def test_half_closed_client_gets_its_replies() -> None:
    # Like `nc -N`: send, shut down our sending side, read until the server closes.
    async with running_server() as port, connect(port) as client:
        await client.send(b"ECHO one\nUPPER two\n")
        await client.stream.send_eof()
        assert await client.read_to_eof() == b"one\nTWO\n"


# ------------------------------------------------------------- long lines


async def test_max_line_counts_the_line_ending() -> None:
    # max_line=16 bytes, line ending included.
    async with running_server(max_line=16) as port, connect(port) as client:
        assert await client.ask(b"ECHO " + b"a" * 10 + b"\n") == b"a" * 10 + b"\n"  # 16 bytes
        assert await client.ask(b"ECHO " + b"b" * 9 + b"\r\n") == b"b" * 9 + b"\n"  # 16 bytes
        assert await client.ask(b"ECHO " + b"c" * 11 + b"\n") == b"ERR line too long (max 16 bytes)\n"  # 17
        assert await client.ask(b"ECHO " + b"d" * 10 + b"\r\n") == b"ERR line too long (max 16 bytes)\n"  # 17
        assert await client.ask(b"ECHO ok\n") == b"ok\n"


@pytest.mark.parametrize("length", [33, 100, 8191, 8192, 8193, 300_000])
async def test_long_line_then_normal_line(length: int) -> None:
    # The lengths go past the BufferedStream's read-ahead (8 KiB) so that
    # discard_until has to skip across many transport reads.
    async with running_server(max_line=32) as port, connect(port) as client:
        long_line = b"ECHO " + b"x" * (length - 6) + b"\n"
        assert len(long_line) == length
        async with trio.open_nursery() as nursery:
            # Send concurrently: the server answers before the long line ends.
            nursery.start_soon(client.send, long_line + b"ECHO after\nUPPER next\n")
            assert await client.read_line() == b"ERR line too long (max 32 bytes)\n"
            # Proves discard_until resynchronised on the right line boundary.
            assert await client.read_line() == b"after\n"
            assert await client.read_line() == b"NEXT\n"
        assert await client.ask(b"ECHO again\n") == b"again\n"


async def test_long_line_in_small_pieces() -> None:
    async with running_server(max_line=32) as port, connect(port) as client:
        data = b"ECHO " + b"y" * 40 + b"0123456789" * 20 + b"\r\nUPPER next\r\nECHO last\n"
        await client.send(data[:40])
        # The error comes as soon as max_line bytes hold no line ending,
        # long before the line is over.
        assert await client.read_line() == b"ERR line too long (max 32 bytes)\n"
        # The rest trickles in 1 to 7 bytes at a time; the sleeps make the
        # server see (most of) the pieces in separate reads. TCP_NODELAY is
        # on for trio.open_tcp_stream sockets.
        rest = memoryview(data)[40:]
        sizes = [1, 2, 3, 5, 7]
        i = 0
        while rest:
            piece, rest = rest[: sizes[i % len(sizes)]], rest[sizes[i % len(sizes)] :]
            await client.send(bytes(piece))
            await trio.sleep(0.001)
            i += 1
        assert await client.read_line() == b"NEXT\n"
        assert await client.read_line() == b"last\n"


async def test_crlf_split_across_pieces_after_long_line() -> None:
    async with running_server(max_line=16) as port, connect(port) as client:
        await client.send(b"ECHO " + b"z" * 30 + b"\r")
        assert await client.read_line() == b"ERR line too long (max 16 bytes)\n"
        await trio.sleep(0.01)
        await client.send(b"\nECHO ok\r")
        await trio.sleep(0.01)
        await client.send(b"\n")
        assert await client.read_line() == b"ok\n"


# ----------------------------------------------------------- idle timeouts


@pytest.mark.parametrize("pending", [b"", b"ECHO unfinished"], ids=["silent", "mid-line"])
async def test_idle_timeout(pending: bytes) -> None:
    async with running_server(idle_timeout=0.2) as port, connect(port) as client:
        assert await client.ask(b"ECHO quick\n") == b"quick\n"
        await client.send(pending)
        # No assertion on durations: only that the ERR line and the close arrive.
        assert await client.read_to_eof() == b"ERR idle timeout\n"


async def test_idle_timeout_while_skipping_a_long_line() -> None:
    async with running_server(max_line=16, idle_timeout=0.2) as port, connect(port) as client:
        await client.send(b"ECHO " + b"x" * 100)
        assert await client.read_to_eof() == b"ERR line too long (max 16 bytes)\nERR idle timeout\n"


async def test_idle_timeout_is_per_line_not_per_read() -> None:
    # A client trickling bytes that never finish a line is idle too.
    async with running_server(idle_timeout=0.2) as port, connect(port) as client:

        async def trickle() -> None:
            try:
                while True:
                    await client.send(b"x")
                    await trio.sleep(0.02)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            assert await client.read_line() == b"ERR idle timeout\n"
            # Then the server hangs up. Our late bytes may make its kernel
            # answer with a RST rather than a FIN: both end the connection.
            with suppress(trio.BrokenResourceError):
                assert await client.read_to_eof() == b""
            nursery.cancel_scope.cancel()


# ---------------------------------------------- many clients, bad clients


async def test_concurrent_clients() -> None:
    async with running_server() as port:
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(10)]
        clients = [Client(stream) for stream in streams]
        try:
            # Client 0 stays in the middle of a line: a server that handled
            # one connection at a time would never answer the others.
            await clients[0].send(b"ECHO wait")
            for i, client in reversed(list(enumerate(clients))[1:]):
                assert await client.ask(b"ECHO %d\n" % i) == b"%d\n" % i

            async def conversation(i: int, client: Client) -> None:
                for round_ in range(5):
                    assert await client.ask(b"ECHO c%d r%d\n" % (i, round_)) == b"c%d r%d\n" % (i, round_)
                    assert await client.ask(b"UPPER c%d\n" % i) == b"C%d\n" % i
                    await trio.sleep(0.001 * (i % 3))
                await client.send(b"QUIT\n")
                assert await client.read_to_eof() == b"BYE\n"

            await clients[0].send(b"ing\n")
            assert await clients[0].read_line() == b"waiting\n"
            async with trio.open_nursery() as nursery:
                for i, client in enumerate(clients):
                    nursery.start_soon(conversation, i, client)
        finally:
            for stream in streams:
                await stream.aclose()


@pytest.mark.parametrize("how", ["eof-clean", "eof-mid-line", "reset-mid-line", "reset-after-long-line"])
async def test_handle_client_ends_quietly_when_the_client_goes_away(how: str) -> None:
    # The handler on its own, in a Connection as serve_tcp runs it.
    with trio.fail_after(TIMEOUT):
        async with socket_stream_pair() as (client, server_side):
            if how == "eof-clean":
                await client.send_all(b"ECHO a\n")
                await client.aclose()
            elif how == "eof-mid-line":
                await client.send_all(b"ECHO a\nECHO hal")
                await client.aclose()
            elif how == "reset-mid-line":
                await client.send_all(b"ECHO a\nECHO hal")
                await reset(client)
            else:
                await client.send_all(b"ECHO " + b"r" * 1000 + b"\n")
                await reset(client)
            try:
                async with open_connection(server_side) as conn:
                    await line_server.handle_client(conn, max_line=64, idle_timeout=30.0)
            except trio.BrokenResourceError:
                # A reset may surface as this, which serve_tcp counts as an
                # ordinary end (one INFO line). Anything else fails the test.
                assert how.startswith("reset")
            # The server side is closed, in every case.
            assert server_side.socket.fileno() == -1


async def test_handle_client_survives_reset_while_sending() -> None:
    # The client floods commands and never reads the replies, so the server
    # ends up blocked sending; then the client resets the connection.
    with trio.fail_after(TIMEOUT):
        async with socket_stream_pair() as (client, server_side):

            async def flood() -> None:
                try:
                    while True:
                        await client.send_all((b"ECHO " + b"f" * 58 + b"\n") * 1000)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async def serve_it() -> None:
                # Ends by the reset: trio.BrokenResourceError, an ordinary end
                # for serve_tcp; the handler must not hang or raise anything else.
                with pytest.raises(trio.BrokenResourceError):
                    async with open_connection(server_side) as conn:
                        await line_server.handle_client(conn, max_line=64, idle_timeout=30.0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_it)
                nursery.start_soon(flood)
                await trio.sleep(0.3)  # let the buffers fill up (not a timing assertion)
                await reset(client)
            # The nursery exited: the handler ended, and closed the server side.
            assert server_side.socket.fileno() == -1


async def test_abrupt_disconnects_do_not_kill_the_server() -> None:
    async with running_server() as port:
        async with connect(port) as client:
            await client.send(b"ECHO half a li")
            await reset(client.stream)
        async with connect(port) as client:
            await client.send(b"ECHO half a line, then FIN")
        async with connect(port) as client:
            # Many commands, replies never read, then a reset.
            await client.send((b"ECHO " + b"z" * 50 + b"\n") * 2000)
            await reset(client.stream)
        async with connect(port) as client:
            assert await client.ask(b"ECHO before\n") == b"before\n"
            await reset(client.stream)
        await trio.sleep(0.1)  # give the server time to notice (it must not crash)
        # A later client is served as usual. Had a handler raised, serve() would
        # have crashed and running_server() would re-raise its exception.
        async with connect(port) as client:
            assert await client.ask(b"UPPER alive\n") == b"ALIVE\n"
            await client.send(b"QUIT\n")
            assert await client.read_to_eof() == b"BYE\n"


# ------------------------------------------------- limits and logging


async def test_clients_beyond_max_connections_are_served_in_turn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_server(max_connections=20) as port:

        async def session(i: int, replies: dict[int, bytes]) -> None:
            async with connect(port) as client:
                await client.send(b"ECHO %d\nUPPER c%d\nQUIT\n" % (i, i))
                replies[i] = await client.read_to_eof()

        # 100 clients at once: 20 are served, the others wait in the listen
        # queue and are served as slots free up.
        replies: dict[int, bytes] = {}
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(session, i, replies)
        assert replies == {i: b"%d\nC%d\nBYE\n" % (i, i) for i in range(100)}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_max_connections_makes_further_clients_wait() -> None:
    async with running_server(max_connections=3) as port:
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
        held = [Client(stream) for stream in streams[:3]]
        waiting = Client(streams[3])
        try:
            for i, client in enumerate(held):
                assert await client.ask(b"ECHO %d\n" % i) == b"%d\n" % i
            # All 3 slots taken: the 4th client is connected (the kernel
            # queued it) but not served. A negative check, not a timing one.
            await waiting.send(b"ECHO waited\n")
            with trio.move_on_after(0.3):
                await waiting.read_line()
                pytest.fail("a 4th client was served while max_connections=3 were taken")
            # One leaves: the waiting client is served.
            await held[0].send(b"QUIT\n")
            assert await held[0].read_to_eof() == b"BYE\n"
            assert await waiting.read_line() == b"waited\n"
            assert await held[1].ask(b"ECHO still\n") == b"still\n"
        finally:
            for stream in streams:
                await stream.aclose()


async def test_clients_that_leave_or_time_out_are_not_logged_as_errors(caplog: pytest.LogCaptureFixture) -> None:
    # Every client here misbehaves in an ordinary way. serve_tcp logs each
    # end of a connection at INFO or DEBUG, with the peer address; nothing
    # may reach WARNING, let alone ERROR with a traceback.
    caplog.set_level(logging.DEBUG)
    async with running_server(max_line=32, idle_timeout=0.3) as port:
        peers: list[str] = []

        async def client_session(how: str) -> None:
            async with connect(port) as client:
                host, client_port = client.stream.socket.getsockname()[:2]
                peers.append(f"{host}:{client_port}")
                if how == "eof-mid-line":
                    await client.send(b"ECHO a\nECHO hal")
                    await client.stream.send_eof()
                    assert await client.read_to_eof() == b"a\n"
                elif how == "reset-mid-line":
                    assert await client.ask(b"ECHO a\n") == b"a\n"
                    await client.send(b"ECHO hal")
                    await reset(client.stream)
                elif how == "reset-in-long-line":
                    await client.send(b"ECHO " + b"r" * 100)
                    assert await client.read_line() == b"ERR line too long (max 32 bytes)\n"
                    await reset(client.stream)
                elif how == "idle":
                    assert await client.read_to_eof() == b"ERR idle timeout\n"
                elif how == "idle-mid-line":
                    await client.send(b"ECHO unfinish")
                    assert await client.read_to_eof() == b"ERR idle timeout\n"
                elif how == "not-reading":
                    # Commands, replies never read: the server's sends block
                    # until its write timeout (the idle timeout) resets us.
                    with suppress(trio.BrokenResourceError):
                        for _ in range(200):  # bounded: ~12 MB at most
                            await client.send((b"ECHO " + b"n" * 58 + b"\n") * 1000)
                        await client.read_to_eof()
                else:
                    raise AssertionError(how)

        hows = ["eof-mid-line", "reset-mid-line", "reset-in-long-line", "idle", "idle-mid-line", "not-reading"]
        async with trio.open_nursery() as nursery:
            for how in hows:
                nursery.start_soon(client_session, how)

        # Each of them ends in one log line naming it (they are written when
        # the server has closed the connection: wait for them).
        def logged(peer: str) -> bool:
            return any(peer in r.getMessage() for r in caplog.records if r.name == "triostream")

        for _ in range(1000):  # bounded (and by TIMEOUT)
            if all(logged(peer) for peer in peers):
                break
            await trio.sleep(0.01)
        else:
            pytest.fail(f"not every client's end was logged: {peers}")
        # And the server still serves.
        async with connect(port) as client:
            assert await client.ask(b"ECHO alive\n") == b"alive\n"
    assert len(peers) == len(hows)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# --------------------------------------------------------------- the API


async def test_serve_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_line"):
        await line_server.serve("127.0.0.1", 0, max_line=0, idle_timeout=1.0)
    with pytest.raises(ValueError, match="idle_timeout"):
        await line_server.serve("127.0.0.1", 0, max_line=10, idle_timeout=0)
    # serve_tcp's own options are checked by serve_tcp, before any socket is opened.
    with pytest.raises(ValueError, match="max_connections"):
        await line_server.serve("127.0.0.1", 0, max_connections=0)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        await line_server.serve("127.0.0.1", 0, shutdown_timeout=-1)


def test_defaults_are_serve_tcps() -> None:
    # The example exposes serve_tcp's limits with serve_tcp's safe defaults.
    library = inspect.signature(triostream.serve_tcp).parameters
    example = inspect.signature(line_server.serve).parameters
    for name in ["idle_timeout", "max_connections", "shutdown_timeout", "close_timeout"]:
        assert example[name].default == library[name].default, name
    assert library["max_connections"].default == "auto"


def test_main_parses_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def fake_run(function: object, args: argparse.Namespace) -> bool:
        seen.append(args)
        return False  # served, then stopped without a Ctrl-C

    monkeypatch.setattr(trio, "run", fake_run)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    line_server.main([])
    line_server.main(["--max-connections", "20", "--shutdown-timeout", "0", "--idle-timeout", "2.5"])
    defaults, given = seen
    assert (defaults.max_connections, defaults.shutdown_timeout, defaults.idle_timeout) == ("auto", 5.0, 300.0)
    assert (given.max_connections, given.shutdown_timeout, given.idle_timeout) == (20, 0.0, 2.5)


def _cancelled() -> trio.Cancelled:
    return trio.Cancelled._create()  # trio has no public constructor for it


@pytest.mark.parametrize(
    "make_exc",
    [
        lambda: KeyboardInterrupt(),
        lambda: BaseExceptionGroup("", [KeyboardInterrupt()]),
        lambda: BaseExceptionGroup("", [_cancelled(), BaseExceptionGroup("", [KeyboardInterrupt(), _cancelled()])]),
    ],
    ids=["bare", "group", "nested-with-cancelled"],
)
def test_main_exits_130_on_a_keyboard_interrupt_from_trio(
    make_exc: Callable[[], BaseException], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Ctrl-C that trio raises (before or after the server takes SIGINT as
    # a signal) may come wrapped in exception groups: still exit 130, quietly.
    def fake_run(*args: object) -> bool:
        raise make_exc()

    monkeypatch.setattr(trio, "run", fake_run)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    with pytest.raises(SystemExit) as exc_info:
        line_server.main(["--port", "0"])
    assert exc_info.value.code == 130
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "make_exc",
    [
        lambda: BaseExceptionGroup("", [KeyboardInterrupt(), ValueError("a bug")]),
        lambda: BaseExceptionGroup("", [_cancelled()]),
        lambda: OSError("address in use"),
    ],
    ids=["interrupt-and-bug", "only-cancelled", "not-a-group"],
)
def test_main_reraises_everything_else(make_exc: Callable[[], BaseException], monkeypatch: pytest.MonkeyPatch) -> None:
    exc = make_exc()

    def fake_run(*args: object) -> bool:
        raise exc

    monkeypatch.setattr(trio, "run", fake_run)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    with pytest.raises(BaseException) as exc_info:
        line_server.main(["--port", "0"])
    assert exc_info.value is exc


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-line", "0"],
        ["--port", "70000"],
        ["--port", "x"],
        ["--idle-timeout", "0"],
        ["--idle-timeout", "nan"],
        ["--idle-timeout", "inf"],
        ["--max-connections", "0"],
        ["--max-connections", "none"],
        ["--shutdown-timeout", "-1"],
        ["--shutdown-timeout", "inf"],
    ],
)
def test_main_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        line_server.main(argv)
    assert exc_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


# ----------------------------------------------------------- subprocesses


def _subprocess_env() -> dict[str, str]:
    # Make `import triostream` work in the child without installing it.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    # The banner must reach us because the server flushes it, not thanks to this.
    env.pop("PYTHONUNBUFFERED", None)
    return env


@asynccontextmanager
async def server_process(*args: str) -> AsyncIterator[int]:
    """Run ``python examples/line_server.py --port 0 ARGS`` and yield its port.

    The process is terminated (then killed, see `trio.run_process`) when the
    block exits, whatever happens; the block is bounded by TIMEOUT.
    """
    command = [sys.executable, str(EXAMPLE), "--port", "0", *args]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    check=False,
                    env=_subprocess_env(),
                )
            )
            assert process.stdin is not None
            assert process.stdout is not None
            output = BufferedStream(trio.StapledStream(process.stdin, process.stdout))
            try:
                banner = await output.receive_line(max_size=200)
                match = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)", banner)
                assert match is not None, banner
                yield int(match[1])
                assert process.returncode is None, "the server exited on its own"
            finally:
                nursery.cancel_scope.cancel()
                await output.aclose()


@pytest.fixture
def nc_command() -> list[str]:
    """``nc`` with the flags the test needs, or skip.

    A (synchronous) fixture rather than a helper called from the async test:
    pytest-trio 0.8 re-raises a skip from inside an async test without its
    reason, so the reason would not show in ``pytest -rs``.
    """
    nc = shutil.which("nc")
    if nc is None:
        pytest.skip("nc not installed (CI installs netcat-openbsd)")
    usage = subprocess.run([nc, "-h"], capture_output=True, timeout=10, check=False)
    if b"-N" not in usage.stdout + usage.stderr:
        pytest.skip("the installed nc has no -N option; this test needs netcat-openbsd")
    return [nc, "-N", "-w", "5"]


async def test_subprocess_with_netcat(nc_command: list[str]) -> None:
    nc = nc_command
    async with server_process("--max-line", "64") as port:
        request = b"ECHO hi\nUPPER abc\r\nfrob\nECHO " + b"x" * 5000 + b"\nECHO after the long line\nQUIT\nECHO never\n"
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                [*nc, "127.0.0.1", str(port)], stdin=request, capture_stdout=True, capture_stderr=True
            )
        assert result.stdout == (
            b"hi\nABC\nERR unknown command 'frob'\nERR line too long (max 64 bytes)\nafter the long line\nBYE\n"
        )
        # A second session: the server is still up after the first one ended.
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                [*nc, "127.0.0.1", str(port)], stdin=b"HELP\n", capture_stdout=True, capture_stderr=True
            )
        # nc -N half-closes after stdin's EOF: the server answers, then sees
        # the EOF and closes, which ends nc.
        assert result.stdout == b"commands: ECHO <text>, UPPER <text>, HELP, QUIT\n"


def _socket_session(port: int, request: bytes, half_close: bool = False) -> bytes:
    """Send ``request`` on a plain blocking socket (then shut down our sending
    side if ``half_close``); return all replies up to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_subprocess_with_python_socket() -> None:
    async with server_process("--max-line", "32", "--idle-timeout", "0.3") as port:
        request = b"ECHO one\r\nUPPER two\nECHO " + b"y" * 100 + b"\nECHO three\nQUIT\n"
        replies = await trio.to_thread.run_sync(_socket_session, port, request)
        assert replies == b"one\nTWO\nERR line too long (max 32 bytes)\nthree\nBYE\n"
        # Silent client: the idle timeout ends the session.
        assert await trio.to_thread.run_sync(_socket_session, port, b"") == b"ERR idle timeout\n"
        # EOF in the middle of a line: the complete line is answered, then the
        # server closes quietly.
        assert await trio.to_thread.run_sync(_socket_session, port, b"ECHO a\nECHO hal", True) == b"a\n"
        # And the server is still there.
        assert await trio.to_thread.run_sync(_socket_session, port, b"ECHO ok\nQUIT\n") == b"ok\nBYE\n"


# ------------------------------------------------------------------ Ctrl-C


class _Process:
    """The example run as ``python examples/line_server.py --port 0 ARGS``,
    its stderr collected in the background."""

    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.stderr = bytearray()

    async def collect_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.stderr += chunk

    async def wait_for_stderr(self, text: bytes) -> None:
        for _ in range(1000):  # bounded (and by TIMEOUT)
            if text in self.stderr:
                return
            if self.process.returncode is not None:
                break
            await trio.sleep(0.01)
        pytest.fail(f"{text!r} not in the server's stderr: {bytes(self.stderr)!r}")


@asynccontextmanager
async def interruptible_server(*args: str, max_open_files: int | None = None) -> AsyncIterator[_Process]:
    """Run the example as a subprocess (killed when the block exits, if it
    is still running), with a soft RLIMIT_NOFILE of ``max_open_files`` if
    given; the block is bounded by TIMEOUT."""
    command = [sys.executable, str(EXAMPLE), "--port", "0", *args]
    if max_open_files is not None:
        command[1:2] = ["-c", _WITH_RLIMIT, str(max_open_files), str(EXAMPLE)]
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_subprocess_env()
        )
        try:
            assert process.stdout is not None
            output = BufferedStream(trio.StapledStream(_NoSend(), process.stdout))
            banner = await output.receive_line(max_size=200)
            match = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)", banner)
            assert match is not None, banner
            server = _Process(process, int(match[1]))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.collect_stderr)
                yield server
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for pipe in (process.stdout, process.stderr):
                    if pipe is not None:
                        await pipe.aclose()


# python -c _WITH_RLIMIT LIMIT SCRIPT ARGS...: run SCRIPT with ARGS under a
# soft RLIMIT_NOFILE of LIMIT (no preexec_fn: it does not mix with threads).
_WITH_RLIMIT = """
import resource, runpy, sys
limit = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class _NoSend(trio.abc.SendStream):
    """The send half of a receive-only `trio.StapledStream`."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise trio.ClosedResourceError

    async def wait_send_all_might_not_block(self) -> None:
        raise trio.ClosedResourceError

    async def aclose(self) -> None:
        pass


needs_sigint = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a subprocess")


@needs_sigint
async def test_ctrl_c_exits_130_without_a_traceback() -> None:
    async with interruptible_server() as server:
        async with connect(server.port) as client:
            assert await client.ask(b"ECHO connected\n") == b"connected\n"
            server.process.send_signal(signal.SIGINT)
            # The client, idle between commands, is disconnected at once.
            assert await client.read_to_eof() == b""
        assert await server.process.wait() == 130
    assert b"Traceback" not in server.stderr, bytes(server.stderr)
    assert b"shutting down" in server.stderr


@needs_sigint
async def test_ctrl_c_lets_commands_under_way_finish() -> None:
    async with interruptible_server("--shutdown-timeout", "10") as server:
        async with connect(server.port) as idle, connect(server.port) as busy:
            assert await idle.ask(b"ECHO idle\n") == b"idle\n"
            # One send: the server reads "ECHO hal" with the first command,
            # so it is in the middle of a line when the shutdown starts.
            await busy.send(b"ECHO first\nECHO hal")
            assert await busy.read_line() == b"first\n"
            server.process.send_signal(signal.SIGINT)
            await server.wait_for_stderr(b"shutting down")
            assert await idle.read_to_eof() == b""
            # The line under way is answered within --shutdown-timeout,
            # then the connection is closed.
            await busy.send(b"f\n")
            assert await busy.read_to_eof() == b"half\n"
        assert await server.process.wait() == 130
    assert b"Traceback" not in server.stderr, bytes(server.stderr)


@needs_sigint
async def test_second_ctrl_c_during_the_shutdown_is_harmless() -> None:
    async with interruptible_server("--shutdown-timeout", "10") as server:
        async with connect(server.port) as busy:
            await busy.send(b"ECHO first\nECHO hal")
            assert await busy.read_line() == b"first\n"
            server.process.send_signal(signal.SIGINT)
            await server.wait_for_stderr(b"shutting down")
            server.process.send_signal(signal.SIGINT)
            await trio.sleep(0.1)  # let it arrive (not a timing assertion)
            await busy.send(b"f\n")
            assert await busy.read_to_eof() == b"half\n"
        assert await server.process.wait() == 130
    assert b"Traceback" not in server.stderr, bytes(server.stderr)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is Unix")
async def test_auto_max_connections_keeps_the_server_within_its_fd_limit() -> None:
    # With 100 file descriptors, "auto" serves 36 clients at once (100 minus
    # serve_tcp's margin of 64) and makes the others wait, rather than run
    # out of descriptors (EMFILE) with 120 clients connected at once.
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 100:
        pytest.skip("the hard RLIMIT_NOFILE is below 100")
    async with interruptible_server(max_open_files=100) as server:

        async def session(i: int, replies: dict[int, bytes]) -> None:
            async with connect(server.port) as client:
                assert await client.ask(b"ECHO %d\n" % i) == b"%d\n" % i
                await trio.sleep(0.2)  # keep the slot a while (not a timing assertion)
                await client.send(b"QUIT\n")
                replies[i] = await client.read_to_eof()

        replies: dict[int, bytes] = {}
        async with trio.open_nursery() as nursery:
            for i in range(120):
                nursery.start_soon(session, i, replies)
        assert replies == {i: b"BYE\n" for i in range(120)}
        # Nothing on stderr: no EMFILE, no error, no traceback.
        await trio.sleep(0.1)  # let any last log line arrive (not a timing assertion)
        assert bytes(server.stderr) == b""
        server.process.send_signal(signal.SIGINT)
        assert await server.process.wait() == 130
