"""`BufferedStream`: the Trio layer over `ReceiveBuffer`.

This module moves bytes between the transport and the pure buffer and
decides where the checkpoints go; where a frame ends is decided in
``_buffer.py``.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import ssl
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar, cast

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from ._buffer import (
    _BATCH_FRAME_MAX,
    _BATCH_MIN,
    _CR_SCAN_FRAME_MAX,
    _JOIN_COPY_MAX,
    _LF,
    _SPLIT_FRAME_MAX,
    LINE_MODE,
    PLAIN_MODE,
    FeedBatch,
    Feeds,
    ReceiveBuffer,
    _cut_rest,
    normalize_delimiters,
)
from ._codecs import Codec, FrameDecoder, PeekFrames, _DecoderCache, check_buffer_fits
from ._errors import FrameTooLongError, IncompleteReadError, StartTLSRefusedError
from ._options import check_positive, check_timeout
from ._socketio import direct_socket_stream, read_socket

__all__ = ["BufferedStream", "FrameIterator", "HalfCloseableBufferedStream"]

DelimiterArg = bytes | bytearray | memoryview | tuple[bytes, ...]
Take = Callable[..., "bytes | None"]
TakeBatch = Callable[..., "list[bytes] | None"]
_LINE_TAKES = (ReceiveBuffer.take_line, ReceiveBuffer.take_lines)
_UNTIL_TAKES = (ReceiveBuffer.take_until, ReceiveBuffer.take_until_batch)
# The batch cutters among them (a list of frames, not one frame).
_BATCH_TAKES = (ReceiveBuffer.take_lines, ReceiveBuffer.take_until_batch)


def _bound_function(take: Callable[..., Any]) -> object:
    """The function under a bound method, itself under a partial."""
    if type(take) is functools.partial:
        take = take.func
    return getattr(take, "__func__", None)


def _one_byte_delimiter(take: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bytes | None, int, int | None]:
    """``(delimiter, max_size, mode)`` when ``take(*args)`` cuts a frame at a
    one-byte delimiter (a buffer's line or until cutter, bound to it or to
    its arguments by a codec), else ``(None, 0, None)``: see `_receive_more`
    and `FrameIterator._frames`. ``mode`` is ``LINE_MODE`` for lines,
    ``PLAIN_MODE`` for frames returned without their delimiter, None for
    frames returned with it."""
    func = _bound_function(take)
    if type(take) is functools.partial:
        args = take.args + args
    if func in _LINE_TAKES and len(args) == 1:
        return _LF, args[0], LINE_MODE
    if func in _UNTIL_TAKES and len(args) >= 2 and type(args[0]) is bytes and len(args[0]) == 1:
        return args[0], args[1], None if len(args) > 2 and args[2] else PLAIN_MODE
    return None, 0, None


# The cutting window of the frame iterators and of receive_frame's frames
# cut ahead (see FrameIterator, _FramesAhead): first cut, and cap. The first
# is small because a loop mixed with other receives makes every cut stale:
# at most 256 bytes of frames are cut for nothing per step (2 KiB before: a
# hundred 16-byte lines per step of such a loop).
_PEEK_WINDOW_MIN = 256
_PEEK_WINDOW_MAX = 1 << 18
# Frames at least this long, ending at a one-byte delimiter, are cut one at a
# time in the frame iterator's own loop (see FrameIterator._frames).
_LONG_FRAME = 8192
# Reads whose frames at a one-byte delimiter average at least _OWN_LINE bytes
# are cut in the batch iterator's own loop (see BatchIterator), as
# ReceiveBuffer._feed_batch cuts frames that long: a find per frame, then
# for lines of _CR_SCAN_FRAME_MAX bytes and more a test for \r and the limit
# per line, else one test of the limit per read (and one scan for \r).
_OWN_LINE = _SPLIT_FRAME_MAX
T = TypeVar("T")

# Transports whose receive_some is a full checkpoint on every path that
# returns (trio's rule for its own async functions; its error paths may skip
# the schedule point, which _receive_lean adds). Over these a receive that
# must read skips its own leading checkpoint: see _receive_lean.
_CHECKPOINTING_TRANSPORTS = (trio.SocketStream, trio.SSLStream)
# Of those, the transports whose receive_some is a cancel point before
# anything else, error paths included (trio.SocketStream: socket.recv's
# first step; a receive asks for at least one byte). trio.SSLStream raises
# its closed or broken state before its first cancel point.
# `BufferedStream._read_and_cut` makes no cancel point of its own over these.
_READS_CANCEL_FIRST: tuple[type[trio.abc.Stream], ...] = (trio.SocketStream,)

# BufferedStream._state bits. _HANDOUT: a frame iterator is handing out
# frames it cut ahead, and the buffer's cursor is not moved past those it
# handed out yet (see FrameIterator): whatever else looks at the buffer
# settles that first (BufferedStream._settle).
_RECEIVING = 1
_CLOSED = 2
_HANDOUT = 4
# (Combined once: receive_frame's hand-out path sets and clears _RECEIVING
# on every call.)
_HANDOUT_RECEIVING = _HANDOUT | _RECEIVING
_NOT_RECEIVING = ~_RECEIVING

_BUSY_RECEIVE = "another task is already receiving from this BufferedStream"
_BUSY_SEND = "another task is already sending on this BufferedStream"


class BufferedStream(trio.abc.Stream):
    """A `trio.abc.Stream` with a receive buffer: read frames, not chunks.

    Wraps any `trio.abc.Stream` (a `trio.SocketStream`, a `trio.SSLStream`,
    one end of `trio.testing.memory_stream_pair`, ...) and adds receives that
    return whole frames: exactly *n* bytes, up to a delimiter, a line, up to
    a regular expression, everything until EOF. Sending passes straight
    through to the transport.

    Args:
      transport_stream: the stream to read from and write to. The
        BufferedStream owns it: `aclose` closes it (use `detach` to take it
        back).
      max_buffer_size: the most bytes read from the transport that the
        buffer holds (default 64 KiB). It is also the largest frame any
        receive can return and the default ``max_size``.
      receive_size: the most bytes asked of the transport in one
        ``receive_some`` call (default 64 KiB).
      close_timeout: seconds `aclose` gives the transport's own close
        (default 10), which may wait for the peer (a `trio.SSLStream`'s
        sends its close_notify, after `start_tls`); then the transport is
        closed forcefully. `ValueError` / `TypeError` unless a finite number
        > 0.

    **The receive contract.** It holds for every receive method, and the
    test-suite checks each line.

    1. *All or nothing.* A receive returns a whole frame or consumes
       nothing. When it is cancelled, hits EOF (`IncompleteReadError`), finds
       the frame too long (`FrameTooLongError`) or the transport raises,
       every byte received so far stays buffered for the next call. (The
       exceptions are `discard_until`, which exists to throw bytes away, and
       `receive_exactly_into`, which puts what it wrote into the caller's
       buffer back in front of the stream's buffer.)
    2. *Bounded memory.* At most ``max_buffer_size`` bytes read from the
       transport are buffered; no transport read asks for more than
       ``receive_size`` bytes or than the room left. Nothing is allocated from
       a size the peer declares. Two documented cases go past the bound, both
       by the caller's choice rather than the peer's: `unreceive` (and a failed
       `receive_exactly_into`, which pushes back what it wrote into the
       caller's buffer), and `receive_until_eof` with ``max_size ==
       max_buffer_size``, which probes one byte beyond a full buffer to tell
       "exactly max_size bytes, then EOF" from "too long". (Short frames
       read in a row are split off the buffer in batches, a cache of the
       same bytes over at most 64 KiB of input; any other kind of receive
       drops it.)
    3. *Linear time.* The delimiter search is incremental: the buffer
       remembers how far it searched, across calls, retries after errors and
       cancellations, so total work is O(bytes received) for any chunking, one
       byte per read included. Consumed bytes are dropped by moving an offset
       (compacting when more than half is dead), never by copying the whole
       buffer per read. Regular expressions are the exception, see
       `receive_until_regex`.
    4. *Checkpoints.* Every async method is a full Trio checkpoint (a cancel
       point and a schedule point) on every path, also when the answer is
       already buffered and when it raises (`FrameTooLongError`,
       `IncompleteReadError`, `trio.ClosedResourceError`, a transport
       error). Misuse is refused at once, before any checkpoint, as Trio's
       own functions refuse it: `trio.BusyResourceError` when two tasks
       receive at once (or send at once), and `ValueError` or `TypeError`
       for a bad argument. The synchronous ``*_nowait`` methods never
       checkpoint; the frame iterators (`iter_until`, `lines`) hand out
       buffered frames without one and make every read from the transport a
       full checkpoint.
    5. *Conformance.* It passes `trio.testing.check_two_way_stream`. It is
       not a `trio.abc.HalfCloseableStream`, whatever the transport: use
       `HalfCloseableBufferedStream` for that (it passes
       `trio.testing.check_half_closeable_stream`). `send_eof` still works
       here when the transport can half-close (`can_send_eof`).

    ``max_size`` arguments count the bytes the call consumes, delimiter (or
    regex match) included. They default to ``max_buffer_size`` and may not
    exceed it (`ValueError`).

    After `aclose` or `detach`, every method raises
    `trio.ClosedResourceError` (``aclose`` itself stays a no-op). Transport
    exceptions pass through unchanged; the buffered bytes stay readable from
    the buffer by the ``*_nowait`` methods, which do not touch the transport.
    """

    #: The stream bytes are read from and written to (a `trio.SSLStream`
    #: over the original one after `start_tls`).
    transport_stream: trio.abc.Stream
    #: The most bytes the buffer holds (see the class docstring). Fixed at
    #: construction.
    max_buffer_size: int
    #: The most bytes asked of the transport in one read.
    receive_size: int
    #: Seconds `aclose` waits for the transport's close before forcing it.
    close_timeout: float

    # Subclasses whose bytes come from elsewhere (a read-ahead task) set this
    # False: every read then goes through _fill.
    _direct_reads: bool = True
    # True when `_fill` is a full checkpoint whenever it returns (see
    # _receive_lean); set per instance.
    _fill_checkpoints: bool = False
    # True when, besides, the stream reads its transport itself (its `_fill`
    # is BufferedStream's, not a Connection's, which keeps deadlines): then
    # receive_line, receive_until and receive_frame make a read themselves
    # (see _read_and_cut; `_iterator_read` makes the second test again for
    # the iterators, whose reads need no checkpointing transport).
    _lean_reads: bool = False
    # The transport when it is a plain trio.SocketStream whose socket this
    # stream reads itself (`read_socket`, see _socketio.py), else None.
    # Each read tests that the transport is still this one: after start_tls
    # (or any new transport_stream) reads go through receive_some. The test
    # and the two calls are written out at each read (a helper coroutine
    # would put back a frame per read, the very cost read_socket saves);
    # _receive_more's loop for long frames makes the test once, before its
    # reads (the transport it reads is taken once per call).
    _socket_stream: trio.SocketStream | None = None

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        max_buffer_size: int = 65536,
        receive_size: int = 65536,
        close_timeout: float = 10.0,
    ) -> None:
        self.transport_stream = transport_stream
        self.max_buffer_size = check_positive("max_buffer_size", max_buffer_size)
        self.receive_size = check_positive("receive_size", receive_size)
        checked = check_timeout("close_timeout", close_timeout, optional=False)
        assert checked is not None
        self.close_timeout = checked
        self._buffer = ReceiveBuffer(self.max_buffer_size)
        # (list iterator of the cut frames, the cut, where it starts, bytes
        # per frame beyond its length, bytes of the whole cut or -1): see
        # FrameIterator and _settle.
        self._handout: tuple[Any, list[bytes], int, int, int] | None = None
        self._state = 0  # _RECEIVING | _CLOSED | _HANDOUT bits: one test on the hot paths
        self._fill_checkpoints = type(transport_stream) in _CHECKPOINTING_TRANSPORTS
        self._lean_reads = self._fill_checkpoints and type(self)._fill is BufferedStream._fill
        self._socket_stream = direct_socket_stream(transport_stream)
        # A _nowait call found no frame (raised WouldBlock): its caller takes
        # frames without a checkpoint between them, and the reads of
        # receive_line and receive_until leave them uncut (see
        # ReceiveBuffer._feed_cut).
        self._polled = False
        self._sending = False
        # The last plain int that receive_line, receive_until or their
        # _nowait twins accepted as max_size: the same object again needs no
        # test (ints are immutable, max_buffer_size is fixed). A loop passes
        # the same limit every time; the test was 13 of the 103 bytecodes of
        # a receive_line at 16-byte lines (cachegrind: 38.4k -> 38.0k
        # instructions per call, a bare checkpoint 33.9k).
        self._max_size_ok: object = None
        self._decoders = _DecoderCache()
        self._ahead = _FramesAhead()

    def __repr__(self) -> str:
        self._settle()
        state = "closed" if self._closed else f"{len(self._buffer)} bytes buffered"
        return f"<BufferedStream over {self.transport_stream!r}, {state}>"

    # ------------------------------------------------------------ internals

    @property
    def _closed(self) -> bool:
        return bool(self._state & _CLOSED)

    def _limit(self, max_size: int | None) -> int:
        """``max_size`` checked (the hot methods test a plain int in range
        themselves, and call this for anything else)."""
        if max_size is None:
            return self.max_buffer_size
        max_size = operator.index(max_size)
        if not 1 <= max_size <= self.max_buffer_size:
            raise ValueError(f"max_size must be between 1 and max_buffer_size={self.max_buffer_size}, not {max_size}")
        return max_size

    async def _refuse(self) -> None:
        """For a receive whose ``_state`` test failed: when the only bit set
        is a frame iterator's hand-out, settle it (`_settle`) and return at
        once (the receive goes on, to its own checkpoint); else raise:
        `trio.BusyResourceError` at once (misuse), `trio.ClosedResourceError`
        after a checkpoint."""
        if self._state == _HANDOUT:
            self._settle()
            return
        if self._state & _RECEIVING:
            raise trio.BusyResourceError(_BUSY_RECEIVE)
        await checkpoint()
        raise trio.ClosedResourceError("this BufferedStream was closed")

    def _refuse_nowait(self) -> None:
        """`_refuse` for the methods that do not wait (no checkpoint)."""
        if self._state == _HANDOUT:
            self._settle()
            return
        if self._state & _RECEIVING:
            raise trio.BusyResourceError(_BUSY_RECEIVE)
        raise trio.ClosedResourceError("this BufferedStream was closed")

    def _settle(self) -> None:
        """Consume the frames a frame iterator handed out from its cut, and
        stop it handing out the rest: the buffer is then exact again (see
        FrameIterator). Called by whatever looks at the buffer while the
        ``_HANDOUT`` bit is set, and by the iterator itself once its cut is
        used up; does nothing otherwise. The cursor moves before the bit is
        cleared: clearing it runs a Connection's state setter, which wakes
        the reader task if room was made.

        How many were handed out is what the iterator's list iterator has
        not given yet (``__length_hint__``); cutting the list there ends the
        iterator's ``for`` loop at its next step, whereupon it sees that the
        hand-out is no longer its own and looks at the buffer afresh.
        O(frames handed out)."""
        handout = self._handout
        if handout is None:
            return
        rest, cut, at, extra, size = handout
        handed = len(cut) - operator.length_hint(rest)
        if handed < len(cut) or size < 0:
            del cut[handed:]
            size = sum(map(len, cut)) + extra * handed
        # (All handed out: the size the peek gave, when it gave one. The
        # sum cost a frame loop 10 %, 7 % and 5 % of its instructions at
        # 16 B, 128 B and 1 KiB lines: cachegrind, 2116 -> 1898, 2991 ->
        # 2767 and 6935 -> 6573 per line.)
        self._buffer._pos = at + size
        self._handout = None
        self._state &= ~_HANDOUT

    def _raise_if_closed_meanwhile(self, exc: trio.ClosedResourceError) -> None:
        """A transport call failed because another task closed this stream:
        say so (the transport's own message may be empty)."""
        if self._state & _CLOSED:
            raise trio.ClosedResourceError(
                f"this {type(self).__name__} was closed by another task during the call"
            ) from exc

    def _closed_during_read(self) -> NoReturn:
        """A transport read returned after another task closed this stream
        (a transport whose close does not interrupt a pending read): its
        bytes are not handed out."""
        raise trio.ClosedResourceError(f"this {type(self).__name__} was closed by another task during the call")

    def _no_frame(self, expected: int | None) -> NoReturn:
        """What a ``*_nowait`` method raises when the buffer holds no frame."""
        buffer = self._buffer
        if buffer._eof:  # (the attribute, not the property: a call fewer per WouldBlock)
            raise IncompleteReadError(buffer.peek(), expected)
        self._polled = True
        raise trio.WouldBlock

    async def _fill(self) -> None:
        """One read from the transport into the buffer (a full checkpoint, as
        every ``receive_some`` is). Reads one byte when the buffer is full:
        only `receive_until_eof` gets there, to probe for EOF."""
        transport = self.transport_stream
        size = self._read_size()
        try:
            data = await (
                read_socket(transport, size) if transport is self._socket_stream else transport.receive_some(size)
            )
        except trio.ClosedResourceError as exc:
            self._raise_if_closed_meanwhile(exc)
            raise
        if self._state & _CLOSED:
            self._closed_during_read()
        if data:
            self._buffer.feed(data)
        else:
            self._buffer.feed_eof()

    def _read_size(self) -> int:
        """How much one read asks of the transport: ``receive_size``, less
        when the buffer has less room, one byte when it is full (the EOF
        probe)."""
        buffer = self._buffer
        room = buffer.capacity - len(buffer._data) + buffer._pos - buffer._more_len
        size = self.receive_size
        return size if room >= size else (room if room > 0 else 1)

    async def _receive(self, take: Take, args: tuple[Any, ...], expected: int | None = None) -> bytes:
        """The frame receive: a checkpoint, then ``take(*args)`` from the buffer
        (which consumes a frame or returns None), reading more until it gives
        a frame. The checkpoint comes first, so a cancellation can only
        strike while nothing has been consumed."""
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        try:
            if self._fill_checkpoints:
                return await self._receive_lean(take, args, expected)
            await checkpoint()
            frame = take(*args)
            if frame is None:
                frame = await self._receive_more(take, args, expected)
            return frame
        finally:
            self._state &= _CLOSED

    async def _receive_lean(self, take: Take, args: tuple[Any, ...], expected: int | None) -> bytes:
        """The body of a receive when `_fill` is itself a full checkpoint
        (`_fill_checkpoints`): the same contract with one Trio schedule round
        fewer when the call has to read.

        A cancel point first (`checkpoint_if_cancelled`: raises if already
        cancelled, nothing consumed yet), then ``take``. A frame from the
        buffer is then returned after a schedule point that is not a cancel
        point (the pair is a full checkpoint, as in trio's own socket
        calls). No frame: the first read is the checkpoint, and a
        cancellation there consumes nothing. Every error leaves through a
        schedule point too. Measured (benchmarks/bench_resp.py, A/B in one
        minute): the Redis example without read-ahead went from 0.59x to
        0.67x of the hand-written Trio server's requests/s unpipelined.
        """
        await checkpoint_if_cancelled()
        try:
            frame = take(*args)
            if frame is None and not self._buffer._eof and not self._state & _CLOSED:
                return await self._receive_more(take, args, expected)
        except Exception:
            await cancel_shielded_checkpoint()
            raise
        await cancel_shielded_checkpoint()
        if frame is None:
            return await self._receive_more(take, args, expected)  # raises: EOF or closed
        return frame

    async def _receive_more(self, take: Callable[..., T | None], args: tuple[Any, ...], expected: int | None) -> T:
        """Read until ``take(*args)`` gives a frame; every read is a checkpoint.

        A full buffer that holds no whole frame ends it with
        `FrameTooLongError` (after a checkpoint, nothing consumed): no frame
        can grow further. The built-in cutters raise that themselves at their
        ``max_size``; this bounds a custom decoder that keeps answering None.
        Only ``take_all`` (`receive_until_eof`) reads one byte past a full
        buffer, to tell "exactly max_size bytes, then EOF" from "too long".
        """
        buffer = self._buffer
        probe = getattr(take, "__func__", None) is ReceiveBuffer.take_all
        if type(self)._fill is BufferedStream._fill:
            # BufferedStream._fill and _read_size inlined: a frame that spans
            # many reads (a long line in small reads) pays this loop per
            # read, and every Python call in it counted: one 4 MiB line in
            # 1 KiB reads, in one process, went from 7.0 to 4.8 µs per read
            # against 4.4 for the hand-written loop.
            transport = self.transport_stream
            # A frame ending at a one-byte delimiter, which `take` just did
            # not find (it returned None): a read that brings no delimiter,
            # queued behind what is buffered, cannot complete the frame, and
            # `take` need not look (it would raise only once the buffer holds
            # max_size bytes). One find over the new bytes instead of two
            # calls into the buffer per read.
            delimiter, max_size, mode = _one_byte_delimiter(take, args)
            # Long frames without their delimiter: a read that completes the
            # frame is fed and the frame joined in one call
            # (ReceiveBuffer._feed_first, as the frame iterators do), not by
            # feed, the take and its _take_straddling and _take_joined.
            # Measured with cachegrind, in one process, per 16 KiB line:
            # receive_line_nowait's loop (receive_line on WouldBlock) 58.8k ->
            # 56.6k instructions. Not when the frame is short (its head and
            # what the read brings of it: `_feed_first`'s ``short``), as
            # are, most likely, the frames after it: the take's route cuts
            # those into the buffer's batch, which the next calls pop
            # (without it, receive_line at 128-byte lines: 39.1k -> 40.5k
            # per call).
            # Only for a take that returns one frame: a batch iterator's
            # refill (take_lines, take_until_batch) must return a list.
            joins = mode is not None and _bound_function(take) not in _BATCH_TAKES
            one_byte, feed_mode = delimiter or b"", mode or 0  # (typed: used when joins)
            while True:
                if self._state & _CLOSED:
                    raise trio.ClosedResourceError("this BufferedStream was closed")
                if buffer._eof:
                    raise IncompleteReadError(buffer.peek(), expected)
                room = buffer.capacity - len(buffer._data) + buffer._pos - buffer._more_len
                if room <= 0 and not probe:
                    await self._buffer_full()
                size = self.receive_size
                ask = size if room >= size else (room if room > 0 else 1)
                try:
                    data = await (
                        read_socket(transport, ask) if transport is self._socket_stream else transport.receive_some(ask)
                    )
                except trio.ClosedResourceError as exc:
                    self._raise_if_closed_meanwhile(exc)
                    raise
                if self._state & _CLOSED:
                    self._closed_during_read()
                if data:
                    if delimiter is not None and len(buffer._data) - buffer._pos + buffer._more_len >= size:
                        # The frame already spans a whole read: queue the
                        # reads that bring no delimiter (ReceiveBuffer.feed,
                        # inlined for this case) in a loop of locals. (Not
                        # for shorter frames: their end is usually in this
                        # read, and the take would search it a second time.)
                        # Per read, what the hand-written find loop does
                        # (read, find, append) and the buffer's two counts;
                        # the rest is hoisted: the read test (`transport` is
                        # this call's, `_socket_stream` the constructor's),
                        # the room test as a bound, the append. One 4 MiB
                        # line in 1 KiB reads, in one process: 87 -> 80
                        # bytecodes per read here (the hand-written loop's
                        # own: 44), 0.91x -> 0.92-0.93x that loop's speed
                        # (lines() and until batches, 9 interleaved rounds).
                        buffered = len(buffer._data) - buffer._pos + buffer._more_len
                        capacity = buffer.capacity
                        whole = capacity - size  # a whole read fits while buffered <= whole
                        queue = buffer._more
                        append = queue.append
                        queued = len(queue)
                        before = buffered
                        direct = transport is self._socket_stream
                        while (
                            type(data) is bytes and data.find(delimiter) < 0 and buffered + (n := len(data)) < max_size
                        ):
                            append(data)
                            buffered += n
                            buffer._more_len += n
                            buffer._fed += n
                            # buffered < max_size <= capacity: there is room.
                            ask = size if buffered <= whole else capacity - buffered
                            try:
                                data = await (read_socket(transport, ask) if direct else transport.receive_some(ask))
                            except trio.ClosedResourceError as exc:
                                self._raise_if_closed_meanwhile(exc)
                                raise
                            if self._state & _CLOSED:
                                self._closed_during_read()
                            if not data:
                                break
                        if buffered > before:
                            buffer._searched_queued(delimiter, queued, buffered - before)
                    if not data:
                        buffer.feed_eof()
                    elif joins:
                        joined = buffer._feed_first(
                            one_byte, max_size, feed_mode, _BATCH_FRAME_MAX, False, data
                        )  # (else fed)
                        if joined is not None:
                            return cast(T, joined)  # (what take returns)
                    else:
                        buffer.feed(data)
                else:
                    buffer.feed_eof()
                frame = take(*args)
                if frame is not None:
                    return frame
        while True:
            if self._state & _CLOSED:
                raise trio.ClosedResourceError("this BufferedStream was closed")
            if buffer.eof:
                raise IncompleteReadError(buffer.peek(), expected)
            if not buffer.room and not probe:
                await self._buffer_full()
            await self._fill()
            frame = take(*args)
            if frame is not None:
                return frame

    async def _buffer_full(self) -> NoReturn:
        """A receive's end when the buffer is full and holds no whole frame
        (see `_receive_more`): a checkpoint, then `FrameTooLongError`."""
        await checkpoint()
        raise FrameTooLongError(
            self.max_buffer_size,
            f"the buffer is full ({len(self._buffer)} bytes, max_buffer_size={self.max_buffer_size}) "
            "and holds no whole frame",
        )

    def _iterator_read(self) -> int:
        """How much an iterator's own read asks for (see `BatchIterator`):
        ``receive_size``, less when the buffer has less room (as `_fill`
        asks); or 0: then it refills through `_receive_more` (the general
        refill, called from each iterator's generator), which handles EOF, a
        full buffer and a frame that already spans a whole read (it queues
        the reads that bring no delimiter without searching them twice).
        Only a plain BufferedStream reads itself: a Connection's `_fill`
        keeps its deadlines.
        (`FrameIterator._frames`'s long-frame loop, and
        `BatchIterator._batches` after a batch that drained the buffer, make
        the same test inline.)

        Less than ``receive_size`` when short of room: with the defaults
        (``max_buffer_size`` = ``receive_size``) that is every read after
        a frame's head, and the iterators went through the general refill
        for each (measured in one process, default stream, 16,000-byte
        lines in 64 KiB reads, median ratios to split of 9-11 interleaved
        rounds: frame loop 0.68x -> 0.82x, batch loop 0.70x -> 0.83x;
        1,000-byte lines 0.57x -> 0.58x)."""
        buffer = self._buffer
        held = len(buffer._data) - buffer._pos + buffer._more_len
        size = self.receive_size
        room = buffer.capacity - held
        if buffer._eof or held >= size or room <= 0 or type(self)._fill is not BufferedStream._fill:
            return 0
        return size if room >= size else room

    def _iterator_fed(self, data: bytes | bytearray) -> None:
        """After an iterator's own read (see `_iterator_read`): what `_fill`
        does with its bytes."""
        if self._state:
            self._closed_during_read()
        if data:
            self._buffer.feed(data)
        else:
            self._buffer.feed_eof()

    async def _read_and_cut(
        self,
        size: int,
        feed: Callable[..., T | None],
        args: tuple[Any, ...],
        take: Callable[..., T | None],
        take_args: tuple[Any, ...],
    ) -> T:
        """The rest of a receive that must read, its first read fed and cut
        in one call: the frame ``feed(*args, read)`` returns (it feeds the
        read into the buffer and cuts); when that is None (the read fed,
        nothing consumed) or at EOF, ``take(*take_args)`` and, if it needs
        more, `_receive_more`. For transports whose reads are full
        checkpoints (`_fill_checkpoints`); a cancel point comes first (the
        transport's own, over those of `_READS_CANCEL_FIRST`), and an error
        of the read leaves through a schedule point (a transport may raise
        before its own). The caller holds ``_RECEIVING`` and has found no
        whole frame buffered. `receive_frame` calls it; `receive_line` and
        `receive_until` write it out (a coroutine fewer per read, see
        receive_line).

        Why: a receive that must read went through `_receive_lean`, a take
        that finds nothing again, and `_receive_more`'s set-up
        (`_one_byte_delimiter`, the room), then `feed` and a take. Measured
        in one process (64 KiB reads, 9 interleaved rounds): 16 KiB lines,
        ``receive_line_nowait``'s loop 4271 -> 4030 ns per line,
        ``receive_until_nowait``'s 4535 -> 4171, ``receive_line`` 7187 ->
        6762; 4 KiB length-prefixed frames, ``receive_frame`` 4840 -> 4628.
        Without a cancel point of its own over a socket (a second one, before
        the socket's), 16 KiB lines in reads of 64 KiB that do not end on
        a line, in one process: ``receive_line_nowait``'s loop 35 bytecodes
        fewer per read (see receive_line for the figures).
        """
        transport = self.transport_stream
        if type(transport) not in _READS_CANCEL_FIRST:
            await checkpoint_if_cancelled()
        try:
            read = await (
                read_socket(transport, size) if transport is self._socket_stream else transport.receive_some(size)
            )
        except BaseException as exc:
            await self._read_failed(exc)
            raise
        if self._state & _CLOSED:
            self._closed_during_read()
        if read:
            frame = feed(*args, read)
            if frame is not None:
                return frame
        else:
            self._buffer.feed_eof()
        frame = take(*take_args)
        if frame is None:
            frame = await self._receive_more(take, take_args, None)
        return frame

    async def _read_failed(self, exc: BaseException) -> None:
        """A lean read (`_read_and_cut`, and the reads receive_line and
        receive_until write out) raised ``exc``: the schedule point that
        the error path owes (a transport may raise before its own), and a
        close by another task during the read said so. The caller then
        re-raises ``exc``."""
        await cancel_shielded_checkpoint()
        if isinstance(exc, trio.ClosedResourceError):
            self._raise_if_closed_meanwhile(exc)

    def _cut_read(
        self, read: bytes | bytearray, polled: bool, delimiter: bytes, max_size: int, mode: int
    ) -> bytes | None:
        """The lean read that receive_line and receive_until make themselves
        returned ``read``: refused after a close by another task
        (`trio.ClosedResourceError`), EOF fed; else fed and the frame it
        completes cut in one call (polled, the call after a WouldBlock:
        `ReceiveBuffer._feed_first`, the frames after it left to the
        ``_nowait`` calls; else `ReceiveBuffer._feed_cut`, which cuts them
        for the next calls). None: nothing consumed, the take decides."""
        if self._state & _CLOSED:
            self._closed_during_read()
        if not read:
            self._buffer.feed_eof()
            return None
        if polled:
            return self._buffer._feed_first(delimiter, max_size, mode, _BATCH_FRAME_MAX, True, read)
        return self._buffer._feed_cut(delimiter, max_size, mode, read)

    async def _take_after_checkpoint(self, take: Callable[..., T | None], args: tuple[Any, ...]) -> T:
        """The rest of a per-call receive that found its frame in the
        buffer's batch but, after its checkpoint, the stream closed or the
        frame over ``max_size``: ``take(*args)`` (which raises for the frame
        too long), then `_receive_more` if it needs more (which raises
        `trio.ClosedResourceError` when closed). The caller has set
        ``_RECEIVING`` and made the receive's checkpoint; this resets it."""
        try:
            frame = take(*args)
            if frame is None:
                frame = await self._receive_more(take, args, None)
            return frame
        finally:
            self._state &= _CLOSED

    # ------------------------------------------------------------ receiving

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return some bytes: buffered ones first, else one transport read.

        The `trio.abc.ReceiveStream` contract: returns between 1 and
        ``max_bytes`` bytes (any number if None), or ``b""`` at EOF, and
        then ``b""`` again on every later call. When the buffer is empty the
        call reads the transport directly (asking for at most
        ``receive_size`` bytes), without copying through the buffer. A full
        checkpoint.

        Raises:
          ValueError: ``max_bytes`` < 1.
          trio.BusyResourceError: another task is receiving.
          trio.ClosedResourceError: the stream was closed or detached.
        """
        if max_bytes is not None:
            max_bytes = check_positive("max_bytes", max_bytes)
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        try:
            buffer = self._buffer
            if buffer or buffer.eof:
                await checkpoint()
                if self._state & _CLOSED:
                    raise trio.ClosedResourceError("this BufferedStream was closed")
                return buffer.take_some(max_bytes)
            if not self._direct_reads:
                await self._fill()  # a checkpoint
                if buffer:
                    return buffer.take_some(max_bytes)
                return b""
            # Nothing buffered: read the transport directly (its receive_some
            # is the checkpoint), without copying through the buffer.
            # No read asks for more than receive_size (contract item 2).
            size = self.receive_size
            if max_bytes and max_bytes < size:
                size = max_bytes
            transport = self.transport_stream
            try:
                data = await (
                    read_socket(transport, size) if transport is self._socket_stream else transport.receive_some(size)
                )
            except trio.ClosedResourceError as exc:
                self._raise_if_closed_meanwhile(exc)
                raise
            if self._state & _CLOSED:
                self._closed_during_read()
            if not data:
                buffer.feed_eof()
            return data if type(data) is bytes else bytes(data)
        finally:
            self._state &= _CLOSED

    async def receive_exactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes.

        Reads ahead (up to ``receive_size``) rather than asking the transport
        for just the missing bytes. A full checkpoint.

        Raises:
          ValueError: ``n`` is negative or larger than ``max_buffer_size``
            (use `receive_exactly_into` for large payloads).
          IncompleteReadError: EOF before ``n`` bytes (``.expected == n``);
            the bytes stay buffered.
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        n = operator.index(n)
        if not 0 <= n <= self.max_buffer_size:
            raise ValueError(f"n must be between 0 and max_buffer_size={self.max_buffer_size}, not {n}")
        # _receive, inlined: the per-call methods are hot.
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        try:
            take = self._buffer._take_exactly  # (n checked above)
            if self._fill_checkpoints:
                return await self._receive_lean(take, (n,), n)
            await checkpoint()
            frame = take(n)
            if frame is None:
                frame = await self._receive_more(take, (n,), n)
            return frame
        finally:
            self._state &= _CLOSED

    async def receive_exactly_into(self, buffer: Any) -> None:
        """Fill the writable bytes-like ``buffer`` completely.

        For payloads of any size, larger than ``max_buffer_size`` included:
        buffered bytes are copied first, then transport reads are copied
        straight into ``buffer`` (at most ``receive_size`` per read), and what
        a read brings beyond the end of ``buffer`` is kept in the stream's
        buffer. A full checkpoint.

        On failure (cancellation, EOF, transport error) the bytes already
        written into ``buffer`` are pushed back in front of the stream's
        buffer, so nothing is lost and a retry reads them again; the stream's
        buffer can then hold up to ``len(buffer)`` bytes, past
        ``max_buffer_size``. Once the call returns or raises it holds no view
        of ``buffer`` (a bytearray can be resized, even while the exception
        and its traceback live).

        Raises:
          TypeError: ``buffer`` is read-only or not contiguous.
          IncompleteReadError: EOF first (``.partial`` is what arrived,
            ``.expected == len(buffer)`` in bytes).
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        # The view is released on every way out, errors included (the outer
        # finally): a view left in a traceback's frame would keep the
        # caller's bytearray from being resized while the exception lives.
        view = memoryview(buffer)
        try:
            if view.readonly:
                raise TypeError("receive_exactly_into needs a writable buffer")
            view = view.cast("B")
            need = len(view)
            if self._state:
                await self._refuse()
            self._state = _RECEIVING
            try:
                await checkpoint()
                stored = self._buffer
                got = stored.take_into(view)
                try:
                    while got < need:
                        if self._state & _CLOSED:
                            raise trio.ClosedResourceError("this BufferedStream was closed")
                        if stored.eof:
                            raise IncompleteReadError(bytes(view[:got]), need)
                        want = need - got
                        if not self._direct_reads:
                            await self._fill()
                            got += stored.take_into(view[got:])
                            continue
                        size = min(self.receive_size, want + stored.room)
                        transport = self.transport_stream
                        try:
                            data = await (
                                read_socket(transport, size)
                                if transport is self._socket_stream
                                else transport.receive_some(size)
                            )
                        except trio.ClosedResourceError as exc:
                            self._raise_if_closed_meanwhile(exc)
                            raise
                        if self._state & _CLOSED:
                            self._closed_during_read()
                        if not data:
                            stored.feed_eof()
                        elif len(data) <= want:
                            view[got : got + len(data)] = data
                            got += len(data)
                        else:
                            with memoryview(data) as chunk:
                                view[got:need] = chunk[:want]
                                stored.feed(chunk[want:])
                            got = need
                except BaseException:
                    if not self._state & _CLOSED:
                        stored.unreceive(view[:got])
                    raise
            finally:
                self._state &= _CLOSED
        finally:
            view.release()

    async def receive_until(
        self, delimiter: DelimiterArg, *, max_size: int | None = None, keep_delimiter: bool = False
    ) -> bytes:
        """Return the bytes before the next delimiter, and consume the delimiter.

        ``delimiter`` is non-empty bytes, or a tuple of them: then the
        earliest match wins (the shortest frame) and at the same position
        the longest (``b"\\r\\n"`` beats ``b"\\r"``). A shorter match that
        the next bytes could still turn into a longer one (``b"\\r"`` at the
        end of the buffered data) waits for them, or for EOF, where the
        shorter one is taken. With ``keep_delimiter`` the delimiter ends the
        returned frame. A full checkpoint.

        Raises:
          FrameTooLongError: ``max_size`` bytes arrived without a delimiter,
            or the first delimiter ends beyond ``max_size``. Nothing is
            consumed (`discard_until` skips the frame).
          IncompleteReadError: EOF before a delimiter (``.expected`` None).
          ValueError, TypeError: a bad ``delimiter`` or ``max_size``.
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        if max_size is None:
            max_size = self.max_buffer_size
        elif max_size is not self._max_size_ok:  # (see _max_size_ok)
            if type(max_size) is int and 0 < max_size <= self.max_buffer_size:
                self._max_size_ok = max_size
            else:
                max_size = self._limit(max_size)
        # _receive, inlined: the per-call methods are hot.
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        buffer = self._buffer
        i = buffer._batch_next
        if i < buffer._batch_len and buffer._batch_key is delimiter:
            # A frame the buffer has already cut (its batch): a plain
            # checkpoint, then the frame, outside the try below (see
            # receive_line). The delimiter is the batch's own key, checked
            # when the batch was cut: the check below is not made again
            # (12 bytecodes of the 96 this path cost per call). An equal
            # delimiter that is another object (a tuple is normalized to
            # another) takes the batch's frame through the take below.
            try:
                await checkpoint()
            except BaseException:
                self._state &= _CLOSED
                raise
            if self._state == _RECEIVING:  # else closed meanwhile
                piece = buffer._batch[i]
                size = len(piece) + len(delimiter)
                if size <= max_size:
                    self._state = 0
                    buffer._batch_next = i + 1
                    buffer._pos += size
                    return piece + delimiter if keep_delimiter else piece
            return await self._take_after_checkpoint(buffer.take_until, (delimiter, max_size, keep_delimiter))
        try:
            # The usual delimiter (non-empty bytes) without the call that checks it.
            delimiters = delimiter if type(delimiter) is bytes and delimiter else normalize_delimiters(delimiter)
            # A whole frame in the current chunk, outside any batch: cut here
            # after a plain checkpoint (see receive_line, the same fast path,
            # and the same exception: a short frame with more after it is
            # left to the take, which cuts the buffer's batch).
            data = buffer._data
            pos = buffer._pos
            searched = False  # (and no whole frame buffered)
            found = False  # a short frame, found: the take need not search
            if type(delimiters) is bytes and type(data) is bytes and i >= buffer._batch_len:
                # (The int test first: comparing the remembered key, often
                # None, to bytes is the slower test.)
                at = data.find(delimiters, buffer._snext if buffer._snext > pos and buffer._skey == delimiters else pos)
                end = at + len(delimiters)
                if at >= 0 and end - pos <= max_size:
                    if end - pos > _BATCH_FRAME_MAX or len(data) - end < _BATCH_MIN:
                        await checkpoint()
                        if buffer._data is data and buffer._pos == pos:  # else closed meanwhile
                            buffer._pos = end
                            return data[pos:end] if keep_delimiter else data[pos:at]
                    else:
                        found = True
                        buffer._skey = delimiters  # the search, remembered for take_until
                        buffer._snext = at
                else:
                    searched = True
                    if at < 0:
                        buffer._skey = delimiters
                        buffer._snext = len(data) - len(delimiters) + 1
            take = buffer.take_until
            if (
                searched
                and at < 0
                and len(data) - pos < max_size
                and not buffer._more_len
                and type(delimiters) is bytes  # (searched says so: for the type checker)
                and len(delimiters) == 1
                and not keep_delimiter
                and self._lean_reads
                and (size := self._iterator_read())
            ):
                # No delimiter buffered (nor a head over max_size, nor chunks
                # queued, not searched): one read, fed and the frame joined
                # when it is long (see _read_and_cut and receive_line, whose
                # read this is, written out as there).
                polled = self._polled
                transport = self.transport_stream
                if type(transport) not in _READS_CANCEL_FIRST:
                    await checkpoint_if_cancelled()
                try:
                    read = await (
                        read_socket(transport, size)
                        if transport is self._socket_stream
                        else transport.receive_some(size)
                    )
                except BaseException as exc:
                    await self._read_failed(exc)
                    raise
                frame = self._cut_read(read, polled, delimiters, max_size, PLAIN_MODE)
                if frame is not None:
                    return frame
                frame = take(delimiters, max_size, False)
                if frame is None:
                    frame = await self._receive_more(take, (delimiters, max_size, False), None)
                return frame
            # The lean receive saves a Trio round when the call must read; a
            # frame the buffer has already cut (its batch) needs no read, and
            # a plain checkpoint costs one coroutine fewer (see receive_line).
            if (
                not found
                and self._fill_checkpoints
                and i >= buffer._batch_len
                and (searched or not (type(delimiters) is bytes and buffer._has_frame(delimiters, max_size)))
            ):
                return await self._receive_lean(take, (delimiters, max_size, keep_delimiter), None)
            await checkpoint()
            frame = take(delimiters, max_size, keep_delimiter)
            if frame is None:
                frame = await self._receive_more(take, (delimiters, max_size, keep_delimiter), None)
            return frame
        finally:
            self._state &= _CLOSED

    async def receive_line(self, *, max_size: int | None = None) -> bytes:
        """Return the next line, without its ``\\n`` and one ``\\r`` before it.

        Accepts LF and CRLF endings alike; ``max_size`` includes the ending.
        Errors as for `receive_until`. A full checkpoint.
        """
        # max_size becomes the limit: no copy of it to another name.
        if max_size is None:
            max_size = self.max_buffer_size
        elif max_size is not self._max_size_ok:  # (see _max_size_ok)
            if type(max_size) is int and 0 < max_size <= self.max_buffer_size:
                self._max_size_ok = max_size
            else:
                max_size = self._limit(max_size)
        # _receive, inlined: the per-call methods are hot.
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        buffer = self._buffer
        # The lean receive saves a Trio round when the call must read; a
        # line the buffer has already cut (its batch) needs no read, and a
        # plain checkpoint costs one coroutine fewer. Then the batch's next
        # line, taken here (ReceiveBuffer.take_line's first case, inlined):
        # these two were about 0.3 µs of the 0.8 µs this call cost over a
        # bare checkpoint per line (16-byte lines).
        i = buffer._batch_next
        if i < buffer._batch_len and buffer._batch_key is _LF:
            # Outside the try below, whose finally costs 8 bytecodes on the
            # way out: the state is reset here, once the test after the
            # checkpoint has shown it unchanged (no close meanwhile).
            try:
                await checkpoint()
            except BaseException:
                self._state &= _CLOSED
                raise
            # Receiving (_RECEIVING) keeps every other consumer out: only a
            # close (its bit; it empties the buffer) changes the batch.
            if self._state == _RECEIVING and (n := len(piece := buffer._batch[i])) < max_size:
                self._state = 0
                buffer._batch_next = i + 1
                buffer._pos += n + 1
                return piece[:-1] if buffer._batch_cr and piece[-1:] == b"\r" else piece
            return await self._take_after_checkpoint(buffer.take_line, (max_size,))
        try:
            # A whole line in the current chunk, outside any batch:
            # ReceiveBuffer.take_line's second case, inlined, after a plain
            # checkpoint. About 0.5 µs of the 0.9 µs this call cost over a
            # bare checkpoint per line at 1 KiB lines (three calls fewer).
            # Not for a short line with more after it: the take below cuts
            # the buffer's batch, whose lines the next calls pop (above).
            # (Taking every line here, a find and a slice each, left the
            # batch to the first window after each read: at 16-byte lines
            # 129 bytecodes of this method per call, 89 popping the batch;
            # cachegrind, in one process: 40.0k -> 37.7k instructions per
            # call, a bare checkpoint loop 33.9k.)
            data = buffer._data
            pos = buffer._pos
            searched = False  # (and no whole line buffered)
            found = False  # a short line, found: the take need not search
            if type(data) is bytes and i >= buffer._batch_len:
                end = data.find(b"\n", buffer._snext if buffer._skey is _LF and buffer._snext > pos else pos)
                if 0 <= end < pos + max_size:
                    if end - pos >= _BATCH_FRAME_MAX or len(data) - end <= _BATCH_MIN:
                        await checkpoint()
                        if buffer._data is data and buffer._pos == pos:  # else closed meanwhile
                            buffer._pos = end + 1
                            return data[pos : end - 1] if end > pos and data[end - 1] == 13 else data[pos:end]
                    else:
                        found = True
                        buffer._skey = _LF  # the search, remembered for take_line
                        buffer._snext = end
                else:
                    searched = True
                    if end < 0:
                        buffer._skey = _LF
                        buffer._snext = len(data)
            take = buffer.take_line
            if (
                searched
                and end < 0
                and len(data) - pos < max_size
                and not buffer._more_len
                and self._lean_reads
                and (size := self._iterator_read())
            ):
                # No line buffered (nor a head over max_size, nor chunks
                # queued, not searched): one read, fed and the line joined
                # when it is long (see _read_and_cut). Polled (the call
                # after a WouldBlock), the read completes the line it
                # straddles (`ReceiveBuffer._feed_first`, told that the
                # search above has made its test). Against that test made
                # again behind a bounded find, at 16 KiB lines in 64 KiB
                # reads that do not end on a line, in one process (13
                # interleaved rounds), with the read's size computed here
                # and no cancel point of _read_and_cut's own over a socket:
                # receive_line_nowait's loop 4310 -> 4160 ns per line,
                # receive_until_nowait's 4358 -> 4260 (343 -> 317 bytecodes
                # per line; a copy of anyio's loop 4245). The read's size
                # then came from `_iterator_read`'s tests written out here:
                # through the call, 9 bytecodes more per line, 4125 -> 4178
                # ns (15 rounds), not worth a copy of its rule per method.
                # The read is `_read_and_cut`'s, written out (what follows it
                # in `_cut_read`, a plain call): a coroutine fewer between the
                # task and each read (its frame made, and passed through on
                # the way out and back in), and no bound arguments. 16 KiB
                # lines in 64 KiB reads, in one process (a socket's lean
                # reads, 15 interleaved rounds, fastest of 9): 4970 -> 4861
                # ns per line (``split until``: 4605),
                # receive_line_nowait's loop 2642 -> 2512 (``split nowait``:
                # 2303); over loopback TCP (21 rounds) 10,018 -> 9,730
                # (8,895).
                polled = self._polled
                transport = self.transport_stream
                if type(transport) not in _READS_CANCEL_FIRST:
                    await checkpoint_if_cancelled()
                try:
                    read = await (
                        read_socket(transport, size)
                        if transport is self._socket_stream
                        else transport.receive_some(size)
                    )
                except BaseException as exc:
                    await self._read_failed(exc)
                    raise
                frame = self._cut_read(read, polled, _LF, max_size, LINE_MODE)
                if frame is not None:
                    return frame
                frame = take(max_size)
                if frame is None:
                    frame = await self._receive_more(take, (max_size,), None)
                return frame
            # The lean receive only when no whole line is buffered (it saves
            # a Trio round when the call must read, and costs one coroutine
            # when it need not); the search above, when it ran, said so.
            if not found and self._fill_checkpoints and (searched or not buffer._has_frame(b"\n", max_size)):
                return await self._receive_lean(take, (max_size,), None)
            await checkpoint()
            frame = take(max_size)
            if frame is None:
                frame = await self._receive_more(take, (max_size,), None)
            return frame
        finally:
            self._state &= _CLOSED

    async def receive_until_regex(
        self,
        pattern: bytes | re.Pattern[bytes],
        *,
        max_size: int | None = None,
        keep_delimiter: bool = False,
    ) -> bytes:
        """Return the bytes before the first match of ``pattern``; consume the match.

        The match acts as the delimiter (and counts towards ``max_size``).
        A regular expression cannot in general be searched incrementally, so
        each transport read triggers a new search over at most the first
        ``max_size`` buffered bytes: the cost is O(max_size) per read, and
        a frame trickling in one byte at a time costs O(max_size * frame);
        keep ``max_size`` small when peers are untrusted, or prefer
        `receive_until`. The first match in the buffered data is taken as it
        is: use patterns whose match cannot grow with more data. A full
        checkpoint.

        Raises:
          ValueError: the pattern matched an empty string, or a bad ``max_size``.
          FrameTooLongError, IncompleteReadError, trio.BusyResourceError,
          trio.ClosedResourceError: as for `receive_until`.
        """
        compiled = re.compile(pattern) if not isinstance(pattern, re.Pattern) else pattern
        return await self._receive(self._buffer.take_regex, (compiled, self._limit(max_size), keep_delimiter))

    async def receive_until_eof(self, *, max_size: int | None = None) -> bytes:
        """Return everything until EOF (``b""`` if EOF came with nothing buffered).

        A full checkpoint.

        Raises:
          FrameTooLongError: more than ``max_size`` bytes arrived before EOF;
            nothing is consumed.
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        return await self._receive(self._buffer.take_all, (self._limit(max_size),))

    async def discard_until(self, delimiter: DelimiterArg) -> int:
        """Skip everything through the next delimiter; return how many bytes
        were skipped, the delimiter included.

        Uses bounded memory whatever the distance to the delimiter (Netty's
        discarding mode): bytes are dropped as they arrive, keeping only a
        tail that could start a delimiter. This is the way out after a
        `FrameTooLongError`. A full checkpoint.

        Unlike the receives, this is not all or nothing: bytes it already
        skipped stay skipped if it is cancelled or hits EOF.

        Raises:
          IncompleteReadError: EOF before a delimiter; ``.partial`` holds the
            undiscarded tail, which stays buffered.
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        delimiters = normalize_delimiters(delimiter)
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        try:
            await checkpoint()
            buffer = self._buffer
            skipped = 0
            while True:
                dropped, found = buffer.discard_until(delimiters)
                skipped += dropped
                if found:
                    return skipped
                if self._state & _CLOSED:
                    raise trio.ClosedResourceError("this BufferedStream was closed")
                if buffer.eof:
                    raise IncompleteReadError(buffer.peek(), None)
                await self._fill()
        finally:
            self._state &= _CLOSED

    # ------------------------------------------------------ the fast paths

    def receive_until_nowait(
        self, delimiter: DelimiterArg, *, max_size: int | None = None, keep_delimiter: bool = False
    ) -> bytes:
        """`receive_until` from the buffer only; never touches the transport
        and is not a checkpoint.

        Raises `trio.WouldBlock` when no whole frame is buffered yet,
        `IncompleteReadError` when none can come (EOF was seen), and
        otherwise what `receive_until` raises.
        """
        if self._state:
            self._refuse_nowait()
        # The usual arguments without the two calls that check them (a third
        # of this method's cost at 16-byte frames).
        if max_size is None:
            max_size = self.max_buffer_size
        elif max_size is not self._max_size_ok:  # (see _max_size_ok)
            if type(max_size) is int and 0 < max_size <= self.max_buffer_size:
                self._max_size_ok = max_size
            else:
                max_size = self._limit(max_size)
        buffer = self._buffer
        if type(delimiter) is bytes and delimiter:  # the usual delimiter, without the call that checks it
            i = buffer._batch_next
            if i < buffer._batch_len:
                if buffer._batch_key is delimiter and not keep_delimiter:
                    # The next frame of the buffer's batch (ReceiveBuffer.take_until's
                    # first case, inlined: the call was a fifth of this method's cost
                    # at 16-byte frames).
                    piece = buffer._batch[i]
                    size = len(piece) + len(delimiter)
                    if size <= max_size:
                        buffer._batch_next = i + 1
                        buffer._pos += size
                        return piece
            elif type(data := buffer._data) is bytes:
                # ReceiveBuffer.take_until's second case (a long frame in
                # contiguous bytes), inlined, its search remembered for it
                # otherwise; and its "none yet" answer (see
                # receive_line_nowait). In one process, ns per frame: 1 KiB
                # lines 724 -> 694; 16 KiB 4233 -> 4178 for the "none yet"
                # answer (391 -> 359 bytecodes per frame in all).
                pos = buffer._pos
                at = data.find(delimiter, buffer._snext if buffer._snext > pos and buffer._skey == delimiter else pos)
                end = at + len(delimiter)
                if at - pos > _BATCH_FRAME_MAX and end - pos <= max_size:
                    if buffer._batch_len:
                        buffer._drop_batch()
                    buffer._pos = end
                    return data[pos:end] if keep_delimiter else data[pos:at]
                buffer._skey = delimiter
                if at >= 0:
                    buffer._snext = at
                else:
                    buffer._snext = len(data) - len(delimiter) + 1
                    if not buffer._more_len and len(data) - pos < max_size:
                        self._no_frame(None)
            frame = buffer.take_until(delimiter, max_size, keep_delimiter)
        else:
            frame = buffer.take_until(normalize_delimiters(delimiter), max_size, keep_delimiter)
        if frame is None:
            self._no_frame(None)
        return frame

    def receive_exactly_nowait(self, n: int) -> bytes:
        """`receive_exactly` from the buffer only (not a checkpoint); raises
        `trio.WouldBlock` when fewer than ``n`` bytes are buffered."""
        n = operator.index(n)
        if not 0 <= n <= self.max_buffer_size:
            raise ValueError(f"n must be between 0 and max_buffer_size={self.max_buffer_size}, not {n}")
        if self._state:
            self._refuse_nowait()
        frame = self._buffer._take_exactly(n)  # (n checked above)
        if frame is None:
            self._no_frame(n)
        return frame

    def skip_nowait(self, n: int) -> None:
        """Drop exactly ``n`` buffered bytes without copying them: the
        consuming half of a parser that reads `peek` itself. Not a
        checkpoint; never touches the transport.

        Raises `trio.WouldBlock` when fewer than ``n`` bytes are buffered, and
        `IncompleteReadError` when they never will be (EOF was seen); either
        way nothing is dropped. `ValueError` for ``n`` outside
        ``0..max_buffer_size``.
        """
        n = operator.index(n)
        if not 0 <= n <= self.max_buffer_size:
            raise ValueError(f"n must be between 0 and max_buffer_size={self.max_buffer_size}, not {n}")
        if self._state:
            self._refuse_nowait()
        buffer = self._buffer
        if len(buffer) < n:
            self._no_frame(n)
        buffer.skip(n)

    def receive_line_nowait(self, *, max_size: int | None = None) -> bytes:
        """`receive_line` from the buffer only (not a checkpoint); raises
        `trio.WouldBlock` when no whole line is buffered."""
        if self._state:
            self._refuse_nowait()
        if max_size is None:
            max_size = self.max_buffer_size
        elif max_size is not self._max_size_ok:  # (see _max_size_ok)
            if type(max_size) is int and 0 < max_size <= self.max_buffer_size:
                self._max_size_ok = max_size
            else:
                max_size = self._limit(max_size)
        # ReceiveBuffer.take_line's first two cases, inlined (the batch's
        # next line; a long line in contiguous bytes), its search remembered
        # for it otherwise: a _nowait loop pays this method per line. In one
        # process, ns per line: 16-byte lines 224 -> 192, 128-byte 294 ->
        # 255, 1 KiB 648 -> 621, 16 KiB 4531 -> 4401, and 4159 -> 4081 for
        # the take's "none yet" answer given here (355 -> 337 bytecodes per
        # line in all).
        buffer = self._buffer
        i = buffer._batch_next
        if i < buffer._batch_len:
            if buffer._batch_key is _LF:
                piece = buffer._batch[i]
                if (n := len(piece)) < max_size:
                    buffer._batch_next = i + 1
                    buffer._pos += n + 1
                    return piece[:-1] if buffer._batch_cr and piece[-1:] == b"\r" else piece
        elif type(data := buffer._data) is bytes:
            pos = buffer._pos
            i = data.find(b"\n", buffer._snext if buffer._skey is _LF and buffer._snext > pos else pos)
            if _BATCH_FRAME_MAX < i - pos < max_size:
                if buffer._batch_len:
                    buffer._drop_batch()
                buffer._pos = i + 1
                return data[pos : i - 1] if data[i - 1] == 13 else data[pos:i]
            buffer._skey = _LF
            if i >= 0:
                buffer._snext = i
            else:
                buffer._snext = len(data)
                if not buffer._more_len and len(data) - pos < max_size:
                    self._no_frame(None)  # (what the take would say)
        frame = buffer.take_line(max_size)
        if frame is None:
            self._no_frame(None)
        return frame

    def iter_until(
        self, delimiter: DelimiterArg, *, max_size: int | None = None, keep_delimiter: bool = False
    ) -> FrameIterator:
        """An async iterator of the frames `receive_until` would return.

        The fast path for throughput: frames already buffered are handed out
        without a checkpoint; every read from the transport is a full
        checkpoint, so a cancellation or another task waits at most one
        buffer's worth of frames. A frame is either yielded or still buffered:
        cancellation loses nothing, and breaking out of the loop leaves the
        next frame readable by any receive. A clean EOF between frames ends
        the iteration; EOF inside a frame raises `IncompleteReadError`; an
        over-long frame raises `FrameTooLongError` (nothing consumed).
        """
        delimiters = normalize_delimiters(delimiter)
        limit = self._limit(max_size)
        buffer = self._buffer
        if type(delimiters) is bytes and not keep_delimiter:
            return FrameIterator(
                self,
                buffer.take_until,
                (delimiters, limit, False),
                (buffer.take_until_batch, (delimiters, limit)),
                functools.partial(buffer.peek_frames, delimiters, limit, PLAIN_MODE),
                buffer._feeds(delimiters, limit, PLAIN_MODE),
            )
        return FrameIterator(self, buffer.take_until, (delimiters, limit, keep_delimiter))

    def lines(self, *, max_size: int | None = None) -> FrameIterator:
        """An async iterator of the lines `receive_line` would return, with
        the checkpoint and cancellation rules of `iter_until`."""
        limit = self._limit(max_size)
        buffer = self._buffer
        return FrameIterator(
            self,
            buffer.take_line,
            (limit,),
            (buffer.take_lines, (limit,)),
            functools.partial(buffer.peek_frames, b"\n", limit, LINE_MODE),
            buffer._feeds(b"\n", limit, LINE_MODE),
        )

    # ------------------------------------------------------------ codecs

    def _decoder(self, codec: Codec) -> FrameDecoder:
        """This stream's decoding state for ``codec``: one per distinct codec
        (by equality), kept across calls so that a frame being skipped stays
        skipped; at most a few are kept (see `_DecoderCache`)."""
        decoder = self._decoders.get(codec)
        if decoder is None:
            if not isinstance(codec, Codec):
                raise TypeError(f"expected a triostream.Codec, not {type(codec).__name__}")
            check_buffer_fits(codec, self.max_buffer_size, "this stream")
            decoder = codec.decoder()
            self._decoders.add(codec, decoder)
        return decoder

    async def receive_frame(self, codec: Codec) -> bytes:
        """Return the next frame of ``codec`` (see `triostream.Lines`,
        `triostream.LengthPrefixed`, ...). A full checkpoint; all or nothing.

        The decoding state is kept per stream and per distinct codec: equal
        codecs (``Lines(100)`` and another ``Lines(100)``) share it, and so
        do `receive_frame_nowait`, `frames` and a `FrameChannel` over this
        stream.

        Raises:
          FrameTooLongError: a frame over the codec's ``max_size``, raised as
            soon as a header declares it (``.declared``) or ``max_size``
            bytes hold no delimiter. Nothing consumed; with
            ``on_too_long="discard"`` (``.discarding``) the frame is dropped
            instead, by this call as far as it is buffered and by the next
            calls as the rest arrives, which then return the next frame.
          CorruptFrameError: bytes that break the framing (nothing consumed).
          IncompleteReadError: EOF before a whole frame. ``.partial`` holds
            the buffered bytes of the unfinished frame (they stay buffered),
            ``.expected`` its size once a header gave it; ``.skipped`` is
            non-zero when the EOF cut short a frame being skipped. A clean
            EOF between frames has neither (message "EOF before a frame
            began").
          TypeError: ``codec`` is not a `triostream.Codec`.
          ValueError: the codec's frames cannot fit ``max_buffer_size``.
          trio.BusyResourceError, trio.ClosedResourceError: as for every receive.
        """
        ahead = self._ahead
        # A loop of calls (see _FramesAhead): frames this method cut ahead,
        # with this codec, are being handed out. The codec object itself is
        # tested first: then its decoder need not be looked up (the frames
        # were cut by it, and handing them out leaves its state alone).
        handout = ahead.handout
        if (
            handout is not None
            and self._handout is handout
            and (codec is ahead.codec or self._decoder(codec) is ahead.decoder)
        ):
            # The next frame of the cut, after a plain checkpoint. The
            # buffer's cursor stays where the cut began (`_settle` moves it).
            # At 64-byte frames, in one process, bytecodes of this method per
            # call: 102 looking the decoder up and moving the cursor per
            # frame, 85 finding the frames by the codec object, 62 with the
            # cursor left.
            if self._state & _RECEIVING:
                raise trio.BusyResourceError(_BUSY_RECEIVE)
            self._state = _HANDOUT_RECEIVING
            try:
                await checkpoint()
                if self._handout is handout:
                    rest = handout[0]
                    piece = rest.pop()
                    if not rest:
                        ahead.used_up(self)
                    return piece
                # Settled meanwhile (a close, or a peek from another task):
                # the buffer is exact, the next frame taken as usual.
                decoder = self._decoder(codec)
                frame = decoder.decode(self._buffer)
                if frame is None:
                    frame = await self._receive_more(decoder.decode, (self._buffer,), None)
                return frame
            finally:
                self._state &= _NOT_RECEIVING
        buffer = self._buffer
        # The codec of the last call, found without a call (a third of the
        # calls this method made per frame); _decoder does the rest.
        cache = self._decoders
        decoder = cache._last if codec is cache._last_codec and cache._last is not None else self._decoder(codec)
        again = ahead.decoder is decoder and buffer._pos == ahead.at and buffer._data is ahead.data
        if again and ahead.drained and not buffer._more_len:
            # The frames cut ahead are all out and were every whole frame of
            # the chunk: this call reads. The frame it reads, then the next
            # ones cut ahead (`_FramesAhead.take`). Before, `ready` said no
            # first, and after the read the next call found the buffer moved
            # (no longer "again"): it decoded one frame and recorded the
            # buffer, and only the one after it cut. At 4 KiB frames in
            # 64 KiB reads, in one process: 3 ``ready`` and 3 ``decode``
            # per read -> 0 and 2; 4169 -> 4022 ns per frame (the
            # checkpoint-per-frame loop: 3650; 15 interleaved rounds).
            if not (
                ahead.medium and ahead.feed_batch is not None and self._lean_reads and (size := self._iterator_read())
            ):
                taken = await self._receive(ahead.take, (buffer,))
                ahead.hand_out(self)  # (the frames after it, when the take cut any)
                return taken
            # Medium frames, over a transport whose reads are checkpoints (a
            # lean receive, see _receive_lean): the read is fed and cut in
            # one call (the frame iterators' way), its first frame returned
            # and the others handed out by the next calls. Not through
            # _receive, _receive_lean, _receive_more, a decode before the
            # read and one after it, then the peek. At 4 KiB frames, in one
            # process: 574 -> 554 bytecodes per call in all; 4840 -> 4628 ns
            # per frame in 64 KiB reads (the checkpoint-per-frame loop
            # 4421; 11 interleaved rounds), 5556 -> 5163 in reads of 8-64
            # KiB (9 rounds).
            if self._state:
                await self._refuse()
            self._state = _RECEIVING
            try:
                taken = await self._read_and_cut(size, ahead.feed, (buffer,), decoder.decode, (buffer,))
            finally:
                self._state &= _CLOSED
            ahead.hand_out(self)  # (the read's frames after the first; nothing when decode took it)
            return taken
        if decoder.ready(buffer):
            # A whole frame is buffered: a plain checkpoint, then the frame
            # (the lean receive saves a Trio round only when the call must
            # read, and costs a coroutine when it need not).
            if self._state:
                await self._refuse()
            self._state = _RECEIVING
            try:
                await checkpoint()
                first = ahead.cut(buffer) if again else None
                if first is None:
                    frame = decoder.decode(buffer)
                    if frame is None:
                        frame = await self._receive_more(decoder.decode, (buffer,), None)
                        return frame
                    ahead.left(codec, decoder, buffer)
                    return frame
            finally:
                self._state &= _CLOSED
            ahead.hand_out(self)  # (the frames after it, when the cut found more)
            return first
        return await self._receive(decoder.decode, (buffer,))

    def receive_frame_nowait(self, codec: Codec) -> bytes:
        """`receive_frame` from the buffer only (not a checkpoint); raises
        `trio.WouldBlock` when no whole frame is buffered, and otherwise
        what `receive_frame` raises."""
        if self._state:
            self._refuse_nowait()
        frame = self._decoder(codec).decode(self._buffer)
        if frame is None:
            self._no_frame(None)
        return frame

    def frames(self, codec: Codec) -> FrameIterator:
        """An async iterator of ``codec``'s frames, with the checkpoint and
        cancellation rules of `iter_until`: buffered frames come without a
        checkpoint, each transport read is a full checkpoint, a cancellation
        loses no frame, a clean EOF between frames ends the iteration.
        Errors as for `receive_frame`, each after a checkpoint; an EOF inside
        a frame (also one being skipped) raises `IncompleteReadError`."""
        decoder = self._decoder(codec)
        buffer = self._buffer
        take_batch = decoder.bind_batch(buffer)
        return FrameIterator(
            self,
            decoder.bind(buffer),
            (),
            None if take_batch is None else (take_batch, ()),
            decoder.bind_peek(buffer),
            decoder._bind_feed(buffer),
            decoder._bind_more(buffer),
        )

    async def fill(self) -> int:
        """Read more bytes into the buffer, consuming nothing; return how
        many arrived (0 at EOF).

        For parsers that work on the buffered bytes themselves (sans-I/O
        style): `peek` at them, consume every complete frame with the
        ``*_nowait`` methods, and ``await fill()`` when what is left is an
        incomplete frame. One transport read (a `Connection` with read-ahead
        waits for its reader to bring more instead). A full checkpoint;
        cancelled, it consumes and adds nothing.

        Raises:
          FrameTooLongError: the buffer already holds ``max_buffer_size``
            bytes: no frame can grow further (consume, or discard, first).
          trio.BusyResourceError, trio.ClosedResourceError: as for every
            receive.

        Transport errors pass through, as from every receive (the buffered
        bytes stay readable by the ``*_nowait`` methods).
        """
        if self._state:
            await self._refuse()
        self._state = _RECEIVING
        try:
            buffer = self._buffer
            if buffer.eof or not buffer.room:
                await checkpoint()
                if self._state & _CLOSED:
                    raise trio.ClosedResourceError("this BufferedStream was closed")
                if buffer.eof:
                    return 0
                raise FrameTooLongError(
                    self.max_buffer_size,
                    f"the buffer is full ({len(buffer)} bytes, max_buffer_size={self.max_buffer_size}): "
                    "consume or discard before fill()",
                )
            before = len(buffer)
            if not self._fill_checkpoints:
                await checkpoint()
            try:
                await self._fill()
            except Exception:
                if self._fill_checkpoints:
                    await cancel_shielded_checkpoint()  # a transport error may skip trio's schedule point
                raise
            return len(buffer) - before
        finally:
            self._state &= _CLOSED

    # ------------------------------------------------------ buffer access

    def peek(self, n: int | None = None) -> bytes:
        """Return up to ``n`` buffered bytes (all if None) without consuming
        them. Never reads the transport. Raises `ValueError` for a negative
        ``n`` (not "all", as asyncio's ``read(-1)``), `TypeError` for a
        non-integer, `trio.ClosedResourceError` once closed."""
        if self._state & _CLOSED:
            raise trio.ClosedResourceError("this BufferedStream was closed")
        self._settle()
        return self._buffer.peek(n)

    def unreceive(self, data: bytes | bytearray | memoryview) -> None:
        """Push ``data`` back in front of the buffer: the next receive sees it first.

        The buffer may grow past ``max_buffer_size``; the stream then reads
        nothing from the transport until it is back below. Raises
        `trio.BusyResourceError` while another task is receiving.
        """
        if self._state:
            self._refuse_nowait()
        self._buffer.unreceive(data)

    def detach(self) -> tuple[trio.abc.Stream, bytes]:
        """Give up the transport: return ``(transport_stream, leftover_bytes)``.

        For protocol switching (compare `trio.SSLStream.unwrap`): the
        leftover bytes were read from the transport but not consumed, and the
        caller now owns both. The BufferedStream is closed afterwards
        (without closing the transport). Raises `trio.BusyResourceError` while
        a receive or send is running and `trio.ClosedResourceError` if already
        closed or detached.
        """
        if self._state & _RECEIVING or self._sending:
            raise trio.BusyResourceError("cannot detach while a receive or send is running")
        if self._state & _CLOSED:
            raise trio.ClosedResourceError("this BufferedStream was closed")
        self._settle()
        self._state |= _CLOSED
        leftover = self._buffer.peek()
        self._buffer.clear()
        return self.transport_stream, leftover

    # ------------------------------------------------------------ TLS

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = 10.0,
    ) -> BufferedStream:
        """Upgrade the transport to TLS (STARTTLS), do the handshake, and
        return the stream to use from now on.

        A `BufferedStream` (and a `Connection`) is upgraded in place and
        returns itself: afterwards `transport_stream` is a `trio.SSLStream`
        over the old one. A `HalfCloseableBufferedStream` cannot stay what it
        claims to be (TLS has no half-close), so it returns a new
        `BufferedStream` over the `trio.SSLStream`, with the same settings,
        and is itself detached (closed, without closing the transport, which
        the new stream owns). Writing ``stream = await stream.start_tls(...)``
        is right for all of them.

        Refuses with `StartTLSRefusedError` (after a checkpoint, the stream
        left as it was) when unread plaintext is buffered: bytes the peer sent
        after the upgrade command and before the handshake must never be read
        as if they came through TLS (CVE-2011-0411's class). A failed
        handshake raises what `trio.SSLStream.do_handshake` raises, and one
        not finished within ``handshake_timeout`` seconds (default 10, None
        for no limit) raises `trio.TooSlowError`; either (or a cancellation
        during the handshake) leaves the stream unusable: every later send
        and receive raises `trio.BrokenResourceError`, so nothing goes on in
        plaintext (no downgrade); close it. A full checkpoint.

        Raises:
          StartTLSRefusedError: plaintext is buffered (nothing changed).
          trio.TooSlowError: no handshake within ``handshake_timeout``.
          ValueError, TypeError: a bad ``handshake_timeout``.
          trio.BusyResourceError: a receive or send is running.
          trio.ClosedResourceError: the stream was closed or detached.
          trio.BrokenResourceError: the handshake failed (and every send and
            receive after that).
        """
        await self._handshake(
            ssl_context, server_side=server_side, server_hostname=server_hostname, handshake_timeout=handshake_timeout
        )
        return self

    async def _handshake(
        self,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float | None,
    ) -> None:
        """`start_tls` in place: refuse or handshake (within
        ``handshake_timeout`` seconds), then adopt the `trio.SSLStream`."""
        handshake_timeout = check_timeout("handshake_timeout", handshake_timeout)
        if self._state & _RECEIVING or self._sending:
            raise trio.BusyResourceError("cannot start TLS while a receive or send is running")
        if self._state & _CLOSED:
            await checkpoint()
            raise trio.ClosedResourceError("this BufferedStream was closed")
        try:
            self._refuse_plaintext_before_tls()
        except StartTLSRefusedError:
            await checkpoint()
            raise
        tls = trio.SSLStream(
            self.transport_stream, ssl_context, server_side=server_side, server_hostname=server_hostname
        )
        self._state |= _RECEIVING
        self._sending = True
        try:
            with trio.fail_after(math.inf if handshake_timeout is None else handshake_timeout):
                await tls.do_handshake()
        finally:
            self._state &= ~_RECEIVING
            self._sending = False
            # The SSLStream is adopted whatever came of the handshake: one
            # that failed, timed out or was cancelled is broken, so every
            # later send and receive raises trio.BrokenResourceError instead
            # of going on in plaintext over the old transport (a STARTTLS
            # downgrade); closing it closes that transport. Not before the
            # handshake ends: an aclose meanwhile closes the old transport at
            # once (the SSLStream's own aclose would wait for the handshake).
            self.transport_stream = tls

    def _refuse_plaintext_before_tls(self) -> None:
        self._settle()
        if self._buffer:
            raise StartTLSRefusedError(
                f"{len(self._buffer)} bytes of plaintext arrived after the upgrade command; refusing to start TLS"
            )

    # ------------------------------------------------------------ sending

    @asynccontextmanager
    async def _send_guard(self) -> AsyncIterator[None]:
        """One send-side operation at a time; refused (after a checkpoint)
        once the stream is closed."""
        if self._sending:
            raise trio.BusyResourceError(_BUSY_SEND)
        self._sending = True
        try:
            if self._state & _CLOSED:
                await checkpoint()
                raise trio.ClosedResourceError("this BufferedStream was closed")
            yield
        finally:
            self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data`` through the transport (`trio.abc.SendStream`
        contract; a checkpoint). Raises `trio.BusyResourceError` if another
        task is sending, `trio.ClosedResourceError` after close."""
        async with self._send_guard():
            await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Pass through to the transport (counts as a send for conflict detection)."""
        async with self._send_guard():
            await self.transport_stream.wait_send_all_might_not_block()

    @property
    def can_send_eof(self) -> bool:
        """Whether `send_eof` works: the transport is a
        `trio.abc.HalfCloseableStream` (`start_tls` makes it False)."""
        return isinstance(self.transport_stream, trio.abc.HalfCloseableStream)

    async def send_eof(self) -> None:
        """Close the sending side, keep receiving, when the transport can.

        Delegates to the transport when it is a `trio.abc.HalfCloseableStream`
        (TCP and Unix sockets, memory streams). Otherwise (`trio.SSLStream`,
        most wrappers) it raises `NotImplementedError` after a checkpoint and
        leaves the stream as it was: check `can_send_eof`, or use
        `HalfCloseableBufferedStream`, whose type promises it. A checkpoint.

        Raises:
          NotImplementedError: the transport cannot half-close.
          trio.BusyResourceError: another task is sending.
          trio.ClosedResourceError: the stream was closed or detached.
        """
        async with self._send_guard():
            transport = self.transport_stream
            if not isinstance(transport, trio.abc.HalfCloseableStream):
                await checkpoint()
                raise NotImplementedError(f"{type(transport).__name__} cannot send EOF (half-close)")
            await transport.send_eof()

    async def aclose(self) -> None:
        """Close the stream and its transport; drop whatever is buffered.

        Idempotent, and a checkpoint. Receives and sends blocked in the
        transport in other tasks get `trio.ClosedResourceError`. After
        `detach`, the transport is not ours any more and is left open.
        Bounded: a transport close still waiting after ``close_timeout``
        seconds (a TLS close_notify to a peer that does not read) is
        cancelled, which closes the transport forcefully; cancelled from
        outside, it is forceful too (as `trio.aclose_forcefully`).
        """
        if self._state & _CLOSED:
            await checkpoint()
            return
        self._settle()
        self._state |= _CLOSED
        self._buffer.clear()
        with trio.move_on_after(self.close_timeout):
            await self.transport_stream.aclose()  # cancelled, it still closes (forcefully)


class HalfCloseableBufferedStream(BufferedStream, trio.abc.HalfCloseableStream):
    """A `BufferedStream` over a `trio.abc.HalfCloseableStream`, and one itself.

    Everything of `BufferedStream`, and its type promises `send_eof`: it
    passes `trio.testing.check_half_closeable_stream`, and code that needs a
    `trio.abc.HalfCloseableStream` accepts it. Use it over TCP and Unix
    sockets (`trio.SocketStream`) or memory streams when you half-close.

    Args:
      transport_stream: a `trio.abc.HalfCloseableStream`; anything else
        raises `TypeError` (a `trio.SSLStream` cannot half-close: wrap it in a
        plain `BufferedStream`).
      max_buffer_size, receive_size: as for `BufferedStream`.

    `start_tls` returns a new plain `BufferedStream` and detaches this one,
    since after the upgrade ``send_eof`` could not work any more.
    """

    def __init__(
        self,
        transport_stream: trio.abc.HalfCloseableStream,
        *,
        max_buffer_size: int = 65536,
        receive_size: int = 65536,
        close_timeout: float = 10.0,
    ) -> None:
        if not isinstance(transport_stream, trio.abc.HalfCloseableStream):
            raise TypeError(
                "HalfCloseableBufferedStream needs a trio.abc.HalfCloseableStream, "
                f"not {type(transport_stream).__name__}; use BufferedStream"
            )
        super().__init__(
            transport_stream, max_buffer_size=max_buffer_size, receive_size=receive_size, close_timeout=close_timeout
        )

    def __repr__(self) -> str:
        return "<HalfCloseable" + super().__repr__()[1:]

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = 10.0,
    ) -> BufferedStream:
        """Upgrade to TLS and return a new `BufferedStream` over the
        `trio.SSLStream` (same settings); this stream is detached. Raises
        what `BufferedStream.start_tls` raises: after a refusal this stream
        is left as it was, after a failed handshake it is unusable (its
        sends and receives raise `trio.BrokenResourceError`: close it)."""
        await self._handshake(
            ssl_context, server_side=server_side, server_hostname=server_hostname, handshake_timeout=handshake_timeout
        )
        # Nothing is left over: buffered plaintext was refused, and the
        # handshake read through the SSLStream, not into our buffer.
        tls, _ = self.detach()
        return BufferedStream(
            tls, max_buffer_size=self.max_buffer_size, receive_size=self.receive_size, close_timeout=self.close_timeout
        )

    async def send_eof(self) -> None:
        """Close the sending side and keep receiving (`trio.abc.HalfCloseableStream`):
        delegates to the transport. A checkpoint.

        Raises:
          trio.BusyResourceError: another task is sending.
          trio.ClosedResourceError: the stream was closed or detached.
        """
        await super().send_eof()


class _FramesAhead:
    """`BufferedStream.receive_frame`'s frames cut ahead.

    A loop of ``await receive_frame(codec)`` paid, per frame, the codec's
    ``ready`` and ``decode``: about 0.6 µs of the 1 µs it cost over a bare
    checkpoint per frame at 64-byte length-prefixed frames (0.78x of the
    checkpoint-per-frame loop in one process; 0.91x with this). So once a call
    finds the buffer where the previous one (same codec) left it, the frames
    at its head are cut in one pass with the codec's ``bind_peek`` (not
    consumed): the call returns the first, and the next calls hand the
    others out one at a time, each after its checkpoint, as a frame
    iterator hands out its cut (see `FrameIterator`): the buffer's cursor
    stays where the cut began, and whatever else looks at the stream
    meanwhile settles the hand-out first (`BufferedStream._settle`), which
    consumes the frames handed out so far. The window cut starts small and
    doubles while each cut is used up, as in `FrameIterator`, so that work
    for frames never handed out stays within a constant factor of the bytes
    consumed. When a cut took every whole frame of its chunk (``drained``)
    and its frames are all out, the next call reads, and its take (`take`)
    cuts the frames after the one it returns; with medium frames over a
    socket that read is fed and cut in one call (the codec's
    ``feed_batch``, see `fed`). Only codecs with ``ready`` and
    ``bind_peek`` (`LengthPrefixed` in its usual configuration) take this
    path; the others decode per call.

    (Not for `receive_line` and `receive_until`: their own path is a
    ``find`` and a slice, and this one measured no faster at 1 KiB lines and
    slower at 16 B, where the buffer's batch serves, and at 16 KiB. With
    the hand-out, a prototype for `receive_line` (a second one of these,
    keyed by ``max_size``) cut 507 -> 480 bytecodes per call at 16 B lines
    and 556 -> 519 at 1 KiB, in one process; cachegrind 37.6k -> 36.9k
    instructions per call at 16 B; wall time the same at 16 B and 2.5 %
    less at 1 KiB. Not kept: a second copy of this path for that.)
    """

    __slots__ = (
        "at",
        "codec",
        "data",
        "decoder",
        "drained",
        "feed_batch",
        "handout",
        "medium",
        "peek",
        "prepared",
        "window",
    )

    def __init__(self) -> None:
        self.decoder: FrameDecoder | None = None
        self.codec: Codec | None = None  # the codec object the decoder was found for
        # Where the last call left the buffer (a loop of calls finds it there).
        self.data: object = None
        self.at = -1
        self.peek: PeekFrames | None = None
        self.feed_batch: FeedBatch | None = None  # the codec's, for reads fed and cut in one call
        self.window = _PEEK_WINDOW_MIN
        self.drained = False  # the last cut took every whole frame of its chunk
        self.medium = False  # the last cut's frames averaged _SPLIT_FRAME_MAX bytes or more
        # A cut's hand-out (the stream's ``_handout`` while it lasts), and one
        # made by a call and not yet begun (see `hand_out`).
        self.handout: tuple[list[bytes], list[bytes], int, int, int] | None = None
        self.prepared: tuple[list[bytes], list[bytes], int, int, int] | None = None

    def left(self, codec: Codec, decoder: FrameDecoder, buffer: ReceiveBuffer) -> None:
        """A call of ``decoder`` (``codec``'s) left the buffer here, with
        nothing cut ahead."""
        self.codec = codec
        if decoder is not self.decoder:
            self.decoder = decoder
            self.peek = decoder.bind_peek(buffer)
            feeds = decoder._bind_feed(buffer)
            self.feed_batch = None if feeds is None else feeds[1]
            self.window = _PEEK_WINDOW_MIN
            self.medium = False
        elif self.handout is not None:  # the last cut was not used up (settled by another receive)
            self.window = _PEEK_WINDOW_MIN
        self.handout = None
        self.data = buffer._data
        self.at = buffer._pos
        self.drained = False
        self.prepared = None

    def take(self, buffer: ReceiveBuffer) -> bytes | None:
        """A take for `BufferedStream._receive`, for the call that reads
        after the frames cut ahead ran out: the decoder's ``decode``, and
        when it gives a frame, the frames after it cut ahead for the next
        calls (`hand_out`). The cut consumes nothing, so the receive stays
        all or nothing."""
        assert self.decoder is not None  # (set by `left` before any cut)
        frame = self.decoder.decode(buffer)
        if frame is not None:
            self.data = buffer._data
            self.at = buffer._pos
            self.drained = False
            self.prepared = None
            found = self._peek(buffer)
            if found is not None:
                frames, extra, size = found
                self.prepared = (frames[::-1], frames, buffer._pos, extra, size)
        return frame

    def cut(self, buffer: ReceiveBuffer) -> bytes | None:
        """Cut the frames at the buffer's head, with the codec that `left`
        recorded, for the call that cuts to return the first: consumed
        when it is the only one, else prepared for `hand_out` with the
        others (as handed out already). None when there are none to cut
        (then nothing changes)."""
        found = self._peek(buffer)
        if found is None:
            return None
        frames, extra, size = found
        first = frames[0]
        at = buffer._pos
        if len(frames) == 1:
            buffer._pos = at + len(first) + extra
            self.data = buffer._data
            self.at = buffer._pos
            return first
        rest = frames[::-1]
        rest.pop()  # (the first: this call returns it)
        self.prepared = (rest, frames, at, extra, size)
        self.data = buffer._data
        self.at = at
        return first

    def _peek(self, buffer: ReceiveBuffer) -> tuple[list[bytes], int, int] | None:
        """The codec's peek at the buffer's head (in the window, which then
        doubles): ``(frames, extra, size)`` as a hand-out takes them (size
        -1: not given), or None."""
        peek = self.peek
        if peek is None:
            return None
        found = peek(self.window)
        if found is None:
            return None
        if buffer._batch_len:
            buffer._drop_batch()  # (its frames are consumed another way now)
        self.drained = len(found) > 2 and bool(found[2])
        self.window = min(self.window * 2, _PEEK_WINDOW_MAX)
        size = found[3] if len(found) > 3 else -1
        self.medium = size >= _SPLIT_FRAME_MAX * len(found[0])
        return found[0], found[1], size

    def hand_out(self, stream: BufferedStream) -> None:
        """Begin the hand-out that the call that just cut prepared (`cut`),
        once that call is over (its receive state reset), if the buffer is
        still where the cut began; else drop it."""
        prepared = self.prepared
        if prepared is None:
            return
        self.prepared = None
        if stream._buffer._pos == prepared[2] and stream._buffer._data is self.data and not stream._state:
            self.handout = prepared
            stream._handout = prepared
            stream._state = _HANDOUT

    def feed(self, buffer: ReceiveBuffer, read: bytes) -> bytes | None:
        """For `BufferedStream._read_and_cut`: ``read`` fed and cut by the
        codec's ``feed_batch``, then `fed`; None (fed, nothing consumed)
        when it completed no frame."""
        assert self.feed_batch is not None  # (the caller checked)
        fed = self.feed_batch(read)
        return None if fed is None else self.fed(buffer, fed)

    def fed(self, buffer: ReceiveBuffer, fed: tuple[list[bytes], bool, int, int]) -> bytes:
        """The frames of a read fed and cut in one call (``feed_batch``, all
        consumed): return the first, the call's; the cursor goes back to
        where the others begin, and they are prepared for `hand_out` when
        their sizes are known (else the next call cuts them again)."""
        frames, drained, at, extra = fed
        first = frames[0]
        if len(frames) > 1:
            end = buffer._pos
            buffer._pos = at
            buffer._skey = None  # (a search from the end, remembered)
            if extra >= 0:
                del frames[0]
                self.prepared = (frames[::-1], frames, at, extra, end - at)
            else:  # (sizes unknown: the next call cuts them, without reading)
                drained = False
        self.drained = drained
        self.data = buffer._data
        self.at = buffer._pos
        return first

    def used_up(self, stream: BufferedStream) -> None:
        """The hand-out's last frame is out: settle it (the cursor moves
        past the cut), and record where the loop of calls left the buffer."""
        stream._settle()
        self.handout = None
        self.data = stream._buffer._data
        self.at = stream._buffer._pos


class FrameIterator:
    """The async iterator that `BufferedStream.iter_until`, `BufferedStream.lines`,
    `BufferedStream.frames` and `FrameChannel.frames` return.

    Public as a type (for annotations), not to be constructed: its
    constructor takes the stream's private frame-cutting functions.

    Buffered frames are returned without a checkpoint; refills go through the
    stream's transport with a full checkpoint each. Holds no lock between
    frames, so leaving an ``async for`` early is always safe.
    """

    # How the per-frame path keeps up with the hand-written split loop:
    # where the framing allows (lines, one delimiter, length prefixes), the
    # iterator cuts the frames at the head of the buffer in one C-speed pass
    # (`ReceiveBuffer.peek_frames`), WITHOUT consuming them, and hands them
    # out one per step straight from the cut's list iterator: nothing more
    # per frame than the hand-written loop's generator does. The buffer's
    # cursor stays where the cut began until the last frame is out (then it
    # moves past them all at once); meanwhile the stream's _HANDOUT bit is
    # set, and whatever else looks at the buffer (a receive of any kind,
    # another iterator, peek, detach, start_tls, aclose, Connection.write)
    # first settles the hand-out (`BufferedStream._settle`): it moves the
    # cursor past the frames handed out so far, which the list iterator
    # tells, and cuts the list there, which ends this iterator's loop. So a
    # frame is still buffered until it is returned: breaking out of the
    # loop, a cancellation or another receive in between lose nothing. The
    # window cut starts small and doubles while each cut is used up, so
    # work done for frames never returned stays within a constant factor
    # of the bytes consumed.
    # Measured (in one process, 64 KiB reads, ns per frame at 16 B lines):
    # a take_line per step from an __anext__ coroutine 358, the cut frames
    # from the async generator 224-243 when each step moved the cursor and
    # checked that nothing else had, 156 with the hand-out (the generator
    # over the split loop: 141); at 1 KiB lines 632 -> 583 (split gen 524).
    # Over TCP (bench_receive.py, 5 rounds, two runs each): 16 B lines
    # 0.30x-0.34x -> 0.44x-0.46x of the split loop.
    # Long frames at a one-byte delimiter (from _LONG_FRAME = 8 KiB) are
    # cut one at a time in the loop itself instead, a find and a slice per
    # frame, as the hand-written find loop does: a peek per read (four
    # calls into the buffer, a list) cost more than that at a few frames
    # per read. Measured in one process (64 KiB reads, split = the find
    # loop, median of 7-11 interleaved rounds): 16 KiB lines 0.71x -> 0.80x
    # of split, 32 KiB 0.74x -> 0.86x; equal at 4 KiB and 8 KiB.
    # Once a long frame is out, a loop of its own cuts the next long ones of
    # the same chunk, and reads and joins the one that straddles into the
    # next read, for as long as nothing else touches the buffer: without it
    # each frame went round the whole step (the state, a call to
    # ReceiveBuffer._search) and each read through _iterator_read, two more
    # searches and the top of the step. Measured in one process (64 KiB
    # reads, 15 interleaved rounds, median ratios to split): 16 KiB lines
    # 0.75x -> 0.80x, 16,000-byte lines (reads not aligned to the lines)
    # 0.77x -> 0.80x (a hand-written generator over a shared buffer object,
    # its cursor read again after each yield, without limit, \r or close
    # checks: 0.94x, 0.87x); with cachegrind, per 16 KiB line: 40.2k -> 38.2k
    # instructions, 607 -> 545 mispredicted branches (that generator: 35.6k,
    # 445).
    # The loop's own read joins the frame that straddles into it and adopts
    # the read as the buffer's chunk itself, `ReceiveBuffer._feed_first`'s
    # usual case written out (its stores included: the byte count, a new
    # generation, the search memory dropped): the call, its bound
    # arguments and its tests of what the loop knows (bytes held, nothing
    # queued, no batch, no EOF, the tail searched) were about 116 bytecodes
    # per read, against about 60 now. Measured at 16 KiB lines in reads of
    # 8-64 KiB, in one process (fastest of 3 per round, 15 interleaved
    # rounds): lines() 6,971 -> 6,543 ns per line, iter_until 6,960 ->
    # 6,304; cachegrind, per line: lines() 64,508 -> 63,355 instructions,
    # 821 -> 774 mispredicted branches (the generator over the find loop:
    # 65,775 and 685; what is left is bytecodes, about 225 per line against
    # its 138).
    # Medium frames at a one-byte delimiter (the last cut's averaged from
    # _SPLIT_FRAME_MAX to _LONG_FRAME bytes, and took every whole frame of
    # its chunk): the next read is cut as it comes, as the batch loop cuts
    # it (first through `ReceiveBuffer._feed_batch`, now in the loop
    # itself, see below); only its first frame, the one that straddled
    # into the read, is consumed: the cursor stays where the second begins,
    # and the others are handed out as a cut, as if a peek had found them,
    # unless something looked at the buffer meanwhile. Before, the read's
    # first frame was joined
    # (`_feed_first`), then the next step searched (`_search`) and peeked
    # (`peek_frames`, `_region_frames`, `_search` again, `_find_frames`).
    # Lines whose endings differ (\n and \r\n) occupy bytes that their
    # lengths do not tell: then the others are cut again by that peek,
    # which hands none out (the takes cut them). Measured at 1 KiB lines
    # (cachegrind, in one process, instructions per line): 64 KiB reads
    # 6241 -> 6174, reads of 8-64 KiB 7070 -> 6830 (the generator over the
    # split loop: 6222); over TCP (15 interleaved rounds) 906 -> 897 ns per
    # line, iter_until 902 -> 873. (Not then for codecs, whose step has no
    # search to spare: at 4 KiB length-prefixed frames it cost 124 -> 128
    # bytecodes per frame. See below for the loop they now take.)
    # While the cuts stay medium and drain their read, the step's read is
    # a loop: it hands out the read's frames and reads again itself (as the
    # long-frame loop does), rather than going round the step (its tests
    # and the feed's test before its cut, about 35 lines of Python per
    # read). Measured at 1 KiB lines in reads of 8-64 KiB (in one process,
    # the median of 5 interleaved rounds, two runs): lines() 0.85x -> 0.91x
    # of the generator over the find loop, iter_until 0.87x -> 0.95x;
    # cachegrind, instructions per line, 7,964 -> 7,791 and 7,781 -> 7,611
    # with `_iterator_read`'s test written out in the loop, 7,837 and 7,656
    # calling it (then kept: one copy of that test fewer for 0.4 %).
    # That loop now cuts each read itself, as `BatchIterator._batches`
    # cuts its reads of lines of _OWN_LINE bytes and more (the frames after
    # the first by `_cut_rest`, `_feed_batch`'s cut, which all three call),
    # and makes `_iterator_read`'s test inline:
    # before, each read went through `_feed_batch`'s partial (its test of
    # what the loop knows, the 4-tuple it returned, the cursor moved back
    # and the first frame deleted from the list) and a call of
    # `_iterator_read`. Measured at 1 KiB lines (64 KiB reads), A/B of the
    # two versions in one process (15 interleaved rounds, fastest of 3 per
    # round, medians of ratios to the generator over the split loop):
    # lines() 0.948x -> 0.962x, iter_until 0.973x -> 0.995x; over TCP
    # (the benchmark's sender, 21 rounds, fastest of 5): 835 -> 813 ns per
    # line and 812 -> 791 (the generator over the split loop: 759).
    # A codec's medium frames (one that binds a feed_batch: `LengthPrefixed`
    # in its usual configuration) take the same loop: each of its reads
    # fed and cut by the codec's feed_batch (which consumes every frame it
    # cuts: the cursor goes back to the end of the first, and the first is
    # taken off the list), the others handed out as a cut, the next read
    # made in the loop. Before, each read went through `_iterator_read`,
    # the codec's `_feed_first` (the frame that straddled into the read),
    # then the top of the step and its peek (`peek_frames`). Measured at
    # 4 KiB length-prefixed frames (64 KiB reads): 161 -> 155 bytecodes per
    # frame (the generator over the split loop: 127); in one process (15
    # interleaved rounds, fastest of 9 per round) 876 -> 842 ns per frame
    # (that generator: 826); over loopback TCP (the benchmark's sender, 21
    # rounds, fastest of 9) 1,364 -> 1,348 (1,355), medians of ratios to
    # split 0.921x -> 0.935x (0.938x).

    __slots__ = ("_args", "_batch", "_buffer", "_feed", "_frames_now", "_more", "_peek", "_stream", "_take")

    def __init__(
        self,
        stream: BufferedStream,
        take: Take,
        args: tuple[Any, ...],
        batch: tuple[TakeBatch, tuple[Any, ...]] | None = None,
        peek: PeekFrames | None = None,
        feed: Feeds | None = None,
        more: Take | None = None,
    ) -> None:
        self._stream = stream
        self._buffer = stream._buffer
        self._take = take
        self._args = args
        # The take for the frames after the first of a batch, without
        # arguments (a codec's, see BatchIterator._take_in_a_loop), or None.
        self._more = more
        self._batch = batch
        self._peek = peek
        # Each of the iterators' own reads fed and cut in one call (see
        # FrameDecoder._bind_feed): for a frame loop, then for a batch loop.
        self._feed = feed
        self._frames_now: AsyncIterator[bytes] | None = None  # the generator __anext__ steps

    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for`` runs ``_frames``, an async generator, rather than
        ``__anext__``: resuming a generator costs about 90 ns here against
        about 150 ns for creating and running an ``__anext__`` coroutine per
        frame, and its state lives in fast locals. ``__anext__`` steps such a
        generator too; any number of them may be mixed, as each uses its cut
        frames only while the buffer is where it left them.

        The generator is started here (to its first, empty ``yield``) with
        the interpreter's async generator hooks unset, so that Trio does not
        adopt it: breaking out of ``async for`` leaves it unfinished, and
        Trio warns (``ResourceWarning``) about every unfinished generator it
        adopted. Without hooks it is closed when it is collected, at that
        ``yield``, where it holds nothing that needs closing.
        """
        return _primed(self._frames())

    async def _frames(self) -> AsyncGenerator[bytes, None]:
        """`__anext__` as a loop (see `__aiter__`): the same steps, the
        cut-ahead state in locals."""
        yield b""  # taken by __aiter__, never by the caller
        stream = self._stream
        buffer = self._buffer
        take = self._take
        args = self._args
        peek = self._peek
        feed_first = None if self._feed is None else self._feed[0]
        # A codec's read fed and all its whole frames cut in one call: its
        # medium frames' reads (see the class comment).
        feed_batch = None if self._feed is None else self._feed[1]
        used_up = True  # were the last cut frames all handed out?
        window = _PEEK_WINDOW_MIN
        no_peek: object = None
        # Medium frames (see the class comment): whether the last cut's
        # frames were that long.
        medium = False
        # Long frames at a one-byte delimiter: cut here (see the class comment).
        delimiter, limit, mode = _one_byte_delimiter(take, args)
        if mode is None:
            delimiter = None
        strip = mode == LINE_MODE
        # The long-frame loop reads only where `_iterator_read` would: over
        # a plain stream (see there); elsewhere no room tells it not to.
        capacity = stream.max_buffer_size if type(stream)._fill is BufferedStream._fill else 0
        while True:
            state = stream._state
            if state == _HANDOUT:
                stream._settle()  # another frame iterator's hand-out
                state = 0
            if not state:
                empty = False  # known to hold no whole frame
                if delimiter is not None:
                    # The next frame, if long, cut and consumed here: one
                    # search and one slice (ReceiveBuffer.take_line's
                    # long-line case, for take_until frames too). A shorter
                    # one is left to the peek below, which resumes the
                    # search where this one stopped (the search memory).
                    chunk = buffer._data
                    pos = buffer._pos
                    if type(chunk) is bytes:
                        end = buffer._search(delimiter)
                        if _LONG_FRAME <= end - pos < limit:
                            if buffer._batch_len:
                                buffer._drop_batch()
                            frame = chunk[pos : end - 1] if strip and chunk[end - 1] == 13 else chunk[pos:end]
                            after = end + 1
                            buffer._pos = after
                            # The long-frame loop (see the class comment):
                            # while the frames stay long, cut the next one
                            # from this chunk, or read and join the one that
                            # straddles into the read, without going round
                            # the step above.
                            while True:
                                yield frame
                                # Untouched meanwhile? Whatever consumes moves
                                # _pos forward or replaces _data (compaction,
                                # unreceive, the next chunk): both unchanged
                                # mean nothing was consumed (so no batch cut
                                # either); a close or another task's read
                                # sets _state.
                                if stream._state or buffer._pos != after or buffer._data is not chunk:
                                    break
                                end = chunk.find(delimiter, after)
                                if _LONG_FRAME <= end - after < limit:
                                    frame = (
                                        chunk[after : end - 1] if strip and chunk[end - 1] == 13 else chunk[after:end]
                                    )
                                    after = end + 1
                                    buffer._pos = after
                                    continue
                                # (What buffer._search would remember.)
                                buffer._skey = delimiter
                                buffer._snext = end if end >= 0 else len(chunk)
                                # The rest of the chunk is the head of a frame,
                                # nothing queued: read as `_iterator_read` says
                                # (its test, without the call); anything else
                                # goes round the step above.
                                held = len(chunk) - after
                                size = stream.receive_size
                                room = capacity - held
                                if (
                                    end >= 0
                                    or held >= limit
                                    or buffer._more_len
                                    or buffer._eof
                                    or held >= size
                                    or room <= 0
                                ):
                                    break
                                if room < size:
                                    size = room
                                no_peek = chunk
                                stream._state = _RECEIVING
                                try:
                                    transport = stream.transport_stream
                                    read = await (
                                        read_socket(transport, size)
                                        if transport is stream._socket_stream
                                        else transport.receive_some(size)
                                    )
                                except trio.ClosedResourceError as exc:
                                    stream._raise_if_closed_meanwhile(exc)
                                    raise
                                finally:
                                    stream._state &= _CLOSED
                                # The frame that straddles into the read: the
                                # tail and the read's head joined, and the read
                                # adopted as the buffer's chunk (what
                                # `ReceiveBuffer._feed_first` does in its usual
                                # case, written out: see the class comment).
                                # Otherwise (a close meanwhile, EOF, no
                                # delimiter in the read, a frame over the limit,
                                # a \r that ends the tail before a \n that
                                # starts the read) the read is fed as `_fill`
                                # feeds it and the step above cuts.
                                if (
                                    stream._state
                                    or type(read) is not bytes
                                    or (j := read.find(delimiter)) < 0
                                    or held + j >= limit
                                    or (strip and not j and held and chunk[-1] == 13)
                                ):
                                    stream._iterator_fed(read)
                                    break
                                e = j - 1 if strip and j and read[j - 1] == 13 else j
                                if not held:
                                    frame = read[:e]
                                elif held + e < _JOIN_COPY_MAX:
                                    frame = chunk[after:] + read[:e]
                                else:
                                    frame = b"".join((memoryview(chunk)[after:], memoryview(read)[:e]))
                                buffer._fed += len(read)
                                buffer._data = chunk = read
                                buffer._pos = after = j + 1
                                buffer._gen += 1
                                buffer._skey = None
                                buffer._mkey = None
                            continue
                        if end < 0:
                            # No delimiter after pos: with nothing queued and
                            # a tail under the limit, no frame is whole (the
                            # take would return None): read.
                            empty = not buffer._more_len and len(chunk) - pos < limit
                if not empty and peek is not None and buffer._data is not no_peek:
                    window = min(window * 2, _PEEK_WINDOW_MAX) if used_up else _PEEK_WINDOW_MIN
                    found = peek(window)
                    if found is None:
                        no_peek = buffer._data
                        used_up = True
                    else:
                        # Hand the cut frames out, the buffer's cursor left
                        # where they start until the last is out (see the
                        # class comment): whatever else looks at the buffer
                        # meanwhile settles the hand-out first.
                        cut, extra = found[0], found[1]
                        if buffer._batch_len:
                            buffer._drop_batch()
                        rest = iter(cut)
                        count = len(cut)
                        start = buffer._pos
                        cut_size = found[3] if len(found) > 3 else -1
                        handout = (rest, cut, start, extra, cut_size)
                        stream._handout = handout
                        stream._state = _HANDOUT
                        for frame in rest:
                            yield frame
                        if stream._handout is not handout:
                            # Settled by another receive (which cut the list
                            # after the frames handed out).
                            used_up = len(cut) == count
                            continue
                        # All handed out: the cursor moves past them. When
                        # the peek gave the cut's size, `_settle`'s case of
                        # a cut used up, written out (a call, its tuple and
                        # length_hint fewer per cut): 4 KiB length-prefixed
                        # frames, 124.4 -> 122.4 bytecodes per frame of
                        # frames(), 1.018x in one process (21 rounds, fastest
                        # of 5), 1.016x over loopback TCP (41 rounds, fastest
                        # of 9); 1 KiB lines 65.6 -> 65.1, 1.004x.
                        if cut_size >= 0:
                            buffer._pos = start + cut_size
                            stream._handout = None
                            stream._state &= ~_HANDOUT
                        else:
                            stream._settle()
                        used_up = True
                        # When the cut took every whole frame of its chunk
                        # and nothing is queued behind it, no whole frame is
                        # buffered: the next step is a read (not a peek and a
                        # take that find nothing: at 16 KiB lines about
                        # 1.4 µs per read).
                        if not (len(found) > 2 and found[2] and not buffer._more_len):
                            continue
                        empty = True
                        if delimiter is not None:
                            # What buffer._search would find and remember: no
                            # delimiter in the tail (else the take after the
                            # cut, which drained promises would find nothing,
                            # would find a frame). So the read's feed_first
                            # joins the straddling frame in one call. Without
                            # it, feed, take_line and _take_straddling did,
                            # and at short lines split the whole read for a
                            # batch the next peek threw away: cachegrind,
                            # instructions per line, 16 B 2431 -> 2116, 128 B
                            # 3818 -> 2991, 1 KiB 7175 -> 6935.
                            buffer._skey = delimiter
                            buffer._snext = len(buffer._data)
                        if delimiter is not None or feed_batch is not None:
                            medium = _SPLIT_FRAME_MAX * count <= handout[4] < _LONG_FRAME * count
                if not empty:
                    try:
                        taken = take(*args)
                    except Exception as exc:
                        await _raise_after_checkpoint(stream, exc)
                    if taken is not None:
                        yield taken
                        continue
                if size := stream._iterator_read():
                    if empty:
                        # This chunk holds no whole frame: if the read queues
                        # behind it, the next step need not peek into it.
                        no_peek = buffer._data
                    # One read (a full checkpoint: a cancellation there
                    # consumes nothing; the stream is busy meanwhile), then
                    # cut again: `_fill` in this loop (see BatchIterator).
                    # Medium frames (see the class comment) are cut here as
                    # the read comes, and while their cuts drain the read, the
                    # next read is made here, without going round the step.
                    # The cut of lines needs what `ReceiveBuffer._feed_batch`
                    # tests first: the buffer holds at most the head of a
                    # frame (searched: no delimiter in it), nothing queued, no
                    # EOF; the loop's own reads after a drained cut keep that.
                    # A codec's feed_batch makes its own test.
                    own = medium and (
                        delimiter is None
                        or (
                            not buffer._more_len
                            and not buffer._eof
                            and (
                                buffer._pos == len(buffer._data)
                                or (buffer._skey == delimiter and buffer._snext >= len(buffer._data))
                            )
                        )
                    )
                    while True:
                        stream._state = _RECEIVING
                        try:
                            transport = stream.transport_stream  # (start_tls replaces it)
                            read = await (
                                read_socket(transport, size)
                                if transport is stream._socket_stream
                                else transport.receive_some(size)
                            )
                        except trio.ClosedResourceError as exc:
                            stream._raise_if_closed_meanwhile(exc)
                            raise
                        finally:
                            stream._state &= _CLOSED
                        if not own:
                            if not read or stream._state or feed_first is None:
                                stream._iterator_fed(read)
                                break
                            # Fed, and the frame it completes cut, in one call.
                            taken = feed_first(read)
                            if taken is not None:
                                yield taken
                            break
                        if delimiter is None:
                            # A codec's frames: the read fed and cut in one
                            # call (`FrameDecoder._bind_feed`'s feed_batch,
                            # which consumes them all: the cursor goes back
                            # to the end of the first), or only fed (None:
                            # the next step cuts). (A codec's cuts are medium
                            # only when it has a feed_batch: the test of it
                            # is for the type checker.)
                            if not read or stream._state or feed_batch is None:
                                stream._iterator_fed(read)
                                break
                            fed = feed_batch(read)
                            if fed is None:
                                break
                            cut, drained, at, extra = fed
                            taken = cut[0]
                            del cut[0]  # (the hand-out's list: the frames after it)
                            chunk = buffer._data
                            after = buffer._pos
                            buffer._pos = at
                        else:
                            # The read cut here as `BatchIterator._batches`
                            # cuts its reads of long lines: the frame that
                            # straddles into it joined, the others cut by
                            # `_cut_rest`, the read adopted as the buffer's
                            # chunk. Anything else (a close meanwhile, EOF,
                            # no delimiter in the read, a first frame over
                            # the limit, a \r that ends the tail before a \n
                            # that starts the read) is fed as `_fill` feeds
                            # it, and the next step cuts.
                            chunk = buffer._data
                            after = buffer._pos
                            held = len(chunk) - after
                            if (
                                stream._state
                                or type(read) is not bytes
                                or (j := read.find(delimiter)) < 0
                                or held + j >= limit
                                or (strip and not j and held and chunk[-1] == 13)
                            ):
                                stream._iterator_fed(read)
                                break
                            e = j - 1 if strip and j and read[j - 1] == 13 else j
                            if not held:
                                taken = read[:e]
                            elif held + e < _JOIN_COPY_MAX and type(chunk) is bytes:
                                taken = chunk[after:] + read[:e]
                            else:
                                taken = b"".join((memoryview(chunk)[after:], memoryview(read)[:e]))
                            at = j + 1
                            cut = []
                            after, _, crs = _cut_rest(read, at, read.find(delimiter, at), delimiter, limit, strip, cut)
                            if buffer._batch_len:
                                buffer._drop_batch()  # (of the chunk this read replaces)
                            buffer._fed += len(read)
                            buffer._data = chunk = read
                            buffer._pos = at  # (the cut's frames are not consumed yet)
                            buffer._gen += 1
                            buffer._mkey = None
                            buffer._skey = None
                            # (What each frame after the first occupies
                            # beyond its bytes, as a feed_batch says.)
                            extra = 1 if not crs else 2 if crs == len(cut) else -1
                            # Not drained: the cut stopped before a frame over
                            # the limit (which is held), or the head of one
                            # is; the next step raises.
                            drained = len(chunk) - after < limit
                        count = len(cut)
                        if not count or extra < 0:
                            # No frame after the first; or their framings
                            # differ (lines: \n and \r\n endings), so their
                            # lengths do not tell where each ends: they stay
                            # buffered, and the next step cuts them again.
                            yield taken
                            break
                        yield taken
                        if stream._state or buffer._pos != at or buffer._data is not chunk:
                            break  # (something looked at the buffer)
                        # The others handed out as a cut (see the class
                        # comment), unless something looks at the buffer
                        # meanwhile.
                        rest = iter(cut)
                        handout = (rest, cut, at, extra, after - at)
                        stream._handout = handout
                        stream._state = _HANDOUT
                        for frame in rest:
                            yield frame
                        if stream._handout is not handout:
                            used_up = len(cut) == count  # (settled by another receive)
                            break
                        buffer._pos = after
                        stream._handout = None
                        stream._state &= ~_HANDOUT
                        used_up = True
                        if not drained:
                            break
                        if delimiter is not None:
                            # (What buffer._search would remember, as after a
                            # cut above.)
                            buffer._skey = delimiter
                            buffer._snext = len(chunk)
                        if not _SPLIT_FRAME_MAX * count <= after - at < _LONG_FRAME * count:
                            medium = False
                            break
                        # Read again as `_iterator_read` says (its test,
                        # without the call: nothing is queued, no EOF).
                        held = len(chunk) - after
                        size = stream.receive_size
                        room = capacity - held
                        if held >= size or room <= 0:
                            break
                        if room < size:
                            size = room
                        no_peek = chunk
                    continue
            # The general refill (`_receive_more`), written here rather than
            # in a method of the stream: every read of a frame that spans
            # many reads passes its checkpoint's suspension and resumption
            # through each coroutine between the task and the transport, and
            # one more cost 3.5-4 %: one 4 MiB line in 1 KiB reads, in one
            # process, 15 interleaved rounds, lines() 0.897x -> 0.930x of the
            # split loop, lines().batches() 0.900x -> 0.934x.
            if stream._state:
                await stream._refuse()
            stream._state = _RECEIVING
            try:
                if buffer._eof:
                    await checkpoint()  # no read will come: still a checkpoint
                taken = await stream._receive_more(take, args, None)
            except IncompleteReadError as exc:
                if exc.partial or exc.skipped:  # EOF inside a frame, or inside one being skipped
                    raise
                return  # a clean EOF
            finally:
                stream._state &= _CLOSED
            yield taken

    async def __anext__(self) -> bytes:
        """One step of ``_frames`` (for direct calls; ``async for`` runs the
        generator itself). An exception ends a generator, so the next call
        starts a fresh one: a frame iterator is resumable after any error,
        as every receive is."""
        frames = self._frames_now
        if frames is None:
            frames = self._frames_now = self.__aiter__()
        try:
            return await frames.__anext__()
        except BaseException:
            self._frames_now = None
            raise

    def batches(self) -> BatchIterator:
        """The same frames, a list at a time: each step returns every whole
        frame already buffered (at least one), in order.

        For throughput: no ``await`` per frame, and frames cut as the
        hand-written ``receive_some`` + ``bytes.split`` loop cuts them (one
        C-speed ``split`` for short lines and single delimiters, a ``find``
        per frame for long ones; other framings call the frame cutter in a
        loop): per frame, close to that loop's cost (see the benchmarks).

        The contract of the frame iterators, per batch: a batch is returned
        whole or its frames stay buffered (cancellation loses nothing);
        buffered frames come without a checkpoint and every transport read
        is a full checkpoint; limits apply per frame, and an error that a
        frame after the first would raise ends the batch before that frame
        and is raised by the next step (after a checkpoint), as it would be
        by the next receive. A clean EOF between frames ends the iteration.
        The lists are the caller's to keep or change.
        """
        return BatchIterator(self)


class BatchIterator:
    """The async iterator of `FrameIterator.batches`: lists of frames.

    Public as a type (for annotations), not to be constructed directly.
    """

    # How a batch step keeps up with the hand-written loop: ``async for``
    # runs ``_batches``, an async generator primed as `FrameIterator`'s is
    # (resuming it is cheaper than creating an ``__anext__`` coroutine per
    # step), and the usual refill (a plain BufferedStream whose buffer has
    # room, see `_iterator_read`) is one transport read in that loop, not the
    # stream's general refill: every coroutine between a task and its
    # transport is suspended and resumed again on every read, and a helper
    # coroutine here (`_fill` under one more) measured 0.72x-0.73x of the
    # split loop against 0.75x-0.79x for the read in the loop, A/B in one
    # minute. `FrameIterator._frames` reads the same way. After a read cut
    # as it was fed (`ReceiveBuffer._feed_batch`, a codec's) that left no
    # whole frame, the next read is made at once, in an inner loop, when
    # nothing touched the buffer meanwhile: going round the step asked the
    # cutter (which found nothing) and `_iterator_read` first. Over TCP
    # (benchmarks/bench_receive.py's sender, 9 interleaved rounds, both
    # versions in one process, median ratios to split): 16 KiB lines
    # 0.92x -> 0.98x, 4 KiB length-prefixed frames 0.91x -> 1.07x (a
    # codec's read into an empty buffer is now cut as it is fed, too; a
    # second run gave 0.78x: over TCP single runs at these sizes spread
    # 0.5x-1.4x per round). In one process, reads of 8-64 KiB: 16 KiB
    # lines 0.75x -> 0.84x (the hand-written batch generator 0.96x).
    # Measured in one process (benchmarks' in-process chunks, 64 KiB
    # reads, 16 KiB lines, ns per line, 11 interleaved rounds): the split
    # loop 2391-2485, through the stream's refill 3288 (0.745x), this loop
    # 3035 (0.789x); ReceiveBuffer.take_lines in a bare loop 2881.
    # Lines of _OWN_LINE bytes and more (a one-byte delimiter, the frames of
    # the last read averaging that long): that inner loop cuts the next
    # read itself, `ReceiveBuffer._feed_batch`'s cut with its test made
    # (the frames after the first by the same `_cut_rest`), without the
    # call through its partial, its tests of what the loop knows and the
    # tuple it returns (shorter lines go on through
    # `_feed_batch`, whose split loop is the faster cut for them). Measured
    # against the loop through `_feed_batch`, median ratios to the split
    # batches (`benchmarks/bench_receive.py`'s `split batches`), fastest of
    # 3 per round: over TCP (the benchmark's sender, 81 interleaved rounds)
    # 16 KiB lines, lines().batches() 0.889x -> 0.910x, iter_until(b"\n")
    # .batches() 0.902x -> 0.920x; 1 KiB lines (61 rounds, against split)
    # 0.872x -> 0.897x and 0.898x -> 0.906x; in one process (fresh 64 KiB
    # reads not aligned to the lines, 21 rounds) 16 KiB 0.880x -> 0.913x
    # and 0.910x -> 0.924x, 1 KiB (reads of 8-64 KiB) 0.934x -> 0.956x and
    # 0.958x -> 0.981x. At 1 KiB what is left is bytecodes: 1,845 per read
    # against 1,725 for the contract's hand-written floor (`split lines
    # batches`). At 16 KiB it is not: a hand-written generator doing what
    # this loop does (a real BufferedStream, its guards and the buffer's
    # stores) ran 0.93x-0.94x of split batches over TCP and 0.945x-0.96x in
    # one process, in A/Bs of the same kind, though cachegrind counts the
    # same work per line for both (70.4k against 70.7k instructions, 2,340
    # against 2,265 L1 data misses, in one process).

    __slots__ = ("_args", "_frames", "_now", "_pending", "_stream", "_take_batch")

    def __init__(self, frames: FrameIterator) -> None:
        self._frames = frames
        self._stream = frames._stream
        self._take_batch: TakeBatch
        if frames._batch is not None:
            self._take_batch, self._args = frames._batch
        else:
            self._take_batch, self._args = self._take_in_a_loop, ()
        # An error met after the first frame of a batch whose cutter consumed
        # bytes while raising (a user's codec discarding an over-long frame;
        # the built-in ones leave it whole, see _take_in_a_loop): raised by
        # the next step. Errors that consume nothing are simply met again.
        self._pending: Exception | None = None
        self._now: AsyncIterator[list[bytes]] | None = None  # the generator __anext__ steps

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        """``async for`` runs ``_batches``, started here without Trio's
        async generator hooks (see `FrameIterator.__aiter__`)."""
        return _primed(self._batches())

    def _take_in_a_loop(self) -> list[bytes] | None:
        """The batch cutter of framings without their own: the frame
        iterator's cutter, called until it has no more (after the first, a
        codec's `FrameDecoder._bind_more`: the built-in codecs that discard
        over-long frames then leave such a frame, unreported, to the next
        receive)."""
        frames = self._frames
        take, args = frames._take, frames._args
        frame = take(*args)
        if frame is None:
            return None
        batch = [frame]
        more, args = (take, args) if frames._more is None else (frames._more, ())
        try:
            while (frame := more(*args)) is not None:
                batch.append(frame)
        except Exception as exc:
            # Nothing of that frame was consumed, except by a codec of a
            # user's that discards over-long frames: keep such a report for
            # the next step (lost if the loop is left before it).
            if isinstance(exc, FrameTooLongError) and exc.discarding:
                self._pending = exc
        return batch

    async def _batches(self) -> AsyncGenerator[list[bytes], None]:
        """The steps of the iteration as one loop (see `__aiter__`)."""
        yield []  # taken by _primed, never by the caller
        stream = self._stream
        buffer = stream._buffer
        take_batch = self._take_batch
        args = self._args
        # The buffer's own cutters (lines, one delimiter) find nothing in an
        # empty buffer: after a batch that emptied it, the next step reads
        # without asking (at 16 KiB lines, in 64 KiB reads, every time).
        empty_is_none = getattr(take_batch, "__self__", None) is buffer
        # A read is fed and cut in one call when it can be (see
        # FrameDecoder._bind_feed). The reads after one so cut that left
        # no whole frame, the buffer untouched meanwhile, are fed with the
        # test made (see FrameIterator._frames; the twin of feed_batch, see
        # FrameDecoder._bind_feed): 16 KiB lines, 26 bytecodes fewer per read.
        feeds = self._frames._feed
        feed_batch, feed_next = (None, None) if feeds is None else (feeds[1], feeds[2])
        # The framing when it is a buffer's cutter at a one-byte delimiter
        # (as for FrameIterator._frames' long-frame loop): the loop below cuts
        # its reads itself when its frames are _OWN_LINE bytes or more (see
        # the class comment).
        found, limit, mode = _one_byte_delimiter(self._frames._take, self._frames._args)
        delimiter = found or _LF
        strip = mode == LINE_MODE
        own_line = _OWN_LINE if mode is not None and feeds is not None else sys.maxsize
        chunk: bytes | bytearray = b""  # the read the last batch came from, and where its tail begins
        after = 0
        emptied = False
        while True:
            if stream._state == _HANDOUT:
                stream._settle()  # a frame iterator's hand-out
            if self._pending is not None:
                if stream._state:
                    await stream._refuse()
                pending, self._pending = self._pending, None
                await _raise_after_checkpoint(stream, pending)
            if not stream._state:
                if not emptied:
                    try:
                        batch = take_batch(*args)
                    except Exception as exc:
                        await _raise_after_checkpoint(stream, exc)
                    if batch is not None:
                        yield batch
                        emptied = empty_is_none and buffer._pos == len(buffer._data) and not buffer._more_len
                        continue
                emptied = False
                if size := stream._iterator_read():
                    # One read (a full checkpoint: a cancellation there
                    # consumes nothing; the stream is busy meanwhile), then
                    # cut again: `_fill` in this loop (see the class comment).
                    # When the read was cut as it was fed and left no whole
                    # frame, and nothing touched the buffer while the batch
                    # was out, the next read is made here, without going
                    # round the step.
                    feed = feed_batch
                    own = False
                    while True:
                        stream._state = _RECEIVING
                        try:
                            transport = stream.transport_stream  # (start_tls replaces it)
                            data = await (
                                read_socket(transport, size)
                                if transport is stream._socket_stream
                                else transport.receive_some(size)
                            )
                        except trio.ClosedResourceError as exc:
                            stream._raise_if_closed_meanwhile(exc)
                            raise
                        finally:
                            stream._state &= _CLOSED
                        if own:
                            # Lines of _OWN_LINE bytes and more (see the class
                            # comment): the read cut here as
                            # `ReceiveBuffer._feed_batch` cuts it with its test
                            # made: the frame that straddles into it joined,
                            # the others cut by `_cut_rest` (long lines by
                            # its loop for them, written out below), the read
                            # adopted as the buffer's chunk.
                            # Anything else (a close meanwhile, EOF, no
                            # delimiter in the read, a first frame over the
                            # limit, a \r that ends the tail before a \n that
                            # starts the read) is fed as `_fill` feeds it, and
                            # the next step cuts.
                            held = len(chunk) - after
                            if (
                                stream._state
                                or type(data) is not bytes
                                or (j := data.find(delimiter)) < 0
                                or held + j >= limit
                                or (strip and not j and held and chunk[-1] == 13)
                            ):
                                stream._iterator_fed(data)
                                break
                            end = j - 1 if strip and j and data[j - 1] == 13 else j
                            if not held:
                                batch = [data[:end]]
                            elif held + end < _JOIN_COPY_MAX:
                                # (chunk is bytes: a read this loop adopted, or
                                # the one `_feed_batch` did, which adopts bytes.)
                                batch = [chunk[after:] + data[:end]]  # type: ignore[list-item]
                            else:
                                batch = [b"".join((memoryview(chunk)[after:], memoryview(data)[:end]))]
                            after = j + 1
                            i = data.find(delimiter, after)
                            if strip and i - after >= _CR_SCAN_FRAME_MAX:
                                # Long lines: `_cut_rest`'s loop for them,
                                # written out (a call, its seven arguments and
                                # the tuple it returns, per read of a few
                                # lines). 16 KiB lines in 64 KiB reads, in one
                                # process (15 interleaved rounds, fastest of
                                # 9): 2185 -> 2149 ns per line (the contract
                                # floor, split lines batches, 2107).
                                while i >= 0 and i - after < limit:
                                    batch.append(data[after : i - 1] if data[i - 1] == 13 else data[after:i])
                                    after = i + 1
                                    i = data.find(delimiter, after)
                            else:
                                after, i, _ = _cut_rest(data, after, i, delimiter, limit, strip, batch)
                            if buffer._batch_len:
                                buffer._drop_batch()  # (of the chunk this read replaces)
                            buffer._fed += len(data)
                            buffer._data = chunk = data
                            buffer._pos = after
                            buffer._gen += 1
                            buffer._mkey = None
                            buffer._skey = delimiter  # searched to the end, or to the frame over the limit
                            if i < 0:
                                buffer._snext = len(data)
                                drained = len(data) - after < limit
                            else:
                                buffer._snext = i
                                drained = False
                        else:
                            if feed is None or not data or stream._state:
                                stream._iterator_fed(data)
                                break
                            fed = feed(data)
                            if fed is None:
                                break  # (fed: the next step asks the cutter)
                            batch, drained = fed[0], fed[1]
                            chunk = buffer._data
                            after = buffer._pos
                        count = len(batch)  # (the caller may change the list)
                        yield batch
                        # Untouched meanwhile (see FrameIterator._frames)?
                        # Then, drained, the buffer holds the head of a frame
                        # at most: read as `_iterator_read` says (its test,
                        # without the call; what is held is less than a
                        # read).
                        if (
                            not drained
                            or stream._state
                            or buffer._pos != after
                            or buffer._data is not chunk
                            or buffer._more_len
                            or buffer._eof
                        ):
                            break
                        room = buffer.capacity - (len(chunk) - after)  # (> 0: less than the read is left)
                        size = stream.receive_size
                        if room < size:
                            size = room
                        feed = feed_next
                        # Lines of _OWN_LINE bytes and more, judged by this
                        # read's: the next read is cut in the loop (see the
                        # class comment).
                        own = len(chunk) >= own_line * count
                    continue
            # The general refill, as in `FrameIterator._frames` (written out:
            # one coroutine fewer between the task and each read).
            if stream._state:
                await stream._refuse()
            stream._state = _RECEIVING
            try:
                if buffer._eof:
                    await checkpoint()  # no read will come: still a checkpoint
                batch = await stream._receive_more(take_batch, args, None)
            except IncompleteReadError as exc:
                if exc.partial or exc.skipped:  # EOF inside a frame, or inside one being skipped
                    raise
                return  # a clean EOF
            finally:
                stream._state &= _CLOSED
            yield batch

    async def __anext__(self) -> list[bytes]:
        """One step of ``_batches`` (for direct calls; ``async for`` runs the
        generator itself). After an error the next call starts afresh."""
        now = self._now
        if now is None:
            now = self._now = self.__aiter__()
        try:
            return await now.__anext__()
        except BaseException:
            self._now = None
            raise


def _primed(steps: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """Start an iterator's generator to its first (empty) ``yield``, with the
    interpreter's async generator hooks unset (see `FrameIterator.__aiter__`)."""
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        steps.asend(None).send(None)
    except StopIteration:
        pass
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return steps


async def _raise_after_checkpoint(stream: BufferedStream, exc: Exception) -> NoReturn:
    """An iterator step's error, raised after its checkpoint (every error
    comes after one, as from any receive), the stream busy meanwhile as
    during any receive: another task's receive is refused, rather than
    taking bytes under the report (the per-call receives hold the stream
    through their checkpoint the same way). A close meanwhile (the buffer
    emptied) makes it `trio.ClosedResourceError`. The step found the stream
    idle."""
    stream._state = _RECEIVING
    try:
        if isinstance(exc, FrameTooLongError) and exc.discarding:
            # The codec already dropped bytes of the frame: the error is the
            # outcome, and a Cancelled in its place would hide the skip
            # (Trio's rule: Cancelled means nothing happened). A schedule
            # point, not a cancel point.
            await cancel_shielded_checkpoint()
        else:
            await checkpoint()
    finally:
        stream._state &= _CLOSED
    if stream._state:
        stream._closed_during_read()
    raise exc
