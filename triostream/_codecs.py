"""Framing codecs: pure encoders and incremental decoders (no trio import).

A codec describes a wire framing and its limits; it is immutable and can be
shared. ``codec.encode(frame)`` returns the bytes to send;
``codec.decoder()`` returns a `FrameDecoder` holding the per-stream state
(for instance, how much of an over-long frame is still to be skipped), whose
``decode(buffer)`` consumes one frame from a `ReceiveBuffer` or nothing.
`Decoder` bundles a decoder with its own buffer for sans-I/O use:
``feed(data)``, then iterate over the frames.

Every decoder is incremental and linear-time: it works with any chunking,
never rescans what it has seen (delimiter codecs use the buffer's search
memory; header codecs parse at most a bounded header per call), and decides
a frame's size from its header before any of the body is buffered, so a
peer cannot make it allocate what it declares.

Errors (nothing consumed unless said):

* `FrameTooLongError` - a frame over ``max_size``. With
  ``on_too_long="discard"`` the decoder skips the offending frame in bounded
  memory (a delimited frame through its delimiter, a length-prefixed frame
  exactly its declared body, never buffering it) and raises once when it has
  been skipped; the next call returns the following frame.
* `CorruptFrameError` - bytes that break the framing (a non-digit in a
  netstring length, a missing terminator, a negative length), with the stream
  offset of the first offending byte.
* `IncompleteReadError` - raised by `Decoder` (and the Trio layer) at EOF
  inside a frame.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from typing import Literal

from ._buffer import Delimiters, ReceiveBuffer, normalize_delimiters
from ._errors import CorruptFrameError, FrameTooLongError, IncompleteReadError

__all__ = [
    "Codec",
    "Decoder",
    "Delimited",
    "FixedSize",
    "FrameDecoder",
    "LengthPrefixed",
    "Lines",
    "Netstring",
    "VarintPrefixed",
]

OnTooLong = Literal["raise", "discard"]
Take = Callable[[], "bytes | None"]


def _check_limit(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


def _check_mode(on_too_long: str) -> OnTooLong:
    if on_too_long not in ("raise", "discard"):
        raise ValueError(f'on_too_long must be "raise" or "discard", not {on_too_long!r}')
    return on_too_long  # type: ignore[return-value]


class FrameDecoder:
    """Per-stream decoding state for one codec.

    ``decode(buffer)`` consumes one frame and returns it, returns None
    (consuming nothing, or only bytes of a frame being discarded) when more
    data is needed, or raises `FrameTooLongError` / `CorruptFrameError`.
    """

    __slots__ = ()

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        raise NotImplementedError

    def bind(self, buffer: ReceiveBuffer) -> Take:
        """The fastest zero-argument callable doing ``decode(buffer)`` (used by
        the frame iterators, where a call per frame counts)."""
        return functools.partial(self.decode, buffer)


class Codec:
    """A wire framing with its limits. Subclasses: `Lines`, `Delimited`,
    `LengthPrefixed`, `Netstring`, `FixedSize`, `VarintPrefixed`.

    Attributes:
      max_size: the limit on a frame (what it counts depends on the codec).
      on_too_long: ``"raise"`` or ``"discard"``.
      wire_limit: the most bytes one acceptable frame occupies on the wire;
        a `BufferedStream` needs at least this ``max_buffer_size``.
    """

    __slots__ = ("max_size", "on_too_long")

    max_size: int
    on_too_long: OnTooLong

    @property
    def wire_limit(self) -> int:
        raise NotImplementedError

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        """The wire bytes for ``frame``. Raises `ValueError` for a frame the
        peer's decoder would reject (over ``max_size``, or one containing the
        delimiter)."""
        raise NotImplementedError

    def decoder(self) -> FrameDecoder:
        """A fresh decoding state, for one stream."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._repr_fields())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self) -> tuple[str, ...]:
        return ("max_size", "on_too_long")


# ---------------------------------------------------------------- delimiters


