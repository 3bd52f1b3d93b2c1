"""Batch iteration: `FrameIterator.batches()` and the buffer/codec batch
cutters behind it (`ReceiveBuffer.take_lines`, `take_until_batch`,
`FrameDecoder.bind_batch`).

The cutters are checked against the one-frame-at-a-time methods they stand
for (same frames, same errors at the same place, same bytes left), over any
chunking; the iterator against the contract of the frame iterators, per
batch.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import itertools
import random
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest.mock import patch

import pytest
import trio
import trio.testing
import trustme
from hypothesis import example, given
from hypothesis import strategies as st
from scripted import (
    AsBytes,
    LateStream,
    ScriptedStream,
    calls_to,
    closed_during_a_late_read,
    counting_os_reads,
    results_of,
)

import triostream._buffer
import triostream._codecs
import triostream._stream
from triostream import (
    BatchIterator,
    BufferedStream,
    Codec,
    CorruptFrameError,
    Delimited,
    FrameIterator,
    FrameTooLongError,
    IncompleteReadError,
    LengthPrefixed,
    Lines,
    Netstring,
    ReceiveBuffer,
    VarintPrefixed,
    open_connection,
)
from triostream._buffer import LINE_MODE, PLAIN_MODE, _has_long_frame


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


Outcome = list[object]
TakeOne = Callable[[ReceiveBuffer], "bytes | None"]
TakeMany = Callable[[ReceiveBuffer], "list[bytes] | None"]


def run_cutter(
    chunks: list[bytes],
    take_one: TakeOne,
    take_batch: TakeOne | TakeMany,
    batch_steps: list[bool],
    feed: Callable[[ReceiveBuffer, bytes], list[bytes] | None] | None = None,
) -> tuple[Outcome, bytes, int]:
    """Feed ``chunks`` (then EOF) into a buffer, taking frames after each feed
    with ``take_batch`` or ``take_one`` (chosen by ``batch_steps``, cycled);
    stop at the first error. Returns the frames and the error, the bytes left
    and the offset. ``feed``, if given, feeds each chunk instead of
    `ReceiveBuffer.feed`, and returns the frames it took meanwhile, or None."""
    buffer = ReceiveBuffer(1 << 16)
    out: Outcome = []
    steps = itertools.cycle(batch_steps or [True])

    def drain() -> bool:
        while True:
            # The search memory never points past the buffered bytes (a
            # resumed search would skip bytes appended to them).
            assert buffer._skey is None or buffer._snext <= len(buffer._data)
            try:
                if next(steps):
                    batch = take_batch(buffer)
                    if isinstance(batch, bytes):  # a one-frame cutter standing in
                        batch = [batch]
                    if batch is None:
                        return True
                    assert batch, "a batch has at least one frame"
                    assert all(type(frame) is bytes for frame in batch)
                    out.extend(batch)
                else:
                    frame = take_one(buffer)
                    if frame is None:
                        return True
                    out.append(frame)
            except (FrameTooLongError, CorruptFrameError) as exc:
                out.append(type(exc))
                return False

    for chunk in chunks:
        if feed is None:
            buffer.feed(chunk)
        elif (fed := feed(buffer, chunk)) is not None:
            assert fed and all(type(frame) is bytes for frame in fed)
            out.extend(fed)
        if not drain():
            return out, buffer.peek(), buffer.offset
    buffer.feed_eof()
    drain()
    return out, buffer.peek(), buffer.offset


LINE_BYTES = st.binary(max_size=300).map(lambda b: bytes(b"a\r\nxy"[x % 5] for x in b))

# Lines long against the chunks they arrive in (and against a patched
# _BATCH_FRAME_MAX): the frames of `_straddling_batch`, which joins the line
# that straddles two chunks and cuts the long ones after it in one loop.
LONG_LINES = st.lists(st.tuples(st.binary(max_size=60), st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])), max_size=20).map(
    lambda lines: b"".join(body.replace(b"\n", b"") + end for body, end in lines)
)


# Frames up to this size are cut with one split, longer ones with a find per
# frame: the properties run with both (0: always find; 8: mixed).
SPLIT_FRAME_MAX = st.sampled_from([0, 8, triostream._buffer._SPLIT_FRAME_MAX])
# Frames after one that straddles two chunks are split with it when the next
# is at most this long, cut by `_straddling_batch`'s find loop when longer
# (0 and 4: the long-frame route at the sizes these properties draw).
BATCH_FRAME_MAX = st.sampled_from([0, 4, triostream._buffer._BATCH_FRAME_MAX])
# Lines cut by find (see SPLIT_FRAME_MAX) shorter than this are checked for
# \r by one find over the chunk, longer ones one by one.
CR_SCAN_FRAME_MAX = st.sampled_from([0, 8, triostream._buffer._CR_SCAN_FRAME_MAX])
# Limits below the frames' sizes, and above (the long-frame route wants the
# rest of a chunk within the limit).
MAX_SIZE = st.integers(min_value=1, max_value=40) | st.integers(min_value=41, max_value=400)


@given(
    data=LINE_BYTES,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=MAX_SIZE,
    steps=st.lists(st.booleans(), max_size=6),
    split_max=SPLIT_FRAME_MAX,
    batch_max=BATCH_FRAME_MAX,
    cr_scan=CR_SCAN_FRAME_MAX,
)
# The chunk's only \r ends its first line, at the first byte.
@example(data=b"\r\n" + b"a" * 20 + b"\n", cuts=[], max_size=400, steps=[True], split_max=0, batch_max=0, cr_scan=8)
def test_take_lines_is_take_line_in_a_loop(
    data: bytes, cuts: list[int], max_size: int, steps: list[bool], split_max: int, batch_max: int, cr_scan: int
) -> None:
    chunks = chunked(data, cuts)
    expected = run_cutter(chunks, lambda b: b.take_line(max_size), lambda b: b.take_line(max_size), [False])
    with (
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", split_max),
        patch.object(triostream._buffer, "_BATCH_FRAME_MAX", batch_max),
        patch.object(triostream._buffer, "_CR_SCAN_FRAME_MAX", cr_scan),
    ):
        got = run_cutter(chunks, lambda b: b.take_line(max_size), lambda b: b.take_lines(max_size), steps)
    assert got == expected


@given(
    data=LINE_BYTES,
    window=st.integers(min_value=1, max_value=64),
    max_size=st.integers(min_value=1, max_value=40),
    split_max=SPLIT_FRAME_MAX,
    cr_scan=CR_SCAN_FRAME_MAX,
)
def test_peek_frames_are_the_next_lines_not_consumed(
    data: bytes, window: int, max_size: int, split_max: int, cr_scan: int
) -> None:
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(data)
    twin = ReceiveBuffer(1 << 16)
    twin.feed(data)
    with (
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", split_max),
        patch.object(triostream._buffer, "_CR_SCAN_FRAME_MAX", cr_scan),
    ):
        found = buffer.peek_frames(b"\n", max_size, LINE_MODE, window)
    assert buffer.peek() == data  # nothing consumed
    if found is None:
        return
    frames, extra, drained, size = found
    assert frames
    start = buffer.offset
    for frame in frames:
        assert twin.take_line(max_size) == frame
        assert twin.offset - buffer.offset == len(frame) + extra  # the iterator consumes that much
        buffer.skip(len(frame) + extra)
    assert buffer.offset - start == size  # the bytes they occupy in all
    if drained:  # a promise: no whole line (and no error) after them
        assert twin.take_line(max_size) is None


@given(
    data=st.binary(max_size=300).map(lambda b: bytes(b"ab\r\n\x00"[x % 5] for x in b)),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"ab", b"aa", b"\x00", b"\r\n\r\n"]),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=MAX_SIZE,
    steps=st.lists(st.booleans(), max_size=6),
    split_max=SPLIT_FRAME_MAX,
    batch_max=BATCH_FRAME_MAX,
)
# A delimiter that overlaps itself: the last match rfind sees (at 2) is not
# one the left-to-right search reaches (it takes 1..3, then finds none).
@example(data=b"xaaaby", delimiter=b"aa", cuts=[], max_size=40, steps=[True], split_max=512, batch_max=256)
def test_take_until_batch_is_take_until_in_a_loop(
    data: bytes, delimiter: bytes, cuts: list[int], max_size: int, steps: list[bool], split_max: int, batch_max: int
) -> None:
    chunks = chunked(data, cuts)
    one = lambda b: b.take_until(delimiter, max_size)  # noqa: E731
    expected = run_cutter(chunks, one, one, [False])
    with (
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", split_max),
        patch.object(triostream._buffer, "_BATCH_FRAME_MAX", batch_max),
    ):
        got = run_cutter(chunks, one, lambda b: b.take_until_batch(delimiter, max_size), steps)
    assert got == expected


def test_big_batches_cut_crlf_lf_and_mixed_endings() -> None:
    for ending in ([b"\n"], [b"\r\n"], [b"\n", b"\r\n", b"\r\r\n"]):
        lines = [b"line %d \r x" % i for i in range(5000)]
        data = b"".join(line + ending[i % len(ending)] for i, line in enumerate(lines))
        buffer = ReceiveBuffer(1 << 20)
        buffer.feed(data + b"tail")
        got = buffer.take_lines(1 << 20)
        expected = [line + (b"\r" if ending[i % len(ending)] == b"\r\r\n" else b"") for i, line in enumerate(lines)]
        assert got == expected
        assert buffer.peek() == b"tail"
        assert buffer.take_lines(1 << 20) is None


def test_a_batch_stops_before_a_line_over_the_limit() -> None:
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(b"ok\r\nfine\n" + b"x" * 20 + b"\nafter\n")
    assert buffer.take_lines(10) == [b"ok", b"fine"]
    with pytest.raises(FrameTooLongError):
        buffer.take_lines(10)
    assert buffer.peek() == b"x" * 20 + b"\nafter\n"  # nothing consumed


@st.composite
def prefixed_streams(draw: st.DrawFn, plain: bool = False) -> tuple[LengthPrefixed, bytes]:
    """A codec and its frames, some of which lie about their length;
    ``plain``: the usual configuration only (no offset, adjustment or
    included header), the one the frame iterators peek into."""
    codec = LengthPrefixed(
        draw(st.integers(min_value=1, max_value=20)),
        length_size=draw(st.sampled_from([1, 2, 3, 4, 8])),
        byteorder=draw(st.sampled_from(["big", "little"])),
        length_offset=0 if plain else draw(st.integers(min_value=0, max_value=2)),
        length_adjustment=0 if plain else draw(st.integers(min_value=-2, max_value=2)),
        include_header=False if plain else draw(st.booleans()),
    )
    parts = []
    for body in draw(st.lists(st.binary(max_size=25), max_size=12)):
        declared = max(len(body) - codec.length_adjustment, 0)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            declared = draw(st.integers(min_value=0, max_value=60))  # a lie: too long, negative, or misaligned
        header = draw(st.binary(min_size=codec.length_offset, max_size=codec.length_offset))
        parts.append(header + declared.to_bytes(codec.length_size, codec.byteorder) + body)
    return codec, b"".join(parts)


@given(
    stream=prefixed_streams(),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    steps=st.lists(st.booleans(), max_size=6),
)
def test_length_prefixed_batches_are_decode_in_a_loop(
    stream: tuple[LengthPrefixed, bytes], cuts: list[int], steps: list[bool]
) -> None:
    codec, data = stream
    chunks = chunked(data, cuts)

    def run(batched: bool, steps: list[bool]) -> object:
        decoder = codec.decoder()  # one per run, as a stream keeps one

        def many(buffer: ReceiveBuffer) -> list[bytes] | None:
            take_batch = decoder.bind_batch(buffer)
            assert take_batch is not None
            return take_batch()

        try:
            return run_cutter(chunks, decoder.decode, many if batched else decoder.decode, steps)
        except IncompleteReadError as exc:
            return ("incomplete", exc.partial, exc.expected)

    assert run(True, steps) == run(False, [False])


def _check_drained(
    fed: tuple[list[bytes], bool, int, int] | None, buffer: ReceiveBuffer, take: TakeOne
) -> list[bytes] | None:
    """The frames of a batch fed and cut in one call (``_feed_batch``), once
    its ``drained`` is checked: true exactly when ``take`` would find no
    frame and raise nothing in what is left (tried on a copy of it); and
    where it says the second frame begins, with the bytes each frame after
    the first occupies beyond its own (when it gives them, -1 otherwise):
    they add up to where the cut left the cursor."""
    if fed is None:
        return None
    frames, drained, at, extra = fed
    assert extra >= -1
    if extra >= 0:
        assert at + sum(len(f) + extra for f in frames[1:]) == buffer._pos
    copy = ReceiveBuffer(1 << 16)
    copy.feed(buffer.peek())  # (nothing is queued after such a cut: peek merges nothing)
    try:
        waits = take(copy) is None
    except (FrameTooLongError, CorruptFrameError):
        waits = False
    assert drained == waits
    return frames


def _decode_fed(codec: Codec, chunks: list[bytes], fused: bool, batch: bool, arrays: list[bool]) -> object:
    """`run_cutter` with a fresh decoder of ``codec`` (one per run, as a
    stream keeps one), an `IncompleteReadError` as a value. With ``fused``,
    each chunk is fed (as bytes or a bytearray, by ``arrays``) by the
    decoder's ``_bind_feed`` callables (``batch``: the batch one), or by
    `ReceiveBuffer.feed` when it has none."""
    decoder = codec.decoder()
    as_array = itertools.cycle(arrays or [False])

    def feed(buffer: ReceiveBuffer, chunk: bytes) -> list[bytes] | None:
        bound = decoder._bind_feed(buffer)
        if bound is None:
            buffer.feed(chunk)
            return None
        feed_first, feed_batch = bound[:2]
        fed = bytearray(chunk) if next(as_array) else chunk
        if batch:
            return _check_drained(feed_batch(fed), buffer, codec.decoder().decode)
        frame = feed_first(fed)
        return None if frame is None else [frame]

    try:
        return run_cutter(chunks, decoder.decode, decoder.decode, [False], feed if fused else None)
    except IncompleteReadError as exc:
        return ("incomplete", exc.partial, exc.expected)


@given(
    stream=prefixed_streams(plain=True) | prefixed_streams(),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    batch=st.booleans(),
    discard=st.booleans(),
    arrays=st.lists(st.booleans(), max_size=4),
)
def test_a_read_fed_and_cut_by_a_length_prefixed_codec_in_one_call_is_feed_and_decode(
    stream: tuple[LengthPrefixed, bytes], cuts: list[int], batch: bool, discard: bool, arrays: list[bool]
) -> None:
    """The frame iterators' reads fed and cut in one call by the codec
    (``_bind_feed``: the first frame the read completes, or all its whole
    frames) give what `feed` and ``decode`` give, whatever the chunking,
    frames that lie about their length, and frames being skipped."""
    codec, data = stream
    if discard:
        codec = LengthPrefixed(
            codec.max_size,
            length_size=codec.length_size,
            byteorder=codec.byteorder,
            length_offset=codec.length_offset,
            length_adjustment=codec.length_adjustment,
            include_header=codec.include_header,
            on_too_long="discard",
        )
    chunks = chunked(data, cuts)
    assert _decode_fed(codec, chunks, True, batch, arrays) == _decode_fed(codec, chunks, False, batch, arrays)


@given(
    data=LONG_LINES,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=MAX_SIZE,
    kind=st.sampled_from(["lines", "lines-raw", "delimited", "keep", "two-bytes", "discard"]),
    batch=st.booleans(),
    arrays=st.lists(st.booleans(), max_size=4),
)
def test_a_read_fed_and_cut_by_a_delimited_codec_in_one_call_is_feed_and_decode(
    data: bytes, cuts: list[int], max_size: int, kind: str, batch: bool, arrays: list[bool]
) -> None:
    """As for length prefixes: `Lines` and one-byte `Delimited` codecs feed
    and cut through the buffer's own (``_feed_first``, ``_feed_batch``);
    the others have none, and their reads are fed as usual."""
    codec = {
        "lines": Lines(max_size),
        "lines-raw": Lines(max_size, strip_cr=False),
        "delimited": Delimited(b"\n", max_size),
        "keep": Delimited(b"\n", max_size, keep_delimiter=True),
        "two-bytes": Delimited(b"\r\n", max_size),
        "discard": Lines(max_size, on_too_long="discard"),
    }[kind]
    chunks = chunked(data, cuts)
    assert _decode_fed(codec, chunks, True, batch, arrays) == _decode_fed(codec, chunks, False, batch, arrays)
    has_feed = codec.decoder()._bind_feed(ReceiveBuffer()) is not None
    assert has_feed == (kind in ("lines", "lines-raw", "delimited"))


def test_a_length_prefixed_read_that_ends_the_buffered_frame_is_cut_in_one_call() -> None:
    codec = LengthPrefixed(100)
    frames = [b"a" * 50, b"b" * 30, b"c" * 60]
    wire = b"".join(codec.encode(f) for f in frames)
    # (batch, how much the read brings, what it returns, where what is left starts)
    # (batch, how much the read brings, what it returns, where what is left
    # starts); a batch comes with whether no whole frame is left.
    for batch, end, cut, left in [
        # (and, for a batch, where its second frame begins in the read, and
        # the bytes each after the first occupies beyond its own: the header)
        (True, 120, (frames[:2], True, 24, 4), 88),  # the rest of "a", "b", and the head of "c"
        (False, 120, frames[0], 54),
        (True, 54, (frames[:1], True, 24, 4), 54),  # a read that ends with the frame
    ]:
        buffer = ReceiveBuffer(1 << 16)
        decoder = codec.decoder()
        buffer.feed(wire[:30])
        assert decoder.decode(buffer) is None
        bound = decoder._bind_feed(buffer)
        assert bound is not None
        assert bound[1 if batch else 0](wire[30:end]) == cut
        assert buffer.peek() == wire[left:end]
        assert buffer.offset == left
    # A batch read into an empty buffer (it starts on a frame): fed and cut,
    # also when what follows is a header that decode refuses (not drained).
    too_long = (500).to_bytes(4, "big") + b"z"
    fed: list[tuple[bytes, tuple[list[bytes], bool, int, int] | None, bytes]] = [
        (wire[:120], (frames[:2], True, 54, 4), b"\0\0\0" + bytes([60]) + b"c" * 28),
        (wire[:3], None, wire[:3]),  # no whole frame: fed only
        (wire[:88] + too_long, (frames[:2], False, 54, 4), too_long),
    ]
    for read, fed_cut, rest in fed:
        buffer = ReceiveBuffer(1 << 16)
        bound = codec.decoder()._bind_feed(buffer)
        assert bound is not None
        assert bound[1](read) == fed_cut
        assert buffer.peek() == rest
    # Its reads after a cut are fed by the same batch feed (no tested twin).
    bound = codec.decoder()._bind_feed(ReceiveBuffer())
    assert bound is not None and len(bound) == 3 and bound[2] is bound[1]
    # Configurations with the length elsewhere have none.
    for other in (LengthPrefixed(100, length_offset=1), LengthPrefixed(100, include_header=True)):
        assert other.decoder()._bind_feed(ReceiveBuffer()) is None


@pytest.mark.parametrize("batches", [False, True])
async def test_a_length_prefixed_frame_joined_from_a_read_leaves_no_stale_batch_of_lines(batches: bool) -> None:
    """The lines after the one receive_line returned, cut as the buffer's
    batch, then a length-prefixed frame over them that a read completes
    (the codec's one-call feeds): the lines the frame swallowed are not
    popped by the next receive_line."""
    body = b"ab\n" * 66 + b"ab"
    wire = b"x\n" + (200).to_bytes(4, "big") + body + b"after\n" + b"y\n" * 40
    stream = BufferedStream(ScriptedStream([wire[:100], wire[100:]]))
    assert await stream.receive_line() == b"x"
    assert stream._buffer._batch_len > stream._buffer._batch_next  # (lines of the frame, cut ahead)
    frames = stream.frames(LengthPrefixed(1000))
    if batches:
        assert await frames.batches().__anext__() == [body]
    else:
        assert await frames.__anext__() == body
    assert await stream.receive_line() == b"after"
    assert await stream.receive_line() == b"y"


@pytest.mark.parametrize("route", [0, 1], ids=["first", "batch"])
def test_a_length_prefixed_read_is_only_fed_when_decode_would_not_take_the_buffered_frame_first(route: int) -> None:
    """What the codec's one-call feeds (the first frame, ``route`` 0; the
    batch, 1) leave to ``decode`` (they only feed): a buffered header that
    declares too much, a whole frame already buffered, a frame being
    skipped (discard mode), a read after EOF."""
    codec = LengthPrefixed(10, on_too_long="discard")
    header50 = (50).to_bytes(4, "big")
    cases = {
        "too long": (header50 + b"x" * 5, b"y" * 60),
        "whole": (codec.encode(b"abc") + codec.encode(b"de")[:5], b"e"),
        "short of a header": (codec.encode(b"abc")[:3], b"\x03abc"),
    }
    for name, (buffered, read) in cases.items():
        buffer = ReceiveBuffer(1 << 16)
        decoder = codec.decoder()
        buffer.feed(buffered)
        bound = decoder._bind_feed(buffer)
        assert bound is not None
        assert bound[route](read) is None, name
        assert buffer.peek() == buffered + read, name
    # Skipping a frame of 50 declared bytes: bytes pushed back meanwhile are
    # part of it, for decode.
    buffer = ReceiveBuffer(1 << 16)
    decoder = codec.decoder()
    buffer.feed(header50 + b"x" * 5)
    with pytest.raises(FrameTooLongError):
        decoder.decode(buffer)
    buffer.unreceive((5).to_bytes(4, "big") + b"ab")
    bound = decoder._bind_feed(buffer)
    assert bound is not None
    assert bound[route](b"cde" + codec.encode(b"ok")) is None
    assert decoder.decode(buffer) is None  # all 15 bytes were the skipped frame's
    assert not buffer
    # After EOF it raises as feed does.
    buffer = ReceiveBuffer(1 << 16)
    decoder = codec.decoder()
    buffer.feed(codec.encode(b"abc")[:5])
    assert decoder.decode(buffer) is None
    buffer.feed_eof()
    bound = decoder._bind_feed(buffer)
    assert bound is not None
    with pytest.raises(RuntimeError):
        bound[route](b"bc")


@given(
    data=st.binary(max_size=300).map(lambda b: bytes(b"ab\n\r"[x % 4] for x in b)),
    delimiter=st.sampled_from([b"\n", b"\r\n"]),
    max_size=st.integers(min_value=1, max_value=120),
)
def test_has_long_frame_is_whether_a_frame_is_over_the_limit(data: bytes, delimiter: bytes, max_size: int) -> None:
    # The step-by-max_size check against every frame measured.
    stop = data.rfind(delimiter) + len(delimiter)
    if stop < len(delimiter):
        return  # no frame
    frames = data[:stop].split(delimiter)[:-1]
    assert _has_long_frame(data, delimiter, 0, stop, max_size) == any(
        len(frame) + len(delimiter) > max_size for frame in frames
    )


@pytest.mark.parametrize("how", ["lines", "iter_until", "batches"])
@pytest.mark.parametrize("long_at", [0, 1, 150, 299])
async def test_a_line_over_the_limit_among_many_short_ones_stops_the_loops(how: str, long_at: int) -> None:
    """The cut's limit test at a limit many lines long (`_has_long_frame`:
    a step per max_size bytes, not a test per line): the lines before the
    one over ``max_size`` come out, then `FrameTooLongError`, that line
    still buffered."""
    lines = [b"%03d" % i for i in range(300)]
    lines[long_at] = b"x" * 60
    stream = BufferedStream(ScriptedStream([b"".join(line + b"\n" for line in lines)]))
    got: list[bytes] = []
    with pytest.raises(FrameTooLongError) as info:
        if how == "batches":
            async for batch in stream.lines(max_size=50).batches():
                got += batch
        else:
            async for line in _line_loop(how, stream, 50):
                got.append(line)
    assert info.value.max_size == 50
    assert got == lines[:long_at]
    assert stream.peek(61) == b"x" * 60 + b"\n"


@given(stream=prefixed_streams(plain=True), window=st.integers(min_value=1, max_value=400))
def test_length_prefixed_peeks_are_the_next_frames_and_keep_their_promise(
    stream: tuple[LengthPrefixed, bytes], window: int
) -> None:
    codec, data = stream
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(data)
    twin = ReceiveBuffer(1 << 16)
    twin.feed(data)
    peek = codec.decoder().bind_peek(buffer)
    decode = codec.decoder().bind(twin)
    assert peek is not None
    found = peek(window)
    assert buffer.peek() == data  # nothing consumed
    if found is None:
        return
    assert len(found) == 4
    frames, extra, drained, size = found
    start = buffer.offset
    for frame in frames:
        assert decode() == frame
        assert twin.offset - buffer.offset == len(frame) + extra
        buffer.skip(len(frame) + extra)
    assert buffer.offset - start == size  # the bytes they occupy in all
    if drained:  # a promise: no whole frame (and no error) after them
        assert decode() is None


def test_codecs_without_a_batch_cutter_fall_back_to_decode() -> None:
    assert Netstring(100).decoder().bind_batch(ReceiveBuffer()) is None
    assert Lines(100, on_too_long="discard").decoder().bind_batch(ReceiveBuffer()) is None
    assert Delimited(b"\r\n", 100, keep_delimiter=True).decoder().bind_batch(ReceiveBuffer()) is None
    assert Lines(100).decoder().bind_batch(ReceiveBuffer()) is not None


# ---------------------------------------------------------------- the iterator


def scripted(*chunks: bytes, error: BaseException | None = None, **kwargs: int) -> BufferedStream:
    return BufferedStream(ScriptedStream(chunks, error), **kwargs)


ITERATORS: dict[str, tuple[Callable[[BufferedStream], FrameIterator], bytes | None]] = {
    "lines": (lambda s: s.lines(max_size=64), b"\n"),
    "until": (lambda s: s.iter_until(b"||", max_size=64), b"||"),
    "until-tuple": (lambda s: s.iter_until((b"||", b";"), max_size=64), b"||"),
    "codec-lines": (lambda s: s.frames(Lines(64)), b"\n"),
    "codec-netstring": (lambda s: s.frames(Netstring(64)), None),
}


def wire(kind: str, frames: list[bytes]) -> bytes:
    delimiter = ITERATORS[kind][1]
    if delimiter is None:
        return b"".join(Netstring(64).encode(f) for f in frames)
    return b"".join(f + delimiter for f in frames)


@pytest.mark.parametrize("kind", ITERATORS)
async def test_batches_yield_every_frame_in_order_and_end_at_eof(kind: str) -> None:
    frames = [b"frame %d" % i for i in range(200)]
    data = wire(kind, frames)
    stream = scripted(*chunked(data, list(range(0, len(data), 97))))
    batches = ITERATORS[kind][0](stream).batches()
    assert isinstance(batches, BatchIterator)
    got: list[list[bytes]] = [batch async for batch in batches]
    assert [f for batch in got for f in batch] == frames
    assert len(got) > 1 and max(len(batch) for batch in got) > 5  # several per step
    assert await stream.receive_some() == b""


@pytest.mark.parametrize("kind", ITERATORS)
async def test_buffered_batches_come_without_a_checkpoint_and_refills_with_one(kind: str) -> None:
    stream = scripted(wire(kind, [b"a", b"b"]), wire(kind, [b"c"]))
    batches = ITERATORS[kind][0](stream).batches()
    with trio.testing.assert_checkpoints():
        assert await batches.__anext__() == [b"a", b"b"]  # a read: a checkpoint
    stream.unreceive(wire(kind, [b"x", b"y"]))
    with trio.testing.assert_no_checkpoints():
        assert await batches.__anext__() == [b"x", b"y"]
    with trio.testing.assert_checkpoints():
        assert await batches.__anext__() == [b"c"]
    with trio.testing.assert_checkpoints(), pytest.raises(StopAsyncIteration):
        await batches.__anext__()


@pytest.mark.parametrize("until", [False, True])
async def test_after_a_batch_cut_at_its_read_the_next_step_reads_only_when_no_frame_is_left(until: bool) -> None:
    """After a batch cut as its read was fed (`ReceiveBuffer._feed_batch`),
    the next step reads only when no whole frame is buffered: not when the
    loop's body changed the buffer (a pushed back frame comes without a
    read), nor when what is left is over the limit (raised without a read)."""
    long_lines = b"\n" + b"b" * 600 + b"\n"
    # Room for a whole read beside what is buffered (else a step takes
    # before it reads: see BufferedStream._iterator_read).
    sizes = {"max_buffer_size": 8192, "receive_size": 2048}
    stream = scripted(b"a" * 600, long_lines + b"c" * 10, b"c\n", error=AssertionError("read"), **sizes)
    frames = stream.iter_until(b"\n", max_size=1000) if until else stream.lines(max_size=1000)
    batches = frames.batches()
    assert await batches.__anext__() == [b"a" * 600, b"b" * 600]
    stream.unreceive(b"x\n")
    with trio.testing.assert_no_checkpoints():
        assert await batches.__anext__() == [b"x"]
    with trio.testing.assert_checkpoints():
        assert await batches.__anext__() == [b"c" * 11]
    # The body read more (queued behind the tail), or took a frame pushed
    # back, leaving another: the next step cuts without a read.
    stream = scripted(b"a" * 600, long_lines + b"c" * 10, b"c\n", error=AssertionError("read"), **sizes)
    batches = (stream.iter_until(b"\n", max_size=1000) if until else stream.lines(max_size=1000)).batches()
    assert await batches.__anext__() == [b"a" * 600, b"b" * 600]
    assert await stream.fill() == 2
    assert await batches.__anext__() == [b"c" * 11]
    stream = scripted(b"a" * 600, long_lines + b"c" * 10, error=AssertionError("read"), **sizes)
    batches = (stream.iter_until(b"\n", max_size=1000) if until else stream.lines(max_size=1000)).batches()
    assert await batches.__anext__() == [b"a" * 600, b"b" * 600]
    stream.unreceive(b"x\nz\n")
    assert (stream.receive_until_nowait(b"\n") if until else stream.receive_line_nowait()) == b"x"
    assert await batches.__anext__() == [b"z"]
    # What is left after the batch is over the limit: raised without a read.
    stream = scripted(b"a" * 600, long_lines + b"c" * 700, error=AssertionError("read"), **sizes)
    batches = (stream.iter_until(b"\n", max_size=650) if until else stream.lines(max_size=650)).batches()
    assert await batches.__anext__() == [b"a" * 600, b"b" * 600]
    with pytest.raises(FrameTooLongError):
        await batches.__anext__()
    assert stream.peek() == b"c" * 700


async def test_a_cancelled_refill_loses_nothing() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    batches = stream.lines().batches()
    await left.send_all(b"one\ntw")
    assert await batches.__anext__() == [b"one"]
    with trio.CancelScope() as scope:
        scope.cancel()
        await batches.__anext__()
    assert scope.cancelled_caught
    with trio.move_on_after(0.05):
        await batches.__anext__()  # waits for the rest of "two", then cancelled
    await left.send_all(b"o\nthree\n")
    assert await batches.__anext__() == [b"two", b"three"]


async def test_an_error_after_the_first_frame_ends_the_batch_and_comes_next() -> None:
    stream = scripted(b"ok\nfine\n" + b"x" * 40 + b"\nafter\n")
    batches = stream.lines(max_size=16).batches()
    assert await batches.__anext__() == [b"ok", b"fine"]
    with trio.testing.assert_checkpoints(), pytest.raises(FrameTooLongError):
        await batches.__anext__()
    assert stream.peek().startswith(b"x" * 16)  # the long line is still there
    await stream.discard_until(b"\n")
    assert [b async for b in batches] == [[b"after"]]


async def test_a_batch_that_stops_before_a_queued_long_line_raises_next_without_a_read() -> None:
    # The batch takes "a" and stops before the long line queued behind it:
    # the buffer's first chunk is used up, the next step must still look at
    # what is queued (and raise) rather than read (none will come).
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"a\n")
    assert await stream.fill() == 2
    await left.send_all(b"xxxxxxxx\n")
    assert await stream.fill() == 9
    batches = stream.lines(max_size=4).batches()
    with trio.fail_after(5):  # (a guard against a hang)
        assert await batches.__anext__() == [b"a"]
        with pytest.raises(FrameTooLongError):
            await batches.__anext__()


async def test_a_discarding_codec_reports_a_skipped_frame_at_the_next_step() -> None:
    codec = LengthPrefixed(8, on_too_long="discard")
    data = codec.encode(b"one") + (100).to_bytes(4, "big") + b"z" * 100 + codec.encode(b"two")
    stream = scripted(data)
    batches = stream.frames(codec).batches()
    assert await batches.__anext__() == [b"one"]
    # (After a schedule point, not a cancel point: the skip already happened,
    # as for the per-frame iterators.)
    with pytest.raises(FrameTooLongError) as info:
        await batches.__anext__()
    assert info.value.discarding
    assert [b async for b in batches] == [[b"two"]]


async def test_eof_inside_a_frame_raises_with_the_partial_frame_buffered() -> None:
    stream = scripted(b"a\nb\npart")
    batches = stream.lines().batches()
    assert await batches.__anext__() == [b"a", b"b"]
    with pytest.raises(IncompleteReadError) as info:
        await batches.__anext__()
    assert info.value.partial == b"part"
    assert stream.peek() == b"part"


async def test_batches_on_a_closed_stream_raise_closed() -> None:
    stream = scripted(b"a\n")
    await stream.aclose()
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await stream.lines().batches().__anext__()


async def _closed_while_waiting(
    stream: BufferedStream, step: Callable[[], Awaitable[object]], meanwhile: Callable[[], None] | None = None
) -> None:
    """Run ``step()`` in another task; once it waits (for a read), run
    ``meanwhile`` and close ``stream``: the wait must end with
    ClosedResourceError saying that another task closed it."""
    async with trio.open_nursery() as nursery:

        async def wait_for_more() -> None:
            with pytest.raises(trio.ClosedResourceError, match="closed by another task"):
                await step()

        nursery.start_soon(wait_for_more)
        await trio.testing.wait_all_tasks_blocked()
        if meanwhile is not None:
            meanwhile()
        await stream.aclose()


# Reads that return a bytearray (trio's memory streams) are fed, then cut;
# bytes (a socket's) are cut as they are fed, and the batch loop's next read
# is made in its own inner loop (see BatchIterator._batches).
TRANSPORTS = {"bytearray": lambda s: s, "bytes": AsBytes}


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_batch_refill_keeps_other_receivers_out_and_ends_when_closed(direct: bool, transport: str) -> None:
    # The batch loop reads the transport itself (not through the stream's
    # refill): while it waits there, the stream is busy, and a close from
    # another task ends the wait with ClosedResourceError.
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(TRANSPORTS[transport](right))
    await left.send_all(b"a\nb\n")
    batches = stream.lines().batches()
    it = batches if direct else aiter(batches)
    assert await it.__anext__() == [b"a", b"b"]

    def others_refused() -> None:
        with pytest.raises(trio.BusyResourceError):
            stream.receive_line_nowait()  # (the stream's own check: no transport call)

    await _closed_while_waiting(stream, it.__anext__, others_refused)
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await batches.__anext__()  # (an error ends an async for's generator: a fresh one)


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_batch_loop_is_resumable_after_a_cancelled_read(direct: bool, transport: str) -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(TRANSPORTS[transport](right))
    batches = stream.lines().batches()
    it = batches if direct else aiter(batches)
    await left.send_all(b"one\ntw")
    assert await it.__anext__() == [b"one"]
    with trio.move_on_after(0.05) as scope:
        await it.__anext__()  # "tw" is not a line: waits in the next read
    assert scope.cancelled_caught
    assert stream.peek() == b"tw"
    await left.send_all(b"o\n")
    # A cancelled generator is finished; its iterator starts a fresh one.
    assert await batches.__anext__() == [b"two"]


@pytest.mark.parametrize("codec", [False, True], ids=["lines", "length-prefixed"])
async def test_a_batch_loop_reads_again_without_asking_the_cutter_while_each_read_is_cut_whole(codec: bool) -> None:
    """After a read cut as it was fed that left no whole frame, the next
    step is the next read, made without asking the cutter (which would find
    nothing): it is asked once before the first read and once at EOF."""
    frames = [b"a", b"bb", b"c", b"d"]
    prefixed = LengthPrefixed(100)
    wire = b"".join(prefixed.encode(f) for f in frames) if codec else b"".join(f + b"\n" for f in frames)
    # Each read ends inside a frame (after its header) or on its end. (A
    # read that ends inside a header goes round the step: rare, see
    # _LengthPrefixedDecoder._feed_first.)
    cuts = [9, 16, 21] if codec else [3, 7, 9]
    stream = scripted(*chunked(wire, cuts))
    cls, name = (type(prefixed.decoder()), "decode_batch") if codec else (ReceiveBuffer, "take_lines")
    with calls_to(cls, name) as calls:
        batches = stream.frames(prefixed) if codec else stream.lines()
        got = [batch async for batch in batches.batches()]
    assert [f for batch in got for f in batch] == frames
    assert len(got) == 3
    assert calls == [name, name]


async def test_a_batch_loop_reads_only_when_the_buffer_is_as_its_last_batch_left_it() -> None:
    """What the loop's body does between two batches may leave a whole frame
    buffered: the next step cuts it, without a read (the transport has none
    to give: a read raises)."""
    # Bytes consumed from the unfinished frame left: the rest is a whole frame.
    codec = LengthPrefixed(100)
    head = (10).to_bytes(4, "big")  # a frame of 10 bytes, unfinished
    stream = scripted(codec.encode(b"ok") + head + codec.encode(b"X"), error=AssertionError("read"))
    batches = stream.frames(codec).batches()
    assert await batches.__anext__() == [b"ok"]
    assert await stream.receive_exactly(4) == head
    assert await batches.__anext__() == [b"X"]
    # Another iterator's read, cut as it was fed, left the cursor where the
    # batch left it, in another chunk: "xx" is whole.
    stream = scripted(b"aa\nb", b"bb\nxx\n", error=AssertionError("read"))
    batches = stream.lines().batches()
    assert await batches.__anext__() == [b"aa"]
    assert await aiter(stream.lines()).__anext__() == b"bbb"
    assert stream._buffer._pos == 3  # (as after the batch: the case)
    assert await batches.__anext__() == [b"xx"]


@pytest.mark.parametrize("size", [600, 2500], ids=["medium", "long"])
@pytest.mark.parametrize("until", [False, True], ids=["lines", "until"])
async def test_a_batch_loop_cuts_the_reads_of_long_lines_itself(until: bool, size: int) -> None:
    """Lines of `_OWN_LINE` bytes and more (a one-byte delimiter): after the
    first read, cut as it is fed (`ReceiveBuffer._feed_batch`), the loop
    cuts each next read itself while nothing else touches the buffer, as
    that cut would: lines of `_CR_SCAN_FRAME_MAX` bytes and more with a test per
    line, shorter ones with one scan for \\r. The batches, and where the
    buffer stands after each, are what that cut gives. Lines ending in
    \\r\\n keep the \\r for ``iter_until``."""
    lines = [bytes([65 + i % 26]) * (size + 37 * i) + (b"\r" if i % 3 == 0 else b"") for i in range(40)]
    wire = b"".join(line + b"\n" for line in lines)
    reads = chunked(wire, list(range(7001, len(wire), 7001)))
    stream = scripted(*reads, receive_size=8192, max_buffer_size=65536)
    got: list[bytes] = []
    offsets = []
    with calls_to(ReceiveBuffer, "_feed_batch", "feed") as calls:
        frames = stream.iter_until(b"\n", max_size=6000) if until else stream.lines(max_size=6000)
        async for batch in frames.batches():
            got += batch
            offsets.append(stream._buffer.offset)
    assert got == (lines if until else [line.removesuffix(b"\r") for line in lines])
    assert calls == ["_feed_batch"]  # the first read only; EOF ends the loop without a feed
    # Each batch ends at the last line its read completed.
    ends = list(itertools.accumulate(len(line) + 1 for line in lines))
    assert offsets == [max(e for e in ends if e <= r) for r in itertools.accumulate(map(len, reads)) if r >= ends[0]]


def _long_line_wires() -> st.SearchStrategy[tuple[bytes, list[int]]]:
    """A wire of lines around `_OWN_LINE` and `_CR_SCAN_FRAME_MAX` bytes (some
    short, some over the limits below, endings \\n or \\r\\n, maybe an
    unfinished line at the end) and where its reads end."""
    sizes = st.sampled_from([0, 1, 300, 600, 1000, 2047, 2100, 3000, 5000])
    line = st.tuples(sizes, st.sampled_from([b"\n", b"\r\n", b"\r\n"]))
    return st.tuples(
        st.lists(line, min_size=1, max_size=10).map(lambda ls: b"".join(b"%d" % n * (n // 4 + 1) + e for n, e in ls)),
        st.binary(max_size=3).map(lambda b: b.replace(b"\n", b"")),
        st.lists(st.integers(min_value=0, max_value=60000), max_size=14),
    ).map(lambda t: (t[0] + t[1], t[2]))


@given(
    wire=_long_line_wires(),
    max_size=st.sampled_from([2500, 4000, 6000, 60000]),
    until=st.booleans(),
    ops=st.lists(st.sampled_from(["-", "-", "-", "exactly", "unreceive", "peek", "line"]), max_size=12),
)
def test_a_batch_loop_over_long_lines_gives_what_the_buffers_cut_gives(
    wire: tuple[bytes, list[int]], max_size: int, until: bool, ops: list[str]
) -> None:
    """The batch loop's own cut of long lines' reads (see the test above)
    against the buffer's (`ReceiveBuffer._feed_batch`, `_OWN_LINE` made
    unreachable): the same batches, errors, bytes left and offset after
    each step, whatever the loop's body does between steps (takes some
    bytes, pushes some back, takes a line, peeks)."""
    data, cuts = wire

    async def trace() -> list[object]:
        stream = scripted(*chunked(data, cuts), receive_size=16384, max_buffer_size=65536)
        frames = stream.iter_until(b"\n", max_size=max_size) if until else stream.lines(max_size=max_size)
        it = aiter(frames.batches())
        seen: list[object] = []
        for op in [*ops, *["-"] * 40]:
            try:
                with trio.fail_after(10):
                    seen.append(await it.__anext__())
            except StopAsyncIteration:
                seen.append("end")
                break
            except (FrameTooLongError, IncompleteReadError) as exc:
                seen.append(type(exc).__name__)
                break
            finally:
                seen.append((stream.peek(), stream._buffer.offset))
            if op == "exactly":
                with contextlib.suppress(trio.WouldBlock):
                    seen.append(stream.receive_exactly_nowait(5))
            elif op == "unreceive":
                stream.unreceive(b"pushed\r\n")
            elif op == "line":
                with contextlib.suppress(trio.WouldBlock, FrameTooLongError):
                    seen.append(stream.receive_line_nowait(max_size=max_size))
            elif op == "peek":
                seen.append(stream.peek(3))
        return seen

    own = trio.run(trace)
    with patch.object(triostream._stream, "_OWN_LINE", 1 << 62):
        fed = trio.run(trace)
    assert own == fed


async def test_a_long_lines_batch_loop_leaves_what_its_cut_cannot_take_to_the_next_step() -> None:
    """What the batch loop's own cut hands back to the step (which cuts,
    raises or reads as usual): a first line over the limit, a line over the
    limit after others (long lines, tested one by one, or shorter ones,
    tested for the read at once), a \\r that ends the tail before the \\n
    that starts the read, and EOF inside a line; each stays whole in the
    buffer."""
    head = b"a" * 3000 + b"\n"  # the first batch: long lines from here
    # The line that the read completes is over the limit: raised, whole.
    stream = scripted(head + b"b" * 3500, b"b" * 700 + b"\nc\n", max_buffer_size=65536)
    batches = stream.lines(max_size=4000).batches()
    assert await batches.__anext__() == [b"a" * 3000]
    with trio.testing.assert_checkpoints(), pytest.raises(FrameTooLongError):
        await batches.__anext__()
    assert stream.peek() == b"b" * 4200 + b"\nc\n"
    # A line over the limit after others in the read (4000 bytes and its \n
    # for max_size 4000; 3999 pass): the batch stops before it, and the
    # search stopped there too (a larger limit takes it at once). After
    # long lines (a test per line, for lines) and after shorter ones (the
    # limit tested once for the read), of lines and of iter_until.
    for tail, first, second in [(b"b" * 100, b"b" * 101, b"c" * 3999), (b"", b"b" * 10, b"c" * 100)]:
        for until in (False, True):
            read = first[len(tail) :] + b"\n" + second + b"\n" + b"d" * 4000 + b"\ne\n"
            stream = scripted(head + tail, read, error=AssertionError("read"), max_buffer_size=65536)
            frames = stream.iter_until(b"\n", max_size=4000) if until else stream.lines(max_size=4000)
            batches = frames.batches()
            assert await batches.__anext__() == [b"a" * 3000]
            assert await batches.__anext__() == [first, second]
            with pytest.raises(FrameTooLongError):
                await batches.__anext__()
            assert stream.peek() == b"d" * 4000 + b"\ne\n"
            assert stream._buffer.offset == len(head) + len(first) + 1 + len(second) + 1
            assert stream.receive_line_nowait(max_size=4001) == b"d" * 4000
    # An unfinished line already over the limit after the batch: raised
    # without a read (the transport has none to give: a read raises).
    stream = scripted(head + b"b" * 100, b"b\n" + b"c" * 4500, error=AssertionError("read"), max_buffer_size=65536)
    batches = stream.lines(max_size=4000).batches()
    assert await batches.__anext__() == [b"a" * 3000]
    assert await batches.__anext__() == [b"b" * 101]
    with pytest.raises(FrameTooLongError):
        await batches.__anext__()
    assert stream.peek() == b"c" * 4500
    # \r at the end of one read, \n at the start of the next: one line, stripped.
    stream = scripted(head + b"b" * 2500 + b"\r", b"\n" + b"c" * 2500 + b"\n", max_buffer_size=65536)
    assert [batch async for batch in stream.lines().batches()] == [[b"a" * 3000], [b"b" * 2500, b"c" * 2500]]
    # Shorter lines, the second ending in \n alone: one scan of the read
    # finds the \r\n of the others.
    stream = scripted(head, b"b" * 10 + b"\n" + b"c" * 100 + b"\n" + b"d" * 50 + b"\r\ne\r\n", max_buffer_size=65536)
    got = [batch async for batch in stream.lines().batches()]
    assert got == [[b"a" * 3000], [b"b" * 10, b"c" * 100, b"d" * 50, b"e"]]
    # EOF inside a line: IncompleteReadError, the partial line still buffered.
    stream = scripted(head + b"b" * 2500, b"b" * 10, max_buffer_size=65536)
    batches = stream.lines().batches()
    assert await batches.__anext__() == [b"a" * 3000]
    with pytest.raises(IncompleteReadError):
        await batches.__anext__()
    assert stream.peek() == b"b" * 2510


async def test_a_batch_cut_as_read_before_a_refused_header_raises_next_without_a_read() -> None:
    codec = LengthPrefixed(10)
    stream = scripted(codec.encode(b"ok") + (500).to_bytes(4, "big") + b"z", error=AssertionError("read"))
    batches = stream.frames(codec).batches()
    assert await batches.__anext__() == [b"ok"]
    with trio.testing.assert_checkpoints(), pytest.raises(FrameTooLongError):
        await batches.__anext__()


async def test_bytes_a_batch_loops_next_read_brings_after_the_stream_closed_are_not_handed_out() -> None:
    """The batch loop's own read after a batch (see TRANSPORTS), returning
    after another task closed the stream: nothing is handed out or kept."""
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(AsBytes(right))
    await left.send_all(b"a\n")
    batches = aiter(stream.lines().batches())
    assert await batches.__anext__() == [b"a"]
    arrive = trio.Event()
    real_receive = right.receive_some

    async def late_receive(max_bytes: int | None = None) -> bytes | bytearray:
        await arrive.wait()
        return await real_receive(max_bytes)

    right.receive_some = late_receive  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await batches.__anext__()

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await left.send_all(b"late\n")
        await stream.aclose()
        arrive.set()
    assert not stream._buffer


LATE_RECEIVERS: dict[str, Callable[[BufferedStream], Awaitable[object]]] = {
    "batches": lambda s: s.lines().batches().__anext__(),
    "batches-async-for": lambda s: aiter(s.lines().batches()).__anext__(),
    "lines": lambda s: s.lines().__anext__(),
    "receive_line": lambda s: s.receive_line(),
    "receive_some": lambda s: s.receive_some(),
    "receive_exactly_into": lambda s: s.receive_exactly_into(bytearray(5)),
    "receive_until-long": lambda s: s.receive_until(b"\n", max_size=60000),
}


@pytest.mark.parametrize("how", LATE_RECEIVERS)
async def test_bytes_a_read_brings_after_the_stream_closed_are_not_handed_out(how: str) -> None:
    transport = LateStream()
    stream = BufferedStream(transport)
    await closed_during_a_late_read(stream, transport, lambda: LATE_RECEIVERS[how](stream))
    assert not stream._buffer  # (the read's bytes were not kept either)


async def test_bytes_the_long_lines_loops_read_brings_after_the_stream_closed_are_not_handed_out() -> None:
    """The batch loop's read after a batch of long lines (cut in the loop,
    see BatchIterator), returning after another task closed the stream:
    ClosedResourceError, and nothing handed out or kept."""
    transport = LateStream([b"a" * 3000 + b"\n"])
    stream = BufferedStream(transport)
    batches = aiter(stream.lines().batches())
    assert await batches.__anext__() == [b"a" * 3000]
    await closed_during_a_late_read(stream, transport, batches.__anext__)
    assert not stream._buffer


# ---------------------------------------------------------------- per-frame iterators cut ahead


@pytest.mark.parametrize("size", [10, 9000], ids=["short-lines", "long-lines"])
async def test_a_frame_loop_read_ends_with_closed_when_another_task_closes_the_stream(size: int) -> None:
    """The frame iterator's own reads on a transport that returns bytes (see
    TRANSPORTS): after a cut (short lines) and in the long-frame loop, which
    reads and joins the line that straddles (lines of 8 KiB and more). A
    close from another task ends the wait with ClosedResourceError saying
    so, and the line's head is not handed out."""
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(AsBytes(right))
    line = b"x" * size
    # (The first line comes with the read; the second, found in the buffer,
    # starts the long-frame loop, whose next read is the one closed.)
    await left.send_all(line + b"\n" + line + b"\n" + b"head")
    lines = aiter(stream.lines())
    assert [await lines.__anext__(), await lines.__anext__()] == [line, line]
    await _closed_while_waiting(stream, lines.__anext__)
    assert not stream._buffer


@pytest.mark.parametrize("kind", ["lines", "until", "codec-lines", "codec-prefixed"])
async def test_breaking_out_of_a_frame_loop_warns_nothing_and_loses_nothing(kind: str) -> None:
    codec = LengthPrefixed(64)
    if kind == "codec-prefixed":
        data = b"".join(codec.encode(b"%d" % i) for i in range(10))
    else:
        data = b"".join(b"%d\n" % i for i in range(10))
    stream = scripted(data)

    def frames() -> FrameIterator:
        if kind == "lines":
            return stream.lines()
        if kind == "until":
            return stream.iter_until(b"\n")
        return stream.frames(codec if kind == "codec-prefixed" else Lines(64))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for expected in range(0, 10, 2):
            async for frame in frames():
                assert frame == b"%d" % expected
                break
            # The loop above cut every buffered frame ahead: the next one is
            # still buffered, for any receive.
            if kind == "codec-prefixed":
                assert await stream.receive_frame(codec) == b"%d" % (expected + 1)
            else:
                assert await stream.receive_line() == b"%d" % (expected + 1)
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@given(
    data=LONG_LINES,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=MAX_SIZE,
    until=st.booleans(),
    batch_max=st.sampled_from([0, 4, 16]),
    cr_scan=CR_SCAN_FRAME_MAX,
)
def test_long_frames_straddling_chunks_batch_as_one_by_one(
    data: bytes, cuts: list[int], max_size: int, until: bool, batch_max: int, cr_scan: int
) -> None:
    chunks = chunked(data, cuts)
    if until:
        one = lambda b: b.take_until(b"\n", max_size)  # noqa: E731
        batch = lambda b: b.take_until_batch(b"\n", max_size)  # noqa: E731
    else:
        one = lambda b: b.take_line(max_size)  # noqa: E731
        batch = lambda b: b.take_lines(max_size)  # noqa: E731
    expected = run_cutter(chunks, one, one, [False])
    # (_SPLIT_FRAME_MAX patched too: these frames count as long, for the
    # cutters of long frames in one chunk.)
    with (
        patch.object(triostream._buffer, "_BATCH_FRAME_MAX", batch_max),
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", batch_max),
        patch.object(triostream._buffer, "_CR_SCAN_FRAME_MAX", cr_scan),
    ):
        got = run_cutter(chunks, one, batch, [True])
    assert got == expected


