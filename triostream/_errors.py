"""The exceptions triostream raises.

Trio's own exceptions are used wherever they fit (``trio.ClosedResourceError``,
``trio.BusyResourceError``, ``trio.WouldBlock``); the two defined here describe
what a *frame* can do wrong, and both leave every received byte buffered.

This module imports nothing from trio so that the pure layers can raise them.
"""

from __future__ import annotations

__all__ = ["CorruptFrameError", "FrameTooLongError", "IncompleteReadError", "StartTLSRefusedError"]


class IncompleteReadError(EOFError):
    """The peer closed its side before the frame was complete.

    Attributes:
      partial (bytes): the bytes of the unfinished frame that had arrived (a copy:
        they are still buffered, so ``receive_some`` or ``receive_until_eof``
        can still read them). ``b""`` for a clean EOF with nothing buffered.
      expected (int or None): the number of bytes the call needed in total
        (``receive_exactly``), or ``None`` when the frame has no declared size
        (delimiter and regex searches, ``discard_until``).
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        self.partial = partial
        self.expected = expected
        if expected is None:
            msg = f"EOF after {len(partial)} bytes of an unfinished frame"
        else:
            msg = f"EOF after {len(partial)} of {expected} expected bytes"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[IncompleteReadError], tuple[bytes, int | None]]:
        return (type(self), (self.partial, self.expected))


class FrameTooLongError(ValueError):
    """No frame boundary within ``max_size`` bytes.

    Raised when ``max_size`` bytes are buffered without a complete delimiter,
    or when the first delimiter ends beyond ``max_size`` bytes, or when more
    than ``max_size`` bytes arrive before EOF (``receive_until_eof``). Nothing
    is consumed: the stream stays usable (for example with ``discard_until``).

    Attributes:
      max_size (int): the limit that was exceeded.
    """

    def __init__(self, max_size: int, message: str | None = None) -> None:
        self.max_size = max_size
        super().__init__(message or f"no frame boundary within max_size={max_size} bytes")

    def __reduce__(self) -> tuple[type[FrameTooLongError], tuple[int, str]]:
        return (type(self), (self.max_size, str(self)))


class CorruptFrameError(ValueError):
    """The bytes on the wire break the framing (a codec's rules).

    The message says what was wrong and at which stream offset; the offset is
    also ``.offset`` (counted in bytes from the start of the stream, as
    consumed through the buffer). Like the other framing errors it consumes
    nothing: the offending bytes stay buffered.

    Attributes:
      offset (int): stream offset of the first offending byte.
    """

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(f"{message} (at stream offset {offset})")
        self.reason = message

    def __reduce__(self) -> tuple[type[CorruptFrameError], tuple[str, int]]:
        return (type(self), (self.reason, self.offset))


class StartTLSRefusedError(RuntimeError):
    """``start_tls`` refused to upgrade the stream, which is left as it was.

    Raised when plaintext is buffered (the peer sent bytes after the upgrade
    command, before the handshake: the STARTTLS command-injection attack of
    CVE-2011-0411's class) or writes are still queued.
    """