class Delimited(Codec):
    """Frames ended by a delimiter (bytes, or a tuple: earliest match wins,
    then the longest), like Netty's ``DelimiterBasedFrameDecoder``.

    ``max_size`` counts the frame with its delimiter, as
    `BufferedStream.receive_until` does. Decoded frames come without the
    delimiter unless ``keep_delimiter``. `encode` appends the first delimiter
    and refuses frames containing any delimiter (or ending in a way that
    would make the delimiter match earlier), or too long.
    """

    __slots__ = ("delimiters", "keep_delimiter")

    def __init__(
        self,
        delimiter: bytes | tuple[bytes, ...],
        max_size: int,
        *,
        keep_delimiter: bool = False,
        on_too_long: OnTooLong = "raise",
    ) -> None:
        self.delimiters: Delimiters = normalize_delimiters(delimiter)
        self.max_size = _check_limit("max_size", max_size)
        self.keep_delimiter = keep_delimiter
        self.on_too_long = _check_mode(on_too_long)

    def _repr_fields(self) -> tuple[str, ...]:
        return ("delimiters", "max_size", "keep_delimiter", "on_too_long")

    @property
    def _first(self) -> bytes:
        d = self.delimiters
        return d if isinstance(d, bytes) else d[0]

    @property
    def _all(self) -> tuple[bytes, ...]:
        d = self.delimiters
        return (d,) if isinstance(d, bytes) else d

    @property
    def wire_limit(self) -> int:
        return self.max_size

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        delimiter = self._first
        wire = frame + delimiter
        if len(wire) > self.max_size:
            raise ValueError(f"frame of {len(frame)} bytes: with its delimiter over max_size={self.max_size}")
        # The decoder must find this delimiter, at this place, first.
        if any(0 <= wire.find(d) < len(frame) for d in self._all):
            raise ValueError("frame contains a delimiter (or ends in the start of one)")
        return wire

    def decoder(self) -> FrameDecoder:
        return _DelimitedDecoder(self, lines=False)


class Lines(Delimited):
    """Lines ended by ``\\n``; with ``strip_cr`` (default) one ``\\r`` before
    it is dropped too, so LF and CRLF peers both work (Netty's
    ``LineBasedFrameDecoder``, Twisted's ``LineReceiver``).

    ``max_size`` counts the line with its ending. `encode` appends ``\\n``
    and refuses lines containing ``\\n`` (or, with ``strip_cr``, ending in
    ``\\r``, which the decoder would drop).
    """

    __slots__ = ("strip_cr",)

    def __init__(self, max_size: int, *, strip_cr: bool = True, on_too_long: OnTooLong = "raise") -> None:
        super().__init__(b"\n", max_size, on_too_long=on_too_long)
        self.strip_cr = strip_cr

    def _repr_fields(self) -> tuple[str, ...]:
        return ("max_size", "strip_cr", "on_too_long")

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        if self.strip_cr and frame.endswith(b"\r"):
            raise ValueError("line ends in b'\\r', which the decoder would strip")
        return super().encode(frame)

    def decoder(self) -> FrameDecoder:
        return _DelimitedDecoder(self, lines=self.strip_cr)


class _DelimitedDecoder(FrameDecoder):
    __slots__ = ("_codec", "_discarding", "_lines")

    def __init__(self, codec: Delimited, *, lines: bool) -> None:
        self._codec = codec
        self._lines = lines
        self._discarding = False

    def _take(self, buffer: ReceiveBuffer) -> bytes | None:
        codec = self._codec
        if self._lines:
            return buffer.take_line(codec.max_size)
        return buffer.take_until(codec.delimiters, codec.max_size, codec.keep_delimiter)

    def bind(self, buffer: ReceiveBuffer) -> Take:
        codec = self._codec
        if codec.on_too_long == "discard":
            return functools.partial(self.decode, buffer)
        if self._lines:
            return functools.partial(buffer.take_line, codec.max_size)
        return functools.partial(buffer.take_until, codec.delimiters, codec.max_size, codec.keep_delimiter)

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        if not self._discarding:
            try:
                return self._take(buffer)
            except FrameTooLongError:
                if self._codec.on_too_long == "raise":
                    raise
                self._discarding = True
        # Discarding mode: skip through the next delimiter in bounded memory.
        _, found = buffer.discard_through(self._codec.delimiters)
        if not found:
            return None
        self._discarding = False
        max_size = self._codec.max_size
        raise FrameTooLongError(max_size, f"a frame over max_size={max_size} bytes was skipped")


