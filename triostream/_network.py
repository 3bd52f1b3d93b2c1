"""Network helpers: connect (TCP, Unix, TLS) and serve, yielding `Connection`s.

Every function here takes the options of `Connection` as explicit keyword
parameters and validates them (and its own) at the call, before any socket
is opened: a bad value is a `TypeError` or `ValueError` from the call
itself, never a failure of each connection later.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from ._connection import Connection, run_connection
from ._options import ConnectionOptions, check_positive, check_timeout

__all__ = ["connect_tcp", "connect_unix", "serve_tcp", "serve_unix"]

log = logging.getLogger("triostream")

Handler = Callable[[Connection], Awaitable[object]]


def connect_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    happy_eyeballs_delay: float | None = 0.25,
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

        async with connect_tcp("example.com", 443, ssl_context=ctx) as conn:
            ...

    Uses `trio.open_tcp_stream` (with Happy Eyeballs), with TLS if
    ``ssl_context`` is given (handshake done before the block runs;
    ``server_hostname`` defaults to ``host``). The other options are
    `Connection`'s. Options are checked by this call (`TypeError`,
    `ValueError`); connecting happens when the block is entered, and raises
    `OSError` (or `trio.BrokenResourceError` for a failed handshake), with
    the socket closed. The block's end closes the connection as
    `open_connection` does.
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
    return _connect_tcp(host, port, ssl_context, server_hostname or host, happy_eyeballs_delay, options)


@asynccontextmanager
async def _connect_tcp(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str,
    happy_eyeballs_delay: float | None,
    options: ConnectionOptions,
) -> AsyncIterator[Connection]:
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    async with _opened(stream, ssl_context, server_hostname, options) as conn:
        yield conn


def connect_unix(
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
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
    return _connect_unix(path, ssl_context, server_hostname, options)


@asynccontextmanager
async def _connect_unix(
    path: str, ssl_context: ssl.SSLContext | None, server_hostname: str | None, options: ConnectionOptions
) -> AsyncIterator[Connection]:
    stream: trio.abc.Stream = await trio.open_unix_socket(path)
    async with _opened(stream, ssl_context, server_hostname, options) as conn:
        yield conn


@asynccontextmanager
async def _opened(
    stream: trio.abc.Stream, ssl_context: ssl.SSLContext | None, server_hostname: str | None, options: ConnectionOptions
) -> AsyncIterator[Connection]:
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        stream = tls
    async with run_connection(stream, options) as conn:
        yield conn


def _check_max_connections(max_connections: int | None) -> int | None:
    return None if max_connections is None else check_positive("max_connections", max_connections)


async def serve_tcp(
    handler: Handler,
    port: int,
    *,
    host: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
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
) -> None:
    """Serve TCP connections: each accepted stream (TLS-wrapped if
    ``ssl_context``) runs ``await handler(conn)`` in a `Connection`.

    Built on `trio.open_tcp_listeners`; ``task_status.started`` reports the
    listeners (use ``nursery.start`` and port 0 for a free port).

    ``max_connections`` (None, or an int >= 1) bounds the handlers running
    at once: while that many run, the server stops accepting, so further
    clients wait in the kernel's listen backlog (``backlog``) and are served
    in turn; they are not refused by the server (the kernel may refuse them
    once the backlog is full). An exception in a handler is logged and closes
    that connection only. Cancelling ``serve_tcp`` shuts down gracefully: it
    stops accepting, cancels the handlers, and closes each connection with
    its queued writes flushed for at most ``close_timeout``.

    The remaining options are `Connection`'s, applied to every connection.
    All options are validated before any socket is opened: a bad value
    raises `TypeError` or `ValueError` from this call (from
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
    max_connections = _check_max_connections(max_connections)
    if backlog is not None:
        backlog = check_positive("backlog", backlog)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    await _serve(handler, listeners, ssl_context, max_connections, handler_nursery, task_status, options)


async def serve_unix(
    handler: Handler,
    path: str,
    *,
    max_connections: int | None = None,
    backlog: int = 128,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
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
) -> None:
    """Like `serve_tcp`, on a Unix domain socket bound at ``path`` (which must
    not exist yet). Options validated the same way, before binding."""
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
    max_connections = _check_max_connections(max_connections)
    backlog = check_positive("backlog", backlog)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    await _serve(handler, [trio.SocketListener(sock)], None, max_connections, handler_nursery, task_status, options)


async def _serve(
    handler: Handler,
    listeners: list[trio.SocketListener],
    ssl_context: ssl.SSLContext | None,
    max_connections: int | None,
    handler_nursery: trio.Nursery | None,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
    options: ConnectionOptions,
) -> None:
    limiter = trio.CapacityLimiter(max_connections) if max_connections else None
    # Handlers run in cancel scopes of their own, inside a shielded scope
    # holding the connection: a shutdown cancels the handlers, and each
    # connection then closes gracefully (flushing for at most close_timeout).
    handlers: set[trio.CancelScope] = set()
    shutting_down = False

    async def run(stream: trio.abc.Stream, token: object) -> None:
        try:
            with trio.CancelScope(shield=True):
                if ssl_context is not None:
                    stream = trio.SSLStream(stream, ssl_context, server_side=True)
                async with run_connection(stream, options) as conn:
                    with trio.CancelScope() as scope:
                        handlers.add(scope)
                        if shutting_down:
                            scope.cancel()
                        try:
                            await handler(conn)
                        finally:
                            handlers.discard(scope)
        except Exception:
            log.exception("connection handler %r failed", handler)
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(token)

    async def shutdown_watcher() -> None:
        nonlocal shutting_down
        try:
            await trio.sleep_forever()
        finally:
            shutting_down = True
            for scope in list(handlers):
                scope.cancel()

    async def accept_loop(listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                token = object()
                if limiter is not None:
                    await limiter.acquire_on_behalf_of(token)
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: wait and retry
                    log.warning("accept failed: %s", exc)
                    if limiter is not None:
                        limiter.release_on_behalf_of(token)
                    await trio.sleep(0.1)
                    continue
                except BaseException:
                    if limiter is not None:
                        limiter.release_on_behalf_of(token)
                    raise
                nursery.start_soon(run, stream, token)

    async with trio.open_nursery() as nursery:
        target = handler_nursery or nursery
        nursery.start_soon(shutdown_watcher)
        for listener in listeners:
            nursery.start_soon(accept_loop, listener, target)
        task_status.started(listeners)
