"""`FaultyStream`: inject a transport fault at an exact byte offset or call.

Connections break in the middle of things: a reset halfway through a frame,
an EOF one byte before the end, a peer that goes silent for a minute, a
stream closed by another task. `FaultyStream` makes each of these happen at a
chosen place, deterministically, and `run_with_each_fault` runs a scenario
with the fault at every byte offset of an exchange in turn.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import trio
from trio.lowlevel import checkpoint

__all__ = ["ExceptionSpec", "Fault", "FaultKind", "FaultyStream", "run_with_each_fault"]

# What a receive asks of the inner stream for max_bytes=None while an at_byte
# fault is pending (trio.SocketStream's own default).
_DEFAULT_RECEIVE_SIZE = 65536

FaultKind: TypeAlias = Literal["raise", "eof", "stall", "close"]

#: What a ``raise`` fault raises: an exception instance (raised as it is), or a
#: callable returning a fresh one (an exception class works).
ExceptionSpec: TypeAlias = BaseException | Callable[[], BaseException]


def _connection_reset() -> trio.BrokenResourceError:
    """What a trio stream raises when the peer resets the connection."""
    exc = trio.BrokenResourceError("connection reset by peer (injected by FaultyStream)")
    exc.__cause__ = ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
    return exc


def _offset(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return value


@dataclass(frozen=True, init=False, repr=False)
class Fault:
    """Where a transport fault strikes and what it does: one trigger, one action.

    Build one with a constructor (``Fault.reset(at_byte=10)``,
    ``Fault.raise_(OSError(errno.EPIPE, "Broken pipe"), at_call=2)``,
    ``Fault.eof(at_byte=5)``, ``Fault.stall(30, at_byte=0)``,
    ``Fault.close(at_call=1)``) or directly, with keyword arguments only:
    ``Fault(at_byte=10, raise_=exc)``. Hand it to `FaultyStream` as its
    ``receive=`` or ``send=`` fault. A Fault is an immutable description;
    the state (has it fired?) lives in the `FaultyStream`, so one Fault can
    be given to many streams (but see ``raise_`` about exception instances).

    **The trigger** (exactly one):

    * ``at_byte=n`` (n >= 0): the fault fires at the first call on its side
      that would transfer byte number *n* (counting from 0) of that side:
      the bytes before offset *n* are delivered exactly, and a call that would
      cross the offset is cut at it (a receive asks the stream for no more
      than the bytes left before *n*; a send sends the bytes before *n*, then
      the fault fires within the same call). On the receive side, the first
      receive that starts at offset *n* fires it, even if the stream would
      have returned EOF there: ``at_byte=len(data)`` replaces the clean EOF
      after the data by the fault. On the send side, an empty ``send_all``
      transfers no byte and never fires it; ``send_eof`` at offset *n* does.
    * ``at_call=k`` (k >= 0): the fault fires at the start of the *k*-th call
      on its side (counting from 0): ``receive_some`` calls on the receive
      side, ``send_all`` and ``send_eof`` calls on the send side. A call
      counts when it starts, whatever becomes of it.

    A fault that did not fire because its call was cancelled at the
    checkpoint before it fires at the next call instead.

    **The action** (exactly one):

    * ``raise_=exc``: the call raises ``exc``, an exception instance (raised
      as it is, so a test can check identity; raising one instance on many
      streams grows its traceback) or a callable returning one (called for
      each stream it fires on: an exception class, or
      ``Fault.reset``'s factory). Afterwards that side is *broken*: every
      later call on it raises `trio.BrokenResourceError` chained from
      (``__cause__``) the injected exception, as trio streams stay broken.
      Note that a trio stream wraps OS errors: a real reset reaches
      ``receive_some`` as `trio.BrokenResourceError` from
      `ConnectionResetError`, which is what `Fault.reset` raises; a raw
      `OSError` is what a non-trio transport might raise.
    * ``eof=True`` (receive side only): EOF arrives early; the call returns
      ``b""``, and so does every later receive.
    * ``stall=seconds`` (>= 0, ``math.inf`` allowed: silent forever): the
      side stops for that long, then carries on normally. The stall ends at
      a deadline (`trio.current_time` when it fired, plus ``seconds``):
      every call on that side waits for it (a trio deadline, like
      `trio.sleep_until`'s, so `trio.testing.MockClock` with autojump skips
      it), also after the
      firing call was cancelled (a timeout that gives up and retries waits
      only the rest). Closing the FaultyStream ends the wait with
      `trio.ClosedResourceError`.
    * ``close=True``: the inner stream is closed (``await inner.aclose()``)
      and the call raises `trio.ClosedResourceError`, as when another task
      closes a stream under a blocked call. Later calls on either side raise
      `trio.ClosedResourceError`.

    Raises (at construction):
      ValueError: not exactly one trigger or one action, a negative offset,
        a negative or NaN stall.
      TypeError: ``raise_`` is neither an exception nor callable, or an
        offset is not an int.

    Attributes:
      kind: ``"raise"``, ``"eof"``, ``"stall"`` or ``"close"``.
      at_byte: the trigger, a stream offset (None when ``at_call`` is).
      at_call: the trigger, a call count (None when ``at_byte`` is).
      exception: for ``"raise"``, the ``raise_`` argument (else None).
      seconds: for ``"stall"``, the stall's length (else None).
    """

    kind: FaultKind
    at_byte: int | None
    at_call: int | None
    exception: ExceptionSpec | None
    seconds: float | None

    def __init__(
        self,
        *,
        at_byte: int | None = None,
        at_call: int | None = None,
        raise_: ExceptionSpec | None = None,
        eof: bool = False,
        stall: float | None = None,
        close: bool = False,
    ) -> None:
        at_byte = _offset("at_byte", at_byte)
        at_call = _offset("at_call", at_call)
        if (at_byte is None) == (at_call is None):
            raise ValueError("a Fault needs exactly one trigger: at_byte=... or at_call=...")
        actions = [raise_ is not None, bool(eof), stall is not None, bool(close)]
        if sum(actions) != 1:
            raise ValueError("a Fault needs exactly one action: raise_=..., eof=True, stall=... or close=True")
        kind: FaultKind
        seconds: float | None = None
        if raise_ is not None:
            if not isinstance(raise_, BaseException) and not callable(raise_):
                raise TypeError(f"raise_ must be an exception or a callable returning one, not {raise_!r}")
            kind = "raise"
        elif eof:
            kind = "eof"
        elif stall is not None:
            seconds = float(stall)
            if math.isnan(seconds) or seconds < 0:
                raise ValueError(f"stall must be >= 0 seconds, not {stall!r}")
            kind = "stall"
        else:
            kind = "close"
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "at_byte", at_byte)
        object.__setattr__(self, "at_call", at_call)
        object.__setattr__(self, "exception", raise_)
        object.__setattr__(self, "seconds", seconds)

    # ------------------------------------------------------ constructors

    @classmethod
    def reset(cls, *, at_byte: int | None = None, at_call: int | None = None) -> Fault:
        """A connection reset by the peer, as a trio stream reports it: a fresh
        `trio.BrokenResourceError` whose ``__cause__`` is a
        `ConnectionResetError` (``errno.ECONNRESET``) each time it fires."""
        return cls(at_byte=at_byte, at_call=at_call, raise_=_connection_reset)

    @classmethod
    def raise_(cls, exception: ExceptionSpec, *, at_byte: int | None = None, at_call: int | None = None) -> Fault:
        """Raise ``exception`` (an instance, or a callable making a fresh one
        per firing, such as an exception class)."""
        return cls(at_byte=at_byte, at_call=at_call, raise_=exception)

    @classmethod
    def eof(cls, *, at_byte: int | None = None, at_call: int | None = None) -> Fault:
        """An early EOF (receive side only): ``b""`` from then on."""
        return cls(at_byte=at_byte, at_call=at_call, eof=True)

    @classmethod
    def stall(cls, seconds: float, *, at_byte: int | None = None, at_call: int | None = None) -> Fault:
        """Stop for ``seconds`` (virtual ones under `trio.testing.MockClock`;
        `math.inf` for ever), then carry on."""
        return cls(at_byte=at_byte, at_call=at_call, stall=seconds)

    @classmethod
    def close(cls, *, at_byte: int | None = None, at_call: int | None = None) -> Fault:
        """Close the inner stream; the call and later ones raise
        `trio.ClosedResourceError`."""
        return cls(at_byte=at_byte, at_call=at_call, close=True)

    # ------------------------------------------------------ helpers

    def new_exception(self) -> BaseException:
        """The exception a ``"raise"`` fault raises now: the instance given,
        or a fresh one from the factory. `TypeError` for other kinds, or if
        the factory returns something that is not an exception."""
        spec = self.exception
        if spec is None:
            raise TypeError(f"{self!r} raises nothing")
        if isinstance(spec, BaseException):
            return spec
        exc = spec()
        if not isinstance(exc, BaseException):
            raise TypeError(f"the raise_ factory of {self!r} returned {exc!r}, not an exception")
        return exc

    def __repr__(self) -> str:
        trigger = f"at_byte={self.at_byte}" if self.at_byte is not None else f"at_call={self.at_call}"
        if self.kind == "raise":
            if self.exception is _connection_reset:
                return f"Fault.reset({trigger})"
            return f"Fault.raise_({self.exception!r}, {trigger})"
        if self.kind == "stall":
            return f"Fault.stall({self.seconds!r}, {trigger})"
        return f"Fault.{self.kind}({trigger})"


class _Side:
    """The state of one direction of a FaultyStream."""

    __slots__ = ("busy", "bytes", "calls", "error", "fault", "fired", "stall_until", "state")

    def __init__(self, fault: Fault | None) -> None:
        self.fault = fault
        self.fired = False
        self.state: Literal["open", "broken", "eof", "closed"] = "open"
        self.error: BaseException | None = None  # what broke a "broken" side
        self.stall_until = -math.inf
        self.bytes = 0
        self.calls = 0
        self.busy = False

    def pending(self) -> Fault | None:
        return None if self.fired else self.fault

    def due(self, call: int, moving: bool) -> Fault | None:
        """The fault, if it fires at the start of this call (``moving``: the
        call would transfer a byte or EOF at the current offset)."""
        fault = self.pending()
        if fault is None:
            return None
        if fault.at_call is not None:
            return fault if call >= fault.at_call else None
        assert fault.at_byte is not None
        return fault if moving and self.bytes >= fault.at_byte else None

    def bytes_before_fault(self) -> int | None:
        """How many bytes may pass before a pending ``at_byte`` fault."""
        fault = self.pending()
        if fault is None or fault.at_byte is None:
            return None
        return fault.at_byte - self.bytes


class FaultyStream(trio.abc.Stream):
    """A `trio.abc.Stream` that injects one fault on its receive side and one
    on its send side.

    Wraps ``stream`` and passes everything through, except that the
    ``receive`` fault strikes the receive side and the ``send`` fault the
    send side where and as the `Fault` describes: bytes before an
    ``at_byte`` offset are delivered exactly (a call that would cross the
    offset is cut at it), then the action (raise, early EOF, stall, close)
    happens once. Each side is independent: a receive fault does not break
    sends, except that closing the inner stream affects everything. Stack
    it with `triostream.testing.ChunkedStream` (either way round) to choose
    the chunking as well.

    Args:
      stream: the stream to wrap. The FaultyStream owns it: `aclose` closes it.
      receive: the fault of the receive side (``receive_some``), or None.
      send: the fault of the send side (``send_all``, ``send_eof``), or None.
        An ``eof`` fault is refused there (`ValueError`): to make the peer
        see an early EOF, put the fault on the peer's receive side.

    **The stream contract.** Every method is a full checkpoint on every path,
    the injected ones included (a raise or an EOF comes after a checkpoint;
    a stall blocks until its deadline). Without faults, or once a stall is
    over, the FaultyStream behaves exactly as ``stream``: over a
    `trio.abc.HalfCloseableStream` it is one too (a private subclass) and
    `send_eof` delegates, and it passes `trio.testing.check_half_closeable_stream`
    (`trio.testing.check_two_way_stream` over other streams, where
    ``send_eof`` raises `NotImplementedError` after a checkpoint). Two tasks
    receiving at once, or sending at once (``send_all``, ``send_eof`` and
    ``wait_send_all_might_not_block`` count as sends), get
    `trio.BusyResourceError`, also on injected paths. After `aclose`
    (idempotent) every method raises `trio.ClosedResourceError`, and a call
    waiting out a stall in another task is woken to raise it.

    ``wait_send_all_might_not_block`` is not counted as a send call and does
    not fire the send fault, but it waits out a send stall and raises on a
    broken or closed send side.

    Attributes:
      transport_stream: the wrapped stream.
      receive_fault: the fault given for the receive side.
      send_fault: the fault given for the send side.
      bytes_received: bytes that went through the receive side.
      bytes_sent: bytes that went through the send side.
      receive_calls: ``receive_some`` calls started (the receive side's
        ``at_call`` counter).
      send_calls: ``send_all`` calls started (the send side's ``at_call``
        counter).

    ``receive_fault_fired`` and ``send_fault_fired`` (properties) say
    whether each side's fault has fired.
    """

    def __new__(
        cls, stream: trio.abc.Stream, *, receive: Fault | None = None, send: Fault | None = None
    ) -> FaultyStream:
        # Over a half-closeable stream, be one too (isinstance checks).
        if cls is FaultyStream and isinstance(stream, trio.abc.HalfCloseableStream):
            cls = _HalfCloseableFaultyStream
        return super().__new__(cls)

    def __init__(self, stream: trio.abc.Stream, *, receive: Fault | None = None, send: Fault | None = None) -> None:
        for name, fault in (("receive", receive), ("send", send)):
            if fault is not None and not isinstance(fault, Fault):
                raise TypeError(f"{name}= must be a Fault or None, not {fault!r}")
        if send is not None and send.kind == "eof":
            raise ValueError(
                "an eof fault belongs on a receive side: to make the peer see an early EOF, "
                "give the peer's stream a receive=Fault.eof(...)"
            )
        self.transport_stream: trio.abc.Stream = stream
        self.receive_fault = receive
        self.send_fault = send
        self._receive = _Side(receive)
        self._send = _Side(send)
        self._closed = False
        self._close_event = trio.Event()

    def __repr__(self) -> str:
        return (
            f"<FaultyStream over {self.transport_stream!r}, receive={self.receive_fault!r}, send={self.send_fault!r}>"
        )

    @property
    def bytes_received(self) -> int:
        return self._receive.bytes

    @property
    def bytes_sent(self) -> int:
        return self._send.bytes

    @property
    def receive_calls(self) -> int:
        return self._receive.calls

    @property
    def send_calls(self) -> int:
        return self._send.calls

    @property
    def receive_fault_fired(self) -> bool:
        """Whether the receive fault has struck (a stall counts from its start)."""
        return self._receive.fired

    @property
    def send_fault_fired(self) -> bool:
        """Whether the send fault has struck (a stall counts from its start)."""
        return self._send.fired

    # ------------------------------------------------------------ internals

    async def _enter(self, side: _Side) -> None:
        """Common start of every call: closed check, stall wait, broken or
        closed side. Returns when the call may go on; the side's ``eof``
        state is left to the receive."""
        if self._closed:
            await checkpoint()
            raise trio.ClosedResourceError("this FaultyStream was closed")
        if trio.current_time() < side.stall_until:
            with trio.move_on_at(side.stall_until):
                await self._close_event.wait()
            if self._closed:
                raise trio.ClosedResourceError("this FaultyStream was closed")
        if side.state == "broken":
            await checkpoint()
            raise trio.BrokenResourceError("broken by an earlier injected fault") from side.error
        if side.state == "closed":
            await checkpoint()
            raise trio.ClosedResourceError("the inner stream was closed by an injected fault")

    async def _fire(self, side: _Side, fault: Fault) -> None:
        """Perform ``fault``'s action. Returns only for a stall that ended
        (the call then carries on) and for an EOF (the receive returns b"")."""
        if fault.kind == "stall":
            assert fault.seconds is not None
            side.fired = True
            side.stall_until = trio.current_time() + fault.seconds
            with trio.move_on_at(side.stall_until):
                await self._close_event.wait()
            if self._closed:
                raise trio.ClosedResourceError("this FaultyStream was closed")
            return
        if fault.kind == "close":
            side.fired = True
            side.state = "closed"
            other = self._send if side is self._receive else self._receive
            other.state = "closed"
            await self.transport_stream.aclose()  # closes even when cancelled
            raise trio.ClosedResourceError("the inner stream was closed by an injected fault")
        await checkpoint()  # a cancellation here leaves the fault pending
        side.fired = True
        if fault.kind == "eof":
            side.state = "eof"
            return
        exc = fault.new_exception()
        side.state = "broken"
        side.error = exc
        raise exc

    # ------------------------------------------------------------ receiving

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The inner stream's ``receive_some``, with the receive fault.

        Returns at most ``max_bytes`` bytes (never past a pending ``at_byte``
        fault's offset), or ``b""`` at EOF, real or injected. ``max_bytes``
        is passed to the inner stream, lowered to the bytes left before a
        pending ``at_byte`` offset; while such a fault is pending, None
        becomes at most 64 KiB. A full checkpoint.

        Raises:
          ValueError, TypeError: ``max_bytes`` is not an int >= 1 or None.
          trio.BusyResourceError: another task is receiving.
          trio.ClosedResourceError: this stream, or the inner one by a
            ``close`` fault, was closed.
          trio.BrokenResourceError: after a ``raise_`` fault on this side.

        The injected exception is raised once, and anything the inner stream
        raises passes through.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        side = self._receive
        if side.busy:
            raise trio.BusyResourceError("another task is already receiving from this FaultyStream")
        side.busy = True
        try:
            call = side.calls
            side.calls += 1
            await self._enter(side)
            fault = side.due(call, moving=True)
            if fault is not None:
                await self._fire(side, fault)
            if side.state == "eof":
                if fault is None:
                    await checkpoint()  # _fire checkpointed already
                return b""
            room = side.bytes_before_fault()
            if room is not None:
                # room >= 1: a fault at the current offset fired above. Never
                # pass a huge room on: a socket allocates max_bytes up front.
                max_bytes = min(room, _DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes)
            data = await self.transport_stream.receive_some(max_bytes)
            side.bytes += len(data)
            return bytes(data)
        finally:
            side.busy = False

    # ------------------------------------------------------------ sending

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """The inner stream's ``send_all``, with the send fault.

        When the send would cross a pending ``at_byte`` offset, the bytes
        before it are sent first, then the fault fires: a raise or a close
        leaves the rest unsent (as a real send that fails half way), a stall
        sends the rest after it. A full checkpoint.

        Raises:
          trio.BusyResourceError: another task is sending.
          trio.ClosedResourceError, trio.BrokenResourceError: as for
            `receive_some`, for the send side.

        The injected exception is raised once, and anything the inner stream
        raises passes through.
        """
        side = self._send
        if side.busy:
            raise trio.BusyResourceError("another task is already sending on this FaultyStream")
        side.busy = True
        try:
            call = side.calls
            side.calls += 1
            await self._enter(side)
            size = memoryview(data).nbytes
            fault = side.due(call, moving=size > 0)
            if fault is not None:
                await self._fire(side, fault)  # returns after a stall only
            room = side.bytes_before_fault()
            if room is not None and size > room:
                # Cross the offset: send the bytes before it, then fire.
                assert side.fault is not None
                raw = bytes(data)
                await self.transport_stream.send_all(raw[:room])
                side.bytes += room
                await self._fire(side, side.fault)
                data = raw[room:]
                size -= room
            await self.transport_stream.send_all(data)
            side.bytes += size
        finally:
            side.busy = False

    async def wait_send_all_might_not_block(self) -> None:
        """The inner stream's ``wait_send_all_might_not_block``, after any
        send stall; raises as `send_all` would on a broken or closed side.
        Does not count as a send call."""
        side = self._send
        if side.busy:
            raise trio.BusyResourceError("another task is already sending on this FaultyStream")
        side.busy = True
        try:
            await self._enter(side)
            await self.transport_stream.wait_send_all_might_not_block()
        finally:
            side.busy = False

    @property
    def can_send_eof(self) -> bool:
        """Whether the inner stream is half-closeable, so `send_eof` works."""
        return isinstance(self.transport_stream, trio.abc.HalfCloseableStream)

    async def send_eof(self) -> None:
        """The inner stream's ``send_eof``, with the send fault.

        Counts as a send call, and fires a pending ``at_byte`` fault whose
        offset was reached (EOF comes after the last byte). Over a stream
        that cannot half-close: `NotImplementedError` after a checkpoint,
        the stream left as it was (no call counted). A full checkpoint.
        """
        stream = self.transport_stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            await checkpoint()
            raise NotImplementedError(f"{type(stream).__name__} cannot send EOF (half-close)")
        side = self._send
        if side.busy:
            raise trio.BusyResourceError("another task is already sending on this FaultyStream")
        side.busy = True
        try:
            call = side.calls
            side.calls += 1
            await self._enter(side)
            fault = side.due(call, moving=True)
            if fault is not None:
                await self._fire(side, fault)  # returns after a stall only
            await stream.send_eof()
        finally:
            side.busy = False

    async def aclose(self) -> None:
        """Close the inner stream. Idempotent; a checkpoint. Calls blocked in
        the inner stream, or waiting out a stall, in other tasks raise
        `trio.ClosedResourceError`."""
        self._closed = True
        self._close_event.set()
        await self.transport_stream.aclose()


class _HalfCloseableFaultyStream(FaultyStream, trio.abc.HalfCloseableStream):
    """What `FaultyStream` instantiates over a `trio.abc.HalfCloseableStream`."""


# ---------------------------------------------------------------- every offset


def _reset_at(offset: int) -> Fault:
    return Fault.reset(at_byte=offset)


async def run_with_each_fault(
    scenario: Callable[[Fault], Awaitable[object]],
    total_bytes: int,
    *,
    make_fault: Callable[[int], Fault] = _reset_at,
    run_timeout: float | None = None,
    max_tracebacks: int = 3,
) -> None:
    """Run ``await scenario(fault)`` with a fault at each byte offset in turn.

    For each offset ``0, 1, ..., total_bytes`` (both ends included: before
    the first byte, and after the last one), builds a fresh fault with
    ``make_fault(offset)`` (default: ``Fault.reset(at_byte=offset)``) and
    awaits ``scenario(fault)``, one run after the other in the calling task.
    The scenario builds its own streams, puts the fault on a `FaultyStream`,
    runs the code under test, **handles** the fault it expects (catches the
    exception, notices the EOF) and asserts what must hold afterwards:
    typically, that every byte received before the fault was either handed
    out in whole frames or is still buffered.

    Any `Exception` escaping a run (a failed assertion, an unexpected or
    unhandled error, `trio.TooSlowError` when ``run_timeout`` passed), and
    pytest's own failure (``pytest.fail``, a ``pytest.raises`` block that saw
    no exception: ``pytest.fail.Exception``, a `BaseException`), is a failure at that
    offset; the other offsets still run. Other base exceptions
    (`trio.Cancelled`, `KeyboardInterrupt`, ``pytest.skip``) stop everything
    and propagate. At the end, if any run failed, raises
    `AssertionError` whose message starts with
    ``"scenario failed at F of N fault offsets: [o1, o2, ...]"``, then one
    line per failing offset (its fault and the first line of its exception,
    the first 20) and the
    last frames of the first ``max_tracebacks`` tracebacks; the first
    failure is also chained as ``__cause__``.

    Args:
      scenario: an async function of the fault.
      total_bytes: the length of the exchange (>= 0): offsets
        ``0..total_bytes`` are tried, ``total_bytes + 1`` runs.
      make_fault: builds the fault for an offset, e.g.
        ``lambda n: Fault.eof(at_byte=n)`` or
        ``lambda n: Fault.stall(60, at_byte=n)``.
      run_timeout: if not None, each run is wrapped in `trio.fail_after`, so a
        scenario that hangs on a fault fails (with
        `trio.testing.MockClock`, use its virtual seconds).
      max_tracebacks: how many tracebacks the message shows.

    A full checkpoint (also for a scenario that never awaits anything).

    Example: a line reader keeps every byte it received when the
    connection resets, whichever byte it resets at::

        EXCHANGE = b"HELLO\\r\\nabc\\nlast line\\n"

        async def scenario(fault: Fault) -> None:
            left, right = trio.testing.memory_stream_pair()
            await left.send_all(EXCHANGE)
            await left.send_eof()
            faulty = FaultyStream(right, receive=fault)
            stream = BufferedStream(faulty)
            got = b""
            try:
                while True:
                    got += await stream.receive_until(b"\\n", keep_delimiter=True)
            except (trio.BrokenResourceError, IncompleteReadError):
                pass
            assert got + stream.peek() == EXCHANGE[: faulty.bytes_received]

        async def test_reset_anywhere() -> None:
            await run_with_each_fault(scenario, len(EXCHANGE))
    """
    total_bytes = operator.index(total_bytes)
    if total_bytes < 0:
        raise ValueError(f"total_bytes must be >= 0, not {total_bytes}")
    await checkpoint()  # a full checkpoint, whatever the scenario does
    failures: list[tuple[int, Fault, BaseException]] = []
    for offset in range(total_bytes + 1):
        fault = make_fault(offset)
        try:
            if run_timeout is None:
                await scenario(fault)
            else:
                with trio.fail_after(run_timeout):
                    await scenario(fault)
        except BaseException as exc:
            if not (isinstance(exc, Exception) or _is_pytest_failure(exc)):
                raise
            failures.append((offset, fault, exc))
    if failures:
        raise AssertionError(_describe(failures, total_bytes + 1, max_tracebacks)) from failures[0][2]


def _is_pytest_failure(exc: BaseException) -> bool:
    """``pytest.fail`` and a failed ``pytest.raises`` raise
    ``pytest.fail.Exception``, a BaseException (looked up only when pytest is
    already imported: this module does not need pytest)."""
    pytest = sys.modules.get("pytest")
    failed = getattr(getattr(pytest, "fail", None), "Exception", None)
    return isinstance(failed, type) and isinstance(exc, failed)


def _describe(failures: list[tuple[int, Fault, BaseException]], runs: int, max_tracebacks: int) -> str:
    offsets = [offset for offset, _, _ in failures]
    lines = [f"scenario failed at {len(failures)} of {runs} fault offsets: {offsets}"]
    shown = 20
    for offset, fault, exc in failures[:shown]:
        message = str(exc).strip().splitlines()
        more = f" (+{len(message) - 1} lines)" if len(message) > 1 else ""
        lines.append(f"  offset {offset}: {fault!r}: {type(exc).__name__}: {message[0] if message else ''}{more}")
    if len(failures) > shown:
        lines.append(f"  ... and {len(failures) - shown} more")
    for offset, fault, exc in failures[:max_tracebacks]:
        lines.append(f"--- offset {offset} ({fault!r}), last frames:")
        lines.append("".join(traceback.format_exception(exc, limit=-4)).rstrip())
    return "\n".join(lines)