# ---------------------------------------------------------------- size headers


class _SizedDecoder(FrameDecoder):
    """Shared machinery for frames whose header declares the body size: the
    header is parsed in place, the size checked before the body is awaited,
    and over-long bodies skipped without being buffered."""

    __slots__ = ("_skip_left",)

    max_size: int
    on_too_long: OnTooLong

    def __init__(self) -> None:
        self._skip_left = 0  # bytes of a discarded frame still to drop

    def _too_long(self, buffer: ReceiveBuffer, body: int, total: int) -> bytes | None:
        """A header declared ``body`` bytes (``total`` on the wire)."""
        if self.on_too_long == "raise":
            raise FrameTooLongError(
                self.max_size,
                f"declared body of {body} bytes over max_size={self.max_size} (at stream offset {buffer.offset})",
            )
        self._skip_left = total
        return self._skip(buffer)

    def _skip(self, buffer: ReceiveBuffer) -> bytes | None:
        self._skip_left -= buffer.skip(self._skip_left)
        if self._skip_left:
            return None
        raise FrameTooLongError(self.max_size, f"a frame over max_size={self.max_size} bytes was skipped")


class LengthPrefixed(Codec):
    """Frames with a binary length field: the useful subset of Netty's
    ``LengthFieldBasedFrameDecoder``.

    The header is ``length_offset`` bytes (carried along, e.g. a type
    tag), then the length field of ``length_size`` bytes (1, 2, 3, 4 or 8,
    ``byteorder`` "big" or "little", unsigned). The body that follows is
    ``declared + length_adjustment`` bytes (use a negative adjustment when
    the declared length counts the header too). Decoded frames are the body,
    or header and body with ``include_header``.

    ``max_size`` counts the body. A declared body over ``max_size``, or one
    negative after adjustment, is refused before any of it is read.
    """

    __slots__ = ("byteorder", "include_header", "length_adjustment", "length_offset", "length_size")

    def __init__(
        self,
        max_size: int,
        *,
        length_size: int = 4,
        byteorder: Literal["big", "little"] = "big",
        length_offset: int = 0,
        length_adjustment: int = 0,
        include_header: bool = False,
        on_too_long: OnTooLong = "raise",
    ) -> None:
        if length_size not in (1, 2, 3, 4, 8):
            raise ValueError(f"length_size must be 1, 2, 3, 4 or 8, not {length_size!r}")
        if byteorder not in ("big", "little"):
            raise ValueError(f'byteorder must be "big" or "little", not {byteorder!r}')
        if not isinstance(length_offset, int) or length_offset < 0:
            raise ValueError(f"length_offset must be >= 0, not {length_offset!r}")
        self.max_size = _check_limit("max_size", max_size)
        self.length_size = length_size
        self.byteorder: Literal["big", "little"] = byteorder
        self.length_offset = length_offset
        self.length_adjustment = int(length_adjustment)
        self.include_header = include_header
        self.on_too_long = _check_mode(on_too_long)

    def _repr_fields(self) -> tuple[str, ...]:
        return (
            "max_size",
            "length_size",
            "byteorder",
            "length_offset",
            "length_adjustment",
            "include_header",
            "on_too_long",
        )

    @property
    def header_size(self) -> int:
        return self.length_offset + self.length_size

    @property
    def wire_limit(self) -> int:
        return self.header_size + self.max_size

    def encode(self, frame: bytes | bytearray | memoryview, *, header: bytes | None = None) -> bytes:
        """The wire bytes for ``frame``.

        Without ``include_header``, ``frame`` is the body and ``header`` the
        ``length_offset`` bytes before the length field (zeros if omitted).
        With ``include_header``, ``frame`` is a whole frame as the decoder
        returns it (prefix, length field, body): its length field is
        recomputed from the body.
        """
        frame = bytes(frame)
        if self.include_header:
            if len(frame) < self.header_size:
                raise ValueError(f"a frame with its header has at least {self.header_size} bytes")
            header, frame = frame[: self.length_offset], frame[self.header_size :]
        elif header is None:
            header = bytes(self.length_offset)
        if len(header) != self.length_offset:
            raise ValueError(f"header must be {self.length_offset} bytes, not {len(header)}")
        if len(frame) > self.max_size:
            raise ValueError(f"frame of {len(frame)} bytes over max_size={self.max_size}")
        declared = len(frame) - self.length_adjustment
        if not 0 <= declared < 1 << (8 * self.length_size):
            raise ValueError(f"a {len(frame)}-byte body cannot be declared in a {self.length_size}-byte field")
        return header + declared.to_bytes(self.length_size, self.byteorder) + frame

    def decoder(self) -> FrameDecoder:
        return _LengthPrefixedDecoder(self)


