"""Network helpers: connect (TCP, Unix, TLS) and serve, yielding `Connection`s.

Every function here takes the options of `Connection` as explicit keyword
parameters and validates them (and its own) at the call, before any socket
is opened: a bad value is a `TypeError` or `ValueError` from the call
itself, never a failure of each connection later. The serving engine is in
``_server.py``.
"""

from __future__ import annotations

import errno
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal

import trio

from ._connection import Connection, run_connection
from ._options import ConnectionOptions, check_positive, check_timeout
from ._server import ServerLimits, default_max_connections, serve_listeners

__all__ = ["connect_tcp", "connect_unix", "serve_tcp", "serve_unix"]

Handler = Callable[[Connection], Awaitable[object]]

#: `serve_tcp`'s default ``idle_timeout``: a server drops a connection
#: silent both ways for this long (clients and `open_connection` have none).
DEFAULT_SERVER_IDLE_TIMEOUT = 300.0
#: The default ``handshake_timeout`` everywhere a TLS handshake happens.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: `serve_tcp`'s default grace period for handlers at shutdown.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


def connect_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    happy_eyeballs_delay: float | None = 0.25,
    connect_timeout: float | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    max_buffer_size: int = 65536,
    receive_size: int = 65536,
    max_write_buffer_size: int = 1 << 20,
    write_high_water: int = 65536,
    write_low_water: int | None = None,
    read_ahead: bool = True,
    idle_timeout: float | None = None,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    close_timeout: float = 10.0,
) -> AbstractAsyncContextManager[Connection]:
    """Connect over TCP and run a `Connection` for an ``async with`` block::

        ctx = ssl.create_default_context()  # verifies the server's certificate
        async with connect_tcp(host, port, ssl_context=ctx) as conn:
            conn.write(b"PING\\r\\n")
            reply = await conn.receive_line()

    Uses `trio.open_tcp_stream` (with Happy Eyeballs; ``connect_timeout``
    bounds it, default None), with TLS if ``ssl_context`` is given (the
    handshake is done before the block runs, within ``handshake_timeout``
    seconds, default 10; ``server_hostname`` defaults to ``host``). The other
    options are `Connection`'s. Every option is checked by this call
    (`TypeError`, `ValueError`); connecting happens when the block is
    entered, and raises `OSError`, `trio.TooSlowError` (a timeout) or
    `trio.BrokenResourceError` (a failed handshake), with the socket closed.
    The block's end closes the connection as `open_connection` does.
    """
    options = ConnectionOptions(
        max_buffer_size=max_buffer_size,
        receive_size=receive_size,
        max_write_buffer_size=max_write_buffer_size,
        write_high_water=write_high_water,
        write_low_water=write_low_water,
        read_ahead=read_ahead,
        idle_timeout=idle_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        close_timeout=close_timeout,
    )
    if happy_eyeballs_delay is not None:
        check_timeout("happy_eyeballs_delay", happy_eyeballs_delay)
    connect_timeout = check_timeout("connect_timeout", connect_timeout)
    handshake_timeout = check_timeout("handshake_timeout", handshake_timeout)
    return _connect_tcp(
        host,
        port,
        ssl_context,
        server_hostname or host,
        happy_eyeballs_delay,
        connect_timeout,
        handshake_timeout,
        options,
    )


