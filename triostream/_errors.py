"""The exceptions triostream raises.

Trio's own exceptions are used wherever they fit (``trio.ClosedResourceError``,
``trio.BusyResourceError``, ``trio.WouldBlock``); the three frame errors
defined here describe what a *frame* can do wrong, and leave every received
byte buffered (the one exception: a codec with ``on_too_long="discard"``
skipping an over-long frame, see `FrameTooLongError.discarding`).

This module imports nothing from trio so that the pure layers can raise them.
"""

from __future__ import annotations

__all__ = ["CorruptFrameError", "FrameTooLongError", "IncompleteReadError", "StartTLSRefusedError"]


class IncompleteReadError(EOFError):
    """The peer closed its side before the frame was complete.

    Attributes:
      partial (bytes): the bytes of the unfinished frame that had arrived (a copy:
        they are still buffered, so ``receive_some`` or ``receive_until_eof``
        can still read them). ``b""`` when nothing of a frame is buffered.
      expected (int or None): the size of the whole frame in bytes, counted
        like ``partial``, when it is known: ``n`` for ``receive_exactly(n)``,
        the frame's size on the wire (header, body and any trailer) once a
        `LengthPrefixed`, `Netstring` or `VarintPrefixed` header has arrived.
        ``None`` when the frame has no declared size (delimiter and regex
        searches, ``discard_until``, an unfinished header).
      skipped (int): how many bytes of the unfinished frame were already
        thrown away by a codec skipping it (``on_too_long="discard"``): the
        EOF cut short a frame being skipped. ``0`` otherwise.

    The EOF was clean, between two frames, exactly when ``not partial and not
    skipped`` (the message then says "EOF before a frame began").
    """

    def __init__(self, partial: bytes, expected: int | None, skipped: int = 0) -> None:
        self.partial = partial
        self.expected = expected
        self.skipped = skipped
        arrived = skipped + len(partial)
        if skipped:
            of = f" of {expected}" if expected is not None else ""
            msg = f"EOF after {arrived}{of} bytes of an over-long frame being skipped, before its end"
        elif not partial:
            msg = "EOF before a frame began" + (f" ({expected} bytes expected)" if expected is not None else "")
        elif expected is None:
            msg = f"EOF after {arrived} bytes of an unfinished frame"
        else:
            msg = f"EOF after {arrived} of {expected} expected bytes"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[IncompleteReadError], tuple[bytes, int | None, int]]:
        return (type(self), (self.partial, self.expected, self.skipped))


class FrameTooLongError(ValueError):
    """No frame boundary within ``max_size`` bytes, or a header declaring a
    frame over ``max_size``.

    Raised when ``max_size`` bytes are buffered without a complete delimiter,
    when the first delimiter ends beyond ``max_size`` bytes, when more than
    ``max_size`` bytes arrive before EOF (``receive_until_eof``), or when a
    codec's header declares a frame over its ``max_size``. Nothing is consumed
    (the stream stays usable, for example with ``discard_until``), except
    where a codec's ``on_too_long="discard"`` took over (``discarding``).

    Attributes:
      max_size (int): the limit that was exceeded.
      declared (int or None): the size the header declared (a body size for
        the built-in codecs), when a header gave one; ``None`` otherwise.
      discarding (bool): True when a codec with ``on_too_long="discard"``
        raised it: the over-long frame is skipped (bytes of it may already be
        dropped) and the next receive of that codec returns the frame after
        it. False when nothing was consumed.
    """

    def __init__(
        self, max_size: int, message: str | None = None, declared: int | None = None, discarding: bool = False
    ) -> None:
        self.max_size = max_size
        self.declared = declared
        self.discarding = discarding
        if message is None:
            if declared is None:
                message = f"no frame boundary within max_size={max_size} bytes"
            else:
                message = f"a frame of {declared} bytes declared, over max_size={max_size}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[FrameTooLongError], tuple[int, str, int | None, bool]]:
        return (type(self), (self.max_size, str(self), self.declared, self.discarding))


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
