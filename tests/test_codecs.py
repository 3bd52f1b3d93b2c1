"""The pure framing codecs: round trips, corrupt input, limits, discarding, interop."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scripted import chunked

from triostream import (
    Codec,
    CorruptFrameError,
    Delimited,
    FixedSize,
    FrameParser,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Lines,
    Netstring,
    VarintPrefixed,
)
from triostream._codecs import encode_varint


def decode_all(codec: Codec, chunks: list[bytes]) -> list[bytes]:
    parser = FrameParser(codec)
    out: list[bytes] = []
    for chunk in chunks:
        parser.feed(chunk)
        out.extend(parser)
    parser.feed_eof()
    out.extend(parser)
    return out


# ---------------------------------------------------------------- round trips


def codecs_and_frames() -> st.SearchStrategy[tuple[Codec, list[bytes]]]:
    frame_bytes = st.binary(max_size=70)
    lines = st.builds(Lines, st.integers(80, 200), strip_cr=st.booleans())
    delimited = st.builds(
        Delimited,
        st.sampled_from([b"\r\n", b"|", (b"\r\n", b"\n"), (b";", b"::"), b"\x00\x00"]),
        st.integers(80, 200),
        keep_delimiter=st.booleans(),
    )
    prefixed = st.builds(
        LengthPrefixed,
        st.integers(70, 255),
        length_size=st.sampled_from([1, 2, 3, 4, 8]),
        byteorder=st.sampled_from(["big", "little"]),
        length_offset=st.integers(0, 3),
        length_adjustment=st.integers(-3, 0),
        include_header=st.booleans(),
    )
    others = st.one_of(
        st.builds(Netstring, st.integers(70, 1000)),
        st.builds(VarintPrefixed, st.integers(70, 100_000)),
    )

    @st.composite
    def pairs(draw: st.DrawFn) -> tuple[Codec, list[bytes]]:
        codec = draw(st.one_of(lines, delimited, prefixed, others, st.builds(FixedSize, st.integers(1, 20))))
        if isinstance(codec, FixedSize):
            frames = draw(st.lists(st.binary(min_size=codec.n, max_size=codec.n), max_size=20))
        else:
            frames = draw(st.lists(frame_bytes, max_size=20))
        return codec, frames

    return pairs()


def acceptable(codec: Codec, frame: bytes) -> bool:
    try:
        codec.encode(frame)
    except ValueError:
        return False
    return True


def expected_frame(codec: Codec, frame: bytes) -> bytes:
    """What the decoder gives back for a frame that was encoded."""
    if isinstance(codec, Delimited) and not isinstance(codec, Lines) and codec.keep_delimiter:
        return codec.encode(frame)  # the frame and its (first) delimiter
    if isinstance(codec, LengthPrefixed) and codec.include_header:
        return codec.encode(frame)  # the frame with its recomputed header
    return frame


@given(pair=codecs_and_frames(), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_round_trip_any_chunking(pair: tuple[Codec, list[bytes]], cuts: list[int]) -> None:
    codec, frames = pair
    if isinstance(codec, LengthPrefixed) and codec.include_header:
        # Whole frames (header included) are what encode takes back.
        frames = [bytes(range(codec.length_offset)) + bytes(codec.length_size) + f for f in frames]
    frames = [f for f in frames if acceptable(codec, f)]
    wire = b"".join(codec.encode(f) for f in frames)
    expected = [expected_frame(codec, f) for f in frames]
    assert decode_all(codec, chunked(wire, cuts)) == expected
    # One byte at a time, too.
    assert decode_all(codec, [wire[i : i + 1] for i in range(len(wire))]) == expected


def test_encode_refuses_what_the_decoder_would_reject() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Lines(4).encode(b"abcd")  # 5 bytes with the \n
    assert Lines(5).encode(b"abcd") == b"abcd\n"
    with pytest.raises(ValueError, match="delimiter"):
        Lines(100).encode(b"a\nb")
    with pytest.raises(ValueError, match="strip"):
        Lines(100).encode(b"ab\r")
    assert Lines(100, strip_cr=False).encode(b"ab\r") == b"ab\r\n"
    with pytest.raises(ValueError, match="delimiter"):
        Delimited((b"\r\n", b";"), 100).encode(b"a;b")
    assert Delimited((b"\r\n", b";"), 100).encode(b"ab") == b"ab\r\n"  # the first delimiter
    with pytest.raises(ValueError):
        Delimited(b"aa", 100).encode(b"xa")  # b"xaaa" would end at index 1
    with pytest.raises(ValueError, match="max_size"):
        LengthPrefixed(3).encode(b"abcd")
    with pytest.raises(ValueError, match="declared"):
        LengthPrefixed(1000, length_size=1).encode(b"x" * 256)
    with pytest.raises(ValueError, match="max_size"):
        Netstring(3).encode(b"abcd")
    with pytest.raises(ValueError, match="exactly"):
        FixedSize(3).encode(b"ab")
    with pytest.raises(ValueError, match="max_size"):
        VarintPrefixed(3).encode(b"abcd")


def test_codec_argument_validation() -> None:
    for bad in (
        lambda: Lines(0),
        lambda: LengthPrefixed(10, length_size=5),
        lambda: LengthPrefixed(10, byteorder="middle"),  # type: ignore[arg-type]
        lambda: LengthPrefixed(10, length_offset=-1),
        lambda: Netstring(10, on_too_long="ignore"),  # type: ignore[arg-type]
        lambda: FixedSize(0),
        lambda: Delimited(b"", 10),
    ):
        with pytest.raises(ValueError):
            bad()


# ---------------------------------------------------------------- limits before allocation


def test_length_prefix_over_max_size_refused_from_the_header() -> None:
    parser = FrameParser(LengthPrefixed(1000))
    parser.feed(struct.pack(">I", 1 << 30))  # declares 1 GiB, sends nothing of it
    with pytest.raises(FrameTooLongError) as info:
        parser.next_frame()
    assert info.value.max_size == 1000
    assert len(parser.buffer) == 4, "nothing consumed, nothing allocated beyond the header"


@pytest.mark.parametrize(
    ("codec", "header"),
    [
        (Netstring(1000), b"1001:"),
        (Netstring(1000), b"99999"),  # more digits than max_size has, no ':' yet
        (VarintPrefixed(1000), encode_varint(1001)),
        (VarintPrefixed(1000), b"\xff\xff\xff"),  # unfinished, already over
        (LengthPrefixed(1000, length_size=2, length_offset=1), b"T\x03\xe9"),
    ],
)
def test_declared_sizes_over_the_limit(codec: Codec, header: bytes) -> None:
    parser = FrameParser(codec)
    parser.feed(header)
    with pytest.raises(FrameTooLongError):
        parser.next_frame()
    assert parser.buffer.peek() == header


def test_negative_length_after_adjustment_is_corrupt() -> None:
    parser = FrameParser(LengthPrefixed(100, length_size=2, length_adjustment=-2))
    parser.feed(b"\x00\x01")
    with pytest.raises(CorruptFrameError) as info:
        parser.next_frame()
    assert info.value.offset == 0
    assert "negative" in str(info.value)


# ---------------------------------------------------------------- corrupt input


@pytest.mark.parametrize(
    ("wire", "offset", "words"),
    [
        (b"3:abc,4x:abcd,", 7, "non-digit"),  # in the second length
        (b"3:abc,x:", 6, "non-digit"),
        (b"05:hello,", 6 - 6, "leading zero"),
        (b":abc,", 0, "without a length"),
        (b"3:abc;", 5, "not ended"),
        (b"0:,3:abcX", 8, "not ended"),
    ],
)
def test_netstring_corruption(wire: bytes, offset: int, words: str) -> None:
    parser = FrameParser(Netstring(100))
    parser.feed(wire)
    with pytest.raises(CorruptFrameError, match=words) as info:
        list(parser)
    assert info.value.offset == offset
    assert f"offset {offset}" in str(info.value)


def test_varint_longer_than_ten_bytes_is_corrupt() -> None:
    parser = FrameParser(VarintPrefixed(1 << 20, on_too_long="discard"))
    parser.feed(b"\x80" * 10 + b"\x01")
    with pytest.raises(CorruptFrameError, match="10 bytes"):
        parser.next_frame()


@pytest.mark.parametrize(
    "codec",
    [LengthPrefixed(100), LengthPrefixed(100, length_size=8), Netstring(100), VarintPrefixed(100), Lines(100)],
)
def test_truncated_frame_at_eof(codec: Codec) -> None:
    wire = codec.encode(b"hello")
    for cut in range(1, len(wire)):
        parser = FrameParser(codec)
        parser.feed(wire[:cut])
        parser.feed_eof()
        with pytest.raises(IncompleteReadError) as info:
            parser.next_frame()
        assert info.value.partial == wire[:cut]
    parser = FrameParser(codec)
    parser.feed_eof()
    assert parser.next_frame() is None, "a clean EOF is no error"


# ---------------------------------------------------------------- discarding mode


@pytest.mark.parametrize(
    "codec",
    [
        Lines(10, on_too_long="discard"),
        Delimited((b"\r\n", b";"), 10, on_too_long="discard"),
        LengthPrefixed(10, on_too_long="discard"),
        LengthPrefixed(10, length_size=1, length_offset=2, on_too_long="discard"),
        Netstring(10, on_too_long="discard"),
        VarintPrefixed(10, on_too_long="discard"),
    ],
)
def test_discard_mode_skips_in_bounded_memory_and_raises_once(codec: Codec) -> None:
    big = b"B" * 250  # fits a 1-byte length field, and far over max_size=10
    if isinstance(codec, Delimited):
        wire = codec.encode(b"ok") + big + codec.encode(b"") + codec.encode(b"next")
    else:
        loose = type(codec)(10**6)  # type: ignore[call-arg]
        if isinstance(codec, LengthPrefixed):
            loose = LengthPrefixed(10**6, length_size=codec.length_size, length_offset=codec.length_offset)
        wire = codec.encode(b"ok") + loose.encode(big) + codec.encode(b"next")
    parser = FrameParser(codec)
    got: list[object] = []
    peak = 0
    for i in range(0, len(wire), 7):
        parser.feed(wire[i : i + 7])
        while True:
            try:
                frame = parser.next_frame()
            except FrameTooLongError:
                got.append("too long")
                continue
            if frame is None:
                break
            got.append(frame)
        peak = max(peak, len(parser.buffer))
    assert got == [b"ok", "too long", b"next"]
    assert peak <= 64, f"the over-long frame was buffered ({peak} bytes)"


def test_raise_mode_consumes_nothing_and_discard_until_recovers() -> None:
    parser = FrameParser(Lines(8))
    parser.feed(b"way too long line\nok\n")
    with pytest.raises(FrameTooLongError):
        parser.next_frame()
    assert parser.buffer.peek() == b"way too long line\nok\n"
    assert parser.buffer.discard_until(b"\n") == (18, True)
    assert list(parser) == [b"ok"]


# ---------------------------------------------------------------- interop


def test_interop_struct_pack_and_asyncio_reader() -> None:
    """A stream written with struct.pack decodes here, and ours decodes with
    asyncio's StreamReader.readexactly, for big and little endian fields."""
    payloads = [b"", b"x", bytes(range(256)) * 3, b"tail"]
    for fmt, order in ((">H", "big"), ("<I", "little"), (">Q", "big")):
        size = struct.calcsize(fmt)
        codec = LengthPrefixed(10_000, length_size=size, byteorder=order)  # type: ignore[arg-type]
        theirs = b"".join(struct.pack(fmt, len(p)) + p for p in payloads)
        assert decode_all(codec, chunked(theirs, [3, 5, 700])) == payloads
        ours = b"".join(codec.encode(p) for p in payloads)
        assert ours == theirs

        async def read_with_asyncio(wire: bytes, fmt: str = fmt, size: int = size) -> list[bytes]:
            reader = asyncio.StreamReader()
            reader.feed_data(wire)
            reader.feed_eof()
            frames = []
            while not reader.at_eof():
                (n,) = struct.unpack(fmt, await reader.readexactly(size))
                frames.append(await reader.readexactly(n))
            return frames

        assert asyncio.run(read_with_asyncio(ours)) == payloads