@asynccontextmanager
async def _connect_tcp(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str,
    happy_eyeballs_delay: float | None,
    connect_timeout: float | None,
    handshake_timeout: float | None,
    options: ConnectionOptions,
) -> AsyncIterator[Connection]:
    with trio.fail_after(math.inf if connect_timeout is None else connect_timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    async with _opened(stream, ssl_context, server_hostname, handshake_timeout, options) as conn:
        yield conn


def connect_unix(
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    max_buffer_size: int = 65536,
    receive_size: int = 65536,
    max_write_buffer_size: int = 1 << 20,
    write_high_water: int = 65536,
    write_low_water: int | None = None,
    read_ahead: bool = True,
    idle_timeout: float | None = None,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    close_timeout: float = 10.0,
) -> AbstractAsyncContextManager[Connection]:
    """Like `connect_tcp`, over a Unix domain socket (`trio.open_unix_socket`)."""
    options = ConnectionOptions(
        max_buffer_size=max_buffer_size,
        receive_size=receive_size,
        max_write_buffer_size=max_write_buffer_size,
        write_high_water=write_high_water,
        write_low_water=write_low_water,
        read_ahead=read_ahead,
        idle_timeout=idle_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        close_timeout=close_timeout,
    )
    handshake_timeout = check_timeout("handshake_timeout", handshake_timeout)
    return _connect_unix(path, ssl_context, server_hostname, handshake_timeout, options)


@asynccontextmanager
async def _connect_unix(
    path: str,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    handshake_timeout: float | None,
    options: ConnectionOptions,
) -> AsyncIterator[Connection]:
    stream: trio.abc.Stream = await trio.open_unix_socket(path)
    async with _opened(stream, ssl_context, server_hostname, handshake_timeout, options) as conn:
        yield conn


@asynccontextmanager
async def _opened(
    stream: trio.abc.Stream,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    handshake_timeout: float | None,
    options: ConnectionOptions,
) -> AsyncIterator[Connection]:
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname)
        try:
            with trio.fail_after(math.inf if handshake_timeout is None else handshake_timeout):
                await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        stream = tls
    async with run_connection(stream, options) as conn:
        yield conn


def _limits(
    max_connections: int | Literal["auto"] | None,
    max_connections_per_host: int | None,
    handshake_timeout: float | None,
    shutdown_timeout: float,
    backlog: int | None,
) -> ServerLimits:
    if max_connections == "auto":
        max_connections = default_max_connections()
    elif max_connections is not None:
        max_connections = check_positive("max_connections", max_connections)
    if max_connections_per_host is not None:
        max_connections_per_host = check_positive("max_connections_per_host", max_connections_per_host)
    if backlog is not None:
        check_positive("backlog", backlog)
    return ServerLimits(
        max_connections=max_connections,
        max_connections_per_host=max_connections_per_host,
        handshake_timeout=check_timeout("handshake_timeout", handshake_timeout),
        shutdown_timeout=_check_shutdown_timeout(shutdown_timeout),
    )


