"""A small line-protocol TCP server built on `triostream.serve_tcp`.

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
  within ``--idle-timeout`` seconds of the server starting to wait for it (a
  client that trickles bytes without ever finishing a line is idle too; so is
  one that never finishes a line being skipped).

The same ``--idle-timeout`` bounds every reply sent: a client that stops
reading its replies, so that the server cannot send for that long, is
dropped without a word (the connection's ``write_timeout``); as replies are
then lost, the connection is reset (RST) rather than closed with a FIN.

A client that closes its side (even in the middle of a line) or resets the
connection just ends its own session: one client's troubles never reach the
others or the server, and none of them is logged as an error (`serve_tcp`
logs each end of a connection at INFO or DEBUG; see ``--verbose``).

Limits and shutdown
-------------------

Each client is a `triostream.Connection` run by `triostream.serve_tcp`,
whose safe defaults the options below keep:

* ``--max-connections`` (default ``auto``: the file-descriptor limit minus a
  margin): while that many clients are connected the server accepts no
  more; the next clients wait in the kernel's listen queue and are served
  in turn as others leave, instead of the server running out of file
  descriptors.
* ``--shutdown-timeout`` (default 5 s): **Ctrl-C** (SIGINT) shuts the server
  down gracefully. It stops accepting at once; a client waiting between
  commands is disconnected at once; a client whose command is under way
  (partly received, or received and not answered yet) gets up to
  ``--shutdown-timeout`` seconds to finish it and receive the reply. Every
  connection is then closed, its replies flushed within 10 s (or reset).
  The process exits with code 130 (128 + SIGINT), without a traceback; a
  second Ctrl-C during the shutdown changes nothing (it is bounded anyway).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Literal

import trio

from triostream import Connection, FrameTooLongError, IncompleteReadError, serve_tcp

if sys.version_info < (3, 11):
    # A dependency of trio on 3.10 (mypy, checking for 3.10, may not have it).
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = ["handle_client", "main", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7878
DEFAULT_MAX_LINE = 1024
# The defaults of triostream.serve_tcp (the tests check that they agree).
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONNECTIONS: Literal["auto"] = "auto"
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_CLOSE_TIMEOUT = 10.0

#: The exit status after Ctrl-C, as a shell reports a process killed by SIGINT.
EXIT_INTERRUPTED = 128 + signal.SIGINT

HELP_TEXT = b"commands: ECHO <text>, UPPER <text>, HELP, QUIT"

# Each connection may read ahead (pipelined commands) by at least this much,
# whatever --max-line says; --max-line alone decides how long a line may be.
_MIN_BUFFER = 8192

log = logging.getLogger("line_server")


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


async def _next_line(conn: Connection, max_line: int, idle_timeout: float) -> bytes | None:
    """The next line of at most ``max_line`` bytes, or None when the client
    is idle for ``idle_timeout`` seconds. Over-long lines are answered and
    skipped here.

    The timeout is the handler's own, not the connection's: a `Connection`
    timeout closes the connection without a word, while the protocol
    answers an idle client with ``ERR idle timeout``.
    """
    while True:
        with trio.move_on_after(idle_timeout) as waiting:
            try:
                # Cancellation-safe: when the timeout strikes, nothing
                # received is lost (not that it matters here: we hang up).
                return await conn.receive_line(max_size=max_line)
            except FrameTooLongError:
                pass  # nothing consumed: answer, then skip the line below
        if waiting.cancelled_caught:
            return None
        await conn.send_all(f"ERR line too long (max {max_line} bytes)\n".encode())
        with trio.move_on_after(idle_timeout) as skipping:
            # Skip the rest of the long line, however long, in bounded memory.
            await conn.discard_until(b"\n")
        if skipping.cancelled_caught:
            return None


async def handle_client(conn: Connection, *, max_line: int, idle_timeout: float) -> None:
    """Serve one client (the handler `serve` gives `triostream.serve_tcp`).

    Returns after QUIT, an idle timeout, or the client's EOF (even in the
    middle of a line); `serve_tcp` then closes the connection gracefully,
    replies flushed. A reset, or a client that stopped reading its replies
    (the connection's ``write_timeout``), raises `trio.BrokenResourceError`,
    which `serve_tcp` treats as an ordinary end of the connection: one INFO
    log line, nothing else.
    """
    try:
        while True:
            line = await _next_line(conn, max_line, idle_timeout)
            if line is None:
                await conn.send_all(b"ERR idle timeout\n")
                return
            reply, keep_open = _dispatch(line)
            # Queues the reply; waits only while too many replies are queued
            # (a client pipelining commands without reading the replies).
            await conn.send_all(reply + b"\n")
            if not keep_open:
                return
    except IncompleteReadError:
        pass  # EOF, clean or in the middle of a line: nothing to answer.


async def serve(
    host: str | None,
    port: int,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_connections: int | Literal["auto"] | None = DEFAULT_MAX_CONNECTIONS,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the line protocol on ``host``:``port`` (``port=0``: any free port)
    until cancelled.

    With ``nursery.start(serve, ...)`` the start value is the list of
    `trio.SocketListener` objects, from which the actual port can be read.
    ``max_connections``, ``shutdown_timeout`` and ``close_timeout`` are
    `triostream.serve_tcp`'s: cancelling `serve` shuts down gracefully and
    returns within ``shutdown_timeout + close_timeout`` (plus about a
    second). Bad values raise `ValueError` or `TypeError` before any socket
    is opened.
    """
    if max_line < 1:
        raise ValueError(f"max_line must be >= 1, not {max_line}")
    if not (math.isfinite(idle_timeout) and idle_timeout > 0):
        raise ValueError(f"idle_timeout must be a finite number > 0, not {idle_timeout}")
    handler = functools.partial(handle_client, max_line=max_line, idle_timeout=idle_timeout)
    await serve_tcp(
        handler,
        port,
        host=host,
        max_connections=max_connections,
        shutdown_timeout=shutdown_timeout,
        close_timeout=close_timeout,
        max_buffer_size=max(max_line, _MIN_BUFFER),
        # A client not reading its replies: one send blocked this long drops it.
        write_timeout=idle_timeout,
        # No connection-level idle_timeout: it would close an idle client
        # without the "ERR idle timeout" the protocol promises. It is not
        # needed either, as every wait of the handler is bounded: for a line
        # by the handler's own timeout, for a reply by write_timeout, at the
        # close by close_timeout.
        idle_timeout=None,
        task_status=task_status,
    )


def format_address(listener: trio.SocketListener) -> str:
    """``"HOST:PORT"`` of a listener, with an IPv6 host in brackets."""
    host, port = listener.socket.getsockname()[:2]
    if listener.socket.family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def _run(args: argparse.Namespace) -> bool:
    """Serve until Ctrl-C, then shut down gracefully; True if interrupted.

    SIGINT is taken as a message (`trio.open_signal_receiver`), not as a
    `KeyboardInterrupt` that could strike anywhere: the server is cancelled
    at a known point, which is `serve_tcp`'s graceful shutdown.
    """
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server_scope = trio.CancelScope()

            async def run_server(
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                with server_scope:
                    await serve(
                        args.host,
                        args.port,
                        max_line=args.max_line,
                        idle_timeout=args.idle_timeout,
                        max_connections=args.max_connections,
                        shutdown_timeout=args.shutdown_timeout,
                        task_status=task_status,
                    )
                nursery.cancel_scope.cancel()  # the server is down: stop waiting for signals

            listeners: list[trio.SocketListener] = await nursery.start(run_server)
            for listener in listeners:
                print(f"listening on {format_address(listener)}", flush=True)
            # Keep taking SIGINTs until the shutdown is over, so that a second
            # Ctrl-C is not re-delivered as a KeyboardInterrupt afterwards.
            async for _ in signals:
                if not server_scope.cancel_called:
                    print(
                        f"shutting down (up to {args.shutdown_timeout:g} s for the commands under way)",
                        file=sys.stderr,
                        flush=True,
                    )
                    server_scope.cancel()
    return server_scope.cancel_called


def _only_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C that escaped as an exception: a
    `KeyboardInterrupt`, or an exception group made of nothing but
    `KeyboardInterrupt` and `trio.Cancelled` (trio wraps a KeyboardInterrupt
    raised in a task with open nurseries). `_run` takes SIGINT as a signal;
    this is for one arriving before or after that (while trio starts or
    stops)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split((KeyboardInterrupt, trio.Cancelled))
        return rest is None and exc.subgroup(KeyboardInterrupt) is not None
    return False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _max_connections(text: str) -> int | Literal["auto"]:
    if text == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, not {text!r}") from None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {value}")
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
        help="close a client that sends no complete line, or reads no reply, for this long (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=_max_connections,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="serve at most N clients at once, the others wait their turn; "
        "'auto': the file-descriptor limit minus a margin (default %(default)s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_non_negative_float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="on Ctrl-C, time given to the commands under way (default %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection's end")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        interrupted = trio.run(_run, args)
    except BaseException as exc:
        if not _only_interrupted(exc):
            raise
        interrupted = True
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