_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class _LengthPrefixedDecoder(_SizedDecoder):
    __slots__ = ("_adjustment", "_byteorder", "_field", "_header", "_include", "_unpack", "max_size", "on_too_long")

    def __init__(self, codec: LengthPrefixed) -> None:
        super().__init__()
        self.max_size = codec.max_size
        self.on_too_long = codec.on_too_long
        self._field = codec.length_offset
        self._header = codec.header_size
        self._byteorder = codec.byteorder
        self._adjustment = codec.length_adjustment
        self._include = codec.include_header
        code = _STRUCT_CODES.get(codec.length_size)
        prefix = ">" if codec.byteorder == "big" else "<"
        # Reads the length field in place (no slice); 3-byte fields slice.
        self._unpack = struct.Struct(prefix + code).unpack_from if code else self._unpack_slice

    def _unpack_slice(self, data: bytes | bytearray, offset: int) -> tuple[int]:
        return (int.from_bytes(data[offset : offset + self._header - self._field], self._byteorder),)

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        # The hot path of length-prefixed streams: a frame whole in the
        # buffer's current chunk is parsed and sliced in place (reading the
        # buffer's cursor directly; both classes are the pure layer).
        data = buffer._data
        pos = buffer._pos
        start = pos + self._header
        if start <= len(data) and not self._skip_left:
            body = self._unpack(data, pos + self._field)[0] + self._adjustment
            end = start + body
            if end <= len(data) and 0 <= body <= self.max_size and not buffer._batch_len and type(data) is bytes:
                buffer._pos = end
                return data[pos if self._include else start : end]
        return self._decode(buffer)

    def _decode(self, buffer: ReceiveBuffer) -> bytes | None:
        if self._skip_left:
            return self._skip(buffer)
        header = self._header
        if not buffer.make_contiguous(header):
            return None
        data, pos = buffer.view()
        start = pos + header
        body = int.from_bytes(data[pos + self._field : start], self._byteorder) + self._adjustment
        if body < 0:
            raise CorruptFrameError(f"length field gives a negative body size ({body})", buffer.offset + self._field)
        if body > self.max_size:
            return self._too_long(buffer, body, header + body)
        if len(buffer) < header + body:
            return None
        # The frame spans chunks: copy just the frame (the chunk it ends in
        # becomes the buffer's current chunk without a copy).
        if self._include:
            return buffer.take_exactly(header + body)
        buffer.skip(header)
        return buffer.take_exactly(body)