def _check_shutdown_timeout(value: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0  # no grace period: cancel the handlers at once
    checked = check_timeout("shutdown_timeout", value, optional=False)
    assert checked is not None
    return checked


async def serve_tcp(
    handler: Handler,
    port: int,
    *,
    host: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | Literal["auto"] | None = "auto",
    max_connections_per_host: int | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    backlog: int | None = None,
    reuse_port: bool = False,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    max_buffer_size: int = 65536,
    receive_size: int = 65536,
    max_write_buffer_size: int = 1 << 20,
    write_high_water: int = 65536,
    write_low_water: int | None = None,
    read_ahead: bool = True,
    idle_timeout: float | None = DEFAULT_SERVER_IDLE_TIMEOUT,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    close_timeout: float = 10.0,
) -> None:
    """Serve TCP connections: each accepted stream (TLS-wrapped if
    ``ssl_context``) runs ``await handler(conn)`` in a `Connection`.

    Built on `trio.open_tcp_listeners`; ``task_status.started`` reports the
    listeners (use ``nursery.start`` and port 0 for a free port). An
    exception in a handler is logged and ends that connection only.

    Limits, with defaults safe for a server on the internet:

    * ``max_connections`` (``"auto"``: the file-descriptor limit minus a
      margin; None for no limit): while that many connections are open the
      server stops accepting, so further clients wait in the kernel's listen
      backlog (``backlog``) and are served in turn.
    * ``max_connections_per_host`` (None): more connections from one peer
      address are closed at once.
    * ``handshake_timeout`` (10 s): a TLS client that has not finished its
      handshake by then is dropped (the slot is freed at once).
    * ``idle_timeout`` (300 s here, unlike `Connection`'s None), and every
      other option of `Connection`, applied to each connection.

    **Shutdown.** Cancelling ``serve_tcp`` stops accepting and abandons
    handshakes at once. Handlers get ``shutdown_timeout`` seconds (5; 0 for
    none): a handler waiting between requests (nothing buffered, nothing
    received since it last wrote) is cancelled at once, any other when the
    time is up. Each
    connection then closes gracefully within ``close_timeout`` (replies
    flushed, or the TCP connection reset when they cannot be), so the call
    returns within ``shutdown_timeout + close_timeout`` plus about a second,
    whatever the peers do. With a ``handler_nursery``, the connections run
    there, and cancelling that nursery closes them forcefully.

    ``reuse_port=True`` sets ``SO_REUSEPORT`` on the listening sockets
    before binding, so that several processes can serve one port and the
    kernel spreads the connections across them (Linux, BSD: how a Trio
    server uses more than one core; see ``examples/redis_server.py
    --workers``). `ValueError` where the platform has no ``SO_REUSEPORT``.

    Every option is validated before any socket is opened: a bad value
    raises `TypeError` or `ValueError` from this call (through
    ``nursery.start``), not from each connection.
    """
    options = ConnectionOptions(
        max_buffer_size=max_buffer_size,
        receive_size=receive_size,
        max_write_buffer_size=max_write_buffer_size,
        write_high_water=write_high_water,
        write_low_water=write_low_water,
        read_ahead=read_ahead,
        idle_timeout=idle_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        close_timeout=close_timeout,
    )
    limits = _limits(max_connections, max_connections_per_host, handshake_timeout, shutdown_timeout, backlog)
    if not isinstance(reuse_port, bool):
        raise TypeError(f"reuse_port must be True or False, not {reuse_port!r}")
    if reuse_port:
        listeners = await _open_reuse_port_listeners(port, host, backlog)
    else:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(
        handler,
        listeners,
        ssl_context=ssl_context,
        limits=limits,
        options=options,
        handler_nursery=handler_nursery,
        task_status=task_status,
    )


async def serve_unix(
    handler: Handler,
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | Literal["auto"] | None = "auto",
    max_connections_per_host: int | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    backlog: int = 128,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    max_buffer_size: int = 65536,
    receive_size: int = 65536,
    max_write_buffer_size: int = 1 << 20,
    write_high_water: int = 65536,
    write_low_water: int | None = None,
    read_ahead: bool = True,
    idle_timeout: float | None = DEFAULT_SERVER_IDLE_TIMEOUT,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    close_timeout: float = 10.0,
) -> None:
    """Like `serve_tcp`, on a Unix domain socket bound at ``path`` (which must
    not exist yet), with the same options, defaults and shutdown. All peers
    of a Unix socket count as one host for ``max_connections_per_host``."""
    options = ConnectionOptions(
        max_buffer_size=max_buffer_size,
        receive_size=receive_size,
        max_write_buffer_size=max_write_buffer_size,
        write_high_water=write_high_water,
        write_low_water=write_low_water,
        read_ahead=read_ahead,
        idle_timeout=idle_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        close_timeout=close_timeout,
    )
    limits = _limits(max_connections, max_connections_per_host, handshake_timeout, shutdown_timeout, backlog)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    await serve_listeners(
        handler,
        [trio.SocketListener(sock)],
        ssl_context=ssl_context,
        limits=limits,
        options=options,
        handler_nursery=handler_nursery,
        task_status=task_status,
    )


async def _open_reuse_port_listeners(port: int, host: str | None, backlog: int | None) -> list[trio.SocketListener]:
    """`trio.open_tcp_listeners`, with ``SO_REUSEPORT`` set before each bind."""
    if not hasattr(trio.socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port=True: this platform has no SO_REUSEPORT")
    addresses = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE)
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _, sockaddr in addresses:
            try:
                sock = trio.socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:
                    continue  # e.g. IPv6 disabled: serve the other families (as trio does)
                raise
            try:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                sock.listen(backlog if backlog is not None else 0xFFFF)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners
