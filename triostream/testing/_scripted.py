"""A scripted peer: drive one end of a stream with sends and expectations.

The test plays the other end of the protocol under test byte for byte, and
a wrong reply fails with a message saying which step failed, what was
expected, what arrived, and at which stream offset they part::

    step 2 (expect_line): the bytes differ at stream offset 9 (byte 2 of this step)
      expected: b'HELLO\\n'
      arrived:  b'HEXLO\\n'
                    ^

This module uses no pytest: any test runner (or none) can use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

import trio
import trio.testing

from triostream._codecs import Codec
from triostream._errors import CorruptFrameError, FrameTooLongError, IncompleteReadError
from triostream._stream import BufferedStream

__all__ = ["ScriptMismatch", "ScriptedPeer", "run_script", "split_chunks"]

BytesLike = bytes | bytearray | memoryview

# Actions taking a bytes argument, and actions taking none (see ScriptedPeer.run).
_DATA_ACTIONS = ("send", "send_line", "send_frame", "expect", "expect_line", "expect_frame")
_BARE_ACTIONS = ("send_eof", "expect_eof", "close")

# The step methods set ``__tracebackhide__``: pytest then shows a failure at
# the test's line rather than deep in this module.

# Failure messages show at most this many bytes of any data, in a window
# around the first difference.
_WINDOW = 64
_LABEL = "  expected: "  # "  arrived:  " has the same width: the caret line lines up


class ScriptMismatch(AssertionError):
    """The other end did not do what the script expected (an `AssertionError`,
    so test runners report it as a test failure).

    The message names the step, shows the expected and the arrived bytes
    (escaped like a bytes literal, cut to a window around the first
    difference on long data) and the stream offset of the first difference.

    Attributes:
      step (int): the failing step's number, counting from 1 every call of a
        `ScriptedPeer` method (for `run_script`, the index in the script + 1).
      action (str): the step's action, such as ``"expect_line"``.
      expected (bytes or None): the bytes (or, for ``expect_frame``, the frame)
        the step expected; None for ``expect_eof`` and the sending steps.
      arrived (bytes): what arrived instead (for a timeout, what had arrived so
        far; for ``expect_frame``, the decoded frame or the undecodable bytes).
      offset (int or None): the stream offset (bytes received and consumed by
        the peer before it, counted from 0) of the first difference, of the
        EOF, of the wrong frame's first byte or of where the step was waiting;
        None for the sending steps.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        action: str,
        expected: bytes | None = None,
        arrived: bytes = b"",
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.action = action
        self.expected = expected
        self.arrived = arrived
        self.offset = offset

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (str(self), self.step, self.action, self.expected, self.arrived, self.offset))


def _rebuild(
    message: str, step: int, action: str, expected: bytes | None, arrived: bytes, offset: int | None
) -> ScriptMismatch:
    return ScriptMismatch(message, step=step, action=action, expected=expected, arrived=arrived, offset=offset)


def split_chunks(data: BytesLike, chunk_sizes: Iterable[int]) -> list[bytes]:
    """Cut ``data`` into pieces of the successive sizes in ``chunk_sizes``,
    cycling through them as often as needed; the last piece may be shorter.

    ``split_chunks(b"abcdefg", [1, 2]) == [b"a", b"bc", b"d", b"ef", b"g"]``;
    ``b""`` gives ``[]``. Raises `ValueError` if ``chunk_sizes`` is empty or
    holds a size < 1 (checked before any cutting).
    """
    return list(_pieces(bytes(data), itertools.cycle(_check_sizes(chunk_sizes))))


def _check_sizes(chunk_sizes: Iterable[int]) -> list[int]:
    sizes = list(chunk_sizes)
    if not sizes:
        raise ValueError("chunk_sizes is empty")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"chunk sizes must be ints >= 1, not {size!r}")
    return sizes