@given(
    data=LONG_LINES,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=MAX_SIZE,
    until=st.booleans(),
    batch=st.booleans(),
    split_max=st.sampled_from([0, 4, 16]),
    cr_scan=CR_SCAN_FRAME_MAX,
    arrays=st.lists(st.booleans(), max_size=4),
)
@example(
    data=b"\r\n" + b"a" * 20 + b"\n", cuts=[1], max_size=400, until=False, batch=True, split_max=4, cr_scan=0, arrays=[]
)
# Short frames cut by _split_batch, stopped by a frame over the limit (not
# drained).
@example(
    data=b"a\nbb\n" + b"c" * 30 + b"\n",
    cuts=[],
    max_size=20,
    until=False,
    batch=True,
    split_max=16,
    cr_scan=0,
    arrays=[],
)
# A chunk longer than the limit, a frame over it after the first.
@example(
    data=b"a" * 5 + b"\n" + b"b" * 30 + b"\n" + b"c" * 5 + b"\n",
    cuts=[3],
    max_size=20,
    until=False,
    batch=True,
    split_max=4,
    cr_scan=0,
    arrays=[],
)
def test_a_read_fed_and_cut_in_one_call_gives_the_frames_of_feed_and_take(
    data: bytes,
    cuts: list[int],
    max_size: int,
    until: bool,
    batch: bool,
    split_max: int,
    cr_scan: int,
    arrays: list[bool],
) -> None:
    """`ReceiveBuffer._feed_first` and `_feed_batch` (a frame iterator's read,
    fed and cut in one call) give the frames, errors, bytes left and offset
    of `feed` followed by the one-frame takes, over any chunking and limit,
    with chunks that are bytes or a bytearray (which they only feed)."""
    chunks = chunked(data, cuts)

    def one(buffer: ReceiveBuffer) -> bytes | None:
        return buffer.take_until(b"\n", max_size) if until else buffer.take_line(max_size)

    expected = run_cutter(chunks, one, one, [False])
    mode = PLAIN_MODE if until else LINE_MODE
    as_array = itertools.cycle(arrays or [False])

    def feed(buffer: ReceiveBuffer, chunk: bytes) -> list[bytes] | None:
        fed = bytearray(chunk) if next(as_array) else chunk
        if batch:
            return _check_drained(buffer._feed_batch(b"\n", max_size, mode, False, fed), buffer, one)
        frame = buffer._feed_first(b"\n", max_size, mode, 0, False, fed)
        return None if frame is None else [frame]

    with (
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", split_max),
        patch.object(triostream._buffer, "_CR_SCAN_FRAME_MAX", cr_scan),
    ):
        got = run_cutter(chunks, one, one, [False], feed)
    assert got == expected


@pytest.mark.parametrize("crlf", [False, True])
def test_a_fed_batch_of_long_frames_stops_before_the_first_over_the_limit(crlf: bool) -> None:
    """`_feed_batch`'s own loop (frames over `_SPLIT_FRAME_MAX`, a chunk
    longer than ``max_size``): a frame of ``max_size`` bytes with its
    delimiter is in, one byte more stays buffered, the take after it
    raises, and the search memory points at its delimiter."""
    ending = b"\r\n" if crlf else b"\n"
    fits = b"b" * (600 - len(ending)) + ending  # 600 bytes with the ending
    over = b"c" * (601 - len(ending)) + ending
    read = b"a\n" + fits + over + b"d" * 700
    buffer = ReceiveBuffer(1 << 16)
    assert buffer._feed_batch(b"\n", 600, LINE_MODE, False, read) == (
        [b"a", fits[: -len(ending)]],
        False,
        2,
        len(ending),
    )
    assert buffer.peek() == over + b"d" * 700
    assert buffer._snext == len(read) - 700 - 1  # (the \n ending the frame over the limit)
    with pytest.raises(FrameTooLongError):
        buffer.take_line(600)


@pytest.mark.parametrize(
    ("route", "options"),
    [("_feed_first", (0, False)), ("_feed_batch", (False,)), ("_feed_first", (256, True)), ("_feed_batch", (True,))],
    ids=["iterator", "batch", "receive", "receive-batch"],
)
def test_a_read_joined_in_one_call_forgets_what_was_searched_in_the_bytes_it_replaces(
    route: str, options: tuple[int, bool]
) -> None:
    """The read that completes a buffered head, joined in one call (a frame
    iterator's `_feed_first`, a batch iterator's `_feed_batch`, a receive's
    `_feed_first` with the test made), replaces _data: the search memory kept for the old bytes
    goes with them. A tuple of delimiters searched through the head is
    searched again in the read (else the stale memory, past its end, finds
    nothing), and the generation that dates the memory of a search through
    queued chunks moves on."""
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(b"x" * 300)
    assert buffer.take_until((b"!", b"?"), 1000) is None
    assert buffer.take_line(1000) is None
    generation = buffer._gen
    fed = getattr(buffer, route)(b"\n", 10_000, LINE_MODE, *options, b"y\ntail z! more")
    first = fed[0][0] if route == "_feed_batch" else fed
    assert first == b"x" * 300 + b"y"
    assert buffer._gen != generation
    assert buffer.take_until((b"!", b"?"), 1000) == b"tail z"
    assert buffer.peek() == b" more"


# A read into a buffer that holds the head of a frame, searched (a
# receive's state, or an iterator's, when it reads): the cases of the two
# property tests below.
_searched_head_cases = given(
    head=st.binary(max_size=700).map(lambda b: b.replace(b"\n", b"x")),
    cr=st.booleans(),
    chunk=st.lists(st.sampled_from([b"a", b"bb", b"\n", b"\r", b"\r\n", b"c" * 300]), max_size=12).map(b"".join),
    until=st.booleans(),
    max_size=st.integers(min_value=1, max_value=2000),
    array=st.booleans(),
)


def _take_all(
    buffer: ReceiveBuffer, until: bool, max_size: int, *, batches: bool = False
) -> list[bytes | type[FrameTooLongError]]:
    """The lines (``until``: frames of ``take_until(b"\\n")``) a buffer
    gives one take at a time (``batches``: one batch take at a time,
    `take_lines` or `take_until_batch`), up to the first None, or to a
    `FrameTooLongError` (then last in the list)."""
    frames: list[bytes | type[FrameTooLongError]] = []
    while True:
        try:
            if batches:
                batch = buffer.take_until_batch(b"\n", max_size) if until else buffer.take_lines(max_size)
            else:
                frame = buffer.take_until(b"\n", max_size) if until else buffer.take_line(max_size)
                batch = None if frame is None else [frame]
        except FrameTooLongError:
            return [*frames, FrameTooLongError]
        if batch is None:
            return frames
        frames += batch


def _searched_head(head: bytes, until: bool, max_size: int) -> ReceiveBuffer | None:
    """A buffer fed ``b"before\\n" + head`` that gave "before" and then
    nothing (the head searched to its end); None when a take raises (a
    frame over max_size: a receive raises without reading)."""
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(b"before\n" + head)
    return buffer if _take_all(buffer, until, max_size) == [b"before"] else None


def _searched_heads(
    head: bytes, chunk: bytes, until: bool, max_size: int
) -> tuple[ReceiveBuffer, ReceiveBuffer, list[bytes | type[FrameTooLongError]]] | None:
    """Two `_searched_head` buffers, the first fed ``chunk`` as `feed`
    does, and the frames its takes then give; None as there."""
    plain, fused = _searched_head(head, until, max_size), _searched_head(head, until, max_size)
    if plain is None or fused is None:
        return None
    plain.feed(chunk)
    return plain, fused, _take_all(plain, until, max_size)


@_searched_head_cases
@example(head=b"a" * 300, cr=True, chunk=b"\nrest", until=False, max_size=1000, array=False)
@example(head=b"a" * 300, cr=False, chunk=b"b\r\nrest", until=False, max_size=1000, array=False)
@example(head=b"a" * 10, cr=False, chunk=b"b" * 300 + b"\n", until=True, max_size=1000, array=False)
@example(head=b"a" * 10, cr=False, chunk=b"b" * 20 + b"\n", until=True, max_size=1000, array=False)
@example(head=b"a" * 300, cr=False, chunk=b"b" * 10 + b"\n", until=False, max_size=310, array=False)
@example(head=b"a" * 300, cr=False, chunk=b"b" * 10 + b"\n", until=True, max_size=311, array=False)
@example(head=b"a" * 200, cr=False, chunk=b"b" * 56 + b"\n", until=False, max_size=1000, array=False)
@example(head=b"a" * 200, cr=False, chunk=b"b" * 55 + b"\n", until=False, max_size=1000, array=False)
def test_a_receive_s_read_fed_and_joined_in_one_call_gives_what_feed_and_the_take_give(
    head: bytes, cr: bool, chunk: bytes, until: bool, max_size: int, array: bool
) -> None:
    """`ReceiveBuffer._feed_first` with its test made (the read of a receive whose search went
    through the buffered head of a frame, found no delimiter, and has
    nothing queued): the frame it joins (a long one), then what the takes
    give, with the bytes left and the offset, are what `feed` and the takes
    give. A bytearray chunk is only fed."""
    head = head + b"\r" if cr else head
    pair = _searched_heads(head, chunk, until, max_size)
    if pair is None:
        return
    plain, fused, expected = pair
    mode = PLAIN_MODE if until else LINE_MODE
    joined = fused._feed_first(b"\n", max_size, mode, 256, True, bytearray(chunk) if array else chunk)
    # Joined: a long frame (_BATCH_FRAME_MAX) within max_size, from bytes,
    # unless a \r ends the head and the chunk starts with the \n of lines.
    j = chunk.find(b"\n")
    split_crlf = j == 0 and cr and not until
    assert (joined is not None) == (not array and j >= 0 and 256 <= len(head) + j < max_size and not split_crlf)
    assert ([] if joined is None else [joined]) + _take_all(fused, until, max_size) == expected
    assert fused.peek() == plain.peek() and fused.offset == plain.offset