def test_netstrings_as_specified_by_bernstein() -> None:
    # Examples from D. J. Bernstein's netstrings document.
    codec = Netstring(1000)
    assert codec.encode(b"hello world!") == b"12:hello world!,"
    assert codec.encode(b"") == b"0:,"
    assert decode_all(codec, [b"12:hello world!,0:,"]) == [b"hello world!", b""]
    # Netstrings nest: a netstring of netstrings.
    inner = codec.encode(b"a") + codec.encode(b"bc")
    assert decode_all(codec, [codec.encode(inner)]) == [b"1:a,2:bc,"]


def test_varint_encoding_matches_protobuf() -> None:
    # Known encodings from the protobuf documentation.
    assert encode_varint(1) == b"\x01"
    assert encode_varint(150) == b"\x96\x01"
    assert encode_varint(300) == b"\xac\x02"
    assert decode_all(VarintPrefixed(1000), [b"\x03abc\x00"]) == [b"abc", b""]


def test_a_frame_parser_refuses_a_buffer_smaller_than_its_codec_needs() -> None:
    """As a stream does: a buffer below the codec's ``wire_limit`` would be
    full (its delimiter matches settled) before a frame the codec allows is
    complete; with (b"\\r\\n", b"\\r") it cut ``abc\\r\\n`` after the ``\\r``."""
    codec = Delimited((b"\r\n", b"\r"), 100)
    with pytest.raises(ValueError, match="max_buffer_size"):
        FrameParser(codec, max_buffer_size=4)
    with pytest.raises(ValueError, match="max_buffer_size"):
        FrameParser(codec, max_buffer_size=codec.wire_limit - 1)
    parser = FrameParser(codec, max_buffer_size=codec.wire_limit)  # just enough
    frames: list[bytes] = []
    for piece in (b"abc\r", b"\ndef\r\n"):
        parser.feed(piece)
        frames += parser
    assert frames == [b"abc", b"def"]