class FixedSize(Codec):
    """Frames of exactly ``n`` bytes (Netty's ``FixedLengthFrameDecoder``)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = self.max_size = _check_limit("n", n)
        self.on_too_long = "raise"

    def _repr_fields(self) -> tuple[str, ...]:
        return ("n",)

    @property
    def wire_limit(self) -> int:
        return self.n

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        if len(frame) != self.n:
            raise ValueError(f"frame of {len(frame)} bytes, expected exactly {self.n}")
        return frame

    def decoder(self) -> FrameDecoder:
        return _FixedSizeDecoder(self.n)


class _FixedSizeDecoder(FrameDecoder):
    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        self._n = n

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        return buffer.take_exactly(self._n)

    def bind(self, buffer: ReceiveBuffer) -> Take:
        return functools.partial(buffer.take_exactly, self._n)


class Netstring(Codec):
    """D. J. Bernstein's netstrings: ``b"5:hello,"``.

    The length is ASCII decimal digits without leading zeros (``0`` only
    for the empty string), then ``:``, the body, and ``,``. ``max_size``
    counts the body; a declared length over it is refused before the body
    is read (the length field itself is bounded by the digits ``max_size``
    needs). Bad digits, a missing ``:`` or ``,`` raise `CorruptFrameError`.
    """

    __slots__ = ()

    def __init__(self, max_size: int, *, on_too_long: OnTooLong = "raise") -> None:
        self.max_size = _check_limit("max_size", max_size)
        self.on_too_long = _check_mode(on_too_long)

    @property
    def wire_limit(self) -> int:
        return len(str(self.max_size)) + 2 + self.max_size

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        if len(frame) > self.max_size:
            raise ValueError(f"frame of {len(frame)} bytes over max_size={self.max_size}")
        return b"%d:%s," % (len(frame), frame)

    def decoder(self) -> FrameDecoder:
        return _NetstringDecoder(self)


class _NetstringDecoder(_SizedDecoder):
    __slots__ = ("_width", "max_size", "on_too_long")

    def __init__(self, codec: Netstring) -> None:
        super().__init__()
        self.max_size = codec.max_size
        self.on_too_long = codec.on_too_long
        # The most digits accepted: what max_size needs when over-long frames
        # raise; enough to learn any 64-bit size when they are skipped.
        self._width = len(str(codec.max_size)) if codec.on_too_long == "raise" else 19

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        if self._skip_left:
            return self._skip(buffer)
        # The length field is parsed from at most _width + 1 bytes: bounded
        # work per call, however the bytes trickle in.
        scan = min(len(buffer), self._width + 1)
        if not scan:
            return None
        buffer.make_contiguous(scan)
        data, pos = buffer.view()
        colon = data.find(b":", pos, pos + scan)
        stop = colon if colon >= 0 else pos + scan
        for index in range(pos, stop):
            if not 48 <= data[index] <= 57:
                raise CorruptFrameError(
                    f"netstring length has a non-digit {bytes([data[index]])!r}", buffer.offset + index - pos
                )
        if colon < 0:
            if scan <= self._width:
                return None
            if self.on_too_long == "raise":
                raise FrameTooLongError(
                    self.max_size, f"netstring length of more digits than max_size={self.max_size} has"
                )
            raise CorruptFrameError(f"netstring length of more than {self._width} digits", buffer.offset)
        if colon == pos:
            raise CorruptFrameError("netstring without a length before b':'", buffer.offset)
        if colon - pos > 1 and data[pos] == 48:
            raise CorruptFrameError("netstring length with a leading zero", buffer.offset)
        body = int(data[pos:colon])
        header = colon + 1 - pos
        total = header + body + 1
        if body > self.max_size:
            return self._too_long(buffer, body, total)
        if len(buffer) < total:
            return None
        if buffer.byte_at(total - 1) != 44:
            raise CorruptFrameError(f"netstring of {body} bytes not ended by b','", buffer.offset + total - 1)
        buffer.make_contiguous(total)
        data, pos = buffer.view()
        return buffer.cut(pos + header, pos + total - 1, pos + total)


class VarintPrefixed(Codec):
    """Frames prefixed by their length as a protobuf-style base-128 varint
    (7 bits per byte, least significant group first, high bit = more).

    ``max_size`` counts the body. A varint longer than ``max_size`` needs,
    or over 10 bytes, is refused as soon as its bytes show it.
    """

    __slots__ = ()

    def __init__(self, max_size: int, *, on_too_long: OnTooLong = "raise") -> None:
        self.max_size = _check_limit("max_size", max_size)
        self.on_too_long = _check_mode(on_too_long)

    @property
    def wire_limit(self) -> int:
        return _varint_size(self.max_size) + self.max_size

    def encode(self, frame: bytes | bytearray | memoryview) -> bytes:
        frame = bytes(frame)
        if len(frame) > self.max_size:
            raise ValueError(f"frame of {len(frame)} bytes over max_size={self.max_size}")
        return encode_varint(len(frame)) + frame

    def decoder(self) -> FrameDecoder:
        return _VarintDecoder(self)


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a base-128 varint."""
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_size(value: int) -> int:
    return len(encode_varint(value))