def _pieces(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        end = start + next(sizes)
        yield data[start:end]
        start = end


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")


# ------------------------------------------------------------ failure messages


def _escaped(data: bytes) -> list[str]:
    """Each byte as it appears inside a single-quoted bytes literal."""
    out = []
    for byte in data:
        if byte == 0x27:
            out.append("\\'")
        elif byte == 0x5C:
            out.append("\\\\")
        else:
            out.append(repr(bytes((byte,)))[2:-1])
    return out


def _window(at: int, *lengths: int) -> tuple[int, int]:
    """The ``[start, end)`` range shown of data of the given lengths, around offset ``at``."""
    longest = max(lengths, default=0)
    if longest <= _WINDOW:
        return 0, longest
    start = max(0, min(at - _WINDOW // 4, longest - _WINDOW))
    return start, start + _WINDOW


def _excerpt(data: bytes, start: int, end: int, *, at: int | None = None) -> tuple[str, int]:
    """``data[start:end]`` as a bytes literal, marked ``...`` where cut, and the
    column of byte ``at`` (or of the end) in that text."""
    pieces = _escaped(data[start:end])
    head = "..." if start > 0 else ""
    tail = f"... ({len(data)} bytes)" if end < len(data) else ""
    text = f"{head}b'{''.join(pieces)}'{tail}"
    column = len(head) + 2 + sum(len(p) for p in pieces[: (len(pieces) if at is None else at - start)])
    return text, column


def _show(data: bytes) -> str:
    """``data`` as a bytes literal, cut to its first `_WINDOW` bytes."""
    return _excerpt(data, 0, min(len(data), _WINDOW))[0]


def _comparison(expected: bytes, arrived: bytes, at: int, *, arrived_suffix: str = "") -> str:
    """The ``expected:`` / ``arrived:`` lines with a caret under byte ``at``."""
    start, end = _window(at, len(expected), len(arrived))
    expected_text, column = _excerpt(expected, start, min(end, len(expected)), at=min(at, len(expected)))
    arrived_text, _ = _excerpt(arrived, start, min(end, len(arrived)))
    return f"{_LABEL}{expected_text}\n  arrived:  {arrived_text}{arrived_suffix}\n{' ' * (len(_LABEL) + column)}^"


def _first_difference(got: bytes | bytearray, expected: bytes, lo: int, hi: int) -> int | None:
    if got[lo:hi] == expected[lo:hi]:
        return None
    return next(i for i in range(lo, hi) if got[i] != expected[i])


class _RecordingStream(trio.abc.Stream):
    """Passes through to ``transport_stream``, counting what it receives and keeping
    it from stream offset ``kept_from`` on (see `forget_before`)."""

    def __init__(self, transport_stream: trio.abc.Stream) -> None:
        self.transport_stream: trio.abc.Stream = transport_stream
        self.received = 0
        self.kept_from = 0
        self._kept = bytearray()

    def kept(self, start: int, end: int) -> bytes:
        """The received bytes from stream offset ``start`` to ``end`` (>= ``kept_from``)."""
        return bytes(self._kept[start - self.kept_from : end - self.kept_from])

    def forget_before(self, offset: int) -> None:
        if offset > self.kept_from:
            del self._kept[: offset - self.kept_from]
            self.kept_from = offset

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.transport_stream.receive_some(max_bytes)
        self.received += len(data)
        self._kept += data
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


# ------------------------------------------------------------ the peer


class ScriptedPeer:
    """Plays one end of a stream from a script of sends and expectations.

    Every method call is one *step*, numbered from 1 in call order; a step
    that fails raises `ScriptMismatch` with its number. Receiving goes
    through a `triostream.BufferedStream` over ``stream``; bytes that arrive
    beyond what a step expects stay buffered for the next step.

    Args:
      stream: the end of the connection the peer plays (a client end, or one
        side of `trio.testing.memory_stream_pair`). The peer owns it from now
        on: read and write it only through the peer.
      codec: the framing for `send_frame` and `expect_frame` (a
        `triostream.Codec`, such as ``Lines(1024)`` or
        ``LengthPrefixed(1 << 20)``); the frame steps raise `TypeError`
        without one.
      timeout: the most seconds (Trio clock, so a `trio.testing.MockClock`
        applies) any one step may take; a step still blocked then fails with
        `ScriptMismatch` telling what it was waiting for and what had
        arrived. None waits forever.
      chunk_sizes: if given, every send is cut into pieces of these sizes,
        taken in turn and cycling (a piece never spans two steps; the sizes
        continue where the previous send stopped), each sent with its own
        ``send_all``, and after each piece the peer waits until every other
        task is blocked (`trio.testing.wait_all_tasks_blocked`): the other
        end has then had the chance to read that piece alone. Over memory and
        lockstep streams the receiver therefore sees exactly these chunks
        (unless it was busy elsewhere); over TCP the kernel may still merge
        them. Use with the ``chunk_sizes`` fixture of the pytest plugin.

    Mismatch rules: `expect` (and `expect_line`) compare the bytes as they
    arrive and fail at the first differing byte without waiting for the rest;
    they fail if EOF comes first. On any failure of a receiving step the
    bytes it examined stay unconsumed (what the peer buffered is unchanged),
    so ``offset`` stays where the step started. A transport that breaks
    (`trio.BrokenResourceError`) fails the step as a mismatch too; other
    exceptions (`trio.ClosedResourceError` after `close`, cancellation) pass
    through.

    Only one task may run receiving steps at a time (and one sending steps);
    a sending and a receiving task may run concurrently.

    Attributes:
      transport_stream: ``stream``, the stream the peer plays (the same name
        as `triostream.BufferedStream.transport_stream`; it was ``transport``
        before).
      codec: the ``codec`` argument.
      timeout: the ``timeout`` argument.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        codec: Codec | None = None,
        timeout: float | None = 5.0,
        chunk_sizes: Sequence[int] | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")
        self.transport_stream: trio.abc.Stream = stream
        self.codec: Codec | None = codec
        self.timeout: float | None = timeout
        self._chunk_sizes = None if chunk_sizes is None else itertools.cycle(_check_sizes(chunk_sizes))
        self._recording = _RecordingStream(stream)
        buffer_size = max(1 << 16, codec.wire_limit if codec is not None else 0)
        self._stream = BufferedStream(self._recording, max_buffer_size=buffer_size)
        self._steps = 0
        self._sent = 0

    def __repr__(self) -> str:
        return f"<ScriptedPeer over {self.transport_stream!r}, {self._steps} steps, offset {self.offset}>"

    async def __aenter__(self) -> ScriptedPeer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stream.aclose()

    @property
    def steps(self) -> int:
        """How many steps (method calls) ran so far, failed ones included."""
        return self._steps

    @property
    def offset(self) -> int:
        """The stream offset of the next byte the peer will consume, that
        is the number of received bytes the steps so far matched."""
        return self._recording.received - len(self._stream.peek())

    @property
    def bytes_sent(self) -> int:
        """How many bytes the sending steps sent."""
        return self._sent

    def _begin(self) -> int:
        self._steps += 1
        return self._steps

    def _deadline(self) -> trio.CancelScope:
        return trio.move_on_after(math.inf if self.timeout is None else self.timeout)

    def _timed_out(self) -> str:
        return f"timed out after {self.timeout:g} s"

    def _require_codec(self, action: str) -> Codec:
        if self.codec is None:
            raise TypeError(f"{action} needs a codec: ScriptedPeer(stream, codec=...)")
        return self.codec

    def _receiving_from(self) -> int:
        """The offset where a receiving step starts; bytes before it are no
        longer kept (only a mismatching frame needs its wire bytes back)."""
        start = self.offset
        self._recording.forget_before(start)
        return start

    def _unreceive(self, data: bytes | bytearray) -> None:
        if data:
            self._stream.unreceive(data)

    # ------------------------------------------------------------ sending

    async def send(self, data: BytesLike) -> None:
        """Send ``data`` as it is (in ``chunk_sizes`` pieces if given).

        Raises `ScriptMismatch` if the send takes longer than ``timeout``
        (the other end does not read) or the other end is gone
        (`trio.BrokenResourceError`).
        """
        __tracebackhide__ = True
        await self._send(self._begin(), "send", _as_bytes(data, "data"))

    async def send_line(self, line: BytesLike, *, ending: bytes = b"\n") -> None:
        """Send ``line + ending``; otherwise as `send`."""
        __tracebackhide__ = True
        await self._send(self._begin(), "send_line", _as_bytes(line, "line") + ending)

    async def send_frame(self, frame: BytesLike) -> None:
        """Send ``codec.encode(frame)``; otherwise as `send`. Raises `TypeError`
        without a codec, and what ``encode`` raises (`ValueError` for a frame
        the codec refuses) before sending anything."""
        __tracebackhide__ = True
        step = self._begin()
        wire = self._require_codec("send_frame").encode(_as_bytes(frame, "frame"))
        await self._send(step, "send_frame", wire)

    async def _send(self, step: int, action: str, data: bytes) -> None:
        __tracebackhide__ = True
        sent = 0
        try:
            with self._deadline() as scope:
                if self._chunk_sizes is None:
                    await self.transport_stream.send_all(data)
                    sent = len(data)
                else:
                    for piece in _pieces(data, self._chunk_sizes):
                        await self.transport_stream.send_all(piece)
                        sent += len(piece)
                        await trio.testing.wait_all_tasks_blocked()
        except trio.BrokenResourceError as exc:
            raise ScriptMismatch(
                f"step {step} ({action}): the other end is gone after {sent} of {len(data)} bytes: {exc!r}\n"
                f"  sending:  {_show(data)}",
                step=step,
                action=action,
            ) from exc
        finally:
            self._sent += sent
        if scope.cancelled_caught:
            raise ScriptMismatch(
                f"step {step} ({action}): {self._timed_out()} sending {len(data)} bytes ({sent} sent in whole"
                f" pieces): the other end is not reading\n  sending:  {_show(data)}",
                step=step,
                action=action,
            )

    async def send_eof(self) -> None:
        """Close the sending direction (``stream.send_eof()``), keep receiving.

        Raises `NotImplementedError` if the stream is not half-closeable (use
        `close`), `ScriptMismatch` on a timeout or a broken stream.
        """
        __tracebackhide__ = True
        step = self._begin()
        send_eof = getattr(self.transport_stream, "send_eof", None)
        if not callable(send_eof):
            raise NotImplementedError(f"{self.transport_stream!r} cannot send EOF; use close()")
        try:
            with self._deadline() as scope:
                await send_eof()
        except trio.BrokenResourceError as exc:
            raise ScriptMismatch(
                f"step {step} (send_eof): the other end is gone: {exc!r}", step=step, action="send_eof"
            ) from exc
        if scope.cancelled_caught:
            raise ScriptMismatch(f"step {step} (send_eof): {self._timed_out()}", step=step, action="send_eof")

    async def close(self) -> None:
        """Close the stream (both directions). Idempotent. Also what leaving
        ``async with ScriptedPeer(...)`` does."""
        self._begin()
        await self._stream.aclose()

    # ------------------------------------------------------------ receiving

    async def _receive(self, step: int, action: str, start: int, arrived: bytes | bytearray) -> bytes:
        """One read for a step that started at stream offset ``start`` and has
        received ``arrived`` so far (which the caller puts back on failure): a
        broken transport is a mismatch."""
        __tracebackhide__ = True
        try:
            return await self._stream.receive_some()
        except trio.BrokenResourceError as exc:
            raise ScriptMismatch(
                f"step {step} ({action}): the stream broke at stream offset {start + len(arrived)}: {exc!r}\n"
                f"  arrived:  {_show(bytes(arrived))}",
                step=step,
                action=action,
                arrived=bytes(arrived),
                offset=start + len(arrived),
            ) from exc

    async def expect(self, data: BytesLike) -> None:
        """Receive exactly ``data``: the next ``len(data)`` bytes must equal it.

        Raises `ScriptMismatch` at the first byte that differs (as soon as it
        arrives), at EOF before the end of ``data``, or after ``timeout``.
        """
        __tracebackhide__ = True
        await self._expect(self._begin(), "expect", _as_bytes(data, "data"))

    async def expect_line(self, line: BytesLike, *, ending: bytes = b"\n") -> None:
        """Receive exactly ``line + ending`` (so by default a ``\\r\\n`` ending
        is a mismatch: pass ``ending=b"\\r\\n"`` for CRLF protocols); otherwise
        as `expect`."""
        __tracebackhide__ = True
        await self._expect(self._begin(), "expect_line", _as_bytes(line, "line") + ending)

    async def _expect(self, step: int, action: str, expected: bytes) -> None:
        __tracebackhide__ = True
        start = self._receiving_from()
        got = bytearray()
        checked = 0
        done = False
        try:
            with self._deadline() as scope:
                while True:
                    checked_to = min(len(got), len(expected))
                    at = _first_difference(got, expected, checked, checked_to)
                    if at is not None:
                        raise ScriptMismatch(
                            f"step {step} ({action}): the bytes differ at stream offset {start + at}"
                            f" (byte {at} of this step)\n{_comparison(expected, bytes(got), at)}",
                            step=step,
                            action=action,
                            expected=expected,
                            arrived=bytes(got),
                            offset=start + at,
                        )
                    checked = checked_to
                    if len(got) >= len(expected):
                        done = True
                        break
                    chunk = await self._receive(step, action, start, got)
                    if not chunk:
                        raise ScriptMismatch(
                            f"step {step} ({action}): the stream ended (EOF) at stream offset {start + len(got)},"
                            f" after {len(got)} of the {len(expected)} expected bytes\n"
                            f"{_comparison(expected, bytes(got), len(got), arrived_suffix=' then EOF')}",
                            step=step,
                            action=action,
                            expected=expected,
                            arrived=bytes(got),
                            offset=start + len(got),
                        )
                    got += chunk
        finally:
            if not self._stream_closed():
                self._unreceive(got[len(expected) :] if done else got)
        if scope.cancelled_caught and not done:
            so_far = f"{len(got)} of the {len(expected)} expected bytes arrived" if got else "nothing arrived"
            raise ScriptMismatch(
                f"step {step} ({action}): {self._timed_out()} waiting at stream offset {start + len(got)};"
                f" {so_far}\n{_comparison(expected, bytes(got), len(got))}",
                step=step,
                action=action,
                expected=expected,
                arrived=bytes(got),
                offset=start + len(got),
            )

    def _stream_closed(self) -> bool:
        try:
            self._stream.peek(0)
        except trio.ClosedResourceError:
            return True
        return False

    async def expect_frame(self, frame: BytesLike) -> None:
        """Receive one frame of the codec and check that it equals ``frame``.

        The frame is decoded (``BufferedStream.receive_frame(codec)``), so any
        valid encoding passes: a ``Lines`` frame may arrive with ``\\r\\n``.
        Raises `TypeError` without a codec; `ScriptMismatch` if the decoded
        frame differs (``offset`` is where the frame starts on the wire), if
        the bytes are no valid frame (`triostream.CorruptFrameError` or
        `triostream.FrameTooLongError` as ``__cause__``), at EOF before a whole
        frame, or after ``timeout``.
        """
        __tracebackhide__ = True
        step = self._begin()
        codec = self._require_codec("expect_frame")
        expected = _as_bytes(frame, "frame")
        action = "expect_frame"
        start = self._receiving_from()
        got: bytes | None = None
        try:
            with self._deadline():
                got = await self._stream.receive_frame(codec)
        except IncompleteReadError as exc:
            if exc.skipped:
                where = f"inside an over-long frame being skipped ({exc.skipped} bytes skipped)"
            elif exc.partial:
                where = f"inside a frame; its first {len(exc.partial)} bytes arrived"
            else:
                where = "between frames"
            raise ScriptMismatch(
                f"step {step} ({action}): the stream ended (EOF) at stream offset {start + len(exc.partial)}, {where}"
                f"\n  expected: {_show(expected)} (a frame of {codec!r})\n  arrived:  {_show(exc.partial)} then EOF",
                step=step,
                action=action,
                expected=expected,
                arrived=exc.partial,
                offset=start + len(exc.partial),
            ) from None
        except (CorruptFrameError, FrameTooLongError) as exc:
            buffered = self._stream.peek()
            raise ScriptMismatch(
                f"step {step} ({action}): the bytes at stream offset {start} are not a valid frame of {codec!r}:"
                f" {type(exc).__name__}: {exc}\n  expected: {_show(expected)}\n  arrived:  {_show(buffered)}",
                step=step,
                action=action,
                expected=expected,
                arrived=buffered,
                offset=start,
            ) from exc
        except trio.BrokenResourceError as exc:
            buffered = self._stream.peek()
            raise ScriptMismatch(
                f"step {step} ({action}): the stream broke at stream offset {start + len(buffered)}: {exc!r}\n"
                f"  arrived:  {_show(buffered)}",
                step=step,
                action=action,
                expected=expected,
                arrived=buffered,
                offset=start + len(buffered),
            ) from exc
        if got is None:  # the deadline passed
            buffered = self._stream.peek()
            so_far = f"{len(buffered)} bytes of it arrived" if buffered else "nothing arrived"
            raise ScriptMismatch(
                f"step {step} ({action}): {self._timed_out()} waiting for a frame of {codec!r} at stream offset"
                f" {start}; {so_far}\n  expected: {_show(expected)}\n  arrived:  {_show(buffered)}",
                step=step,
                action=action,
                expected=expected,
                arrived=buffered,
                offset=start,
            )
        if got != expected:
            end = self.offset
            self._unreceive(self._recording.kept(start, end))
            shorter = min(len(got), len(expected))
            at = _first_difference(got, expected, 0, shorter)
            if at is None:
                at = shorter
            raise ScriptMismatch(
                f"step {step} ({action}): the frame at stream offset {start} ({end - start} bytes on the wire)"
                f" differs from the expected frame at byte {at} of the frame"
                f" ({len(got)} bytes, {len(expected)} expected)\n{_comparison(expected, got, at)}",
                step=step,
                action=action,
                expected=expected,
                arrived=got,
                offset=start,
            )

    async def expect_eof(self) -> None:
        """Expect the other end to have closed its sending direction: nothing
        more arrives, only EOF.

        Raises `ScriptMismatch` if any byte arrives (including bytes buffered
        beyond earlier steps) or after ``timeout`` (the other end is still
        open, silent).
        """
        __tracebackhide__ = True
        step = self._begin()
        start = self._receiving_from()
        chunk: bytes | None = None
        with self._deadline():
            chunk = await self._receive(step, "expect_eof", start, b"")
        if chunk is None:
            raise ScriptMismatch(
                f"step {step} (expect_eof): {self._timed_out()} waiting for EOF at stream offset {start}:"
                " nothing arrived and the other end did not close",
                step=step,
                action="expect_eof",
                offset=start,
            )
        if chunk:
            self._unreceive(chunk)
            raise ScriptMismatch(
                f"step {step} (expect_eof): expected EOF at stream offset {start}, but data arrived\n"
                f"  arrived:  {_show(chunk)}",
                step=step,
                action="expect_eof",
                arrived=chunk,
                offset=start,
            )

    # ------------------------------------------------------------ scripts

    async def run(self, script: Iterable[tuple[str, BytesLike] | tuple[str]]) -> None:
        """Run the steps of ``script`` in order, stopping at the first failure.

        Each step is a tuple naming a method: ``("send", data)``,
        ``("send_line", line)``, ``("send_frame", frame)``,
        ``("expect", data)``, ``("expect_line", line)``,
        ``("expect_frame", frame)``, or one of ``("send_eof",)``,
        ``("expect_eof",)``, ``("close",)``. The whole script is checked
        first: an unknown action, a missing or extra argument, an argument that
        is not bytes-like, or a frame step without a codec raises `ValueError`
        (`TypeError` for the argument type) before any step runs.
        """
        __tracebackhide__ = True
        steps = list(script)
        for index, step in enumerate(steps, 1):
            self._check_step(index, step)
        for step in steps:
            if len(step) == 2:
                action, data = step
                await getattr(self, action)(data)
            else:
                await getattr(self, step[0])()

    def _check_step(self, index: int, step: object) -> None:
        if not isinstance(step, tuple) or not step or not isinstance(step[0], str):
            raise ValueError(f"script step {index}: expected a tuple (action, ...), not {step!r}")
        action = step[0]
        if action in _DATA_ACTIONS:
            if len(step) != 2:
                raise ValueError(f"script step {index}: {action!r} takes one bytes argument: ({action!r}, b'...')")
            _as_bytes(step[1], f"script step {index}'s argument")
            if action.endswith("_frame") and self.codec is None:
                raise ValueError(f"script step {index}: {action!r} needs a codec: ScriptedPeer(stream, codec=...)")
        elif action in _BARE_ACTIONS:
            if len(step) != 1:
                raise ValueError(f"script step {index}: {action!r} takes no argument: ({action!r},)")
        else:
            known = ", ".join(_DATA_ACTIONS + _BARE_ACTIONS)
            raise ValueError(f"script step {index}: unknown action {action!r} (known: {known})")


async def run_script(
    stream: trio.abc.Stream,
    script: Iterable[tuple[str, BytesLike] | tuple[str]],
    *,
    codec: Codec | None = None,
    timeout: float | None = 5.0,  # noqa: ASYNC109 - a limit per step, not on the whole call
    chunk_sizes: Sequence[int] | None = None,
) -> ScriptedPeer:
    """Play ``script`` on ``stream``: ``ScriptedPeer(stream, ...)`` then
    `ScriptedPeer.run`. Step numbers in failures are positions in the script,
    from 1. Returns the peer, to go on with more steps (it does not close
    ``stream``)::

        await run_script(client, [
            ("send_line", b"ECHO hi"),
            ("expect_line", b"hi"),
            ("send_eof",),
            ("expect_eof",),
        ])
    """
    __tracebackhide__ = True
    peer = ScriptedPeer(stream, codec=codec, timeout=timeout, chunk_sizes=chunk_sizes)
    await peer.run(script)
    return peer
