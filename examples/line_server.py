"""A small line-protocol TCP server built on `triostream.BufferedStream`.

Run it (from a checkout, without installing triostream)::

    PYTHONPATH=. python examples/line_server.py --port 7878

and talk to it with netcat::

    $ printf 'ECHO hi\\nUPPER hello\\nQUIT\\n' | nc -N 127.0.0.1 7878
    hi
    HELLO
    BYE

On startup the server prints ``listening on HOST:PORT`` (one line per
listening socket, IPv6 addresses in brackets) to stdout and flushes it, so
``--port 0`` (pick a free port) is usable from scripts and tests.

The protocol
------------

The client sends one command per line. Lines end in ``\\n``; a ``\\r`` right
before it is dropped, so CRLF clients (``telnet``, ``nc -C``) work too. The
server answers **every line with exactly one line ending in a plain**
``\\n`` (never ``\\r\\n``), in order, so a client may pipeline commands.
Command names are case-insensitive; the argument is everything after the
first space, taken byte for byte.

``ECHO <text>``
    Replies ``<text>``.
``UPPER <text>``
    Replies ``<text>`` upper-cased (Unicode rules for valid UTF-8; bytes that
    are not UTF-8 come back unchanged).
``HELP``
    Replies a one-line summary of the commands.
``QUIT``
    Replies ``BYE`` and closes the connection.

Errors are lines starting with ``ERR``; the connection stays usable unless
noted:

* ``ERR unknown command '<name>'`` and ``ERR empty line``.
* ``ERR line too long (max N bytes)``: a line of more than ``--max-line``
  bytes, its line ending included. The error is sent as soon as the limit is
  passed; the rest of that line is then skipped
  (`BufferedStream.discard_until`, in bounded memory) and the next line is
  read as usual.
* ``ERR idle timeout``, and the connection is closed: no complete line arrived
  within ``--idle-timeout`` seconds (a client that trickles bytes without
  ever finishing a line is idle too). The same timeout bounds every reply
  sent: a client that stops reading its replies is dropped without a word.

A client that closes its side (even in the middle of a line) or resets the
connection just ends its own session: one client's troubles never reach the
others or the server.
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
from collections.abc import Sequence

import trio

from triostream import BufferedStream, FrameTooLongError, IncompleteReadError

__all__ = ["handle_client", "main", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7878
DEFAULT_MAX_LINE = 1024
DEFAULT_IDLE_TIMEOUT = 300.0

HELP_TEXT = b"commands: ECHO <text>, UPPER <text>, HELP, QUIT"

# The BufferedStream may read ahead (pipelined commands) by at least this much,
# whatever --max-line says; --max-line alone decides how long a line may be.
_MIN_BUFFER = 8192


def _dispatch(line: bytes) -> tuple[bytes, bool]:
    """Return ``(reply line without its "\\n", keep the connection open)``."""
    name, _, argument = line.partition(b" ")
    command = name.upper()
    if command == b"ECHO":
        return argument, True
    if command == b"UPPER":
        text = argument.decode("utf-8", "surrogateescape")
        return text.upper().encode("utf-8", "surrogateescape"), True
    if command == b"HELP":
        return HELP_TEXT, True
    if command == b"QUIT":
        return b"BYE", False
    if not line:
        return b"ERR empty line", True
    shown = name.decode("utf-8", "replace")
    return f"ERR unknown command {shown!r}".encode(), True


class _Session:
    """One client's conversation: answers commands until QUIT or an idle timeout,
    raises on EOF and transport errors (`handle_client` sorts those out)."""

    def __init__(self, stream: BufferedStream, max_line: int, idle_timeout: float) -> None:
        self.stream = stream
        self.max_line = max_line
        self.idle_timeout = idle_timeout

    async def send_line(self, line: bytes) -> None:
        # A client that does not read its replies must not hold the task
        # forever: trio.TooSlowError ends the session (see handle_client).
        with trio.fail_after(self.idle_timeout):
            await self.stream.send_all(line + b"\n")

    async def run(self) -> None:
        stream = self.stream
        while True:
            line: bytes | None = None
            too_long = False
            # The receives are cancellation-safe: when the timeout strikes,
            # nothing received is lost (not that it matters here: we hang up).
            with trio.move_on_after(self.idle_timeout):
                try:
                    line = await stream.receive_line(max_size=self.max_line)
                except FrameTooLongError:
                    too_long = True
            if too_long:
                await self.send_line(f"ERR line too long (max {self.max_line} bytes)".encode())
                with trio.move_on_after(self.idle_timeout):
                    # Skip the rest of the long line, however long, in bounded memory.
                    await stream.discard_until(b"\n")
                    continue
                # The rest of the long line did not arrive in time: fall
                # through to the idle timeout.
            if line is None:
                await self.send_line(b"ERR idle timeout")
                return
            reply, keep_open = _dispatch(line)
            await self.send_line(reply)
            if not keep_open:
                return


async def handle_client(stream: trio.abc.Stream, *, max_line: int, idle_timeout: float) -> None:
    """Serve one connection until QUIT, idle timeout, EOF or a broken connection.

    Never raises for anything the client does (EOF mid-line, reset, not
    reading), so that `trio.serve_tcp` keeps serving the others. Closes
    ``stream`` in every case.
    """
    buffered = BufferedStream(stream, max_buffer_size=max(max_line, _MIN_BUFFER))
    try:
        async with buffered:
            await _Session(buffered, max_line, idle_timeout).run()
    except IncompleteReadError:
        pass  # EOF, clean or in the middle of a line: nothing to answer.
    except (trio.BrokenResourceError, ConnectionError):
        pass  # Reset, or closed while we were sending.
    except trio.TooSlowError:
        pass  # The client stopped reading its replies.


async def serve(
    host: str | None,
    port: int,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the line protocol on ``host``:``port`` (``port=0``: any free port) forever.

    With ``nursery.start(serve, ...)`` the start value is the list of
    `trio.SocketListener` objects, from which the actual port can be read.
    """
    if max_line < 1:
        raise ValueError(f"max_line must be >= 1, not {max_line}")
    if idle_timeout <= 0:
        raise ValueError(f"idle_timeout must be > 0, not {idle_timeout}")
    handler = functools.partial(handle_client, max_line=max_line, idle_timeout=idle_timeout)
    await trio.serve_tcp(handler, port, host=host, task_status=task_status)


def format_address(listener: trio.SocketListener) -> str:
    """``"HOST:PORT"`` of a listener, with an IPv6 host in brackets."""
    host, port = listener.socket.getsockname()[:2]
    if listener.socket.family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def _run(host: str, port: int, max_line: int, idle_timeout: float) -> None:
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            functools.partial(serve, host, port, max_line=max_line, idle_timeout=idle_timeout)
        )
        for listener in listeners:
            print(f"listening on {format_address(listener)}", flush=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A line-protocol TCP server (ECHO, UPPER, HELP, QUIT).")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port (default %(default)s)")
    parser.add_argument(
        "--max-line",
        type=_positive_int,
        default=DEFAULT_MAX_LINE,
        metavar="BYTES",
        help="longest accepted line, line ending included (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a client that sends no complete line for this long (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        trio.run(_run, args.host, args.port, args.max_line, args.idle_timeout)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
