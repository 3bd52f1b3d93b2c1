"""`Connection`: a `BufferedStream` with a lifecycle, run by helper tasks.

``async with open_connection(stream) as conn:`` starts, in a nursery owned
by that block, a *reader* task (read-ahead: peer EOF and resets are noticed
while the application is busy) and a *writer* task (``write()`` queues,
the writer coalesces and sends), plus a watchdog when an idle timeout is
set. Leaving the block by any path ends them all.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import operator
import os
import socket
import ssl
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import NoReturn, cast

try:
    import fcntl
    import termios

    _FIONREAD = True
except ImportError:  # Windows
    _FIONREAD = False

import trio
from trio.lowlevel import checkpoint

from ._errors import StartTLSRefusedError
from ._options import ConnectionOptions, check_timeout
from ._socketio import DIRECT_IO, raise_stream_error, socket_fd
from ._stream import _CHECKPOINTING_TRANSPORTS, _CLOSED, _RECEIVING, BufferedStream

__all__ = ["CloseReason", "Connection", "WriteBufferFullError", "open_connection"]

log = logging.getLogger("triostream")

# Errors of the transport itself: they end the connection, not the program.
TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

# A lingering close (Connection._linger) ends after _LINGER_QUIET seconds
# without a byte from the peer, after _LINGER_TIME seconds in all, or once
# the peer sent _LINGER_BYTES more: past that it is not finishing a request
# but flooding (then the close resets the connection, as without lingering).
_LINGER_QUIET = 0.5
_LINGER_TIME = 2.0
_LINGER_BYTES = 1 << 18

# Small writes are joined into sends of up to this many bytes; a write this
# large or larger is sent on its own, without a copy.
_COALESCE = 64 * 1024


class WriteBufferFullError(trio.WouldBlock):
    """`Connection.write` would grow the write queue past
    ``max_write_buffer_size``: it would have to wait, which
    `Connection.write` never does. Nothing was queued; ``await conn.drain()``
    (or use `Connection.send_all`, which waits) and write again. A
    `trio.WouldBlock`, like every "not now" of a ``*_nowait`` call."""


class CloseReason(enum.Enum):
    """Why a `Connection` ended (`Connection.close_reason`)."""

    LOCAL = "closed locally"
    PEER_EOF = "the peer ended the stream"
    TIMEOUT = "timed out"
    ERROR = "transport error"


class Connection(BufferedStream):
    """A buffered stream with read-ahead, a write queue and a close lifecycle.

    Create it with `open_connection` (or `connect_tcp`, `serve_tcp`): its
    helper tasks need the nursery that block provides. Every receive method
    of `BufferedStream` works the same (same contract: all or nothing, full
    checkpoints, `trio.BusyResourceError` on concurrent receives).

    **Reading.** With ``read_ahead`` (default) a helper task keeps reading
    while the buffer has room (never past ``max_buffer_size``: a slow
    consumer pushes back on the peer through TCP). Receives take from the
    buffer and wait for the reader when they need more.

    **Writing.** `write` queues bytes at once (no checkpoint; over a plain
    socket with nothing queued it sends them right away) and raises
    `WriteBufferFullError` rather than queue past ``max_write_buffer_size``;
    a helper task sends the queue, joining small writes into one transport
    send and sending large ones without a copy. `drain` waits until the queue
    is at most ``write_low_water`` bytes (`flush`: empty); `send_all` queues
    and then waits like `drain` when the queue is over ``write_high_water``.

    **Closing.** `aclose` stops new writes, flushes the queue (for at most
    ``close_timeout`` seconds), sends EOF when the transport can, closes the
    transport and ends the helpers; ``trio.aclose_forcefully(conn)`` drops
    the queue. `closed`, `wait_closed`, `close_reason` (a `CloseReason`) and
    `close_error` tell what happened; `add_close_callback` registers
    synchronous callbacks run once, in order, when it closes (an exception in
    one is logged and the others still run).

    **Errors.** A transport error in a helper task does not escape as an
    exception group: it closes the connection (reason `CloseReason.ERROR`,
    `close_error` set) and every later receive or send raises
    `trio.BrokenResourceError` chained from it, receives only after the
    bytes that arrived before the error have been delivered. Any other
    exception in a helper is a bug and propagates through the nursery.

    **Timeouts** (seconds, None for none): ``idle_timeout`` (no byte either
    way), ``read_timeout`` (a receive waiting that long for the rest of a
    frame that has begun, or for the next frame of a request not answered
    yet: slowloris; not while waiting between requests — nothing buffered
    and nothing received since this side last wrote — which is
    ``idle_timeout``'s business) and ``write_timeout`` (one transport send
    blocked that long: a peer not reading) each close the connection with
    `CloseReason.TIMEOUT`.

    Peer EOF does not close the connection by itself (TCP can half-close:
    you may still send); `peer_eof` tells, and `close_reason` is
    `CloseReason.PEER_EOF` if the peer had ended before the close.
    """

    #: The options, as given (validated) to the constructor.
    max_write_buffer_size: int
    write_high_water: int
    write_low_water: int
    read_ahead: bool
    idle_timeout: float | None
    read_timeout: float | None
    write_timeout: float | None
    close_timeout: float

    _direct_reads = False

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
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
        """Create a connection over ``transport_stream`` (which it owns and
        closes). It does nothing until its helper tasks run: use
        `open_connection`, `connect_tcp` or `serve_tcp`, which create it and
        start them; a receive or send on a connection whose helpers never
        started raises `RuntimeError`.

        Options (all validated here: `TypeError` for the wrong kind,
        `ValueError` out of range):

        * ``max_buffer_size``, ``receive_size``: as for `BufferedStream`.
        * ``max_write_buffer_size`` (1 MiB): the most bytes `write` queues.
        * ``write_high_water`` (64 KiB), ``write_low_water`` (a quarter of
          the high-water mark): `send_all` waits while more than the high
          mark is queued, until at most the low mark is; ``0 <=
          write_low_water <= write_high_water <= max_write_buffer_size``.
        * ``read_ahead`` (True): run the reader task (see above).
        * ``idle_timeout``, ``read_timeout``, ``write_timeout`` (None):
          seconds, finite and > 0, or None for none.
        * ``close_timeout`` (10): seconds the graceful close may flush;
          finite and > 0 (every close is bounded).
        """
        self._setup(
            transport_stream,
            ConnectionOptions(
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
            ),
        )

    @classmethod
    def _from_options(cls, transport_stream: trio.abc.Stream, options: ConnectionOptions) -> Connection:
        """A connection with options the caller has already validated."""
        conn = cls.__new__(cls)
        conn._setup(transport_stream, options)
        return conn

    def _setup(self, transport_stream: trio.abc.Stream, options: ConnectionOptions) -> None:
        self._reader_waiting = False
        self._room_made = trio.Event()
        super().__init__(
            transport_stream,
            max_buffer_size=options.max_buffer_size,
            receive_size=options.receive_size,
            close_timeout=options.close_timeout,
        )
        low = options.write_low_water
        self.max_write_buffer_size = options.max_write_buffer_size
        self.write_high_water = options.write_high_water
        self.write_low_water = options.write_high_water // 4 if low is None else low
        self.read_ahead = options.read_ahead
        self.idle_timeout = options.idle_timeout
        self.read_timeout = options.read_timeout
        self.write_timeout = options.write_timeout
        self._queue: deque[bytes] = deque()
        self._queued = 0  # bytes queued and not yet sent
        self._data_arrived = trio.Event()  # replaced after each wake-up
        # Everyone waiting on the write queue (the writer for data, any number
        # of tasks in drain/flush/send_all/wait_send_all_might_not_block for
        # room) parks here; every change of the queue wakes them all, and each
        # re-checks its own condition. A ParkingLot, not an Event replaced by
        # each waiter: replacing orphaned the earlier waiters.
        self._queue_lot = trio.lowlevel.ParkingLot()
        self._dropped = 0  # times queued bytes were dropped (forceful close)
        self._closed_event = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._lingering = False  # (the graceful close reads and drops, see _linger)
        self._error: BaseException | None = None
        self._reason: CloseReason | None = None
        self._callbacks: list[Callable[[Connection], object]] = []
        self._last_activity = 0.0  # set when the helpers start
        self._wait_offset = -1
        self._wait_start = 0.0
        self._new_receive = True
        # Set by the server at shutdown: called when a receive is about to
        # wait between frames; _idle_waiting is True during such a wait.
        self._on_idle: Callable[[], object] | None = None
        self._idle_waiting = False
        self._answered_offset = 0  # the stream offset at the last write
        # A receive needs one byte past a full buffer (receive_until_eof's
        # EOF probe): only then may the reader read beyond max_buffer_size.
        self._want_probe = False
        self._reader_scope: trio.CancelScope | None = None
        # Bumped to stop the reader (start_tls, detach): a reader task that
        # was started but has not run yet sees the change and never reads.
        self._reader_gen = 0
        # The read-ahead task is in a transport read (not a plain socket's;
        # see detach).
        self._reader_reading = False
        self._eof_sent = False
        self._reader_done = trio.Event()
        # write() may send in the caller's task (see _write_direct): off until
        # the helpers run, and while send_eof or start_tls owns the transport.
        self._direct_ok = False
        self._direct_fed = -1  # the buffer's _fed at the last direct write
        self._fill_checkpoints = False  # _fill refuses (RuntimeError) until _start

    def __repr__(self) -> str:
        self._settle()
        state = self._reason.value if self._reason else f"open, {len(self._buffer)} bytes buffered"
        return f"<Connection over {self.transport_stream!r}: {state}, {self._queued} bytes queued>"

    # ------------------------------------------------------------ state

    @property
    def _state(self) -> int:
        return self._state_bits

    @_state.setter
    def _state(self, value: int) -> None:
        # When a receive ends and made room, wake a reader waiting for room.
        self._state_bits = value
        if not value & _RECEIVING:
            self._new_receive = True  # the next wait belongs to a new call
            if self._reader_waiting and self._buffer.room:
                self._room_made.set()

    @property
    def closed(self) -> bool:
        """True once the connection ended (closed locally, failed or timed out)."""
        return self._closed_event.is_set()

    @property
    def close_reason(self) -> CloseReason | None:
        """Why it ended, or None while open."""
        return self._reason

    @property
    def close_error(self) -> BaseException | None:
        """The exception that ended it (transport error, or a `trio.TooSlowError`
        for a timeout), or None."""
        return self._error

    @property
    def peer_eof(self) -> bool:
        """True once the peer ended its side (everything it sent is buffered)."""
        return self._buffer.eof

    @property
    def write_buffer_size(self) -> int:
        """Bytes written and not yet handed to the transport."""
        return self._queued

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (a checkpoint)."""
        await self._closed_event.wait()

    def add_close_callback(self, callback: Callable[[Connection], object]) -> None:
        """Call ``callback(conn)`` once when the connection ends (at once if it
        already has). Callbacks run in registration order; one that raises is
        logged and does not stop the others."""
        if self.closed:
            self._run_callback(callback)
        else:
            self._callbacks.append(callback)

    def _run_callback(self, callback: Callable[[Connection], object]) -> None:
        try:
            callback(self)
        except Exception:
            log.exception("close callback %r of %r failed", callback, self)

    def _require_helpers(self) -> None:
        """Refuse work that needs the helper tasks when they never started
        (instead of waiting for them forever)."""
        if self._nursery is None:
            raise RuntimeError(
                "this Connection's helper tasks are not running: create it with "
                "open_connection(), connect_tcp()/connect_unix() or serve_tcp()/serve_unix()"
            )

    def _check_open(self) -> None:
        """After a wait for data: a local close meanwhile ends the receive.
        So does a wake-up that left nothing buffered (and no EOF): the end of
        the connection by an error or a timeout (`trio.BrokenResourceError`),
        or a graceful close in another task, still going on, whose lingering
        dropped the bytes the reader had just brought
        (`trio.ClosedResourceError`). Without these two tests ``receive_some``
        took such a wake-up for an EOF and returned ``b""``."""
        if self._state & _CLOSED:
            raise trio.ClosedResourceError("this Connection was closed")
        buffer = self._buffer
        if not buffer and not buffer.eof:
            if self._error is not None:
                raise self._broken()
            if self._closing:
                raise trio.ClosedResourceError("this Connection is being closed")

    def _refuse_send(self) -> None:
        """Raise what a send-side call gets once the connection is closing:
        `trio.ClosedResourceError` after a local close, else a
        `trio.BrokenResourceError` chained from the error that ended it."""
        if self._state & _CLOSED or self._error is None:
            raise trio.ClosedResourceError("this Connection is closed")
        raise self._broken()

    def _broken(self) -> trio.BrokenResourceError:
        exc = trio.BrokenResourceError(f"connection ended: {self._reason.value if self._reason else 'closed'}")
        exc.__cause__ = self._error
        return exc

    def _end(self, reason: CloseReason, error: BaseException | None = None) -> None:
        """Mark the connection ended (first cause wins) and wake everyone."""
        if self._reason is None:
            if reason is CloseReason.LOCAL and self._buffer.eof:
                reason = CloseReason.PEER_EOF
            self._reason = reason
            self._error = error
        self._closing = True
        self._data_arrived.set()
        self._queue_lot.unpark_all()
        self._room_made.set()
        if not self._closed_event.is_set():
            self._closed_event.set()
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                self._run_callback(callback)

    def _fail(self, reason: CloseReason, error: BaseException) -> None:
        """A helper hit a transport error or a timeout: end the connection
        and close the transport (in a helper task). The helpers then end on
        their own; the nursery is not cancelled, since the ``async with``
        body runs inside it."""
        already = self.closed
        self._end(reason, error)
        if not already and self._nursery is not None:
            if self._queued:
                reset_on_close(self.transport_stream)  # queued bytes are lost: say so
            self._nursery.start_soon(trio.aclose_forcefully, self.transport_stream)

    # ------------------------------------------------------------ helpers

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._last_activity = trio.current_time()
        self._direct_ok = DIRECT_IO
        # With read-ahead _fill waits on an Event (a full checkpoint);
        # without, it reads the transport in the caller's task.
        self._fill_checkpoints = self.read_ahead or isinstance(self.transport_stream, _CHECKPOINTING_TRANSPORTS)
        if self.read_ahead:
            nursery.start_soon(self._reader, self._reader_gen)
        nursery.start_soon(self._writer)
        if self.idle_timeout is not None:
            nursery.start_soon(self._watchdog)

    async def _reader(self, gen: int) -> None:
        if gen != self._reader_gen:
            return  # stopped before it ever ran
        self._reader_done = done = trio.Event()
        try:
            with trio.CancelScope() as self._reader_scope:
                await self._read_ahead(gen)
        finally:
            done.set()

    async def _read_ahead(self, gen: int) -> None:
        """The read-ahead task's loop: read while the buffer has room.

        Over a plain socket (POSIX) the read and the feed are one step, with
        no schedule point between them. Through ``receive_some`` a read that
        had found bytes at once was resumed only after Trio's scheduler had
        run the other tasks: one that detached the connection then
        (`detach`: the read-ahead stops, the bytes buffered go to the
        caller) left those bytes in the reader's hands, and they were lost.
        Here, as ``trio.SocketStream`` reads: a ``read(2)``, a wait for the
        socket when it finds nothing, then the bytes fed at once, and a
        schedule point after that when there was no wait. A wait cut short
        by a pause or a detach (the reader's generation moved on) reads
        nothing. Over other transports, ``receive_some`` (see `detach`).
        """
        buffer = self._buffer
        transport = self.transport_stream
        sock = cast(trio.SocketStream, transport).socket if socket_fd(transport) >= 0 else None
        try:
            while not buffer.eof and not self._closing:
                room = buffer.room
                if not room:
                    if not self._want_probe:
                        self._room_made = trio.Event()
                        self._reader_waiting = True
                        try:
                            await self._room_made.wait()
                        finally:
                            self._reader_waiting = False
                        continue
                    room = 1  # receive_until_eof's probe past a full buffer
                self._want_probe = False
                size = min(room, self.receive_size)
                data: bytes | bytearray
                scheduled = True  # (a schedule point in the read: receive_some is one)
                if sock is not None:
                    await trio.lowlevel.checkpoint_if_cancelled()
                    scheduled = False
                    while True:
                        if gen != self._reader_gen:
                            return  # paused or detached while waiting
                        try:
                            data = os.read(sock.fileno(), size)
                            break
                        except BlockingIOError:
                            await trio.lowlevel.wait_readable(sock)
                            scheduled = True
                        except OSError as exc:
                            raise_stream_error(exc)  # (as receive_some translates it)
                else:
                    self._reader_reading = True  # (see detach)
                    try:
                        data = await transport.receive_some(size)
                    finally:
                        self._reader_reading = False
                self._last_activity = trio.current_time()
                if data:
                    buffer.feed(data)
                else:
                    buffer.feed_eof()
                self._data_arrived.set()
                self._data_arrived = trio.Event()
                if not scheduled:  # (after a read that did not wait, as trio's recv does)
                    await trio.lowlevel.cancel_shielded_checkpoint()
        except TRANSPORT_ERRORS as exc:
            # Also while a graceful close flushes (see _writer): ignored
            # there, the error left a receive in another task woken with
            # nothing new (receive_some returned b"", a clean EOF, for a
            # reset; receive_line went round its wait, set for good, until
            # the close ended: a busy loop of up to close_timeout).
            if not self.closed:
                self._fail(CloseReason.ERROR, exc)
            self._data_arrived.set()

    async def _writer(self) -> None:
        queue = self._queue
        try:
            while True:
                if not queue:
                    if self._closing:
                        return
                    await self._queue_lot.park()
                    continue
                # Let writers that are still producing add to the queue first
                # (a yield per round while it grows): a producer calling
                # send_all per message then costs a syscall per batch, not per
                # message. A lone message waits one schedule round.
                while len(queue[0]) < _COALESCE and self._queued < _COALESCE:
                    before = self._queued
                    await trio.lowlevel.checkpoint()
                    if self._queued == before or not queue:
                        break
                if not queue:
                    continue
                # Coalesce small writes; send a large one on its own.
                data = queue.popleft()
                if len(data) < _COALESCE and queue and len(queue[0]) < _COALESCE:
                    parts = [data]
                    size = len(data)
                    while queue and size + len(queue[0]) <= _COALESCE:
                        chunk = queue.popleft()
                        parts.append(chunk)
                        size += len(chunk)
                    data = b"".join(parts)
                transport = self.transport_stream  # start_tls may replace it
                if self.write_timeout is None:
                    await transport.send_all(data)
                else:
                    with trio.move_on_after(self.write_timeout) as scope:
                        await transport.send_all(data)
                    if scope.cancelled_caught:
                        self._fail(CloseReason.TIMEOUT, trio.TooSlowError("write timed out: the peer is not reading"))
                        return
                self._queued -= len(data)
                self._last_activity = trio.current_time()
                self._queue_lot.unpark_all()
        except TRANSPORT_ERRORS as exc:
            # Also while a graceful close flushes (``_closing`` but not yet
            # ``closed``): that close waits for the queue to drain, and only
            # the end of the connection wakes it. Ignoring the error there
            # left it waiting out all of ``close_timeout`` (10 s) for bytes
            # that could no longer go. Once the connection has ended (the
            # close shut the transport under this send), it is no news.
            if not self.closed:
                self._fail(CloseReason.ERROR, exc)

    async def _watchdog(self) -> None:
        assert self.idle_timeout is not None
        while not self.closed:
            deadline = self._last_activity + self.idle_timeout
            if trio.current_time() >= deadline:
                self._fail(CloseReason.TIMEOUT, trio.TooSlowError("idle timeout: no bytes either way"))
                return
            with trio.move_on_at(deadline):
                await self._closed_event.wait()

    async def _fill(self) -> None:
        """Wait for the reader to bring more bytes (a checkpoint); without
        read-ahead, read the transport here. Either way the wait counts
        against ``read_timeout`` (see `_read_deadline`).

        One coroutine frame, on purpose: every frame between a receive and
        the transport is resumed again on every read. Merging the wait into
        this method and reading the transport here directly (no
        ``super()._fill()``) when there is no deadline saved about 2 µs per
        request of a request/response server (CPU per round trip, 20,000
        GETs to examples/redis_server.py in one process: 51.2 to 49.5 µs).
        """
        if self._nursery is None:
            self._require_helpers()
        buffer = self._buffer
        # Waiting between requests: nothing buffered, and nothing consumed
        # since this side last wrote (a request/response protocol has
        # answered the last request; a fresh connection has none yet). Such
        # a wait is idle_timeout's business, not read_timeout's, and a
        # server shutting down ends it at once (see _server.py); waiting for
        # the next frame of a request not yet answered is not idle, and gets
        # the shutdown's grace period.
        idle = not buffer and buffer.offset == self._answered_offset
        deadline = math.inf if idle else self._read_deadline()
        if idle and self._on_idle is not None:
            self._on_idle()
        self._idle_waiting = idle
        try:
            if not self.read_ahead:
                if self._closing:  # (one test on the way to every read; _end sets it too)
                    if self.closed and self._reason is not CloseReason.LOCAL:
                        await checkpoint()
                        raise self._broken()
                    if self._lingering:  # (the close reads the transport: see _linger)
                        await checkpoint()
                        raise trio.ClosedResourceError("this Connection is being closed")
                timed_out = False
                try:
                    if deadline == math.inf:
                        # BufferedStream._fill, inlined (see above).
                        if buffer._fed == self._direct_fed and self._direct_ok:
                            data = await self._read_after_reply()
                        else:
                            data = await self.transport_stream.receive_some(self._read_size())
                        if data:
                            buffer.feed(data)
                        else:
                            buffer.feed_eof()
                    else:
                        with trio.move_on_at(deadline) as scope:
                            await super()._fill()
                        timed_out = scope.cancelled_caught
                except TRANSPORT_ERRORS as exc:
                    if self._state & _CLOSED:
                        # Closed by another task during the read: whatever
                        # the transport raised then (a TLS stream broken by
                        # the close, say), the close came first.
                        raise trio.ClosedResourceError(
                            "this Connection was closed by another task during the call"
                        ) from exc
                    self._fail(CloseReason.ERROR, exc)
                    raise self._broken() from exc
                if timed_out:
                    self._read_timed_out()
                if self.idle_timeout is not None:
                    self._last_activity = trio.current_time()
                return
            if self._error is not None or (self.closed and not buffer.eof):
                await checkpoint()
                raise self._broken()
            if not buffer.room:
                self._want_probe = True
            self._room_made.set()  # frames taken without a receive (the iterators) made room
            arrived = self._data_arrived
            if deadline == math.inf:
                # No deadline (read_timeout unset, or a wait between
                # requests): no cancel scope either. Entering and leaving
                # one on every wait for the reader cost, in a frame loop over
                # 16 KiB lines in 64 KiB reads (in one process, cachegrind),
                # 66.8k -> 58.6k instructions per line (a plain stream's:
                # 38.2k).
                await arrived.wait()
                self._check_open()
                return
            with trio.move_on_at(deadline):
                await arrived.wait()
                self._check_open()
                return
            self._read_timed_out()
        finally:
            self._idle_waiting = False

    async def _read_after_reply(self) -> bytes | bytearray:
        """Read the next request after a direct reply (see `write`): a full
        checkpoint first, then one non-blocking ``read(2)``; only when that
        finds nothing does the transport's ``receive_some`` wait for bytes.

        Why: `write` sent the reply without a schedule point, so reading at
        once finds the peer has not answered yet, and every such miss costs
        Trio a failed ``recv``, an ``epoll_ctl`` registration and a wake-up.
        Yielding first (as ``trio.SocketStream.send_all`` does after each
        send) lets the other connections run meanwhile, and the next request
        is usually there when this task resumes. Measured with
        benchmarks/bench_resp.py, servers pinned to their own core, 50
        clients unpipelined: examples/redis_server.py went from 0.68x-0.78x
        to 0.92x-0.97x of the hand-written Trio server; without the direct
        read (yield, then ``receive_some``) 0.92x-0.93x.

        A cancellation at the checkpoint consumes nothing. A socket error
        raises what ``receive_some`` raises for it (`raise_stream_error`:
        `trio.ClosedResourceError` for a closed socket, else
        `trio.BrokenResourceError` chained to it); the caller ends the
        connection.
        """
        await checkpoint()
        transport = self.transport_stream
        fd = socket_fd(transport)
        if fd >= 0:
            try:
                return os.read(fd, self._read_size())
            except BlockingIOError:
                pass
            except OSError as exc:
                raise_stream_error(exc)  # (as receive_some translates it)
        return await transport.receive_some(self._read_size())

    def _read_deadline(self) -> float:
        """When the current receive must have its frame (``read_timeout``).

        Not called for a wait between requests (see `_fill`): the clock
        starts when a receive first waits for a frame that has begun (or
        for the next frame of a request not yet answered), and runs on across all
        the waits of that call, whatever arrives meanwhile: bytes skipped in
        discard mode, or a frame trickling in a byte at a time, are not
        progress. A retry of the same frame (a new call after a cancelled
        one, nothing consumed in between) continues the same clock; it
        starts afresh only for a new call after something was consumed.
        """
        if self.read_timeout is None:
            return math.inf
        offset = self._buffer.offset
        if self._new_receive and offset != self._wait_offset:
            self._wait_offset = offset
            self._wait_start = trio.current_time()
        self._new_receive = False
        return self._wait_start + self.read_timeout

    def _read_timed_out(self) -> NoReturn:
        self._fail(CloseReason.TIMEOUT, trio.TooSlowError("read timed out: a frame was not completed in time"))
        if self._error is None:
            # Ended by a local close first (the first cause wins): a timer
            # that ran out with it is no error of the peer's.
            raise trio.ClosedResourceError("this Connection was closed")
        raise self._broken()

    # ------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; returns at once (not a checkpoint).

        When nothing is queued, the transport is a plain `trio.SocketStream`
        (POSIX) and bytes arrived since the last such send (a reply to a
        request), the bytes go to the socket right here, with one
        non-blocking send (as asyncio's ``transport.write`` does); whatever
        the kernel does not take is queued for the writer task. Other writes
        (several in a row, pushes to a silent peer) are queued, and the
        writer joins them into one send.
        Either way the order of writes is kept, and a send error surfaces as
        for any queued write: the connection ends (`CloseReason.ERROR`) and
        later calls raise `trio.BrokenResourceError`.

        Raises:
          WriteBufferFullError: the queue would exceed ``max_write_buffer_size``
            (nothing is queued).
          trio.ClosedResourceError: the connection is closing or closed locally.
          trio.BrokenResourceError: it ended by an error or a timeout.
        """
        if self._closing or self._eof_sent:
            if self._eof_sent and not self._closing:
                raise trio.ClosedResourceError("EOF was sent on this Connection")
            self._refuse_send()
        self._require_helpers()
        # Sizes count bytes: len() of a memoryview counts its items.
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if not size:
            return
        if self._queued + size > self.max_write_buffer_size:
            raise WriteBufferFullError(
                f"{size} more bytes would queue {self._queued + size} > max_write_buffer_size="
                f"{self.max_write_buffer_size}; await drain() first"
            )
        buffer = self._buffer
        if self._handout is not None and not operator.length_hint(self._handout[0]):
            # A frame iterator handed out the last frame of its cut (see
            # BufferedStream._settle): the offset is exact once settled. While
            # frames of the cut are left, a reply's offset is what it was when
            # the cut began: too small, which matters not, since frames are
            # buffered (not idle) until they are consumed, and the write that
            # answers the last of them settles.
            self._settle()
        self._answered_offset = buffer.offset
        # Direct only for the first write after new input arrived (a reply):
        # writes pushed to a peer that sends nothing meanwhile (fan-out, a
        # stream of notifications) go through the queue, where the writer
        # joins a round's writes into one send. Measured with
        # benchmarks/bench_irc.py at 800 msg/s to 200 members: one segment
        # per message and member cut the deliveries its receivers kept up
        # with from 157k/s to 55k/s.
        if not self._queued and self._direct_ok and buffer._fed != self._direct_fed:
            self._direct_fed = buffer._fed
            sent = self._write_direct(data)
            if sent == size:
                return
            if sent:
                data = memoryview(data).cast("B")[sent:]
                size -= sent
        self._queue.append(data if type(data) is bytes else bytes(data))
        self._queued += size
        self._queue_lot.unpark_all()

    def _write_direct(self, data: bytes | bytearray | memoryview) -> int:
        """With nothing queued (so the writer task is not sending either),
        hand ``data`` to a plain socket transport at once, without blocking:
        one non-blocking ``write(2)``, as asyncio's ``transport.write`` does.
        Returns how many bytes the kernel took (0 when its buffer is full, or
        when the transport is not a plain `trio.SocketStream`); the caller
        queues the rest for the writer task.

        Why: the hop to the writer task costs three Trio schedule rounds per
        reply; a request/response server sending one reply per request spent
        most of its CPU there (examples/redis_server.py: about 80 µs per
        request before, see benchmarks/bench_resp.py). A send error is not
        raised here: the bytes are queued, the writer meets the same error
        and ends the connection (`CloseReason.ERROR`) as for any send.
        """
        fd = socket_fd(self.transport_stream)
        if fd < 0:
            return 0
        try:
            sent = os.write(fd, data)
        except OSError:  # would block, or an error the writer will report
            return 0
        if self.idle_timeout is not None:
            self._last_activity = trio.current_time()
        return sent

    async def drain(self, *, flush: bool = False) -> None:
        """Wait until at most ``write_low_water`` bytes are queued (none with
        ``flush``). A full checkpoint.

        Raises:
          trio.BrokenResourceError: the connection ended by an error or a
            timeout (chained from it).
          trio.ClosedResourceError: it was closed locally.
        """
        await checkpoint()
        if self._closing:
            self._refuse_send()
        self._require_helpers()
        await self._wait_queue(0 if flush else self.write_low_water)

    async def _wait_queue(self, target: int) -> None:
        """Wait until at most ``target`` bytes are queued. Raises (as a send
        on a closed connection does) if the connection ends first, or if the
        queue is dropped meanwhile (a forceful close): the waiter's data was
        then never sent, and returning would say it was."""
        dropped = self._dropped
        while self._queued > target:
            if self.closed:
                self._refuse_send()
            await self._queue_lot.park()
        if self._dropped != dropped:
            self._refuse_send()

    async def flush(self) -> None:
        """Wait until everything written has been handed to the transport."""
        await self.drain(flush=True)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``, then wait like `drain` if the queue is over
        ``write_high_water`` (backpressure). A full checkpoint.

        Unlike a raw Trio stream, returning does not mean the bytes reached
        the transport: `flush` for that. Data larger than
        ``max_write_buffer_size`` is queued in pieces as room frees up.

        Raises `trio.BusyResourceError` at once when another task is in
        `send_all`; `trio.ClosedResourceError` (after a checkpoint) once a
        close has begun, also while that close holds the send side for its
        EOF; `trio.BrokenResourceError` after an error or a timeout ended
        the connection.
        """
        if self._closing:
            await checkpoint()
            self._refuse_send()
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this Connection")
        self._sending = True
        try:
            view = memoryview(data).cast("B") if type(data) is not bytes else data
            start = 0
            await checkpoint()
            if self._closing:
                self._refuse_send()
            self._require_helpers()
            while start < len(view):
                room = self.max_write_buffer_size - self._queued
                if room <= 0:
                    await self._wait_queue(self.write_low_water)
                    continue
                self.write(view[start : start + room])
                start += room
            if self._queued > self.write_high_water:
                await self._wait_queue(self.write_low_water)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the queue is below the high-water mark (a checkpoint)."""
        await checkpoint()
        self._require_helpers()
        while self._queued > self.write_high_water and not self.closed:
            await self._queue_lot.park()
        if self._closing:
            self._refuse_send()

    async def send_eof(self) -> None:
        """Flush the queue, then half-close the transport (when it can); later
        writes raise `trio.ClosedResourceError`. Receiving goes on."""
        await self.flush()
        self._direct_ok = False
        try:
            await super().send_eof()
        except BaseException:
            self._direct_ok = DIRECT_IO and self._nursery is not None
            raise
        self._eof_sent = True

    def detach(self) -> tuple[trio.abc.Stream, bytes]:
        """Stop the helpers and give up the transport, as `BufferedStream.detach`.

        Raises `trio.BusyResourceError` while writes are queued (`flush`
        first). The read-ahead task is stopped, which loses no data: what it
        had read is in the leftover bytes. (It must not be holding bytes it
        has read and not yet buffered. Over a plain `trio.SocketStream`
        (POSIX) it reads and buffers in one step; a transport's
        ``receive_some`` that takes its bytes without a schedule point
        after, as trio's memory streams do, hands them over just as safely.
        A `trio.SSLStream` does not (nor a socket's, where the task does not
        read it itself: not POSIX): over one, ``detach`` raises
        `trio.BusyResourceError` while the read-ahead task is in a read,
        which is always, in practice, while it waits for the peer. Create a
        TLS Connection that is to be detached with ``read_ahead=False``.)
        """
        if self._queued:
            raise trio.BusyResourceError(f"{self._queued} bytes of writes still queued; flush() first")
        if self._reader_reading and isinstance(self.transport_stream, (trio.SSLStream, trio.SocketStream)):
            raise trio.BusyResourceError(
                "the read-ahead task is in a read that returns its bytes after a schedule point (TLS): they could"
                " be lost; use read_ahead=False for a TLS Connection that is to be detached"
            )
        result = super().detach()
        self._reader_gen += 1
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        self._end(CloseReason.LOCAL)
        return result

    # ------------------------------------------------------------ TLS

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        response: bytes | None = None,
        handshake_timeout: float | None = 10.0,
    ) -> Connection:
        """Upgrade to TLS in place (STARTTLS), as `BufferedStream.start_tls`,
        and return this connection (its helpers and its ``async with`` block
        carry on over the `trio.SSLStream`).

        The read-ahead task is paused first, so nothing more is read as
        plaintext. Refuses with `StartTLSRefusedError` (connection left as
        it was, read-ahead resumed) when unread plaintext is buffered or
        writes are still queued. ``response`` (say ``b"220 Ready\\r\\n"``) is
        sent and flushed after that check and right before the handshake: a
        server must send its go-ahead this way, as with read-ahead running
        the peer's handshake bytes would otherwise be read as plaintext. A
        full checkpoint.

        Raises:
          StartTLSRefusedError: plaintext buffered or writes queued.
          RuntimeError: the helper tasks are not running.
          trio.ClosedResourceError, trio.BrokenResourceError: the connection
            ended, or the handshake failed (then the connection is unusable:
            nothing goes on in plaintext, as for `BufferedStream.start_tls`).
          trio.BusyResourceError: a receive or send is running.
        """
        check_timeout("handshake_timeout", handshake_timeout)
        if self._closing:
            await checkpoint()
            self._refuse_send()
        if self._nursery is None:
            await checkpoint()
            self._require_helpers()
        await self._pause_reader()
        self._direct_ok = False  # the handshake owns the socket (TLS after it)
        try:
            if self._queued:
                await checkpoint()
                raise StartTLSRefusedError(f"{self._queued} bytes of writes still queued; refusing to start TLS")
            try:
                self._refuse_plaintext_before_tls()
            except StartTLSRefusedError:
                await checkpoint()
                raise
            if response:
                self.write(response)
                await self._wait_queue(0)
            await self._handshake(
                ssl_context,
                server_side=server_side,
                server_hostname=server_hostname,
                handshake_timeout=handshake_timeout,
            )
        finally:
            self._direct_ok = DIRECT_IO
            self._resume_reader()
        return self

    async def _pause_reader(self) -> None:
        self._reader_gen += 1
        scope = self._reader_scope
        if scope is not None and not self._reader_done.is_set():
            scope.cancel()  # a cancelled receive_some loses no data
            await self._reader_done.wait()

    def _resume_reader(self) -> None:
        if self.read_ahead and self._nursery is not None and not self._closing and not self._buffer.eof:
            self._nursery.start_soon(self._reader, self._reader_gen)

    # ------------------------------------------------------------ closing

    async def _linger(self, deadline: float) -> None:
        """After our EOF, before closing: read and drop what the peer still
        sends, until its EOF, a quiet spell of `_LINGER_QUIET` seconds, or
        ``deadline`` (a "lingering close", as Apache and nginx do it), at
        most `_LINGER_TIME` seconds and `_LINGER_BYTES` bytes.

        Why: closing a TCP socket that holds unread bytes makes the kernel
        send a reset at once and drop what this side has not transmitted yet
        (RFC 1122 4.2.2.13): the last reply, say an IRC server's ``ERROR
        :Closing Link`` to a client it drops for flooding, would be lost.
        Only done when bytes are unread (buffered, or waiting in the
        kernel); a peer that stopped sending is closed without a wait.
        """
        transport = self.transport_stream
        if self._buffer.eof or not (self._buffer or _unread_bytes(transport)):
            return
        if not self.read_ahead and self._state & _RECEIVING:
            # Another task is in a receive, reading the transport itself: a
            # second reader would make the transport raise BusyResourceError
            # (in that task, or here). Its receive ends when the transport
            # closes below (trio.ClosedResourceError).
            return
        # From here on this reads the transport: a receive that starts
        # meanwhile is refused (`_fill`), as the bytes go nowhere anyway.
        self._lingering = True
        await self._pause_reader()
        self._buffer.clear()
        deadline = min(deadline, trio.current_time() + _LINGER_TIME)
        left = _LINGER_BYTES
        with contextlib.suppress(*TRANSPORT_ERRORS):
            while left > 0:
                with trio.move_on_at(min(deadline, trio.current_time() + _LINGER_QUIET)) as quiet:
                    data = await transport.receive_some(65536)
                if quiet.cancelled_caught or not data:
                    return
                left -= len(data)

    async def aclose(self) -> None:
        """Close gracefully, within ``close_timeout`` seconds in all.

        Stops new writes, flushes the queue, sends EOF where the transport
        can, closes the transport (a TLS ``close_notify`` included) and ends
        the helpers. When the peer is still sending (bytes unread here or in
        the kernel) the close lingers after the EOF: it reads and drops the
        peer's bytes until the peer's own EOF, 0.5 s without any, 2 s or
        256 KiB, so that the kernel does not answer them with a reset that
        destroys the reply still on its way (Apache's and nginx's "lingering
        close"). One deadline bounds all of it: what is left when it
        passes is closed forcefully; so is the transport when it fails
        during the flush (`close_reason` is then `CloseReason.ERROR`), at
        once. Whenever queued bytes are dropped (the transport failed, the
        deadline passed, or the close was cancelled, as in
        ``trio.aclose_forcefully(conn)``), a TCP transport is reset (RST,
        through ``SO_LINGER`` 0) instead of ended with a FIN, so the peer can
        tell a truncated reply from a complete one; over TLS the reset of
        the TCP connection below is what the peer sees (no ``close_notify``).
        Idempotent, and a checkpoint.
        """
        if self._state & _CLOSED:
            await checkpoint()
            return
        self._settle()  # (for _linger's question: are bytes left unread?)
        was_ended = self.closed
        self._closing = True
        self._queue_lot.unpark_all()
        deadline = trio.current_time() + self.close_timeout
        try:
            if not was_ended:
                with trio.move_on_at(deadline):
                    await self._wait_queue(0)
                    if self.can_send_eof:
                        await super().send_eof()
                        await self._linger(deadline)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.BusyResourceError,  # a start_tls handshake holds the send side: no EOF
            OSError,
            NotImplementedError,
        ):
            pass  # the transport is closed below all the same
        finally:
            self._end(CloseReason.LOCAL)
            truncated = self._queued > 0  # includes bytes the writer had in flight
            if truncated:
                self._dropped += 1
            self._queue.clear()
            self._queued = 0
            self._queue_lot.unpark_all()
            self._settle()  # (a frame loop may have cut frames while this waited)
            self._state |= _CLOSED
            self._buffer.clear()
            # Closing the transport also ends the helpers (they see the
            # connection closing, or their transport call fails).
            transport = self.transport_stream
            if truncated:
                reset_on_close(transport)
                await trio.aclose_forcefully(transport)
            else:
                with trio.move_on_at(deadline):
                    await transport.aclose()  # cancelled, it still closes (forcefully)
                if trio.current_time() >= deadline:
                    await trio.aclose_forcefully(transport)


def _unread_bytes(transport: trio.abc.Stream) -> int:
    """Bytes the kernel holds for ``transport``'s socket and nobody read yet
    (``FIONREAD``); 0 when that cannot be known."""
    fd = socket_fd(transport) if _FIONREAD else -1
    if fd < 0:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def socket_under(transport: trio.abc.Stream) -> trio.SocketStream | None:
    """The `trio.SocketStream` under any `trio.SSLStream` layers, or None."""
    while isinstance(transport, trio.SSLStream):
        transport = transport.transport_stream
    return transport if isinstance(transport, trio.SocketStream) else None


def reset_on_close(transport: trio.abc.Stream) -> None:
    """Make closing ``transport`` reset the TCP connection (RST) instead of
    ending it with a FIN: ``SO_LINGER`` with a zero timeout on the socket
    under any `trio.SSLStream` layers. A no-op for other transports."""
    sock = socket_under(transport)
    if sock is not None:
        # Already closed, or not a socket that lingers: nothing to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def start_connection(
    nursery: trio.Nursery, transport_stream: trio.abc.Stream, options: ConnectionOptions | None = None
) -> Connection:
    """Create a `Connection` whose helper tasks run in ``nursery`` (private:
    for the server and the test kit, which own that nursery and close the
    connection themselves; users have `open_connection`)."""
    conn = Connection._from_options(transport_stream, options or ConnectionOptions())
    conn._start(nursery)
    return conn


def open_connection(
    transport_stream: trio.abc.Stream,
    *,
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
    """Run a `Connection` over ``transport_stream`` for an ``async with`` block::

        async with open_connection(stream, idle_timeout=30.0) as conn:
            conn.write(b"hello\\n")
            line = await conn.receive_line()

    The helper tasks live in a nursery owned by the block. Leaving it
    normally closes the connection gracefully (`Connection.aclose`); leaving
    it by an exception or a cancellation closes it at once (the write queue
    is dropped). Either way every helper task has ended when the block
    exits, and the transport is closed.

    The options are `Connection`'s, validated by this call itself: a bad
    value raises `TypeError` or `ValueError` here, before the block runs (the
    transport is then still the caller's to close).
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
    return run_connection(transport_stream, options)


@asynccontextmanager
async def run_connection(transport_stream: trio.abc.Stream, options: ConnectionOptions) -> AsyncIterator[Connection]:
    """`open_connection` with validated options (private)."""
    conn = Connection._from_options(transport_stream, options)
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        conn._start(nursery)
        try:
            yield conn
        except BaseException as exc:
            # Re-raised below, outside the nursery, so that the block's own
            # exception is not wrapped in an exception group.
            error = exc
            await trio.aclose_forcefully(conn)
        else:
            await conn.aclose()
        finally:
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