def _joining_sites(array: bool, size: int) -> dict[str, object]:
    """What each of the buffer's joins of a frame begun in _data and ended in
    the next chunk returns: the frame, ``size`` bytes, whose head (``size //
    2`` bytes) is in _data, a bytearray when ``array`` (unreceived bytes)."""
    head, tail = b"h" * (size // 2), b"t" * (size - size // 2)

    def holding() -> ReceiveBuffer:
        buffer = ReceiveBuffer(1 << 20)
        if array:
            buffer.unreceive(head)
        else:
            buffer.feed(head)
        assert type(buffer._data) is (bytearray if array else bytes)
        return buffer

    def searched() -> ReceiveBuffer:
        buffer = holding()
        assert buffer.take_until(b"\n", 1 << 20) is None  # (the head searched)
        return buffer

    sites: dict[str, object] = {}
    sites["_feed_first"] = searched()._feed_first(b"\n", 1 << 20, PLAIN_MODE, 0, False, tail + b"\nmore")
    fed = searched()._feed_batch(b"\n", 1 << 20, PLAIN_MODE, False, tail + b"\nmore")
    sites["_feed_batch"] = None if fed is None else fed[0][0]
    sites["_feed_joined"] = holding()._feed_joined(tail + b"\nmore", 0, len(tail), 1)
    queued = holding()
    queued.feed(tail + b"\nmore")
    sites["_take_joined"] = queued._take_joined(0, len(tail), 1)
    straddling = searched()
    straddling.feed(tail + b"\n" + b"x" * 600 + b"\n")
    batch = straddling._straddling_batch(b"\n", 1 << 20, PLAIN_MODE, len(tail))
    sites["_straddling_batch"] = None if batch is None else batch[0]
    codec_buffer = ReceiveBuffer(1 << 20)
    prefix = len(head + tail).to_bytes(4, "big")
    if array:
        codec_buffer.unreceive(prefix + head)
    else:
        codec_buffer.feed(prefix + head)
    decoder = LengthPrefixed(1 << 20).decoder()
    cut = decoder._feed_batch(codec_buffer, tail + (3).to_bytes(4, "big") + b"abc")  # type: ignore[attr-defined]
    sites["LengthPrefixed _feed_batch"] = None if cut is None else cut[0][0]
    return sites


@pytest.mark.parametrize("size", [1000, 20_000])
@pytest.mark.parametrize("array", [False, True])
def test_a_frame_joined_across_two_chunks_is_bytes_with_one_copy_when_long(array: bool, size: int) -> None:
    """Each join of a frame's head in _data and its end in the next chunk:
    the frame is ``bytes``, also when _data is a bytearray (unreceived
    bytes, a long frame growing), where adding the two slices would give a
    bytearray; joined through memoryviews (one copy) from
    `_JOIN_COPY_MAX` on, below it as two slices added (memoryviews and the
    buffer protocol cost more than the two copies saved: 1 KiB frames
    221 against 372 ns)."""
    views: list[object] = []

    def counting(obj: object) -> memoryview:
        views.append(obj)
        return memoryview(obj)  # type: ignore[arg-type]

    with (
        patch.object(triostream._buffer, "memoryview", counting, create=True),
        patch.object(triostream._codecs, "memoryview", counting, create=True),
    ):
        sites = _joining_sites(array, size)
    for site, frame in sites.items():
        assert type(frame) is bytes, site
        assert frame == b"h" * (size // 2) + b"t" * (size - size // 2), site
    # Two slices added only for bytes below the threshold; otherwise two
    # memoryviews per join (the bytearray made by unreceive copies from
    # one of its own per site: three there).
    per_site = 0 if size < triostream._buffer._JOIN_COPY_MAX and not array else 2
    assert len(views) == len(sites) * (per_site + (1 if array else 0)), len(views)


def _examples(*cases: tuple[object, ...]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis examples of a test, each given as its arguments in order."""

    def add(test: Callable[..., None]) -> Callable[..., None]:
        names = list(inspect.signature(test).parameters)
        for case in reversed(cases):
            test = example(**dict(zip(names, case, strict=True)))(test)
        return test

    return add


@given(
    head=st.binary(max_size=700).map(lambda b: b.replace(b"\n", b"x")),
    cr=st.booleans(),
    chunk=st.lists(st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"c" * 300]), max_size=12).map(b"".join),
    until=st.booleans(),
    max_size=st.integers(min_value=1, max_value=2000),
    array=st.booleans(),
    more=st.sampled_from([b"", b"x\n", b"\nyy\r\n", b"z" * 10]),
    batches=st.booleans(),
)
@_examples(
    # (head, cr, chunk, until, max_size, array, more, batches)
    (b"a" * 600, False, b"b\n" + b"c" * 600 + b"\r\n" + b"c" * 600 + b"\nd", False, 2000, False, b"", False),
    (b"a" * 600, False, b"b\n" + b"c" * 600 + b"\r\n" + b"c" * 600 + b"\nd", True, 2000, False, b"", True),
    (b"a" * 600, True, b"\n" + b"c" * 600 + b"\n" + b"c" * 900 + b"\n", False, 1600, False, b"", True),
    (b"a" * 600, False, b"b\n" + b"c" * 600 + b"\n" + b"c" * 900 + b"\n", False, 1503, False, b"", False),
    (b"a" * 600, False, b"b\n" + b"c" * 600 + b"\n" + b"c" * 900 + b"\n", False, 1504, False, b"", True),
    (b"a" * 600, False, b"b\nccc", False, 2000, False, b"\nyy\r\n", False),
    (b"a" * 600, False, b"b\n" + b"c" * 2100 + b"\r\n" + b"c" * 2100 + b"\nd", False, 5000, False, b"", False),
    (b"a" * 600, False, b"b\n" + b"c" * 2100 + b"\n" + b"c" * 2100 + b"\r\nd", False, 5000, False, b"", True),
    # The first frame exactly at the limit (its delimiter over it), and one under it.
    (b"a" * 600, False, b"b" * 399 + b"\n" + b"c" * 600 + b"\n", True, 999, False, b"", False),
    (b"a" * 600, False, b"b" * 399 + b"\n" + b"c" * 600 + b"\n", False, 999, False, b"", False),
    (b"a" * 600, False, b"b" * 398 + b"\n" + b"c" * 600 + b"\n", True, 999, False, b"", True),
    # A first frame joined through memoryviews (over _JOIN_COPY_MAX), ending in \r\n.
    (b"a" * 9000, False, b"b\r\n" + b"c" * 600 + b"\n", False, 20000, False, b"", False),
    (b"a" * 9000, False, b"b\r\n" + b"c" * 600 + b"\n", True, 20000, False, b"", True),
)
def test_a_receive_s_read_cut_in_one_pass_gives_what_feed_and_the_takes_give(
    head: bytes, cr: bool, chunk: bytes, until: bool, max_size: int, array: bool, more: bytes, batches: bool
) -> None:
    """`ReceiveBuffer._feed_cut` (the read of an awaited receive whose
    search went through the buffered head of a frame): the frame it
    returns, then what the takes give (popping the batch it cut, lines
    ending in \\r\\n too, or taking it whole), with the bytes left and the
    offset, are what `feed` and the takes give; also when more bytes come
    and a peek merges them into the cut read (the search memory it left)."""
    head = head + b"\r" if cr else head
    plain, fused = _searched_head(head, until, max_size), _searched_head(head, until, max_size)
    if plain is None or fused is None:
        return
    plain.feed(chunk)
    plain.feed(more)
    expected = _take_all(plain, until, max_size)
    first = fused._feed_cut(b"\n", max_size, PLAIN_MODE if until else LINE_MODE, bytearray(chunk) if array else chunk)
    assert first is None or not array
    fused.feed(more)
    fused.peek()  # (merges what is queued into the read)
    rest = _take_all(fused, until, max_size, batches=batches)
    assert ([] if first is None else [first]) + rest == expected
    assert fused.peek() == plain.peek() and fused.offset == plain.offset


def test_a_receive_s_read_cut_in_one_pass_is_a_new_generation_of_the_buffer() -> None:
    """`ReceiveBuffer._feed_cut` adopts the read as the buffer's chunk as
    `feed` does: a new generation (``_gen``), the search memory kept in the
    old chunk's indices dropped (a search for a tuple of delimiters that
    failed there, made again, finds one in the read), and a used-up batch
    dropped with its frames."""
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(b"x\n" * 40 + b"a" * 600)
    assert buffer.take_line(1000) == b"x"
    assert buffer._batch_len > 2  # (the batch this test is about)
    assert _take_all(buffer, False, 1000) == [b"x"] * 39  # (used up; the head searched)
    assert buffer._batch_len and buffer._batch_next >= buffer._batch_len
    assert buffer.take_until((b"|", b"#"), 1000) is None  # (remembered: none in the old chunk)
    gen = buffer._gen
    first = buffer._feed_cut(b"\n", 1000, LINE_MODE, b"b" * 10 + b"\n" + b"c|dd\n")
    assert first == b"a" * 600 + b"b" * 10
    assert buffer._gen != gen
    assert buffer._batch_len == 0 and buffer._batch == []
    assert buffer.take_until((b"|", b"#"), 1000) == b"c"
    assert buffer.take_line(1000) == b"dd"


@pytest.mark.parametrize(
    ("head", "chunk", "max_size", "first"),
    [
        (b"", b"a" * 5000, 1 << 16, None),  # no delimiter in the read
        (b"h" * 600, b"a" * 5000, 1 << 16, None),  # nor after a head
        (b"", b"a" * 3000 + b"\nb", 1000, None),  # a line over max_size
        (b"h" * 600 + b"\r", b"\nb", 1000, None),  # the \r that ends the head
        (b"", b"a" * 10 + b"\nb", 1000, None),  # a line under _BATCH_FRAME_MAX: the take's
        (b"", b"a" * 300 + b"\nb", 1000, b"a" * 300),  # _BATCH_FRAME_MAX to _SPLIT_FRAME_MAX
    ],
)
def test_a_receive_s_read_that_is_not_cut_in_one_pass_is_searched_once(
    head: bytes, chunk: bytes, max_size: int, first: bytes | None
) -> None:
    """`ReceiveBuffer._feed_cut` on a read whose first line it does not cut
    itself feeds it without handing it to `_feed_first`, which would search
    the whole read again (a read with no delimiter: twice over); only a line
    of _BATCH_FRAME_MAX to _SPLIT_FRAME_MAX bytes goes there, to be cut. The
    bytes and the frame are what they were."""
    buffer = ReceiveBuffer(1 << 16)
    if head:
        buffer.feed(head)
        assert buffer.take_line(max_size) is None  # (the head searched: the call's test)
    with calls_to(ReceiveBuffer, "_feed_first") as calls:
        got = buffer._feed_cut(b"\n", max_size, LINE_MODE, chunk)
    assert got == first
    assert calls == ([] if first is None else ["_feed_first"])
    assert buffer.peek() == (head + chunk if first is None else b"b")


@pytest.mark.parametrize("how", ["line", "until"])
async def test_a_read_of_awaited_receives_leaves_short_lines_to_the_take_which_cuts_their_batch(how: str) -> None:
    """Lines under _BATCH_FRAME_MAX from a socket: the read a call makes is
    only fed by `ReceiveBuffer._feed_cut` (not its first line cut there), and
    the call's take cuts the read's lines into the buffer's batch at once,
    for the next calls to pop."""
    bodies = [bytes([97 + i % 26]) * 99 for i in range(400)]
    wire = b"".join(body + b"\n" for body in bodies)
    got = []
    after_reads = []
    async with _stream_from_a_socket(wire, receive_size=8192) as stream:
        with calls_to(ReceiveBuffer, "_feed_cut") as calls:
            for _ in bodies:
                before = len(calls)
                got.append(await (stream.receive_line() if how == "line" else stream.receive_until(b"\n")))
                if len(calls) > before:
                    after_reads.append(stream._buffer._batch_len > 2)
    assert got == bodies
    assert len(after_reads) >= 3 and all(after_reads)


@_searched_head_cases
@example(head=b"a" * 300, cr=True, chunk=b"\nrest", until=False, max_size=1000, array=False)
@example(head=b"a" * 300, cr=False, chunk=b"b\r\n" + b"c" * 300 + b"\n\r\n", until=False, max_size=1000, array=False)
@example(head=b"", cr=False, chunk=b"c" * 300 + b"\n" + b"c" * 300 + b"\n", until=True, max_size=301, array=False)
def test_a_read_fed_and_cut_with_the_test_made_gives_what_feed_and_the_takes_give(
    head: bytes, cr: bool, chunk: bytes, until: bool, max_size: int, array: bool
) -> None:
    """`ReceiveBuffer._feed_batch` with its test made (a batch iterator's
    read after one that it cut as it fed and that left the head of a
    frame): its frames, then what the takes
    give, with the bytes left and the offset, are what `feed` and the takes
    give; and when it says that no whole frame is left, the takes find
    none. A bytearray chunk is only fed."""
    head = head + b"\r" if cr else head
    pair = _searched_heads(head, chunk, until, max_size)
    if pair is None:
        return
    plain, fused, expected = pair
    mode = PLAIN_MODE if until else LINE_MODE
    fed = fused._feed_batch(b"\n", max_size, mode, True, bytearray(chunk) if array else chunk)
    assert fed is None or not array
    rest = _take_all(fused, until, max_size)
    if fed is not None and fed[1]:
        assert rest == []  # drained
    assert ([] if fed is None else fed[0]) + rest == expected
    assert fused.peek() == plain.peek() and fused.offset == plain.offset


@pytest.mark.parametrize("until", [False, True])
def test_a_read_that_ends_a_searched_frame_is_cut_in_one_call(until: bool) -> None:
    """The usual case of a frame iterator's read: the frame begun in the
    buffer (searched: no delimiter there) ends in the read, long frames
    follow. `_feed_batch` cuts them all and leaves the search at the end of
    the chunk (the next take answers None without searching); `_feed_first` cuts
    the first."""
    mode = PLAIN_MODE if until else LINE_MODE
    head, read = b"a" * 600, b"b\r\n" + b"c" * 600 + b"\n" + b"d" * 700 + b"\r\n" + b"ee"
    frames = [head + b"b\r", b"c" * 600, b"d" * 700 + b"\r"] if until else [head + b"b", b"c" * 600, b"d" * 700]
    for batch in (True, False):
        buffer = ReceiveBuffer(1 << 16)
        buffer.feed(head)
        assert (buffer.take_until(b"\n", 10_000) if until else buffer.take_line(10_000)) is None
        if batch:
            # (After the first: a line ending in \n, one in \r\n: their
            # sizes differ, -1; the frames of take_until all end in \n.)
            assert buffer._feed_batch(b"\n", 10_000, mode, False, read) == (frames, True, 3, 1 if until else -1)
            assert buffer.peek() == b"ee"
            assert buffer._skey == b"\n" and buffer._snext == len(buffer._data)
        else:
            assert buffer._feed_first(b"\n", 10_000, mode, 0, False, read) == frames[0]
            assert buffer.peek() == read[3:]
        assert buffer.offset == len(head) + len(read) - len(buffer.peek())
    # Not the usual case: fed, nothing cut. The head not searched yet, or
    # searched for another delimiter (it may hold this one).
    for other in (None, b"z"):
        buffer = ReceiveBuffer(1 << 16)
        buffer.feed(b"x\n" + head)
        if other is not None:
            assert buffer.take_until(other, 10_000) is None
        assert buffer._feed_batch(b"\n", 10_000, mode, False, read) is None
        assert buffer.peek() == b"x\n" + head + read
    # After EOF it raises as feed does.
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(head)
    assert buffer.take_until(b"\n", 10_000) is None
    buffer.feed_eof()
    with pytest.raises(RuntimeError):
        buffer._feed_first(b"\n", 10_000, mode, 0, False, b"late\n")
    assert buffer.peek() == head


def test_a_read_cut_in_one_call_resets_the_search_for_several_delimiters() -> None:
    # That search remembers where it stopped in the chunk before.
    buffer = ReceiveBuffer(1 << 16)
    buffer.feed(b"x" * 10)
    assert buffer.take_until((b"!", b"?"), 100) is None
    assert buffer.take_line(100) is None
    assert buffer._feed_first(b"\n", 100, LINE_MODE, 0, False, b"\nyy?zz") == b"x" * 10
    assert buffer.take_until((b"!", b"?"), 100) == b"yy"


@pytest.mark.parametrize("until", [False, True])
def test_a_batch_cut_by_a_single_take_is_reused_after_the_buffer_joined_its_chunks(until: bool) -> None:
    # take_line splits what follows "a" (the buffer's own batch); peek()
    # then joins the queued chunk into one piece of bytes, which moves
    # every index (the batch's end included) by the 2 bytes consumed.
    buffer = ReceiveBuffer()
    buffer.feed(b"a\n" + b"bb\n" * 40 + b"cc")
    assert buffer.take_line(100) == b"a"
    buffer.feed(b"c\n" + b"d\n" * 70)
    assert buffer.peek() == b"bb\n" * 40 + b"ccc\n" + b"d\n" * 70
    batch = buffer.take_until_batch(b"\n", 100) if until else buffer.take_lines(100)
    assert batch == [b"bb"] * 40 + [b"ccc"] + [b"d"] * 70
    assert not buffer


def test_the_chunk_a_straddling_line_ends_in_is_split_once_for_the_lines_after_it() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"abc\nde")
    assert buffer.take_line(100) == b"abc"
    assert buffer.take_line(100) is None
    buffer.feed(b"f\n" + b"x\n" * 100 + b"y")
    assert buffer.take_line(100) == b"def"  # joined across the chunks; the new chunk split once
    assert buffer._batch_len - buffer._batch_next == 100  # white box: those 100 lines are cut already
    assert buffer.take_lines(100) == [b"x"] * 100
    assert buffer.peek() == b"y"


@pytest.mark.parametrize("until", [False, True])
def test_a_reused_batch_stops_before_a_frame_over_the_limit(until: bool) -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"a\n" + b"bb\n" * 30 + b"z" * 19 + b"\n" + b"y" * 20 + b"\n" + b"cc\n" + b"tail")
    assert buffer.take_line(100) == b"a"  # the rest is split: the buffer's own batch
    take = buffer.take_until_batch if until else (lambda _, max_size: buffer.take_lines(max_size))
    assert take(b"\n", 20) == [b"bb"] * 30 + [b"z" * 19]  # 20 bytes with the \n: just fits
    with pytest.raises(FrameTooLongError):
        take(b"\n", 20)  # 21
    assert buffer.peek() == b"y" * 20 + b"\ncc\ntail"


@pytest.mark.parametrize("until", [False, True])
def test_a_straddling_frame_of_exactly_max_size_is_taken_and_one_more_byte_raises(until: bool) -> None:
    for size, fits in ((10, True), (11, False)):  # with its delimiter; max_size=10
        buffer = ReceiveBuffer()
        take = buffer.take_until_batch if until else (lambda _, max_size: buffer.take_lines(max_size))  # noqa: B023
        buffer.feed(b"a" * 5)
        assert take(b"\n", 10) is None  # searched: the frame goes on in the next chunk
        buffer.feed(b"a" * (size - 6) + b"\n" + b"b" * 8 + b"\n")
        with patch.object(triostream._buffer, "_BATCH_FRAME_MAX", 0):  # the long-frame route
            if fits:
                assert take(b"\n", 10) == [b"a" * (size - 1), b"b" * 8]
            else:
                with pytest.raises(FrameTooLongError):
                    take(b"\n", 10)
                assert buffer.peek() == b"a" * (size - 1) + b"\n" + b"b" * 8 + b"\n"  # nothing consumed


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[str, bytes | int]]:
    ops: list[tuple[str, bytes | int]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        op = draw(
            st.sampled_from(["send", "send", "next", "next", "next", "line", "until", "exactly", "unreceive", "peek"])
        )
        if op == "send":
            ops.append((op, draw(st.binary(min_size=1, max_size=80).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)))))
        elif op == "unreceive":
            ops.append((op, draw(st.binary(min_size=1, max_size=10).map(lambda b: bytes(b"xy\n"[x % 3] for x in b)))))
        else:
            ops.append((op, draw(st.integers(min_value=1, max_value=30))))
    return ops


@given(ops=interleavings(), direct=st.booleans(), long_frame=st.sampled_from([8192, 2]))
# Cut ["", "", "a"]; "" and "" handed out; receive_line takes "a" in the same
# chunk (the cursor moves): the cut "a" must not come again.
@example(
    ops=[("send", b"\n\na\n"), ("next", 1), ("next", 1), ("line", 1), ("send", b"\n"), ("next", 1)],
    direct=False,
    long_frame=8192,
)
def test_a_frame_iterator_mixed_with_other_receives_matches_a_plain_buffer(
    ops: list[tuple[str, bytes | int]], direct: bool, long_frame: int
) -> None:
    """The iterator cuts frames ahead without consuming them: whatever else
    consumes or pushes back in between, every step returns the line at the
    head of the stream, as a plain buffer would. ``long_frame`` 2: lines of
    two bytes or more take the long-frame route (cut one by one in the
    iterator's loop), shorter ones the peek. ``until`` searches for another
    delimiter (b"b") in between: the search memory of one is not the
    other's. A step that would wait for bytes the model holds fails (after
    10 s) rather than hang."""

    async def main() -> None:
        left, right = trio.testing.memory_stream_pair()
        stream = BufferedStream(right)
        frames = stream.lines()
        it = frames if direct else aiter(frames)  # __anext__, or the generator async for runs
        model = bytearray()
        for op, arg in ops:
            if op == "send":
                assert isinstance(arg, bytes)
                await left.send_all(arg)
                model += arg
            elif op == "unreceive":
                assert isinstance(arg, bytes)
                stream.unreceive(arg)
                model[:0] = arg
            elif op in ("next", "line"):
                end = model.find(b"\n")
                if end < 0:
                    continue  # would wait
                expected = bytes(model[: end - 1] if model[end - 1 : end] == b"\r" else model[:end])
                del model[: end + 1]
                with trio.fail_after(10):
                    if op == "next":
                        assert await it.__anext__() == expected
                    else:
                        assert await stream.receive_line() == expected
            elif op == "until":
                end = model.find(b"b")
                if end < 0:
                    continue
                expected = bytes(model[:end])
                del model[: end + 1]
                with trio.fail_after(10):
                    assert await stream.receive_until(b"b") == expected
            elif op == "exactly":
                assert isinstance(arg, int)
                if len(model) < arg:
                    continue
                assert await stream.receive_exactly(arg) == bytes(model[:arg])
                del model[:arg]
            else:
                assert bytes(model).startswith(stream.peek())

    with patch.object(triostream._stream, "_LONG_FRAME", long_frame):
        trio.run(main)


async def test_a_frame_step_searches_leave_another_delimiters_search_memory_true() -> None:
    """A frame step's search for b"\\n" records what it saw for b"\\n"
    only: after a receive_until(b"b") and a lines() step cancelled in its
    read (it found no line: nothing consumed), the b"b" in the buffered
    bytes is still found."""
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"1b2b3")
    assert await stream.receive_until(b"b") == b"1"
    frames = stream.lines()
    with trio.move_on_after(0.05) as scope:
        await frames.__anext__()  # no line buffered: it reads, and waits there
    assert scope.cancelled_caught
    assert stream.receive_until_nowait(b"b") == b"2"
    assert stream.peek() == b"3"


def _draw_interleaving(
    draw: st.DrawFn, wire: bytes, runs: list[str], pushback: st.SearchStrategy[bytes]
) -> list[tuple[str, bytes | int]]:
    """``wire`` sent in pieces cut anywhere, mixed with runs of calls (one
    of ``runs``, as in a receive loop), ``nowait`` receives, ``exactly``
    receives and pushed-back bytes."""
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(wire)), max_size=8)))
    sends = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    ops: list[tuple[str, bytes | int]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        op = draw(st.sampled_from(["send"] * 4 + ["run"] * 6 + ["nowait", "exactly", "exactly", "unreceive"]))
        if op == "send":
            if sends:
                ops.append((op, sends.pop(0)))
        elif op == "unreceive":
            ops.append((op, draw(pushback)))
        elif op == "run":
            ops.extend([(draw(st.sampled_from(runs)), 0)] * draw(st.integers(min_value=1, max_value=12)))
        else:
            ops.append((op, draw(st.integers(min_value=1, max_value=4))))
    return ops


@st.composite
def frame_call_interleavings(draw: st.DrawFn) -> list[tuple[str, bytes | int]]:
    """Length-prefixed frames (1-byte headers, bodies of up to 5 bytes,
    max_size 5) with runs of receive_frame calls; a pushed-back byte may be
    a header over max_size (refused until a receive_exactly takes it)."""
    bodies = draw(st.lists(st.binary(max_size=5), min_size=5, max_size=80))
    wire = b"".join(bytes([len(body)]) + body for body in bodies)
    return _draw_interleaving(draw, wire, ["frame"], st.integers(min_value=0, max_value=7).map(lambda n: bytes([n])))


@given(ops=frame_call_interleavings(), sockets=st.booleans())
def test_receive_frame_in_a_loop_mixed_with_other_receives_matches_a_plain_buffer(
    ops: list[tuple[str, bytes | int]], sockets: bool
) -> None:
    """receive_frame cuts frames ahead without consuming them: whatever
    else consumes or pushes back in between, every call returns the frame
    at the head of the stream (or refuses it), as a plain buffer would.
    Over a socket pair (the transports whose reads checkpoint) and memory
    streams (the others)."""
    codec = LengthPrefixed(5, length_size=1)

    async def receive(op: str, stream: BufferedStream, model: bytearray) -> None:
        assert op in ("frame", "nowait")
        if not model or model[0] > 5:
            if model:  # a header over max_size: refused, nothing consumed
                with pytest.raises(FrameTooLongError):
                    await stream.receive_frame(codec) if op == "frame" else stream.receive_frame_nowait(codec)
            return
        if len(model) < 1 + model[0]:
            return  # would wait
        expected = bytes(model[1 : 1 + model[0]])
        del model[: 1 + model[0]]
        got = await stream.receive_frame(codec) if op == "frame" else stream.receive_frame_nowait(codec)
        assert got == expected

    _run_interleaving(ops, sockets, receive)


def _run_interleaving(
    ops: list[tuple[str, bytes | int]],
    sockets: bool,
    receive: Callable[[str, BufferedStream, bytearray], Awaitable[None]],
) -> None:
    """Play ``ops`` against a BufferedStream over a socket pair (the
    transports whose reads checkpoint) or memory streams (the others),
    and against ``model`` (the bytes it should hold). ``send`` (then
    buffered, so that no receive waits), ``unreceive`` and ``exactly`` are
    done here, every other op by ``receive(op, stream, model)``; after each
    op the stream holds what the model says. The streams are closed on
    every path (a failing example leaks no socket into the next test)."""

    async def main() -> None:
        if sockets:
            a, b = trio.socket.socketpair()
            left: trio.abc.Stream = trio.SocketStream(a)
            stream = BufferedStream(trio.SocketStream(b))
        else:
            left, right = trio.testing.memory_stream_pair()
            stream = BufferedStream(right)
        async with left, stream:
            model = bytearray()
            for op, arg in ops:
                if op == "send":
                    assert isinstance(arg, bytes)
                    await left.send_all(arg)
                    model += arg
                    while len(stream._buffer) < len(model):
                        await stream.fill()
                elif op == "unreceive":
                    assert isinstance(arg, bytes)
                    stream.unreceive(arg)
                    model[:0] = arg
                elif op == "exactly":
                    assert isinstance(arg, int)
                    if len(model) >= arg:
                        assert await stream.receive_exactly(arg) == bytes(model[:arg])
                        del model[:arg]
                else:
                    await receive(op, stream, model)
                assert bytes(model).startswith(stream.peek())

    trio.run(main)


@st.composite
def line_call_interleavings(draw: st.DrawFn) -> list[tuple[str, bytes | int]]:
    """Lines (some ending in \\r\\n, some over max_size 8) with runs of
    receive_line or receive_until calls."""
    wire = draw(st.binary(min_size=5, max_size=300).map(lambda b: bytes(b"ab\r\n\n"[x % 5] for x in b)))
    return _draw_interleaving(draw, wire, ["line", "until"], st.sampled_from([b"\n", b"a", b"\r", b"ab\n"]))


@given(ops=line_call_interleavings(), sockets=st.booleans())
def test_receive_line_and_until_in_loops_mixed_with_other_receives_match_a_plain_buffer(
    ops: list[tuple[str, bytes | int]], sockets: bool
) -> None:
    """receive_line and receive_until in loops (where the buffer's batch
    and its search memory serve them): whatever else consumes or pushes
    back in between, every call returns the line at the head of the stream
    (or refuses it), as a plain buffer would."""
    limit = 8

    async def receive(op: str, stream: BufferedStream, model: bytearray) -> None:
        assert op in ("line", "until", "nowait")
        end = model.find(b"\n")
        if end < 0 or end + 1 > limit:
            if end >= 0 or len(model) >= limit:  # over the limit: refused, nothing consumed
                with pytest.raises(FrameTooLongError):
                    if op == "nowait":
                        stream.receive_line_nowait(max_size=limit)
                    elif op == "line":
                        await stream.receive_line(max_size=limit)
                    else:
                        await stream.receive_until(b"\n", max_size=limit)
            return  # (else it would wait)
        line = bytes(model[:end])
        del model[: end + 1]
        if op == "until":
            assert await stream.receive_until(b"\n", max_size=limit) == line
        else:
            expected = line[:-1] if line.endswith(b"\r") else line
            got = (
                stream.receive_line_nowait(max_size=limit)
                if op == "nowait"
                else await stream.receive_line(max_size=limit)
            )
            assert got == expected

    _run_interleaving(ops, sockets, receive)


async def test_lines_of_the_buffers_batch_keep_each_calls_limit_and_keep_delimiter() -> None:
    data = b"a\nb\nc\nlong line\nd\ne\nf\n" + b"z\n" * 40
    stream = scripted(data)
    assert await stream.fill() == len(data)
    assert stream.receive_line_nowait(max_size=100) == b"a"  # the lines after it: the buffer's batch
    assert stream._buffer._batch_len  # (the batch this test is about)
    assert [await stream.receive_line(max_size=100) for _ in range(2)] == [b"b", b"c"]
    with pytest.raises(FrameTooLongError):
        await stream.receive_line(max_size=4)
    assert await stream.receive_line(max_size=100) == b"long line"
    assert [await stream.receive_until(b"\n", max_size=100) for _ in range(2)] == [b"d", b"e"]  # "f" cut ahead
    with pytest.raises(FrameTooLongError):
        await stream.receive_until(b"\n", max_size=1)
    assert await stream.receive_until(b"\n", max_size=100, keep_delimiter=True) == b"f\n"


def _frame_model(model: bytearray) -> bytes:
    """Take one 1-byte-header length-prefixed frame off ``model``."""
    body = bytes(model[1 : 1 + model[0]])
    del model[: 1 + model[0]]
    return body


def _line_model(model: bytearray) -> bytes:
    end = model.index(b"\n")
    line = bytes(model[:end])
    del model[: end + 1]
    return line


async def test_frames_cut_ahead_by_receive_frame_are_dropped_when_the_buffer_moved_to_another_chunk() -> None:
    # Two calls cut the frames of the first chunk ahead; receive_exactly
    # then takes the rest of it and as many bytes of the next chunk as the
    # cursor was at: the same cursor, in other bytes.
    codec = LengthPrefixed(200, length_size=1)
    first = b"\x01a\x01b\x01c\x01d"
    second = b"\x01w\x01x\x01y\x01z"
    stream = scripted(first, second)
    assert await stream.fill() == len(first)
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"a", b"b"]  # c, d cut ahead
    assert await stream.receive_exactly(8) == b"\x01c\x01d\x01w\x01x"
    assert await stream.receive_frame(codec) == b"y"


async def test_frames_cut_ahead_for_one_codec_are_not_handed_out_for_another() -> None:
    # Two calls with one codec cut its frames ahead; a call with another
    # codec (equal in framing here, so the bytes are frames of both) then
    # takes the next frame its own way, and the call after it cuts afresh.
    one, other = LengthPrefixed(200, length_size=1), LengthPrefixed(100, length_size=1)
    data = b"".join(bytes([1]) + bytes([c]) for c in b"abcdefgh")
    stream = scripted(data)
    assert await stream.fill() == len(data)
    assert [await stream.receive_frame(one) for _ in range(2)] == [b"a", b"b"]  # c..h cut ahead
    assert [await stream.receive_frame(other) for _ in range(3)] == [b"c", b"d", b"e"]
    assert [await stream.receive_frame(one) for _ in range(3)] == [b"f", b"g", b"h"]


async def test_a_line_batch_is_dropped_when_receive_frame_cuts_ahead() -> None:
    # receive_line_nowait (ReceiveBuffer.take_line) cuts a batch of the
    # lines after "x"; two receive_frame calls then cut frames ahead and
    # consume through the lines' bytes: the lines batched before must not
    # come back.
    codec = LengthPrefixed(200, length_size=1)
    data = b"x\n" + b"yy\n" * 300
    stream = scripted(data)
    model = bytearray(data)
    assert await stream.fill() == len(data)
    assert stream.receive_line_nowait() == _line_model(model)
    assert stream._buffer._batch_len  # (the batch this test is about)
    for _ in range(3):
        assert await stream.receive_frame(codec) == _frame_model(model)
    for _ in range(3):
        assert await stream.receive_line() == _line_model(model)


async def test_frames_cut_ahead_for_nothing_stay_within_a_small_window_per_call() -> None:
    # A protocol that mixes receive_frame with other receives makes every
    # cut stale: the frames cut for nothing per call stay bounded (256 bytes
    # of frames: 128 two-byte frames), however much is buffered.
    codec = LengthPrefixed(200, length_size=1)
    stream = scripted(b"\x01z" * 30_000)
    assert await stream.fill() == 60_000
    cut = 0
    real_cut = triostream._stream._FramesAhead.cut

    def counting_cut(self: triostream._stream._FramesAhead, buffer: ReceiveBuffer) -> bytes | None:
        nonlocal cut
        first = real_cut(self, buffer)
        if first is not None:
            cut += 1 + (len(self.prepared[0]) if self.prepared is not None else 0)
        return first

    with patch.object(triostream._stream._FramesAhead, "cut", counting_cut):
        for _ in range(200):
            assert [await stream.receive_frame(codec) for _ in range(2)] == [b"z", b"z"]
            assert await stream.receive_exactly(2) == b"\x01z"  # the frames cut ahead are stale now
    assert 0 < cut <= 200 * 128


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
async def test_a_frame_loop_mixed_with_other_receives_cuts_within_a_small_window_per_step(direct: bool) -> None:
    # As above, for the per-frame iterators: each step's cut is made stale
    # by the receive after it.
    stream = scripted(b"z\n" * 30_000)
    assert await stream.fill() == 60_000
    cut = 0
    real_peek = ReceiveBuffer.peek_frames

    def counting_peek(
        self: ReceiveBuffer, delimiter: bytes, max_size: int, mode: int, window: int
    ) -> tuple[list[bytes], int, bool, int] | None:
        nonlocal cut
        found = real_peek(self, delimiter, max_size, mode, window)
        cut += len(found[0]) if found else 0
        return found

    with patch.object(ReceiveBuffer, "peek_frames", counting_peek):
        frames = stream.lines()
        it = frames if direct else aiter(frames)
        for _ in range(200):
            assert await it.__anext__() == b"z"
            assert await stream.receive_exactly(2) == b"z\n"  # the lines cut ahead are stale now
    assert 0 < cut <= 200 * 129  # (a window, and the first line)


@pytest.mark.parametrize("ragged", [False, True], ids=["reads-of-whole-frames", "reads-ending-inside-a-frame"])
async def test_a_receive_frame_loop_cuts_the_frames_after_each_read_in_the_call_that_reads(ragged: bool) -> None:
    # Once the frames cut ahead are out and were every whole frame of their
    # chunk, the next call reads, and the frame it returns comes with the
    # next ones cut ahead: no ``ready`` asked first, and no call after the
    # read decodes one frame only to record where it left the buffer.
    codec = LengthPrefixed(200, length_size=1)
    frames = [bytes([97 + i % 26]) * (1 + i % 5) for i in range(64)]
    wire = b"".join(bytes([len(f)]) + f for f in frames)
    size = 61 if ragged else sum(len(f) + 1 for f in frames[:16])  # four reads of 16 frames
    chunks = [wire[i : i + size] for i in range(0, len(wire), size)]
    stream = scripted(*chunks)
    decoder = type(codec.decoder())
    with calls_to(decoder, "ready", "decode") as calls, calls_to(triostream._stream._FramesAhead, "cut") as cuts:
        assert [await stream.receive_frame(codec) for _ in frames] == frames
    # The first read: ready, decode (nothing), the read, decode; the second
    # call decodes and records, the third cuts. Each later read: decode
    # before it (nothing) and after it (its first frame), then the cut.
    assert calls.count("ready") <= 3
    assert calls.count("decode") <= 3 + 2 * len(chunks)
    assert len(cuts) <= 1 + 2 * len(chunks)
    with pytest.raises(IncompleteReadError):
        await stream.receive_frame(codec)


async def test_receive_frame_with_a_new_but_equal_codec_each_call_hands_out_the_frames_cut_ahead_in_order() -> None:
    # Equal codecs share a decoder: the frames one call cut ahead serve the
    # next call's equal codec (the object differs, the decoder is the same).
    frames = [bytes([97 + i % 26]) * (i % 4) for i in range(40)]
    wire = b"".join(bytes([len(f)]) + f for f in frames)
    stream = scripted(*[wire[i : i + 23] for i in range(0, len(wire), 23)])
    with calls_to(triostream._stream._FramesAhead, "cut") as cuts:
        got = [await stream.receive_frame(LengthPrefixed(200, length_size=1)) for _ in frames]
    assert got == frames
    assert len(cuts) < len(frames) // 2  # frames cut ahead were handed out
    assert stream.peek() == b""


async def test_a_cancelled_read_of_a_receive_frame_loop_loses_no_frame() -> None:
    # The call that reads after the frames cut ahead ran out is cancelled
    # while it waits: nothing consumed; the next call gets the next frame.
    codec = LengthPrefixed(200, length_size=1)
    send, receive = trio.testing.memory_stream_pair()
    stream = BufferedStream(AsBytes(receive))
    await send.send_all(b"\x01a\x01b\x01c\x01d")
    assert [await stream.receive_frame(codec) for _ in range(4)] == [b"a", b"b", b"c", b"d"]
    with trio.move_on_after(0.01) as scope:
        await stream.receive_frame(codec)
    assert scope.cancelled_caught
    await send.send_all(b"\x01e\x01")
    assert await stream.receive_frame(codec) == b"e"
    await send.send_all(b"f\x01g")
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"f", b"g"]


async def test_a_frame_cut_ahead_is_not_handed_out_when_the_stream_closed_during_the_checkpoint() -> None:
    codec = LengthPrefixed(200, length_size=1)
    stream = scripted(b"\x01a\x01b\x01c\x01d")
    assert await stream.fill() == 8
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"a", b"b"]  # c, d cut ahead

    async def closing_checkpoint() -> None:  # another task closes the stream meanwhile
        await stream.aclose()
        await trio.lowlevel.checkpoint()

    with patch.object(triostream._stream, "checkpoint", closing_checkpoint), pytest.raises(trio.ClosedResourceError):
        await stream.receive_frame(codec)


@pytest.mark.parametrize("method", ["receive_line", "receive_until"])
async def test_a_line_of_the_buffers_batch_is_not_handed_out_when_the_stream_closed_during_the_checkpoint(
    method: str,
) -> None:
    # The per-call methods pop the buffer's batch after their checkpoint,
    # outside their try/finally: a close meanwhile must still end the call
    # with ClosedResourceError and leave the stream closed.
    stream = scripted(b"a\n" * 100)
    assert await stream.fill() == 200

    async def receive() -> bytes:
        return await (stream.receive_line() if method == "receive_line" else stream.receive_until(b"\n"))

    assert await receive() == b"a"
    assert stream._buffer._batch_len > stream._buffer._batch_next  # the next line is the batch's

    async def closing_checkpoint() -> None:  # another task closes the stream meanwhile
        await stream.aclose()
        await trio.lowlevel.checkpoint()

    with patch.object(triostream._stream, "checkpoint", closing_checkpoint), pytest.raises(trio.ClosedResourceError):
        await receive()
    with pytest.raises(trio.ClosedResourceError):
        await receive()
    with pytest.raises(trio.ClosedResourceError):
        stream.receive_line_nowait()


async def _frames_buffered(letters: bytes) -> tuple[BufferedStream, LengthPrefixed, bytes]:
    """A stream holding one frame per letter (1-byte length prefixes), the
    codec for them and the bytes."""
    data = b"".join(bytes([1, c]) for c in letters)
    stream = scripted(data)
    assert await stream.fill() == len(data)
    return stream, LengthPrefixed(200, length_size=1), data


async def test_a_frame_loop_moves_the_cursor_past_a_cut_it_handed_out_whole_itself() -> None:
    # A cut of frames handed out to its end, its size given by the peek:
    # the loop moves the cursor past it itself (`_settle`'s case of a cut
    # used up, written out), and the buffer is exact for what comes next
    # (here EOF inside the frame after them).
    data = b"".join(bytes([1, c]) for c in b"abcdef")
    stream = BufferedStream(ScriptedStream([data + b"\x05ab"]))
    await stream.fill()
    got = []
    with calls_to(BufferedStream, "_settle") as calls, pytest.raises(IncompleteReadError) as info:
        async for frame in stream.frames(LengthPrefixed(200, length_size=1)):
            got.append(frame)
    assert got == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert calls == []
    assert info.value.partial == b"\x05ab"
    assert stream.peek() == b"\x05ab"


async def test_frames_cut_ahead_by_receive_frame_stay_buffered_until_handed_out() -> None:
    # The frames a loop of calls cut ahead are handed out with the buffer's
    # cursor left where the cut began: whatever looks at the stream between
    # two calls sees exactly what is left (the hand-out is settled first).
    stream, codec, _ = await _frames_buffered(b"abcdef")
    assert [await stream.receive_frame(codec) for _ in range(3)] == [b"a", b"b", b"c"]  # d, e, f cut ahead
    assert stream.peek() == b"\x01d\x01e\x01f"
    assert await stream.receive_frame(codec) == b"d"
    assert stream.receive_frame_nowait(codec) == b"e"
    assert await stream.receive_exactly(2) == b"\x01f"
    assert stream.peek() == b""


async def test_a_peek_from_another_task_during_a_receive_frame_checkpoint_loses_no_frame() -> None:
    # Another task settles the hand-out (stream.peek) while a call waits in
    # its checkpoint: the call then takes the next frame from the buffer, as
    # it is now, and the calls after it go on from there.
    stream, codec, data = await _frames_buffered(b"abcdefgh")
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"a", b"b"]  # c..h cut ahead
    real = trio.lowlevel.checkpoint

    async def peeking_checkpoint() -> None:
        assert stream.peek() == data[4:]  # (settles: a and b were handed out)
        await real()

    with patch.object(triostream._stream, "checkpoint", peeking_checkpoint):
        assert await stream.receive_frame(codec) == b"c"
    assert [await stream.receive_frame(codec) for _ in range(5)] == [b"d", b"e", b"f", b"g", b"h"]
    assert stream.peek() == b""


async def test_receive_frame_while_another_task_takes_a_frame_cut_ahead_raises_busy() -> None:
    stream, codec, _ = await _frames_buffered(b"abcdef")
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"a", b"b"]  # c..f cut ahead
    got: list[bytes] = []
    go = trio.Event()

    async def waiting_checkpoint() -> None:
        await go.wait()

    async with trio.open_nursery() as nursery:
        with patch.object(triostream._stream, "checkpoint", waiting_checkpoint):
            nursery.start_soon(lambda: _append(got, stream.receive_frame(codec)))
            await trio.testing.wait_all_tasks_blocked()  # (in its checkpoint)
        with pytest.raises(trio.BusyResourceError):
            await stream.receive_frame(codec)
        go.set()
    assert got == [b"c"]
    assert [await stream.receive_frame(codec) for _ in range(3)] == [b"d", b"e", b"f"]


async def test_a_hand_out_prepared_by_a_call_is_dropped_when_the_stream_moved_or_closed_before_it_began() -> None:
    # A call's cut is prepared while the call runs and begins once it is
    # over: between the two (a lean receive's last schedule point), another
    # task may have closed the stream or consumed. Then it does not begin:
    # a closed stream stays closed, and no stale frames are handed out.
    for meanwhile in ("close", "consume", "iterate"):
        stream, codec, _ = await _frames_buffered(b"abcdef")
        assert await stream.receive_frame(codec) == b"a"  # (left: the next call cuts)
        ahead = stream._ahead
        assert ahead.take(stream._buffer) == b"b"  # (a reading call's take) c..f prepared
        assert ahead.prepared is not None
        frames = aiter(stream.frames(codec))
        if meanwhile == "close":
            await stream.aclose()
        elif meanwhile == "consume":
            assert await stream.receive_exactly(2) == b"\x01c"
        else:  # a frame loop's hand-out from the same place (the cursor has not moved)
            assert await frames.__anext__() == b"c"
        ahead.hand_out(stream)
        assert ahead.prepared is None and ahead.handout is None
        if meanwhile == "close":
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_frame(codec)
        elif meanwhile == "consume":
            assert [await stream.receive_frame(codec) for _ in range(3)] == [b"d", b"e", b"f"]
        else:
            assert [frame async for frame in frames] == [b"d", b"e", b"f"]


async def _append(into: list[bytes], receive: Awaitable[bytes]) -> None:
    into.append(await receive)


async def test_a_receive_frame_cancelled_in_its_checkpoint_leaves_the_frame_cut_ahead() -> None:
    stream, codec, _ = await _frames_buffered(b"abcd")
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"a", b"b"]  # c, d cut ahead
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_frame(codec)
    assert scope.cancelled_caught
    assert stream.peek() == b"\x01c\x01d"
    assert [await stream.receive_frame(codec) for _ in range(2)] == [b"c", b"d"]


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
async def test_frames_cut_ahead_are_not_handed_out_after_the_stream_closed(direct: bool) -> None:
    stream = scripted(b"a\nb\nc\n")
    assert await stream.fill() == 6
    frames = stream.lines()
    it = frames if direct else aiter(frames)
    assert await it.__anext__() == b"a"  # b"b" and b"c" are cut, not handed out
    await stream.aclose()
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await it.__anext__()


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
async def test_frames_cut_ahead_are_not_handed_out_while_another_task_receives(direct: bool) -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(b"a\nb\nc\n")
    assert await stream.fill() == 6
    frames = stream.lines()
    it = frames if direct else aiter(frames)
    assert await it.__anext__() == b"a"  # b"b" and b"c" are cut, not handed out
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_exactly, 100)  # waits for more, consuming nothing
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await it.__anext__()
        nursery.cancel_scope.cancel()
    assert await frames.__anext__() == b"b"  # nothing was lost (an error ends an async for's generator)


@pytest.mark.parametrize("kind", ["lines", "codec-prefixed"])
async def test_a_frame_queued_behind_the_cut_chunk_comes_without_a_read(kind: str) -> None:
    # The iterator cuts every whole frame of the first chunk; the frame that
    # straddles it and the queued chunk is handed out next, with no read
    # (none more will come: a read would wait for ever).
    codec = LengthPrefixed(64)
    frames: Callable[[BufferedStream], FrameIterator]
    if kind == "lines":
        wire, frames = b"a\nb\ncc", lambda s: s.lines()
    else:
        wire, frames = codec.encode(b"a") + codec.encode(b"b") + codec.encode(b"cc")[:3], lambda s: s.frames(codec)
    rest = b"\n" if kind == "lines" else codec.encode(b"cc")[3:]
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    await left.send_all(wire)
    assert await stream.fill() == len(wire)
    await left.send_all(rest)
    assert await stream.fill() == len(rest)  # queued behind the unfinished frame
    it = aiter(frames(stream))
    with trio.fail_after(5), trio.testing.assert_no_checkpoints():  # (fail_after: a guard against a hang)
        assert [await it.__anext__() for _ in range(3)] == [b"a", b"b", b"cc"]


@pytest.mark.parametrize("direct", [False, True], ids=["async-for", "__anext__"])
async def test_frames_cut_ahead_are_dropped_when_the_buffer_moved_to_another_chunk(direct: bool) -> None:
    # The iterator cuts b"a" and b"b" from the first chunk and hands out b"a"
    # (its cursor: offset 2 of that chunk). Another receive then takes the
    # rest of it and 2 bytes of the next chunk, which becomes the buffer's
    # chunk at offset 2: the same cursor, in other bytes.
    stream = scripted(b"a\nb\ncc", b"dd\ne\n")
    assert await stream.fill() == 6
    frames = stream.lines()
    it = frames if direct else aiter(frames)
    assert await it.__anext__() == b"a"
    assert await stream.receive_exactly(6) == b"b\nccdd"
    assert await it.__anext__() == b""
    assert await it.__anext__() == b"e"


# ---------------------------------------------------------------- frames spanning many reads


def _frames_text(spec: list[tuple[int, int]]) -> bytes:
    """Frames of ``n`` bytes (``a`` and the odd ``\\r``) each ending in
    ``\\n``, ``\\r\\n`` or ``b``: long ones too, unlike random bytes."""
    return b"".join(b"a" * n + (b"\r\n", b"\n", b"b", b"ab\r")[end % 4] for n, end in spec)


@given(
    data=st.one_of(
        st.binary(max_size=400).map(lambda b: bytes(b"aab\r\n"[x % 5] for x in b)),
        st.lists(st.tuples(st.integers(0, 120), st.integers(0, 3)), max_size=8).map(_frames_text),
    ),
    sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=20),
    max_size=st.integers(min_value=1, max_value=200),
    how=st.sampled_from(["receive_line", "lines", "receive_until", "iter_until", "lines_batches", "until_batches"]),
    long_frame=st.sampled_from([8192, 1, 40]),
    split_max=st.sampled_from([triostream._buffer._SPLIT_FRAME_MAX, 0, 16]),
)
def test_frames_spanning_many_reads_match_a_plain_split(
    data: bytes, sizes: list[int], max_size: int, how: str, long_frame: int, split_max: int
) -> None:
    """Reads that bring no delimiter are queued without asking the buffer
    for a frame (see BufferedStream._receive_more): the frames, the limit
    errors and the bytes left are still those of a plain split. With a
    small ``long_frame``, the iterators cut the frames that long one by one
    in their own loop (FrameIterator._frames), the shorter ones by peek;
    the iterators' reads are fed and cut in one call (`_feed_first`,
    `_feed_batch`), which cuts frames over ``split_max`` with its own loop."""
    delimiter = b"\n" if how in ("receive_line", "lines", "lines_batches") else b"b"
    chunks = []
    at = 0
    for n in itertools.cycle(sizes):
        if at >= len(data):
            break
        chunks.append(data[at : at + n])
        at += n

    # The model: frames of the plain split, up to the first over max_size.
    expected: list[object] = []
    rest = data
    while True:
        end = rest.find(delimiter)
        if end < 0:
            if len(rest) >= max_size:
                expected.append(FrameTooLongError)
            elif rest:
                expected.append(IncompleteReadError)
            break
        if end + 1 > max_size:
            expected.append(FrameTooLongError)
            break
        frame = rest[:end]
        if delimiter == b"\n" and frame.endswith(b"\r"):
            frame = frame[:-1]
        expected.append(frame)
        rest = rest[end + 1 :]

    async def main() -> list[object]:
        stream = BufferedStream(ScriptedStream(chunks), max_buffer_size=256)
        got: list[object] = []
        try:
            if how == "lines":
                async for line in stream.lines(max_size=max_size):
                    got.append(line)
            elif how == "iter_until":
                async for frame in stream.iter_until(delimiter, max_size=max_size):
                    got.append(frame)
            elif how.endswith("_batches"):
                frames = (
                    stream.lines(max_size=max_size)
                    if how == "lines_batches"
                    else stream.iter_until(delimiter, max_size=max_size)
                )
                async for batch in frames.batches():
                    got.extend(batch)
            else:
                while True:
                    if how == "receive_line":
                        got.append(await stream.receive_line(max_size=max_size))
                    else:
                        got.append(await stream.receive_until(delimiter, max_size=max_size))
        except FrameTooLongError:
            got.append(FrameTooLongError)
            assert stream.peek().startswith(rest[: len(stream.peek())])  # nothing consumed
        except IncompleteReadError as exc:
            if exc.partial:
                got.append(IncompleteReadError)
                assert exc.partial == rest
        return got

    with (
        patch.object(triostream._stream, "_LONG_FRAME", long_frame),
        patch.object(triostream._buffer, "_SPLIT_FRAME_MAX", split_max),
    ):
        assert trio.run(main) == expected


@pytest.mark.parametrize("how", ["lines", "iter_until", "iter_until_keep", "frames"])
async def test_long_frames_cut_in_the_iterators_loop_are_those_of_the_single_receives(how: str) -> None:
    """Frames of `_LONG_FRAME` bytes and more at a one-byte delimiter are
    cut one by one in the iterator's own loop (FrameIterator._frames): each
    is the frame `receive_line` / `receive_until` returns (one ``\\r``
    stripped from lines, the delimiter kept if asked), consumed as it is
    handed out and no sooner, and what follows stays buffered for any
    receive."""
    n = triostream._stream._LONG_FRAME
    keep = how == "iter_until_keep"
    delimiter = b"|" if how.startswith("iter_until") else b"\n"
    sent = [b"a" * n, b"b" * (n + 5) + b"\r", b"c" * (2 * n), b"\r" * n, b"d" * n + b"\r"]
    wire = b"".join(frame + delimiter for frame in sent) + b"tail"
    if keep:
        expected = [frame + delimiter for frame in sent]
    else:
        expected = [frame[:-1] if delimiter == b"\n" and frame.endswith(b"\r") else frame for frame in sent]
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right, max_buffer_size=1 << 17, receive_size=1 << 17)
    await left.send_all(wire)
    await left.aclose()

    def iterate() -> FrameIterator:
        if how == "lines":
            return stream.lines(max_size=3 * n)
        if how == "frames":
            return stream.frames(Lines(max_size=3 * n))
        return stream.iter_until(delimiter, max_size=3 * n, keep_delimiter=keep)

    def peek_frames(*args: object) -> None:
        raise AssertionError("long frames are cut in the loop, not peeked")

    got = []
    with patch.object(ReceiveBuffer, "peek_frames", peek_frames):
        async for frame in iterate():
            got.append(frame)
            assert stream.peek() == wire[sum(len(f) + 1 for f in sent[: len(got)]) :]  # the rest, still buffered
            break
        if delimiter == b"\n":
            got.append(await stream.receive_line())
        else:
            got.append(await stream.receive_until(delimiter, keep_delimiter=keep))
        with pytest.raises(IncompleteReadError) as info:
            async for frame in iterate():
                got.append(frame)
    assert got == expected
    assert info.value.partial == b"tail"


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_limit_is_exact_for_long_frames_cut_in_the_iterators_loop(how: str) -> None:
    """A frame of `_LONG_FRAME` bytes or more: max_size counts its
    delimiter; one byte over raises `FrameTooLongError`, consuming nothing,
    and so do max_size bytes without a delimiter after a long frame, at
    once (no read first: the peer may send nothing more)."""
    n = triostream._stream._LONG_FRAME
    delimiter = b"\n" if how == "lines" else b"|"
    wire = b"x" * n + delimiter + b"y" * 5 + delimiter
    for max_size, fits in ((n + 1, True), (n, False)):
        left, right = trio.testing.memory_stream_pair()
        stream = BufferedStream(right, max_buffer_size=1 << 16)
        await left.send_all(wire)
        frames = stream.lines(max_size=max_size) if how == "lines" else stream.iter_until(delimiter, max_size=max_size)
        if fits:
            assert await frames.__anext__() == b"x" * n
            assert stream.peek() == b"y" * 5 + delimiter
        else:
            with pytest.raises(FrameTooLongError):
                await frames.__anext__()
            assert stream.peek() == wire
    # (A transport with nothing more to give: the error must come at once.)
    transport = ScriptedStream([b"x" * n + delimiter + b"z" * (n + 1)], error=AssertionError("a read too many"))
    stream = BufferedStream(transport, max_buffer_size=1 << 16)
    frames = stream.lines(max_size=n + 1) if how == "lines" else stream.iter_until(delimiter, max_size=n + 1)
    assert await frames.__anext__() == b"x" * n
    with pytest.raises(FrameTooLongError):
        await frames.__anext__()
    assert stream.peek() == b"z" * (n + 1)


class _NoMore(Exception):
    """A scripted transport read past its script."""


def _short_long_frames() -> contextlib.AbstractContextManager[object]:
    """Frames of two bytes or more take the long-frame route (the frame
    iterator's own loop, FrameIterator._frames), so that a few bytes show
    what 8 KiB frames would."""
    return patch.object(triostream._stream, "_LONG_FRAME", 2)


def _line_loop(how: str, stream: BufferedStream, max_size: int) -> FrameIterator:
    """``stream.lines()`` (``how`` "lines": a ``\r`` stripped), else ``stream.iter_until(b"\\n")``."""
    return stream.lines(max_size=max_size) if how == "lines" else stream.iter_until(b"\n", max_size=max_size)


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_joins_the_frame_its_read_completes_itself(how: str) -> None:
    """The long-frame loop reads when it has searched the tail to its end
    and found it the head of a frame, with nothing queued, no batch and no
    EOF; it then joins the frame that the read completes and adopts the
    read as the buffer's chunk itself: neither `ReceiveBuffer._feed_first`
    nor `ReceiveBuffer.feed` is called for those reads (the step's own
    read, before the loop, is fed and cut by `_feed_first`; the EOF read,
    by `feed_eof`). The buffer's count of bytes received is kept."""
    wire = [b"aaaa\nbbbb\ncc", b"cc\ndddd\nee", b"ee\r\nff", b"ff\n"]
    transport = ScriptedStream(list(wire))
    stream = BufferedStream(transport, max_buffer_size=1 << 10)
    offsets = []
    with (
        _short_long_frames(),
        results_of(ReceiveBuffer, "_feed_first") as records,
        results_of(ReceiveBuffer, "feed") as fed,
    ):
        got = []
        async for frame in _line_loop(how, stream, 100):
            got.append(frame)
            offsets.append(stream._buffer.offset)
    e = b"eeee" if how == "lines" else b"eeee\r"
    assert got == [b"aaaa", b"bbbb", b"cccc", b"dddd", e, b"ffff"]
    assert offsets == [5, 10, 15, 20, 26, 31]
    mode = LINE_MODE if how == "lines" else PLAIN_MODE
    assert [(args[:5], result) for args, _, result in records] == [((b"\n", 100, mode, 0, False), b"aaaa")]
    assert fed == []
    assert stream._buffer._fed == sum(map(len, wire))


class _BytearrayReads(ScriptedStream):
    """A `ScriptedStream` whose reads return a bytearray (as Trio's memory
    streams do)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:  # type: ignore[override]
        return bytearray(await super().receive_some(max_bytes))


async def _single_receives(how: str, wire: bytes, max_size: int) -> tuple[list[bytes], type[Exception] | None, bytes]:
    """What `receive_line` (``how`` "lines") or `receive_until(b"\\n")`
    return over ``wire`` in one read: the frames, the error that ends them
    (None: a clean EOF) and what is then still buffered."""
    stream = BufferedStream(ScriptedStream([wire]), max_buffer_size=1 << 10)
    frames = []
    try:
        while True:
            if how == "lines":
                frames.append(await stream.receive_line(max_size=max_size))
            else:
                frames.append(await stream.receive_until(b"\n", max_size=max_size))
    except IncompleteReadError as exc:
        if exc.partial:
            return frames, IncompleteReadError, exc.partial
        return frames, None, b""
    except FrameTooLongError:
        return frames, FrameTooLongError, stream.peek()


@pytest.mark.parametrize("how", ["lines", "iter_until"])
@pytest.mark.parametrize(
    ("reads", "max_size"),
    [
        # (The first line of a read is the step's, fed and cut by
        # `ReceiveBuffer._feed_first`; the second enters the loop, whose
        # own are the reads after.) The read after a chunk that ended on a
        # delimiter (nothing held).
        ([b"aaaa\nbbbb\n", b"cccc\ndddd\n", b"eeee\n"], 100),
        # A \r that ends the chunk before the \n that starts the read, and
        # \r\n inside a read's head.
        ([b"aaaa\nxxxx\nbbbb\r", b"\ncccc\ndd", b"dd\r\neeee\n"], 100),
        # The frame a read completes is max_size with its delimiter (taken),
        # then one byte over (FrameTooLongError, nothing consumed).
        ([b"aaaa\nxxxx\nbbb", b"bbbb\ncc", b"ccccccc\nff\n"], 8),
        ([b"aaaa\nxxxx\nbbb", b"bbbb\r\ncc", b"cccccc\r\nff\n"], 9),
        # EOF inside a frame after the loop's reads.
        ([b"aaaa\nxxxx\nbb", b"bb\ncc", b"cc\ndd"], 100),
    ],
)
@pytest.mark.parametrize("transport", [ScriptedStream, _BytearrayReads])
async def test_the_long_frame_loops_reads_give_the_frames_of_the_single_receives(
    how: str, reads: list[bytes], max_size: int, transport: type[ScriptedStream]
) -> None:
    """The frames the long-frame loop joins from its own reads (a chunk's
    tail and the read's head), in the cases at the edge of that join, are
    those `receive_line` / `receive_until` return over the whole wire, with
    the same error after them and the same bytes still buffered; each is
    bytes, also when the transport's reads are bytearrays (which the loop
    feeds rather than joins)."""
    expected = await _single_receives(how, b"".join(reads), max_size)
    stream = BufferedStream(transport(reads), max_buffer_size=1 << 10)
    got: list[bytes] = []
    error: type[Exception] | None = None
    with _short_long_frames():
        try:
            async for frame in _line_loop(how, stream, max_size):
                assert type(frame) is bytes
                got.append(frame)
        except (FrameTooLongError, IncompleteReadError) as exc:
            error = type(exc)
            rest = exc.partial if isinstance(exc, IncompleteReadError) else stream.peek()
        else:
            rest = b""
    assert (got, error, rest) == expected
    assert stream._buffer.offset == sum(map(len, reads)) - len(rest)


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loops_reads_drop_what_the_buffer_remembered_of_its_chunk(how: str) -> None:
    """A read the loop adopts as the buffer's chunk is a new generation of
    it (``_gen`` changes, as the buffer's own feed makes it) and forgets the
    search memory kept in the old chunk's indices: a search for a tuple of
    delimiters that failed in the old chunk, made again in the new one,
    finds the delimiter there."""
    stream = BufferedStream(ScriptedStream([b"aaaa\nxxxx\nbbbb", b"bb\ncc|dd\n"]), max_buffer_size=1 << 10)
    got = []
    generations = []
    with _short_long_frames():
        async for frame in _line_loop(how, stream, 100):
            got.append(frame)
            generations.append((stream._buffer._data, stream._buffer._gen))
            if frame == b"xxxx":
                with pytest.raises(trio.WouldBlock):
                    stream.receive_until_nowait((b"|", b"#"))
            elif frame == b"bbbbbb":
                assert stream.receive_until_nowait((b"|", b"#")) == b"cc"
    assert got == [b"aaaa", b"xxxx", b"bbbbbb", b"dd"]
    (chunk, gen), (read, read_gen) = generations[1], generations[2]
    assert read is not chunk and read_gen != gen


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_joins_long_frames_across_its_reads(how: str) -> None:
    """Frames of 8-20 KiB (the loop's own sizes, no patch) in reads of
    3-40 KB, some ending in \\r\\n: both joins of the loop (two slices
    added under `_JOIN_COPY_MAX` bytes, memoryviews over it) give the
    frames sent, one \\r stripped by ``lines()``."""
    rng = random.Random(7)
    sent = [bytes([97 + i % 26]) * rng.randint(8192, 20000) + (b"\r" if i % 3 == 0 else b"") for i in range(40)]
    wire = b"".join(frame + b"\n" for frame in sent)
    reads = []
    at = 0
    while at < len(wire):
        size = rng.randint(3000, 40000)
        reads.append(wire[at : at + size])
        at += size
    stream = BufferedStream(ScriptedStream(reads), max_buffer_size=1 << 17, receive_size=1 << 16)
    got = [frame async for frame in _line_loop(how, stream, 1 << 16)]
    assert got == [frame[:-1] if how == "lines" and frame.endswith(b"\r") else frame for frame in sent]


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_a_batch_loop_feeds_the_reads_after_one_it_cut_with_the_test_made(how: str) -> None:
    """A batch iterator's read that it cut as it fed (`ReceiveBuffer._feed_batch`),
    leaving the head of a frame and no whole one, the buffer untouched
    while the batch was out: the next read is fed with the test made
    (``tested``). (The step's read, before them, is fed untested.)"""
    transport = ScriptedStream([b"aaaa\nbbbb\ncc", b"cc\ndddd\nee", b"ee\r\nff", b"ff\n"])
    stream = BufferedStream(transport, max_buffer_size=1 << 10)
    with results_of(ReceiveBuffer, "_feed_batch") as records:
        got = [batch async for batch in _line_loop(how, stream, 100).batches()]
    e = b"eeee" if how == "lines" else b"eeee\r"
    assert got == [[b"aaaa", b"bbbb"], [b"cccc", b"dddd"], [e], [b"ffff"]]
    mode = LINE_MODE if how == "lines" else PLAIN_MODE
    assert [(args[:4], result[0]) for args, _, result in records] == [
        ((b"\n", 100, mode, i > 0), batch) for i, batch in enumerate(got)
    ]


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_reads_no_more_than_the_buffer_has_room_for(how: str) -> None:
    """After the long frames of a read, the head of the next one stays
    buffered: the loop's own read asks for ``receive_size`` only when the
    buffer has that much room left (here 3 of 18 bytes held: 15)."""
    transport = ScriptedStream([b"aaaa\ncccc\nbbb", b"b\n"])
    stream = BufferedStream(transport, max_buffer_size=18, receive_size=16)
    with _short_long_frames():
        got = [frame async for frame in _line_loop(how, stream, 18)]
    assert got == [b"aaaa", b"cccc", b"bbbb"]
    assert transport.requests[:2] == [16, 15]


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_raises_for_a_head_over_the_limit_without_reading(how: str) -> None:
    """The bytes after the last long frame of a read are already max_size
    without a delimiter: `FrameTooLongError` at once, nothing consumed, no
    read first (the peer may send nothing more)."""
    transport = ScriptedStream([b"aaaa\ncccc\nzzzzzz"], error=_NoMore())
    stream = BufferedStream(transport, max_buffer_size=1024, receive_size=64)
    got = []
    with _short_long_frames(), pytest.raises(FrameTooLongError):
        async for frame in _line_loop(how, stream, 6):
            got.append(frame)
    assert got == [b"aaaa", b"cccc"]
    assert stream.peek() == b"zzzzzz"
    assert transport.requests == [64]


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_takes_a_frame_that_fill_completed_without_reading(how: str) -> None:
    """``fill()`` in the loop's body queued the end of the next frame behind
    the chunk: the next step returns that frame, with no read (the peer sends
    nothing more: a read would never return)."""
    transport = ScriptedStream([b"aaaa\ncccc\nbb", b"bb\n"], error=_NoMore())
    stream = BufferedStream(transport, max_buffer_size=1024, receive_size=64)  # (room for a read)
    got = []
    with _short_long_frames(), pytest.raises(_NoMore):
        async for frame in _line_loop(how, stream, 1024):
            got.append(frame)
            if frame == b"cccc":
                assert await stream.fill() == 3
    assert got == [b"aaaa", b"cccc", b"bbbb"]


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_does_not_read_after_an_eof_that_fill_met(how: str) -> None:
    """``fill()`` in the loop's body met EOF: the next step raises
    `IncompleteReadError` with the unfinished frame, without reading again."""
    transport = ScriptedStream([b"aaaa\ncccc\nbb"])
    stream = BufferedStream(transport, max_buffer_size=1024, receive_size=64)
    got = []
    with _short_long_frames(), pytest.raises(IncompleteReadError) as info:
        async for frame in _line_loop(how, stream, 1024):
            got.append(frame)
            if frame == b"cccc":
                assert await stream.fill() == 0
    assert got == [b"aaaa", b"cccc"]
    assert info.value.partial == b"bb"
    assert len(transport.requests) == 2  # the first read and fill's


@pytest.mark.parametrize("how", ["lines", "iter_until"])
async def test_the_long_frame_loop_sees_another_chunk_consumed_to_the_same_offset(how: str) -> None:
    """In the loop's body, the rest of the chunk and the head of the next
    read are received, leaving the cursor at the same offset of another
    chunk: the next step returns the next frame of the new chunk, not the
    one after that offset in the old."""
    stream = BufferedStream(ScriptedStream([b"aa\nbb\ncc\n", b"zzzzzzyy\n"]))
    got = []
    with _short_long_frames():
        async for frame in _line_loop(how, stream, 1024):
            got.append(frame)
            if frame == b"bb":
                assert await stream.receive_exactly(3) == b"cc\n"
                assert await stream.receive_exactly(6) == b"zzzzzz"
    assert got == [b"aa", b"bb", b"yy"]


@pytest.mark.parametrize("how", ["lines", "iter_until", "batches", "frames", "frame_batches"])
async def test_the_loops_read_by_themselves_when_the_buffer_has_less_room_than_a_read(how: str) -> None:
    """With the default sizes (``max_buffer_size`` = ``receive_size``) every
    read after a frame's head has less room than ``receive_size``: the
    frame and batch loops still make that read themselves (asking for the
    room left, as the stream's own refill would), not through the general
    refill, which they keep for EOF. (Lines, and length-prefixed frames:
    a two-byte length and four bytes.)"""
    prefixed = how.startswith("frame")
    bodies = [b"%d" % i * (4 if prefixed else 6) for i in range(10)]
    wire = b"".join((b"\x00\x04" + body) if prefixed else (body + b"\n") for body in bodies)  # 10 frames of 6-7 bytes
    transport = ScriptedStream([wire[i : i + 16] for i in range(0, len(wire), 16)])
    stream = BufferedStream(transport, max_buffer_size=16, receive_size=16)
    slow = 0
    receive_more = BufferedStream._receive_more

    async def counted(self: BufferedStream, *args: object) -> object:
        nonlocal slow
        slow += 1
        return await receive_more(self, *args)  # type: ignore[arg-type]

    codec = LengthPrefixed(12, length_size=2)
    with patch.object(BufferedStream, "_receive_more", counted):
        if how == "batches":
            got = [frame async for batch in stream.lines().batches() for frame in batch]
        elif how == "frame_batches":
            got = [frame async for batch in stream.frames(codec).batches() for frame in batch]
        elif how == "frames":
            got = [frame async for frame in stream.frames(codec)]
        else:
            got = [frame async for frame in _line_loop(how, stream, 16)]
    assert got == bodies
    assert slow == 1  # the last step, at EOF
    assert len(transport.requests) > 6  # (the frames straddle the reads)
    assert all(request is not None and 0 < request <= 16 for request in transport.requests)
    assert sum(request is not None and request < 16 for request in transport.requests) >= 3  # the room left


class _CallersOfReads(ScriptedStream):
    """Records, per read, the names of the functions between the test and
    ``receive_some`` (innermost last)."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.callers: list[tuple[str, ...]] = []

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        names = []
        frame = inspect.currentframe()
        assert frame is not None
        frame = frame.f_back
        while frame is not None and frame.f_code.co_name != "loop":
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        self.callers.append(tuple(reversed(names)))
        return await super().receive_some(max_bytes)


@pytest.mark.parametrize("how", ["lines", "batches"])
async def test_the_iterators_general_refill_reads_one_coroutine_below_their_generator(how: str) -> None:
    """A line that spans many reads is read by the general refill
    (`_receive_more`), called by the iterator's generator itself: each read's
    checkpoint suspends and resumes every coroutine between the task and the
    transport, and one more there cost 3.5-4 % at one long line in 1 KiB
    reads (see `FrameIterator._frames`)."""
    line = b"x" * 5000
    transport = _CallersOfReads([line[i : i + 100] for i in range(0, len(line), 100)] + [b"\nend\n"])
    stream = BufferedStream(transport, max_buffer_size=8192, receive_size=100)
    generator = "_frames" if how == "lines" else "_batches"

    async def loop() -> list[bytes]:
        if how == "lines":
            return [frame async for frame in stream.lines()]
        return [frame async for batch in stream.lines().batches() for frame in batch]

    assert await loop() == [line, b"end"]
    refills = [names for names in transport.callers if "_receive_more" in names]
    assert len(refills) >= 40  # (the long line's reads)
    assert all(names[-2:] == (generator, "_receive_more") for names in refills), set(refills)


class _OwnFill(BufferedStream):
    """A stream with a `_fill` of its own (as a `Connection` has): its frame
    and batch loops never read by themselves, every refill is the general
    one (`_receive_more`, called from the loop's generator)."""

    async def _fill(self) -> None:
        await super()._fill()


def _refill_loop(how: str, stream: BufferedStream) -> AsyncIterator[object]:
    codec = LengthPrefixed(10, length_size=2, on_too_long="discard")
    if how == "lines":
        return stream.lines().__aiter__()
    if how == "batches":
        return stream.lines().batches().__aiter__()
    if how == "frames":
        return stream.frames(codec).__aiter__()
    return stream.frames(codec).batches().__aiter__()


_REFILL_LOOPS = ["lines", "batches", "frames", "frame_batches"]


def _refill_wire(how: str, body: bytes) -> bytes:
    return (len(body).to_bytes(2, "big") + body) if how.startswith("frame") else body + b"\n"


@pytest.mark.parametrize("how", _REFILL_LOOPS)
async def test_a_loop_in_its_general_refill_keeps_other_receivers_out(how: str) -> None:
    """While a frame or batch loop waits in the general refill, the stream is
    busy: another task's receive is refused, and the bytes it would have
    taken reach the loop."""
    send, receive = trio.testing.memory_stream_pair()
    stream = _OwnFill(receive)
    wire = _refill_wire(how, b"abcdefgh")
    got: list[object] = []

    async def loop() -> None:
        async for step in _refill_loop(how, stream):
            got.append(step)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop)
        await send.send_all(wire[:5])
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.receive_some()
        with pytest.raises(trio.BusyResourceError):
            stream.receive_exactly_nowait(1)
        await send.send_all(wire[5:])
        await send.aclose()
    assert got == ([[b"abcdefgh"]] if how.endswith("batches") else [b"abcdefgh"])


@pytest.mark.parametrize("how", _REFILL_LOOPS)
async def test_a_loop_ends_at_an_eof_already_known_with_a_checkpoint(how: str) -> None:
    """The step that ends a loop at a clean EOF is a checkpoint even when
    the EOF was known before it (no read comes)."""
    stream = _OwnFill(ScriptedStream([_refill_wire(how, b"ab")]))
    assert await stream.fill() == 3 + how.startswith("frame")
    assert await stream.fill() == 0  # EOF, known from now on
    steps = _refill_loop(how, stream)
    assert await steps.__anext__() == ([b"ab"] if how.endswith("batches") else b"ab")  # buffered
    with trio.testing.assert_checkpoints(), pytest.raises(StopAsyncIteration):
        await steps.__anext__()


@pytest.mark.parametrize("how", ["frames", "frame_batches"])
async def test_a_loop_refilling_inside_a_skipped_frame_reports_the_eof(how: str) -> None:
    """EOF in the general refill while an over-long frame is skipped (a
    discarding codec) ends the loop with `IncompleteReadError`, not as a
    clean EOF."""
    over_long = (50).to_bytes(2, "big") + b"B" * 30  # 30 bytes of a 50-byte frame over the limit (10)
    stream = _OwnFill(ScriptedStream([_refill_wire(how, b"ok"), over_long]))
    got: list[object] = []
    with pytest.raises(FrameTooLongError):
        async for step in _refill_loop(how, stream):
            got.append(step)
    with pytest.raises(IncompleteReadError) as info:
        async for step in _refill_loop(how, stream):
            got.append(step)
    assert info.value.skipped > 0
    assert got == ([[b"ok"]] if how == "frame_batches" else [b"ok"])


@pytest.mark.parametrize(
    "codec",
    [
        Lines(20, on_too_long="discard"),
        Delimited(b"||", 20, on_too_long="discard"),
        Netstring(20, on_too_long="discard"),
        VarintPrefixed(20, on_too_long="discard"),
        LengthPrefixed(20, on_too_long="discard"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("then", ["receive_frame", "frames", "batches"])
async def test_an_over_long_frame_after_a_batch_is_reported_after_the_loop_is_left(codec: Codec, then: str) -> None:
    """A discarding codec reports an over-long frame by the call that starts
    dropping it. A batch that met one after other frames dropped it and
    kept the report for the loop's next step: leaving the loop after that
    batch lost it, the frame gone unreported. Now the batch ends before it,
    and whatever receives next reports it."""
    loose = type(codec)(b"||", 1 << 10) if isinstance(codec, Delimited) and not isinstance(codec, Lines) else None
    big = (loose or type(codec)(1 << 10)).encode(b"x" * 50)  # type: ignore[call-arg]
    wire = codec.encode(b"first") + big + codec.encode(b"third")
    stream = BufferedStream(ScriptedStream([wire]))
    async for batch in stream.frames(codec).batches():
        assert batch == [b"first"]
        break
    with pytest.raises(FrameTooLongError) as info:
        if then == "receive_frame":
            await stream.receive_frame(codec)
        else:
            loop = stream.frames(codec)
            async for _ in loop.batches() if then == "batches" else loop:
                raise AssertionError("a frame before the report")
    assert info.value.discarding
    assert await stream.receive_frame(codec) == b"third"


def _loop_raising(how: str, stream: BufferedStream) -> AsyncIterator[object]:
    """A frame or batch loop whose next step raises FrameTooLongError (the
    stream holds a line over 10 bytes after b"ok")."""
    if how == "lines":
        return stream.lines(max_size=10).__aiter__()
    if how == "batches":
        return stream.lines(max_size=10).batches().__aiter__()
    loop = stream.frames(Lines(10))
    return (loop.batches() if how == "frame_batches" else loop).__aiter__()


@pytest.mark.parametrize("how", ["lines", "batches", "frames", "frame_batches"])
@pytest.mark.parametrize("meanwhile", ["receive", "close"])
async def test_a_loop_step_raising_holds_the_stream_through_its_checkpoint(how: str, meanwhile: str) -> None:
    """A step that raises does so after a checkpoint; meanwhile the stream
    is busy, as during a per-call receive: another task's receive is refused
    (it took bytes of the frame being reported), and a close makes the step
    raise `trio.ClosedResourceError` (the buffer was emptied under its
    report)."""
    stream = BufferedStream(ScriptedStream([b"ok\n" + b"x" * 50 + b"\nrest\n"]))
    await stream.fill()
    steps = _loop_raising(how, stream)
    assert await steps.__anext__() in (b"ok", [b"ok"])
    seen: list[str] = []

    async def with_another_task() -> None:
        # (The step's only checkpoint: the one before its error.)
        if meanwhile == "receive":
            with pytest.raises(trio.BusyResourceError):
                stream.receive_exactly_nowait(3)
            seen.append("refused")
        else:
            await stream.aclose()
            seen.append("closed")
        await trio.lowlevel.checkpoint()

    expected = FrameTooLongError if meanwhile == "receive" else trio.ClosedResourceError
    with patch.object(triostream._stream, "checkpoint", with_another_task), pytest.raises(expected):
        await steps.__anext__()
    assert seen == ["refused" if meanwhile == "receive" else "closed"]
    if meanwhile == "receive":
        assert stream.receive_exactly_nowait(3) == b"xxx"  # the stream is free again


@pytest.mark.parametrize("how", ["lines", "iter_until", "Lines", "Delimited"])
async def test_a_batch_completed_in_the_general_refill_is_a_list(how: str) -> None:
    """A line longer than a read is completed in the general refill
    (`_receive_more`), which joins the line as the read that ends it is fed
    when its take returns one frame: a batch loop's take returns a list,
    and the loop yielded the joined line itself (bytes) as a batch."""
    wire = b"x" * 1500 + b"\nshort\n" + b"y" * 2500 + b"\r\nz\n"
    stream = BufferedStream(ScriptedStream([wire]), receive_size=1000)
    if how == "lines":
        loop = stream.lines().batches()
    elif how == "iter_until":
        loop = stream.iter_until(b"\n").batches()
    else:
        loop = stream.frames(Lines(65536) if how == "Lines" else Delimited(b"\n", 65536)).batches()
    batches = [batch async for batch in loop]
    assert all(type(batch) is list for batch in batches), [type(batch) for batch in batches]
    cr = b"" if how in ("lines", "Lines") else b"\r"
    assert [frame for batch in batches for frame in batch] == [b"x" * 1500, b"short", b"y" * 2500 + cr, b"z"]


@pytest.mark.parametrize(("how", "ending"), [("lines", b"\n"), ("lines", b"\r\n"), ("iter_until", b"\n")])
async def test_the_line_after_a_cut_is_joined_as_the_read_is_fed(how: str, ending: bytes) -> None:
    """Once a cut of short lines is handed out to its end, the unfinished
    tail is known to hold no delimiter: the read that follows completes the
    line that straddles into it in one step (`ReceiveBuffer._feed_first`),
    not by queueing the read (`feed`) and searching again (the take's
    `_take_straddling`, or `_take_single`), which at short lines split the
    whole read into a batch that the next cut threw away. (The takes
    themselves are not patched: the iterator recognises them.)"""
    bodies = [b"%d" % i * (1 + i % 5) for i in range(60)]
    wire = b"".join(body + ending for body in bodies)
    stream = BufferedStream(ScriptedStream([wire[i : i + 37] for i in range(0, len(wire), 37)]))
    with calls_to(ReceiveBuffer, "feed", "_take_straddling", "_take_single", "_feed_first") as calls:
        got = [frame async for frame in _line_loop(how, stream, 100)]
    assert got == bodies
    assert calls.count("_feed_first") == -(-len(wire) // 37)  # every read
    # (Except a read that starts with the \n of a \r\n: rare, left to feed
    # and the take. Here twice.)
    split_crlf = sum(wire[i - 1 : i + 1] == b"\r\n" for i in range(37, len(wire), 37))
    assert split_crlf == (2 if ending == b"\r\n" else 0)
    assert calls.count("feed") == calls.count("_take_straddling") == split_crlf
    assert calls.count("_take_single") == 0


async def test_a_connection_s_long_frame_loop_leaves_the_reads_to_its_reader_task() -> None:
    """Over a `Connection` the long frames of a read come from the loop too,
    but the head of the next frame waits for the reader task (which owns the
    transport's receive side and the read deadlines), not for a read of the
    loop's own."""
    left, right = trio.testing.memory_stream_pair()
    got = []
    with _short_long_frames(), trio.fail_after(10):
        async with open_connection(right, max_buffer_size=1024, receive_size=64) as conn:
            await left.send_all(b"aaaa\ncccc\nbb")
            async for frame in conn.lines():
                got.append(frame)
                if frame == b"cccc":
                    await trio.testing.wait_all_tasks_blocked()  # (the reader task waits in receive_some)
                    await left.send_all(b"bb\n")
                elif frame == b"bbbb":
                    break
    assert got == [b"aaaa", b"cccc", b"bbbb"]


async def test_a_long_line_in_small_reads_is_found_once_the_delimiter_comes() -> None:
    line = b"x" * 100_000
    chunks = [line[i : i + 100] for i in range(0, len(line), 100)] + [b"\r\nnext\n"]
    stream = BufferedStream(ScriptedStream(chunks), max_buffer_size=1 << 20, receive_size=100)
    assert await stream.receive_line() == line
    assert await stream.receive_line() == b"next"
    with pytest.raises(FrameTooLongError):
        await BufferedStream(ScriptedStream(chunks), max_buffer_size=1 << 20, receive_size=100).receive_line(
            max_size=50_000
        )


async def test_closing_while_a_long_frame_arrives_raises_closed() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_line()

        nursery.start_soon(receive)
        for _ in range(5):
            await left.send_all(b"x" * 100)
            await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()


@given(
    data=LINE_BYTES,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=st.integers(min_value=1, max_value=40),
    delimiter=st.sampled_from([b"\n", b"\r\n"]),
)
def test_has_frame_promises_a_frame_to_the_take_that_follows(
    data: bytes, cuts: list[int], max_size: int, delimiter: bytes
) -> None:
    """receive_line / receive_until ask `_has_frame` whether a whole frame is
    buffered before choosing how to checkpoint: when it says so, the take
    that follows returns one (and the search it remembered is right)."""
    buffer = ReceiveBuffer(1 << 16)
    twin = ReceiveBuffer(1 << 16)
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        twin.feed(chunk)
        while True:
            ready = buffer._has_frame(delimiter, max_size)
            take = buffer.take_line if delimiter == b"\n" else lambda m: buffer.take_until(delimiter, m)
            twin_take = twin.take_line if delimiter == b"\n" else lambda m: twin.take_until(delimiter, m)
            try:
                expected = twin_take(max_size)
            except FrameTooLongError:
                assert not ready
                with pytest.raises(FrameTooLongError):
                    take(max_size)
                return
            got = take(max_size)
            assert got == expected
            if ready:
                assert got is not None
            if got is None:
                break


@pytest.mark.parametrize("how", ["take_line", "take_lines", "take_until", "take_until_batch"])
def test_the_limit_is_exact_for_frames_across_three_chunks(how: str) -> None:
    """A frame of max_size bytes (its delimiter included) is taken and one of
    max_size + 1 refused, wherever the reads cut it: the byte counts carried
    from one call to the next (the search memory) must be exact."""
    delimiter = b"\n" if how.startswith("take_line") else b"|"
    max_size = 12
    for size in (max_size, max_size + 1):
        frame = b"x" * (size - 1) + delimiter
        for a in range(1, size - 1):
            for b in range(a + 1, size):
                buffer = ReceiveBuffer(1 << 16)
                outcome: object = None
                for chunk in (frame[:a], frame[a:b], frame[b:] + b"next" + delimiter):
                    buffer.feed(chunk)
                    try:
                        if how == "take_line":
                            got: object = buffer.take_line(max_size)
                        elif how == "take_lines":
                            got = buffer.take_lines(max_size)
                        elif how == "take_until":
                            got = buffer.take_until(delimiter, max_size)
                        else:
                            got = buffer.take_until_batch(delimiter, max_size)
                    except FrameTooLongError:
                        outcome = FrameTooLongError
                        break
                    if got is not None:
                        outcome = got
                        break
                if size > max_size:
                    assert outcome is FrameTooLongError, (a, b)
                else:
                    first = outcome[0] if isinstance(outcome, list) else outcome
                    assert first == frame[:-1], (a, b)


@pytest.mark.parametrize("iterate", [False, True])
async def test_the_limit_is_exact_for_lines_across_many_reads(iterate: bool) -> None:
    """The same over a stream, where reads without a delimiter are queued by
    the read loop itself (BufferedStream._receive_more), in chunks of 1-3."""
    max_size = 12
    for size in (max_size, max_size + 1):
        frame = b"x" * (size - 1) + b"\n"
        for step in (1, 2, 3):
            chunks = [frame[i : i + step] for i in range(0, len(frame), step)] + [b"next\n"]
            stream = BufferedStream(ScriptedStream(chunks), receive_size=step)
            try:
                if iterate:
                    async for line in stream.lines(max_size=max_size):
                        got: object = line
                        break
                else:
                    got = await stream.receive_line(max_size=max_size)
            except FrameTooLongError:
                got = FrameTooLongError
            assert got == (FrameTooLongError if size > max_size else frame[:-1]), (size, step)


async def test_max_size_bytes_without_a_delimiter_raise_at_once_in_small_reads() -> None:
    """Reads queued by the read loop: the call raises as soon as max_size
    bytes hold no delimiter, without waiting for another read."""
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, trio.SocketStream(b) as right:  # reads return bytes
        stream = BufferedStream(right, receive_size=3)
        await left.send_all(b"xyz" * 4)  # 12 bytes, in reads of 3, then nothing
        with trio.fail_after(5), pytest.raises(FrameTooLongError):
            await stream.receive_line(max_size=12)
        assert stream.peek() == b"xyz" * 4  # nothing consumed


@given(stream=prefixed_streams(), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_ready_promises_that_decode_does_not_wait(stream: tuple[LengthPrefixed, bytes], cuts: list[int]) -> None:
    """receive_frame asks the decoder whether a frame is whole before
    choosing how to checkpoint: when `ready` says so, `decode` returns a
    frame or raises, and never answers "more data"."""
    codec, data = stream
    decoder = codec.decoder()
    buffer = ReceiveBuffer(1 << 16)
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        while True:
            ready = decoder.ready(buffer)
            try:
                frame = decoder.decode(buffer)
            except (FrameTooLongError, CorruptFrameError, IncompleteReadError):
                return
            if ready:
                assert frame is not None
            if frame is None:
                break
    assert not Netstring(10).decoder().ready(buffer)  # the default: unsure


# ---------------------------------------------------------------- medium frames: a read's frames cut as it is fed


def _medium_lines(sizes: list[int], endings: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Lines of ``sizes`` bytes (ending included, so over `_SPLIT_FRAME_MAX`
    and under `_LONG_FRAME`: the frame loop's medium frames), and the wire."""
    pairs = enumerate(zip(sizes, endings, strict=True))
    lines = [bytes([97 + i % 26]) * (size - len(end)) + end for i, (size, end) in pairs]
    return b"".join(lines), lines


@given(
    sizes=st.lists(st.integers(min_value=520, max_value=3000), min_size=2, max_size=30),
    ending=st.sampled_from(["lf", "crlf", "mixed"]),
    reads=st.lists(st.integers(min_value=600, max_value=9000), min_size=1, max_size=20),
    steps=st.lists(st.sampled_from(["next"] * 6 + ["line", "exactly", "break"]), min_size=1, max_size=30),
    until=st.booleans(),
)
@example(sizes=[1024] * 30, ending="lf", reads=[5000], steps=["next", "break", "exactly"], until=False)
@example(sizes=[1024] * 30, ending="crlf", reads=[5000], steps=["next"] * 5 + ["line"], until=False)
def test_a_frame_loop_over_medium_lines_mixed_with_other_receives_loses_nothing(
    sizes: list[int], ending: str, reads: list[int], steps: list[str], until: bool
) -> None:
    """Lines of 0.5-3 KiB from a transport that returns bytes: the frame
    loop cuts each read's lines as it feeds it, consumes the first (the
    line that straddled into the read) and hands the others out. After any
    line, another receive in the loop's body, or a loop left and a new one
    begun: every line comes once, in order, and the stream holds what a
    plain buffer would."""
    endings = [b"\r\n" if ending == "crlf" or (ending == "mixed" and i % 3 == 1) else b"\n" for i in range(len(sizes))]
    wire, _ = _medium_lines(sizes, endings)
    chunks, at = [], 0
    for size in itertools.cycle(reads):
        if at >= len(wire):
            break
        chunks.append(wire[at : at + size])
        at += size

    def next_line(model: bytearray, strip: bool) -> bytes:
        """The model's next line (consumed), as receive_line (``strip``) or
        receive_until(b"\\n") returns it."""
        end = model.index(b"\n")
        line = bytes(model[: end - 1] if strip and end and model[end - 1] == 13 else model[:end])
        del model[: end + 1]
        return line

    async def other(op: str, stream: BufferedStream, model: bytearray) -> None:
        if op == "line" and b"\n" in model:
            assert await stream.receive_line(max_size=1 << 15) == next_line(model, True)
        elif op == "exactly" and model:
            n = min(3, len(model))
            assert await stream.receive_exactly(n) == bytes(model[:n])
            del model[:n]

    async def main() -> None:
        stream = scripted(*chunks)
        model = bytearray(wire)
        plan = itertools.cycle(steps)
        while model:
            frames = stream.iter_until(b"\n", max_size=1 << 15) if until else stream.lines(max_size=1 << 15)
            async for frame in frames:
                assert frame == next_line(model, not until)
                step = next(plan)
                if step == "break":
                    break
                await other(step, stream, model)  # in the loop's body, between two of its lines
            else:
                assert not model  # (the loop ended at EOF)
            assert bytes(model).startswith(stream.peek())
            await other(next(plan), stream, model)
        assert not stream.peek()

    trio.run(main)


async def test_a_frame_loop_over_medium_lines_cuts_each_read_in_the_loop() -> None:
    # 1 KiB lines in reads of 5000 bytes (not aligned): after the first
    # reads, each read is cut by the loop itself as it comes (not fed to
    # the buffer), and no peek cuts again.
    wire, lines = _medium_lines([1024] * 60, [b"\n"] * 60)
    stream = scripted(*[wire[i : i + 5000] for i in range(0, len(wire), 5000)])
    with calls_to(ReceiveBuffer, "feed", "_feed_first", "_feed_batch", "peek_frames") as calls:
        got = [line async for line in stream.lines(max_size=4096)]
    assert got == [line[:-1] for line in lines]
    assert -(-len(wire) // 5000) == 13  # reads
    assert "feed" not in calls and "_feed_batch" not in calls
    assert calls.count("peek_frames") <= 3
    assert len(calls) <= 4


# ---------------------------------------------------------------- receive_frame: a read fed and cut in one call


@given(
    sizes=st.lists(st.integers(min_value=520, max_value=3000), min_size=3, max_size=25),
    receive_size=st.integers(min_value=700, max_value=9000),
    steps=st.lists(st.sampled_from(["frame"] * 8 + ["nowait", "exactly", "peek"]), min_size=1, max_size=30),
    codec_kind=st.sampled_from(["prefixed", "lines-lf", "lines-mixed"]),
)
@example(sizes=[1024] * 25, receive_size=5000, steps=["frame"], codec_kind="prefixed")
@example(sizes=[1024] * 25, receive_size=5000, steps=["frame"], codec_kind="lines-mixed")
def test_a_receive_frame_loop_over_medium_frames_from_a_socket_loses_nothing(
    sizes: list[int], receive_size: int, steps: list[str], codec_kind: str
) -> None:
    """Frames of 0.5-3 KiB from a socket (whose reads are checkpoints), read
    ``receive_size`` bytes at a time by a loop of ``receive_frame`` calls
    mixed with other receives: a read is fed and cut in one call, its first
    frame returned and the others handed out. Every frame comes once, in
    order, and the stream holds what a plain buffer would. (Lines, which has
    no ``ready``, takes the plain path: checked the same way.)"""
    codec: Codec
    if codec_kind == "prefixed":
        codec = LengthPrefixed(4000)
        bodies = [bytes([97 + i % 26]) * (size - 4) for i, size in enumerate(sizes)]
        wire = b"".join(codec.encode(body) for body in bodies)
        ends = list(itertools.accumulate(size for size in sizes))
    else:
        codec = Lines(4000)
        endings = [b"\r\n" if codec_kind == "lines-mixed" and i % 3 == 1 else b"\n" for i in range(len(sizes))]
        wire, lines = _medium_lines(sizes, endings)
        bodies = [line[: -len(end)] for line, end in zip(lines, endings, strict=True)]
        ends = list(itertools.accumulate(len(line) for line in lines))

    async def main() -> None:
        a, b = trio.socket.socketpair()
        async with (
            trio.SocketStream(a) as left,
            BufferedStream(trio.SocketStream(b), receive_size=receive_size) as stream,
            trio.open_nursery() as nursery,
        ):
            assert stream._fill_checkpoints

            async def send() -> None:
                await left.send_all(wire)
                await left.send_eof()

            nursery.start_soon(send)
            got = 0  # bytes of the wire consumed
            i = 0  # the next frame
            # (Each cycle of the plan ends with a receive_frame, which waits
            # for the sender: a plan of peeks and nowaits alone would spin.)
            plan = itertools.cycle([*steps, "frame"])
            with trio.fail_after(10):
                while i < len(bodies):
                    step = next(plan)
                    if step == "frame":
                        assert await stream.receive_frame(codec) == bodies[i]
                    elif step == "nowait":
                        try:
                            frame = stream.receive_frame_nowait(codec)
                        except trio.WouldBlock:
                            continue
                        assert frame == bodies[i]
                    elif step == "exactly":
                        n = min(3, ends[i] - got - 1)  # (inside the frame)
                        if n <= 0:
                            continue
                        assert await stream.receive_exactly(n) == wire[got : got + n]
                        got += n
                        # What is left of the frame is read as bytes, not as a frame.
                        rest = ends[i] - got
                        assert await stream.receive_exactly(rest) == wire[got : ends[i]]
                    else:
                        assert wire[got:].startswith(stream.peek())
                        continue
                    got = ends[i]
                    i += 1
                with pytest.raises(IncompleteReadError) as caught:
                    await stream.receive_frame(codec)
                assert caught.value.partial == b""

    trio.run(main)


async def test_a_receive_frame_loop_over_medium_frames_reads_and_cuts_in_one_call() -> None:
    # 1 KiB length-prefixed frames from a socket in reads of 5000 bytes:
    # after the first reads, each read is fed and cut in one call, and the
    # codec's decode is not asked at all.
    codec = LengthPrefixed(2000)
    bodies = [bytes([97 + i % 26]) * 1020 for i in range(60)]
    wire = b"".join(codec.encode(body) for body in bodies)
    async with _stream_from_a_socket(wire, receive_size=5000) as stream:
        decoder = type(codec.decoder())
        with calls_to(decoder, "decode") as decodes, calls_to(BufferedStream, "_read_and_cut") as fused:
            assert [await stream.receive_frame(codec) for _ in bodies] == bodies
    reads = -(-len(wire) // 5000)
    assert len(fused) >= reads - 3
    assert len(decodes) <= 10  # (the first reads; two per read without the fused one)


@pytest.mark.parametrize("how", ["close", "cancel"])
async def test_a_receive_frame_waiting_in_its_fused_read(how: str) -> None:
    # The call that reads after a drained cut of medium frames: closed by
    # another task meanwhile, it raises ClosedResourceError saying so;
    # cancelled, it consumes nothing and the next call gets the frame.
    codec = LengthPrefixed(2000)
    bodies = [bytes([97 + i]) * 1020 for i in range(10)]
    wire = b"".join(codec.encode(body) for body in bodies)
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b)) as stream:
        await left.send_all(wire[: 6 * 1024 + 1000])  # six frames and the head of the seventh
        assert [await stream.receive_frame(codec) for _ in range(6)] == bodies[:6]
        assert stream._ahead.medium and stream._ahead.drained  # (the next call reads, fused)
        if how == "close":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_close_soon, stream)
                with pytest.raises(trio.ClosedResourceError, match="another task"):
                    await stream.receive_frame(codec)
            return
        with trio.move_on_after(0.05) as scope:
            await stream.receive_frame(codec)
        assert scope.cancelled_caught
        await left.send_all(wire[6 * 1024 + 1000 :])
        assert [await stream.receive_frame(codec) for _ in range(4)] == bodies[6:]


async def _close_soon(stream: BufferedStream) -> None:
    await trio.testing.wait_all_tasks_blocked()
    await stream.aclose()


@contextlib.asynccontextmanager
async def _stream_from_a_socket(wire: bytes, **options: int) -> AsyncIterator[BufferedStream]:
    """A BufferedStream over one end of a socket pair (its reads are full
    checkpoints, as over TCP), ``wire`` sent from the other end by a task
    meanwhile."""
    a, b = trio.socket.socketpair()
    async with (
        trio.SocketStream(a) as left,
        BufferedStream(trio.SocketStream(b), **options) as stream,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(left.send_all, wire)
        yield stream


def test_a_read_fed_and_cut_whose_frames_occupy_unknown_sizes_is_cut_again_without_a_read() -> None:
    # `_FramesAhead.fed` with frames whose sizes their lengths do not tell
    # (lines ending in \n and \r\n, extra -1): the first is consumed, the
    # others stay buffered from where the second begins, nothing is handed
    # out, and the next call must not read (``drained`` False) but cut them.
    # (Only LengthPrefixed reaches the fused read today: Lines has no
    # ``ready``, so receive_frame over lines takes the plain path.)
    endings = [b"\n", b"\r\n", b"\n", b"\n"]
    wire, lines = _medium_lines([1024] * 4, endings)
    buffer = ReceiveBuffer()
    feeds = buffer._feeds(b"\n", 4000, LINE_MODE)
    assert feeds is not None
    fed = feeds[1](wire)
    assert fed is not None
    assert fed[1] and fed[3] == -1  # (all whole frames taken; sizes unknown)
    ahead = triostream._stream._FramesAhead()
    assert ahead.fed(buffer, fed) == lines[0][:-1]
    assert ahead.prepared is None and not ahead.drained
    assert buffer._pos == ahead.at == 1024
    assert [buffer.take_line(4000) for _ in range(3)] == [line.rstrip(b"\r\n") for line in lines[1:]]
    assert buffer.take_line(4000) is None


# ---------------------------------------------------------------- receive_line, receive_until: a read joined in one go


def _line_frames(bodies: list[bytes], endings: list[bytes], how: str) -> list[bytes]:
    """What ``how`` returns for each line: the body (lines), or the bytes
    before the \\n, a \\r included (receive_until)."""
    if how.startswith("line"):
        return bodies
    return [body + end[:-1] for body, end in zip(bodies, endings, strict=True)]


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=40),
    crlf=st.lists(st.booleans(), min_size=1, max_size=7),
    receive_size=st.integers(min_value=200, max_value=9000),
    pieces=st.lists(st.integers(min_value=1, max_value=12000), min_size=1, max_size=8),
    how=st.sampled_from(["line", "until"]),
    steps=st.lists(st.sampled_from(["call"] * 4 + ["nowait", "exactly", "peek"]), min_size=1, max_size=12),
)
@example(sizes=[2900] * 30, crlf=[False], receive_size=9000, pieces=[12000], how="line", steps=["nowait"])
@example(sizes=[40, 600, 40, 40, 300], crlf=[False, True], receive_size=1000, pieces=[700], how="until", steps=["call"])
def test_receives_that_must_read_from_a_socket_lose_nothing(
    sizes: list[int], crlf: list[bool], receive_size: int, pieces: list[int], how: str, steps: list[str]
) -> None:
    """receive_line / receive_until(b"\\n") and their _nowait twins, with
    receive_exactly and peek between them, over a socket (whose reads are
    checkpoints): a call that finds no whole line buffered reads, feeds and
    joins a long line in one call (the read receive_line and receive_until
    make themselves, `_feed_first`, `_feed_cut`), or cuts
    short ones as usual. Lines of 0-3000 bytes ending in \\n or \\r\\n, sent
    in pieces of any size, read ``receive_size`` bytes at a time: every
    line comes once, in order, as a plain parse gives it."""
    endings = [b"\r\n" if crlf[i % len(crlf)] else b"\n" for i in range(len(sizes))]
    bodies = [bytes([97 + i % 26]) * size for i, size in enumerate(sizes)]
    wire = b"".join(body + end for body, end in zip(bodies, endings, strict=True))
    frames = _line_frames(bodies, endings, how)
    ends = list(itertools.accumulate(len(body) + len(end) for body, end in zip(bodies, endings, strict=True)))

    async def main() -> None:
        a, b = trio.socket.socketpair()
        async with (
            trio.SocketStream(a) as left,
            BufferedStream(trio.SocketStream(b), receive_size=receive_size, max_buffer_size=20000) as stream,
            trio.open_nursery() as nursery,
        ):
            assert stream._fill_checkpoints

            async def send() -> None:
                at = 0
                for size in itertools.cycle(pieces):
                    if at >= len(wire):
                        break
                    await left.send_all(wire[at : at + size])
                    at += size
                    await trio.lowlevel.checkpoint()
                await left.send_eof()

            async def receive() -> bytes:
                if how == "line":
                    return await stream.receive_line(max_size=8000)
                return await stream.receive_until(b"\n", max_size=8000)

            nursery.start_soon(send)
            got = 0  # bytes of the wire consumed
            i = 0
            # (Each cycle ends with a call, which waits for the sender.)
            plan = itertools.cycle([*steps, "call"])
            with trio.fail_after(20):
                while i < len(frames):
                    step = next(plan)
                    if step == "call":
                        assert await receive() == frames[i]
                    elif step == "nowait":
                        try:
                            if how == "line":
                                frame = stream.receive_line_nowait(max_size=8000)
                            else:
                                frame = stream.receive_until_nowait(b"\n", max_size=8000)
                        except trio.WouldBlock:
                            continue
                        assert frame == frames[i]
                    elif step == "exactly":
                        n = min(5, ends[i] - got - 2)  # (inside the line: what is left is still one)
                        if n <= 0:
                            continue
                        assert await stream.receive_exactly(n) == wire[got : got + n]
                        got += n
                        assert await receive() == frames[i][n:]
                    else:
                        assert wire[got:].startswith(stream.peek())
                        continue
                    got = ends[i]
                    i += 1
                with pytest.raises(IncompleteReadError) as caught:
                    await receive()
                assert caught.value.partial == b""

    trio.run(main)


def _reads_made_here(sized: list[tuple[tuple[Any, ...], dict[str, Any], Any]]) -> int:
    """How many reads receive_line and receive_until made themselves, fed
    and cut in one call (the lean read after a search that found no
    frame): the calls of `_iterator_read` that gave a size (no frame
    iterator runs in these tests)."""
    return sum(1 for _, _, size in sized if size)


@pytest.mark.parametrize("how", ["receive_line", "receive_until", "nowait"])
async def test_long_lines_from_a_socket_are_read_and_joined_in_one_call(how: str) -> None:
    # 16 KiB lines from a socket in reads of 64 KiB: a call (or the one
    # after a WouldBlock) that finds no line buffered reads and joins in
    # one call, not through _receive_lean and _receive_more.
    bodies = [bytes([97 + i % 26]) * 16384 for i in range(40)]
    wire = b"".join(body + b"\n" for body in bodies)
    async with _stream_from_a_socket(wire) as stream:
        got = []
        with (
            results_of(BufferedStream, "_iterator_read") as sized,
            calls_to(BufferedStream, "_receive_lean", "_receive_more") as calls,
        ):
            for _ in bodies:
                if how == "receive_until":
                    got.append(await stream.receive_until(b"\n"))
                    continue
                try:
                    if how == "nowait":
                        got.append(stream.receive_line_nowait())
                        continue
                except trio.WouldBlock:
                    pass
                got.append(await stream.receive_line())
    assert got == bodies
    assert _reads_made_here(sized) >= 10
    assert len(calls) <= _reads_made_here(sized) // 4


@pytest.mark.parametrize("how", ["line", "until"])
@pytest.mark.parametrize("case", ["eof", "a head of a whole read"])
async def test_a_receive_that_must_read_makes_no_fused_read_after_eof_or_behind_one_read(how: str, case: str) -> None:
    # After EOF the call raises IncompleteReadError without reading again;
    # behind a head that holds receive_size bytes or more, it reads in the
    # loop that queues reads without searching them twice (_receive_more),
    # as _iterator_read says.
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b), receive_size=1000) as stream:

        async def receive() -> bytes:
            if how == "line":
                return await stream.receive_line(max_size=8000)
            return await stream.receive_until(b"\n", max_size=8000)

        head = b"x" * (1500 if case == "a head of a whole read" else 300)
        await left.send_all(head)
        with trio.fail_after(5):
            stream.receive_size = 4000  # (the head in one chunk, nothing queued)
            while len(stream._buffer) < len(head):
                assert await stream.fill() > 0
            stream.receive_size = 1000
            assert not stream._buffer._more_len
            if case == "eof":
                await left.send_eof()
                assert await stream.fill() == 0
            with (
                results_of(BufferedStream, "_iterator_read") as sized,
                calls_to(BufferedStream, "_receive_more") as calls,
            ):
                if case == "eof":
                    with pytest.raises(IncompleteReadError) as caught:
                        await receive()
                    assert caught.value.partial == head
                else:
                    await left.send_all(b"y\n")
                    assert await receive() == head + b"y"
        assert calls == ["_receive_more"] and not _reads_made_here(sized)


@pytest.mark.parametrize("how", ["line", "until"])
async def test_a_receive_that_must_read_asks_for_no_more_than_the_buffer_has_room_for(how: str) -> None:
    # A head of 300 bytes in a buffer of 1000: the read asks for 700.
    asked: list[int] = []
    real = trio.SocketStream.receive_some

    async def receive_some(self: trio.SocketStream, max_bytes: int | None = None) -> bytes:
        asked.append(max_bytes or 0)
        return await real(self, max_bytes)

    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b), max_buffer_size=1000) as stream:
        await left.send_all(b"x" * 300)
        with trio.fail_after(5):
            assert await stream.fill() == 300
            await left.send_all(b"y" * 500 + b"\n" + b"z" * 2000)
            with patch.object(trio.SocketStream, "receive_some", receive_some):
                if how == "line":
                    assert await stream.receive_line() == b"x" * 300 + b"y" * 500
                else:
                    assert await stream.receive_until(b"\n") == b"x" * 300 + b"y" * 500
    assert asked == [700]


@pytest.mark.parametrize("transport", ["receive_some", "socket"])
@pytest.mark.parametrize("how", ["line", "until", "iterator"])
async def test_a_frame_that_spans_reads_is_read_no_further_than_the_buffer_has_room_for(
    transport: str, how: str
) -> None:
    # A line longer than a whole read is read in _receive_more's loop that
    # queues reads without a delimiter: each read asks for receive_size
    # while that fits, then for the room left (500 of 2500), so the buffer
    # never holds more than max_buffer_size. The frame is then too long,
    # and stays buffered whole.
    body = b"x" * 2600
    asked: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        if transport == "socket":
            a, b = trio.socket.socketpair()
            left = await stack.enter_async_context(trio.SocketStream(a))
            await left.send_all(body)
            asked = stack.enter_context(counting_os_reads()).asked
            transport_stream: trio.abc.Stream = trio.SocketStream(b)
        else:
            scripted = ScriptedStream([body])
            transport_stream = scripted
        stream = await stack.enter_async_context(
            BufferedStream(transport_stream, max_buffer_size=2500, receive_size=1000)
        )
        assert (stream._socket_stream is not None) == (transport == "socket")
        with trio.fail_after(5), pytest.raises(FrameTooLongError):
            if how == "line":
                await stream.receive_line()
            elif how == "until":
                await stream.receive_until(b"\n")
            else:
                await stream.lines().__anext__()
        if transport == "receive_some":
            asked = [n or 0 for n in scripted.requests]
        assert asked == [1000, 1000, 500]
        assert stream.peek() == body[:2500]


@contextlib.asynccontextmanager
async def _stream_over_tls() -> AsyncIterator[tuple[trio.SSLStream[trio.SocketStream], BufferedStream]]:
    """The client's end of a TLS connection over a socket pair (handshake
    done), and a BufferedStream over the server's end."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.org").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    a, b = trio.socket.socketpair()
    client = trio.SSLStream(trio.SocketStream(a), client_context, server_hostname="example.org")
    server = trio.SSLStream(trio.SocketStream(b), server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    async with client, BufferedStream(server) as stream:
        yield client, stream


@pytest.mark.parametrize("transport", ["socket", "tls"])
async def test_a_cancelled_receive_that_must_read_raises_cancelled_over_a_closed_transport(transport: str) -> None:
    # The read's cancel point comes first on every path: over a socket the
    # socket's own (a recv checks for a cancellation before anything else),
    # over TLS the receive's, since trio.SSLStream raises its closed state
    # before its first cancel point. Not cancelled, the call raises that
    # ClosedResourceError.
    async with contextlib.AsyncExitStack() as stack:
        if transport == "tls":
            _, stream = await stack.enter_async_context(_stream_over_tls())
        else:
            a, b = trio.socket.socketpair()
            await stack.enter_async_context(trio.SocketStream(a))
            stream = await stack.enter_async_context(BufferedStream(trio.SocketStream(b)))
        assert stream._lean_reads
        await stream.transport_stream.aclose()  # (the transport alone, not the stream)
        with (
            trio.CancelScope() as scope,
            results_of(BufferedStream, "_iterator_read") as sized,
            calls_to(BufferedStream, "_read_failed") as calls,
        ):
            scope.cancel()
            await stream.receive_line()
        assert scope.cancelled_caught and _reads_made_here(sized) == 1
        # (Over a socket the read's own cancel point raised, inside the read;
        # over TLS the call's, before it.)
        assert calls == (["_read_failed"] if transport == "socket" else [])
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_line()


@pytest.mark.parametrize("transport", ["socket", "tls"])
async def test_a_read_over_a_socket_makes_no_cancel_point_of_its_own(transport: str) -> None:
    # Polled 16 KiB lines (receive_line after each WouldBlock): over a
    # socket the reads receive_line makes itself make no checkpoint_if_cancelled
    # before the socket's (only the lean receive, when it runs, makes one);
    # over TLS each makes one.
    bodies = [bytes([97 + i % 26]) * 16384 for i in range(30)]
    wire = b"".join(body + b"\n" for body in bodies)
    cancel_points: list[None] = []
    real = trio.lowlevel.checkpoint_if_cancelled

    async def counted() -> None:
        cancel_points.append(None)
        await real()

    async with contextlib.AsyncExitStack() as stack:
        if transport == "tls":
            client, stream = await stack.enter_async_context(_stream_over_tls())
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(client.send_all, wire)
        else:
            stream = await stack.enter_async_context(_stream_from_a_socket(wire))
        got = []
        with (
            patch.object(triostream._stream, "checkpoint_if_cancelled", counted),
            results_of(BufferedStream, "_iterator_read") as sized,
            calls_to(BufferedStream, "_receive_lean") as calls,
            trio.fail_after(10),
        ):
            for _ in bodies:
                try:
                    got.append(stream.receive_line_nowait())
                except trio.WouldBlock:
                    got.append(await stream.receive_line())
    assert got == bodies
    assert _reads_made_here(sized) >= 10
    if transport == "tls":
        assert len(cancel_points) == _reads_made_here(sized) + len(calls)
    else:
        assert len(cancel_points) == len(calls)


@pytest.mark.parametrize("how", ["line", "until"])
async def test_a_receive_waiting_in_its_read_for_a_line(how: str) -> None:
    # Nothing of the line buffered but its head: cancelled in the read, the
    # call consumes nothing (the next gets the whole line); closed by
    # another task meanwhile, it raises ClosedResourceError saying so.
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b)) as stream:

        async def receive() -> bytes:
            if how == "line":
                return await stream.receive_line()
            return await stream.receive_until(b"\n")

        head = b"x" * 600
        await left.send_all(b"first\n" + head)
        assert await receive() == b"first"
        with trio.move_on_after(0.05) as scope, results_of(BufferedStream, "_iterator_read") as sized:
            await receive()
        assert scope.cancelled_caught and _reads_made_here(sized) == 1
        assert stream.peek() == head
        await left.send_all(b"y" * 600 + b"\n" + head)
        assert await receive() == head + b"y" * 600
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_soon, stream)
            with pytest.raises(trio.ClosedResourceError, match="another task"):
                await receive()


async def test_a_line_over_max_size_found_by_the_read_raises_and_keeps_the_bytes() -> None:
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b)) as stream:
        await left.send_all(b"x" * 300)
        with pytest.raises(trio.WouldBlock):
            stream.receive_line_nowait(max_size=1000)  # (nothing buffered yet)
        with trio.fail_after(5):
            with pytest.raises(FrameTooLongError):
                await stream.receive_line(max_size=200)  # (it reads until over max_size)
            # Buffered without a \n, max_size bytes or more: raised again
            # without a read (the peer sends nothing meanwhile).
            with pytest.raises(FrameTooLongError):
                await stream.receive_line(max_size=200)
            with pytest.raises(FrameTooLongError):
                await stream.receive_until(b"\n", max_size=200)
        await left.send_all(b"y" * 900 + b"\nz\n")
        with trio.fail_after(5), pytest.raises(FrameTooLongError):
            await stream.receive_line(max_size=1000)  # (it reads until over max_size)
        # The line's end is buffered now, past max_size: raised again, without
        # a read.
        with trio.fail_after(5):
            with pytest.raises(FrameTooLongError):
                await stream.receive_line(max_size=1000)
            with pytest.raises(FrameTooLongError):
                await stream.receive_until(b"\n", max_size=1000)
        assert stream.peek()[:300] == b"x" * 300
        assert await stream.receive_exactly(1200) == b"x" * 300 + b"y" * 900
        assert await stream.receive_line(max_size=1000) == b""
        assert await stream.receive_line(max_size=1000) == b"z"


@pytest.mark.parametrize("how", ["line", "until", "line_nowait", "until_nowait"])
async def test_a_receive_finds_a_line_in_chunks_queued_behind_the_searched_ones_without_a_read(how: str) -> None:
    # The head of a line is searched (no \n in it) and fill() queued a chunk
    # that ends it: the call takes the line without reading (the peer sends
    # nothing more meanwhile).
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b)) as stream:
        await left.send_all(b"abc")
        with trio.fail_after(5):
            assert await stream.fill() == 3
            with pytest.raises(trio.WouldBlock):
                stream.receive_line_nowait()  # (searches the head)
            await left.send_all(b"def\nghi")
            while stream._buffer._more_len < 7:
                assert await stream.fill() > 0  # (queued behind "abc")
            if how == "line":
                assert await stream.receive_line() == b"abcdef"
            elif how == "until":
                assert await stream.receive_until(b"\n") == b"abcdef"
            elif how == "line_nowait":
                assert stream.receive_line_nowait() == b"abcdef"
            else:
                assert stream.receive_until_nowait(b"\n") == b"abcdef"


@pytest.mark.parametrize("how", ["line", "until", "nowait", "until_nowait"])
async def test_a_read_of_awaited_receives_is_cut_in_one_pass_and_a_polling_loop_s_is_not(how: str) -> None:
    # 1 KiB lines from a socket in reads of 8 KiB. A loop of awaited
    # receive_line / receive_until calls: the read a call makes is cut in
    # one pass (ReceiveBuffer._feed_cut), its other lines left as the
    # buffer's batch for the next calls. A loop that polls with
    # receive_line_nowait (receive_until_nowait) first (WouldBlock, then
    # the awaited call): each read only completes the line it straddles
    # (_feed_first, its test made); the takes slice the others as they go.
    bodies = [bytes([97 + i % 26]) * 1023 for i in range(100)]
    wire = b"".join(body + b"\n" for body in bodies)
    async with _stream_from_a_socket(wire, receive_size=8192) as stream:
        got = []
        batches = 0
        with (
            results_of(ReceiveBuffer, "_feed_first") as firsts,
            results_of(ReceiveBuffer, "_feed_batch") as cuts,
            calls_to(ReceiveBuffer, "_feed_cut", "_feed_first", "_feed_batch") as calls,
        ):
            for _ in bodies:
                if how == "nowait":
                    try:
                        got.append(stream.receive_line_nowait())
                        continue
                    except trio.WouldBlock:
                        got.append(await stream.receive_line())
                elif how == "until_nowait":
                    try:
                        got.append(stream.receive_until_nowait(b"\n"))
                        continue
                    except trio.WouldBlock:
                        got.append(await stream.receive_until(b"\n"))
                elif how == "line":
                    got.append(await stream.receive_line())
                else:
                    got.append(await stream.receive_until(b"\n"))
                batches += stream._buffer._batch_len > 2
    assert got == bodies
    reads = -(-len(wire) // 8192)
    if how.endswith("nowait"):
        assert calls.count("_feed_cut") == calls.count("_feed_batch") == batches == 0
        assert calls.count("_feed_first") >= reads - 3
        # (The receive's search made _feed_first's test: each call skips it.)
        assert [(args[3:5], kwargs) for args, kwargs, _ in firsts] == [((256, True), {})] * len(firsts)
    else:
        assert calls.count("_feed_cut") >= reads - 3
        # (Each read cut in one pass, its first line joined by _feed_cut
        # itself, whose test the receive's search made: not through
        # _feed_first, nor _feed_batch.)
        assert calls.count("_feed_first") == 0 and not firsts and not cuts
        assert batches >= 50  # (the calls after a read pop its lines)


@pytest.mark.parametrize("ending", [b"\r\n", b"mixed"])
async def test_lines_ending_in_crlf_cut_in_one_pass_are_popped_with_their_cr_stripped(ending: bytes) -> None:
    # Lines ending in \r\n (all, or some): the read is cut, its first line
    # returned, the others left as the buffer's batch with their \r, which
    # each pop strips; every line comes once, and the calls after a read
    # pop its lines (before, the cut dropped such lines, whose sizes their
    # lengths did not tell, and the takes sliced them one by one).
    endings = [b"\r\n" if ending == b"\r\n" or i % 3 == 1 else b"\n" for i in range(60)]
    bodies = [bytes([97 + i % 26]) * 1000 for i in range(60)]
    wire = b"".join(body + end for body, end in zip(bodies, endings, strict=True))
    async with _stream_from_a_socket(wire, receive_size=8192) as stream:
        got, batches = [], 0
        with calls_to(ReceiveBuffer, "_feed_cut") as calls, trio.fail_after(5):
            for _ in bodies:
                got.append(await stream.receive_line())
                batches += stream._buffer._batch_len > 2
    assert got == bodies
    assert len(calls) >= 3
    assert batches >= 30


async def test_lines_cut_in_one_pass_for_receive_until_are_stripped_when_receive_line_takes_them() -> None:
    # receive_until(b"\n")'s read cuts frames that keep their \r; a
    # receive_line that pops one of them strips it, as it would have.
    bodies = [bytes([97 + i % 26]) * 600 for i in range(12)]
    wire = b"".join(body + b"\r\n" for body in bodies)
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as left, BufferedStream(trio.SocketStream(b), receive_size=8192) as stream:
        await left.send_all(wire)
        with trio.fail_after(5):
            assert await stream.receive_until(b"\n") == bodies[0] + b"\r"
            assert stream._buffer._batch_len > 2  # (the batch this is about)
            assert [await stream.receive_line() for _ in bodies[1:6]] == bodies[1:6]
            assert stream.receive_line_nowait() == bodies[6]
            assert await stream.receive_until(b"\n") == bodies[7] + b"\r"


async def test_a_read_of_awaited_receives_of_lines_under_512_bytes_is_not_cut_in_one_pass() -> None:
    # 400-byte lines: _feed_batch would split them (sizes untold) and the
    # takes split them again; the read joins the line it ends, no more.
    bodies = [bytes([97 + i % 26]) * 399 for i in range(200)]
    wire = b"".join(body + b"\n" for body in bodies)
    async with _stream_from_a_socket(wire, receive_size=8192) as stream:
        with calls_to(ReceiveBuffer, "_feed_cut", "_feed_batch") as calls:
            assert [await stream.receive_line() for _ in bodies] == bodies
    assert calls.count("_feed_cut") >= 5
    assert calls.count("_feed_batch") == 0


@pytest.mark.parametrize("how", ["line", "until"])
async def test_a_nowait_receive_over_a_head_of_max_size_without_a_delimiter_raises_frame_too_long(how: str) -> None:
    stream = BufferedStream(ScriptedStream([b"x" * 300]))
    await stream.fill()
    with pytest.raises(FrameTooLongError):
        if how == "line":
            stream.receive_line_nowait(max_size=300)
        else:
            stream.receive_until_nowait(b"\n", max_size=300)
    with pytest.raises(trio.WouldBlock):
        if how == "line":
            stream.receive_line_nowait(max_size=301)
        else:
            stream.receive_until_nowait(b"\n", max_size=301)
