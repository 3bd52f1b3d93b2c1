"""The engine behind `serve_tcp` and `serve_unix`.

A server is a set of accept loops and one task per accepted connection.
The rules it keeps, and where:

* **Ownership.** From the moment ``accept`` returns, the connection task
  owns the socket and closes it on every path: a refused peer, a failed or
  timed-out TLS handshake, a failing handler, a shutdown (`_Server.run`).
* **Bounds.** Every peer-controlled wait has a limit: the TLS handshake
  (``handshake_timeout``), the connection's own timeouts, the number of
  connections at once (``max_connections``, by default derived from the
  file-descriptor limit) and per peer address (``max_connections_per_host``).
* **Shutdown.** Cancelling the server (the task running `serve_tcp`) stops
  the accept loops at once and cancels handshakes in progress. Handlers get
  a grace period of ``shutdown_timeout`` seconds: one waiting between
  requests (nothing buffered, and its last request answered: nothing
  received since it last wrote) is cancelled at once, any other when the
  grace period ends. Each connection then closes
  gracefully within ``close_timeout`` (its queued replies flushed, or the
  TCP connection reset if they cannot be). The connection tasks run in
  shielded scopes whose deadline is set when the shutdown begins, so the
  whole shutdown takes at most ``shutdown_timeout + close_timeout`` plus a
  small margin, whatever the peers do. (With a ``handler_nursery`` of the
  caller's, the tasks run there unshielded: the caller's cancellation
  reaches them directly, and closes the connections forcefully.)
* **Logging.** An ordinary end (the peer left, reset, timed out, broke the
  framing, failed its handshake) is one line at INFO or DEBUG with the peer
  address (the reason as text: a record kept by a handler such as
  ``MemoryHandler`` must not keep the exception, its traceback and through
  it the connection alive). An unexpected exception from a handler is
  logged at ERROR with its traceback, at most `_ERROR_BURST` times per
  `_ERROR_WINDOW` seconds; the rest are counted and reported in one line
  when the window ends.
  Accept failures for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  back off and log once per burst; any other accept error ends the server.
"""

from __future__ import annotations

import errno
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ._connection import TRANSPORT_ERRORS, CloseReason, Connection, run_connection, socket_under
from ._errors import CorruptFrameError, FrameTooLongError, IncompleteReadError
from ._options import ConnectionOptions

__all__ = ["ServerLimits", "default_max_connections", "serve_listeners"]

log = logging.getLogger("triostream")

Handler = Callable[[Connection], Awaitable[object]]

# Accept errors that mean "out of resources, try again later" (trio's
# serve_listeners retries the same ones); any other accept error is fatal.
_RETRY_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0

# At most _ERROR_BURST handler tracebacks per _ERROR_WINDOW seconds.
_ERROR_BURST = 5
_ERROR_WINDOW = 60.0

# How long past shutdown_timeout + close_timeout the shielded connection
# tasks may take to notice their deadline and finish closing.
_SHUTDOWN_MARGIN = 1.0

# What a peer can make a handler raise: an ordinary end, not a bug.
_ORDINARY = (*TRANSPORT_ERRORS, IncompleteReadError, FrameTooLongError, CorruptFrameError, trio.TooSlowError)

# File descriptors kept free of connections for everything else the
# process does (listeners, log files, the application's own).
_FD_MARGIN = 64


def default_max_connections() -> int:
    """The default ``max_connections``: the soft ``RLIMIT_NOFILE`` minus a
    margin of 64 descriptors (at least 1), so that a flood of clients makes
    the server wait rather than fail with EMFILE. 1000 where the limit is
    unknown or unlimited."""
    try:
        import resource
    except ImportError:  # not on Unix
        return 1000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1000
    return max(1, soft - _FD_MARGIN)


@dataclass(frozen=True)
class ServerLimits:
    """The server's own options, checked by `serve_tcp` / `serve_unix`."""

    max_connections: int | None
    max_connections_per_host: int | None
    handshake_timeout: float | None
    shutdown_timeout: float


def peer_address(stream: trio.abc.Stream) -> tuple[str, object]:
    """``(name, host)`` of the peer: its address for log lines ("?" when
    unknown), and the key ``max_connections_per_host`` counts by (its IP
    address; all Unix-socket peers share one key). One ``getpeername``."""
    sock = socket_under(stream)
    if sock is None:
        return "?", None
    try:
        address = sock.socket.getpeername()
    except OSError:
        return "?", None
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return (f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"), host
    return str(address) or "unix", "unix"


class _ErrorLog:
    """Rate limit for handler tracebacks (a flood must not fill the disk)."""

    def __init__(self) -> None:
        self.window_start = -math.inf
        self.in_window = 0
        self.suppressed = 0

    def report(self, peer: str, exc: BaseException) -> None:
        now = trio.current_time()
        if now - self.window_start >= _ERROR_WINDOW:
            if self.suppressed:
                log.error("%d more handler errors were not logged in the last %.0f s", self.suppressed, _ERROR_WINDOW)
            self.window_start = now
            self.in_window = 0
            self.suppressed = 0
        if self.in_window < _ERROR_BURST:
            self.in_window += 1
            log.error("%s: connection handler failed", peer, exc_info=exc)
        else:
            self.suppressed += 1


class _Server:
    def __init__(
        self,
        handler: Handler,
        ssl_context: ssl.SSLContext | None,
        limits: ServerLimits,
        options: ConnectionOptions,
        shield: bool,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.limits = limits
        self.options = options
        self.shield = shield
        max_connections = limits.max_connections
        self.limiter = trio.CapacityLimiter(max_connections) if max_connections is not None else None
        self.per_host: dict[object, int] = {}
        self.shutting_down = False
        self.grace_end = math.inf
        self.shield_end = math.inf
        # Scopes to act on at shutdown: handshakes (cancelled at once), the
        # handlers with their connections (grace period), the shielded tasks
        # (the overall bound).
        self.handshakes: set[trio.CancelScope] = set()
        self.handlers: dict[trio.CancelScope, Connection] = {}
        self.tasks: set[trio.CancelScope] = set()
        self.errors = _ErrorLog()

    # ------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        now = trio.current_time()
        self.grace_end = now + self.limits.shutdown_timeout
        self.shield_end = self.grace_end + self.options.close_timeout + _SHUTDOWN_MARGIN
        for scope in self.handshakes:
            scope.cancel()
        for scope, conn in self.handlers.items():
            self._bound_handler(scope, conn)
        for scope in self.tasks:
            scope.deadline = min(scope.deadline, self.shield_end)

    def _bound_handler(self, scope: trio.CancelScope, conn: Connection) -> None:
        """Shutdown for one handler: at once if it waits between requests,
        else when the grace period ends (or when it next waits between
        requests, whichever comes first)."""
        scope.deadline = min(scope.deadline, self.grace_end)
        conn._on_idle = scope.cancel
        if conn._idle_waiting:
            scope.cancel()

    async def watch_for_shutdown(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.begin_shutdown()

    # ------------------------------------------------------------ accepting

    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            backoff = _BACKOFF_MIN
            failures = 0
            while True:
                token = object()
                if self.limiter is not None:
                    await self.limiter.acquire_on_behalf_of(token)
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    self._release(token)
                    if exc.errno not in _RETRY_ACCEPT:
                        raise
                    if not failures:
                        log.warning("accept failed (%s); backing off while it lasts", exc)
                    failures += 1
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                except BaseException:
                    self._release(token)
                    raise
                if failures:
                    log.warning("accept works again after %d failures", failures)
                    failures = 0
                    backoff = _BACKOFF_MIN
                try:
                    nursery.start_soon(self.run, stream, token)
                except BaseException:  # a closed handler_nursery: the socket is still ours
                    self._release(token)
                    await trio.aclose_forcefully(stream)
                    raise

    def _release(self, token: object) -> None:
        if self.limiter is not None:
            self.limiter.release_on_behalf_of(token)

    # ------------------------------------------------------------ one connection

    async def run(self, stream: trio.SocketStream, token: object) -> None:
        """Serve one accepted socket; owns it, and closes it on every path."""
        peer, host = peer_address(stream)
        try:
            with trio.CancelScope(shield=self.shield) as task_scope:
                self.tasks.add(task_scope)
                if self.shutting_down:
                    task_scope.deadline = self.shield_end
                try:
                    await self._serve_one(stream, peer, host)
                finally:
                    self.tasks.discard(task_scope)
            if task_scope.cancelled_caught:
                log.info("%s: closed forcefully at the end of the shutdown", peer)
        finally:
            self._release(token)

    async def _serve_one(self, stream: trio.SocketStream, peer: str, host: object) -> None:
        per_host = self.limits.max_connections_per_host
        if per_host is not None:
            if self.per_host.get(host, 0) >= per_host:
                log.info("%s: refused: already %d connections from this host", peer, per_host)
                await trio.aclose_forcefully(stream)
                return
            self.per_host[host] = self.per_host.get(host, 0) + 1
        try:
            transport = await self._handshake(stream, peer)
            if transport is None:
                return
            await self._run_handler(transport, peer)
        finally:
            if per_host is not None:
                left = self.per_host[host] - 1
                if left:
                    self.per_host[host] = left
                else:
                    del self.per_host[host]

    async def _handshake(self, stream: trio.SocketStream, peer: str) -> trio.abc.Stream | None:
        """The TLS handshake, bounded by handshake_timeout and cancelled by a
        shutdown. Returns the stream to serve, or None after closing it."""
        if self.ssl_context is None:
            return stream
        tls = trio.SSLStream(stream, self.ssl_context, server_side=True)
        timeout = self.limits.handshake_timeout
        try:
            with trio.CancelScope(deadline=math.inf if timeout is None else trio.current_time() + timeout) as scope:
                self.handshakes.add(scope)
                if self.shutting_down:
                    scope.cancel()
                try:
                    await tls.do_handshake()
                finally:
                    self.handshakes.discard(scope)
        except (trio.BrokenResourceError, OSError) as exc:
            log.info("%s: TLS handshake failed: %s", peer, str(exc.__cause__ or exc))
            await trio.aclose_forcefully(tls)
            return None
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        if scope.cancelled_caught:
            why = "the server is shutting down" if self.shutting_down else f"no handshake within {timeout} s"
            log.info("%s: TLS handshake abandoned: %s", peer, why)
            await trio.aclose_forcefully(tls)
            return None
        return tls

    async def _run_handler(self, transport: trio.abc.Stream, peer: str) -> None:
        conn: Connection | None = None
        try:
            async with run_connection(transport, self.options) as conn:
                with trio.CancelScope() as scope:
                    self.handlers[scope] = conn
                    if self.shutting_down:
                        self._bound_handler(scope, conn)
                    try:
                        await self.handler(conn)
                    finally:
                        del self.handlers[scope]
        except _ORDINARY as exc:
            # (A failed TLS handshake's BrokenResourceError has no message of
            # its own: the reason is its __cause__, the ssl.SSLError.)
            why = str(exc) or str(exc.__cause__ or "")
            log.info("%s: connection ended: %s: %s", peer, type(exc).__name__, why)
            return
        except Exception as exc:
            self.errors.report(peer, exc)
            return
        if conn is not None:
            reason = conn.close_reason
            if reason is CloseReason.TIMEOUT or reason is CloseReason.ERROR:
                log.info("%s: connection ended: %s (%s)", peer, reason.value, str(conn.close_error))
            else:
                log.debug("%s: connection closed (%s)", peer, reason.value if reason else "open")


async def serve_listeners(
    handler: Handler,
    listeners: list[trio.SocketListener],
    *,
    ssl_context: ssl.SSLContext | None,
    limits: ServerLimits,
    options: ConnectionOptions,
    handler_nursery: trio.Nursery | None,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
) -> None:
    """Serve ``listeners`` until cancelled (see the module docstring)."""
    server = _Server(handler, ssl_context, limits, options, shield=handler_nursery is None)
    async with trio.open_nursery() as nursery:
        target = handler_nursery or nursery
        nursery.start_soon(server.watch_for_shutdown)
        for listener in listeners:
            nursery.start_soon(server.accept_loop, listener, target)
        task_status.started(listeners)