class _VarintDecoder(_SizedDecoder):
    __slots__ = ("_limit_bytes", "max_size", "on_too_long")

    def __init__(self, codec: VarintPrefixed) -> None:
        super().__init__()
        self.max_size = codec.max_size
        self.on_too_long = codec.on_too_long
        self._limit_bytes = _varint_size(codec.max_size)

    def decode(self, buffer: ReceiveBuffer) -> bytes | None:
        if self._skip_left:
            return self._skip(buffer)
        scan = min(len(buffer), 10)
        if not scan:
            return None
        buffer.make_contiguous(scan)
        data, pos = buffer.view()
        value = shift = 0
        for index in range(pos, pos + scan):
            byte = data[index]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        else:
            # Unfinished. Past _limit_bytes it declares more than max_size.
            if scan == 10:
                raise CorruptFrameError("varint length longer than 10 bytes", buffer.offset)
            if scan > self._limit_bytes and self.on_too_long == "raise":
                raise FrameTooLongError(self.max_size, f"varint length declares more than max_size={self.max_size}")
            return None
        header = index + 1 - pos
        total = header + value
        if value > self.max_size:
            return self._too_long(buffer, value, total)
        if not buffer.make_contiguous(total):
            return None
        data, pos = buffer.view()
        return buffer.cut(pos + header, pos + total, pos + total)


# ---------------------------------------------------------------- sans-I/O driver


class Decoder:
    """A codec's decoder with its own `ReceiveBuffer`: sans-I/O decoding.

    ::

        decoder = Decoder(Netstring(1024))
        decoder.feed(b"5:hel")
        decoder.feed(b"lo,0:,")
        assert list(decoder) == [b"hello", b""]

    Iterating yields the frames complete so far. After `feed_eof`, iteration
    raises `IncompleteReadError` if a partial frame is left. ``buffer``
    is the underlying `ReceiveBuffer` (``buffer.peek()`` shows the leftover).
    """

    __slots__ = ("buffer", "codec", "frame_decoder")

    def __init__(self, codec: Codec, *, max_buffer_size: int | None = None) -> None:
        self.codec = codec
        self.frame_decoder = codec.decoder()
        self.buffer = ReceiveBuffer(max_buffer_size or max(codec.wire_limit, 65536))

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer.feed(data)

    def feed_eof(self) -> None:
        self.buffer.feed_eof()

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None if more data is needed. At EOF
        with a partial frame left, raises `IncompleteReadError`."""
        frame = self.frame_decoder.decode(self.buffer)
        if frame is None and self.buffer.eof and self.buffer:
            raise IncompleteReadError(self.buffer.peek(), None)
        return frame

    def __iter__(self) -> Iterator[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame
