"""Unit tests of the pure ReceiveBuffer: no trio, no I/O."""

from __future__ import annotations

import itertools
import re
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import triostream._buffer
from triostream import FrameTooLongError, ReceiveBuffer
from triostream._buffer import normalize_delimiters


def buffer_of(*chunks: bytes, capacity: int = 65536, eof: bool = False) -> ReceiveBuffer:
    buffer = ReceiveBuffer(capacity)
    for chunk in chunks:
        buffer.feed(chunk)
    if eof:
        buffer.feed_eof()
    return buffer


# ---------------------------------------------------------------- delimiters


def test_normalize_delimiters() -> None:
    assert normalize_delimiters(b"\n") == b"\n"
    assert normalize_delimiters(bytearray(b"ab")) == b"ab"
    assert normalize_delimiters((b"\r\n",)) == b"\r\n"
    assert normalize_delimiters((b"a", b"b", b"a")) == (b"a", b"b")
    for bad in (b"", (), (b"a", b"")):
        with pytest.raises(ValueError):
            normalize_delimiters(bad)
    with pytest.raises(TypeError):
        normalize_delimiters("\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        normalize_delimiters((b"a", "b"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- take_until


def test_take_until_basic_and_keep_delimiter() -> None:
    buffer = buffer_of(b"ab|cd|e")
    assert buffer.take_until(b"|", 100) == b"ab"
    assert buffer.take_until(b"|", 100, keep_delimiter=True) == b"cd|"
    assert buffer.take_until(b"|", 100) is None
    assert len(buffer) == 1
    buffer.feed(b"f|")
    assert buffer.take_until(b"|", 100) == b"ef"
    assert len(buffer) == 0


def test_take_until_multibyte_delimiter_split_across_feeds() -> None:
    buffer = buffer_of(b"head\r\n\r")
    assert buffer.take_until(b"\r\n\r\n", 100) is None
    buffer.feed(b"\nbody")
    assert buffer.take_until(b"\r\n\r\n", 100) == b"head"
    assert buffer.peek() == b"body"


def test_take_until_max_size_counts_delimiter() -> None:
    # "abc\n" is 4 bytes consumed.
    assert buffer_of(b"abc\n").take_until(b"\n", 4) == b"abc"
    with pytest.raises(FrameTooLongError) as info:
        buffer_of(b"abc\n").take_until(b"\n", 3)
    assert info.value.max_size == 3
    # A delimiter found beyond max_size in one chunk is refused (anyio's bug).
    buffer = buffer_of(b"x" * 50 + b"\n")
    with pytest.raises(FrameTooLongError):
        buffer.take_until(b"\n", 10)
    assert len(buffer) == 51, "nothing consumed"
    # No delimiter yet but max_size bytes buffered: cannot end in time.
    with pytest.raises(FrameTooLongError):
        buffer_of(b"x" * 10).take_until(b"\n", 10)
    assert buffer_of(b"x" * 9).take_until(b"\n", 10) is None


def test_tuple_delimiters_earliest_then_longest() -> None:
    buffer = buffer_of(b"a\r\nb\rc\nd;", eof=False)
    delims = normalize_delimiters((b"\r", b"\r\n", b"\n", b";"))
    assert buffer.take_until(delims, 100) == b"a"
    assert buffer.take_until(delims, 100, keep_delimiter=True) == b"b\r"
    assert buffer.take_until(delims, 100) == b"c"
    assert buffer.take_until(delims, 100) == b"d"
    assert buffer.take_until(delims, 100) is None


def test_tuple_shorter_delimiter_waits_for_next_byte() -> None:
    delims = normalize_delimiters((b"\r", b"\r\n"))
    buffer = buffer_of(b"abc\r")
    assert buffer.take_until(delims, 100) is None, "b'\\r' could still become b'\\r\\n'"
    buffer.feed(b"\n")
    assert buffer.take_until(delims, 100, keep_delimiter=True) == b"abc\r\n"
    # The next byte decides for the short one.
    buffer.feed(b"x\ry")
    assert buffer.take_until(delims, 100, keep_delimiter=True) == b"x\r"
    # EOF decides for the short one.
    buffer = buffer_of(b"abc\r", eof=True)
    assert buffer.take_until(delims, 100, keep_delimiter=True) == b"abc\r"
    # So does a full buffer (no more data can come).
    buffer = buffer_of(b"abc\r", capacity=4)
    assert buffer.take_until(delims, 100, keep_delimiter=True) == b"abc\r"


def test_tuple_pending_match_at_earlier_position() -> None:
    # b"c" is found at 3 but b"abcd" may still complete at 1: wait.
    delims = normalize_delimiters((b"abcd", b"c"))
    buffer = buffer_of(b"xabc")
    assert buffer.take_until(delims, 100) is None
    buffer.feed(b"d")
    assert buffer.take_until(delims, 100) == b"x"


def test_tuple_delimiters_too_long() -> None:
    delims = normalize_delimiters((b"\r\n", b"\n"))
    with pytest.raises(FrameTooLongError):
        buffer_of(b"abcd\r\n").take_until(delims, 5)
    assert buffer_of(b"abc\r\n").take_until(delims, 5) == b"abc"
    with pytest.raises(FrameTooLongError):
        buffer_of(b"abcde").take_until(delims, 5)


# ---------------------------------------------------------------- lines, exactly, regex, all


def test_take_line_strips_one_cr() -> None:
    buffer = buffer_of(b"a\r\nb\n\r\r\n\n")
    assert buffer.take_line(100) == b"a"
    assert buffer.take_line(100) == b"b"
    assert buffer.take_line(100) == b"\r"
    assert buffer.take_line(100) == b""
    assert buffer.take_line(100) is None
    with pytest.raises(FrameTooLongError):
        buffer_of(b"abc\r\n").take_line(4)
    assert buffer_of(b"abc\r\n").take_line(5) == b"abc"


def test_take_exactly_and_some() -> None:
    buffer = buffer_of(b"abc", b"def")
    assert buffer.take_exactly(0) == b""
    assert buffer.take_exactly(7) is None
    assert buffer.take_exactly(4) == b"abcd"
    assert buffer.take_some(1) == b"e"
    assert buffer.take_some() == b"f"
    assert buffer.take_some() == b""


def test_take_regex() -> None:
    pattern = re.compile(rb"\r?\n")
    buffer = buffer_of(b"ab\r\ncd\nef")
    assert buffer.take_regex(pattern, 100) == b"ab"
    assert buffer.take_regex(pattern, 100, keep_delimiter=True) == b"cd\n"
    assert buffer.take_regex(pattern, 100) is None
    with pytest.raises(FrameTooLongError):
        buffer_of(b"abcdef\n").take_regex(pattern, 5)
    with pytest.raises(ValueError, match="empty"):
        buffer_of(b"abc").take_regex(re.compile(rb"x*"), 10)


def test_take_all() -> None:
    buffer = buffer_of(b"abc")
    assert buffer.take_all(10) is None
    buffer.feed_eof()
    assert buffer.take_all(10) == b"abc"
    with pytest.raises(FrameTooLongError):
        buffer_of(b"abcd").take_all(3)


def test_discard_until_keeps_possible_delimiter_start() -> None:
    buffer = buffer_of(b"xxxxxx\r\n\r")
    assert buffer.discard_until(b"\r\n\r\n") == (6, False)
    assert buffer.peek() == b"\r\n\r"
    buffer.feed(b"\nrest")
    assert buffer.discard_until(b"\r\n\r\n") == (4, True)
    assert buffer.peek() == b"rest"


def test_unreceive_and_peek() -> None:
    buffer = buffer_of(b"world\n")
    buffer.unreceive(b"hello ")
    assert buffer.peek(3) == b"hel"
    assert buffer.take_line(100) == b"hello world"
    buffer.unreceive(b"again\n")
    assert buffer.take_line(100) == b"again"


def test_unreceive_moves_the_offset_back() -> None:
    """Bytes pushed back count as not consumed (the offset's contract): the
    offset moves back by as many bytes (not items of a typed memoryview),
    and consuming them again moves it forward as before; never below 0.
    Before, `unreceive` counted them as fed on top, and the offset ran
    ahead of the stream by every byte pushed back."""
    buffer = buffer_of(b"0123456789abc")
    assert buffer.take_exactly(10) == b"0123456789"
    assert buffer.offset == 10
    buffer.unreceive(b"789")
    assert buffer.offset == 7
    assert buffer.take_exactly(4) == b"789a"
    assert buffer.offset == 11
    buffer.unreceive(memoryview(b"9a").cast("H"))  # one item, two bytes
    assert buffer.offset == 9
    assert buffer.take_line(100) is None and buffer.peek() == b"9abc"
    fresh = ReceiveBuffer()
    fresh.unreceive(b"hello")  # more than was consumed: counted as received first
    assert fresh.offset == 0
    assert fresh.take_exactly(2) == b"he"
    assert fresh.offset == 2
    fresh.feed(b" world")
    assert fresh.take_exactly(9) == b"llo world"
    assert fresh.offset == 11


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.take_exactly(-1), ValueError),
        (lambda b: b.take_exactly(-7), ValueError),
        (lambda b: b.take_exactly(1.5), TypeError),
        (lambda b: b.take_exactly(True), TypeError),
        (lambda b: b.take_some(0), ValueError),
        (lambda b: b.take_some(-1), ValueError),
        (lambda b: b.skip(-1), ValueError),
        (lambda b: b.peek(-1), ValueError),
        (lambda b: b.peek(2.0), TypeError),
        (lambda b: b.take_until(b"", 100), ValueError),
        (lambda b: b.take_until((b"", b"\n"), 100), ValueError),
        (lambda b: b.take_until_batch(b"", 100), ValueError),
        (lambda b: b.discard_until(b""), ValueError),
        (lambda b: b.discard_until((b";", b"")), ValueError),
    ],
)
def test_bad_arguments_raise_at_the_call_and_consume_nothing(
    call: Callable[[ReceiveBuffer], object], error: type[Exception]
) -> None:
    """The buffer is public (custom codecs take frames from it): a negative
    size or an empty delimiter is an error at the call, with nothing
    consumed. Before, ``take_exactly(-1)`` returned and consumed all but the
    last buffered byte (or, further in, moved the cursor back: bytes handed
    out twice), ``take_some(0)`` returned ``b""`` with bytes buffered, and an
    empty delimiter gave empty frames for ever."""
    for consumed in (0, 5):  # (the cursor at the start of its chunk, and further in)
        buffer = buffer_of(b"0123;\nhello\nworld\n", b"more\n")
        buffer.skip(consumed)
        before, offset = buffer.peek(), buffer.offset
        with pytest.raises(error):
            call(buffer)
        assert buffer.peek() == before and buffer.offset == offset
        assert buffer.take_line(100) == before[: before.index(b"\n")]


@pytest.mark.parametrize(
    ("capacity", "error"), [(0, ValueError), (-1, ValueError), ("64", TypeError), (True, TypeError)]
)
def test_a_bad_capacity_is_refused(capacity: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ReceiveBuffer(capacity)  # type: ignore[arg-type]


def test_feed_after_eof_is_an_error() -> None:
    buffer = buffer_of(eof=True)
    with pytest.raises(RuntimeError):
        buffer.feed(b"x")


# ---------------------------------------------------------------- linear time, no copies


def test_search_resumes_where_it_stopped() -> None:
    """A trickled frame is searched once: the resume point follows the data."""
    buffer = ReceiveBuffer(1 << 20)
    buffer.feed(b"x" * 10)
    assert buffer.take_until(b"\r\n", 1 << 20) is None
    # Only the last byte (which could start b"\r\n") will be searched again.
    assert buffer._snext - buffer._pos == 9
    for i in range(1, 5000):
        buffer.feed(b"x")
        assert buffer.take_until(b"\r\n", 1 << 20) is None
        # Chunks that arrive behind the tail wait unjoined, each searched once.
        assert buffer._qsearched == len(buffer._more) == i
    buffer.feed(b"\r")
    buffer.feed(b"\n")  # the delimiter straddles two chunks
    assert buffer.take_until(b"\r\n", 1 << 20) == b"x" * 5009


class CountingData:
    """Stands in for the buffer's storage and counts the bytes ``find`` scans.

    Only a prefix of ``whole`` is visible, so a test can reveal it byte by byte
    as a trickling peer would, without the storage being replaced.
    """

    def __init__(self, whole: bytes) -> None:
        self.whole = whole
        self.visible = 0
        self.scanned = 0

    def __len__(self) -> int:
        return self.visible

    def __getitem__(self, index: slice) -> bytes:
        return self.whole[: self.visible][index]

    def find(self, sub: bytes, start: int = 0) -> int:
        self.scanned += max(self.visible - start, 0)
        return self.whole[: self.visible].find(sub, start)


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n\r\n", (b"\r\n", b"\n")])
def test_trickled_frame_is_scanned_in_linear_time(
    delimiter: bytes | tuple[bytes, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triostream._buffer, "_SMALL_COPY", 1 << 30)  # copy out by slicing
    size = 20_000
    data = CountingData(b"a" * size + b"\r\n\r\n")
    buffer = ReceiveBuffer(1 << 20)
    buffer._data = data  # type: ignore[assignment]
    delims = normalize_delimiters(delimiter)
    frame = None
    while frame is None:
        data.visible += 1
        frame = buffer.take_until(delims, 1 << 20)
    assert frame == (b"a" * size + b"\r" if delimiter == b"\n" else b"a" * size)
    # Each byte is scanned a bounded number of times (a rescanning search
    # would scan size**2 / 2 = 200 million bytes here).
    assert data.scanned <= 4 * (size + 4), data.scanned


def test_search_memory_survives_errors() -> None:
    buffer = buffer_of(b"y" * 100)
    with pytest.raises(FrameTooLongError):
        buffer.take_until(b"\n", 50)
    assert buffer._snext == 100, "the failed search is not repeated"


def test_multi_delimiter_search_does_not_rescan() -> None:
    # Many short frames ended by b";" and one b"|" far away: the b"|" search
    # must be remembered, not repeated per frame.
    delims = normalize_delimiters((b";", b"|"))
    buffer = buffer_of(b"a;" * 1000 + b"|")
    for _ in range(1000):
        assert buffer.take_until(delims, 100) == b"a"
        assert buffer._mfound[1] == 2000, "the b'|' occurrence stays known"
    assert buffer.take_until(delims, 100) == b""


def test_trickled_feed_does_not_copy_the_buffer() -> None:
    """Appending one byte to a large buffer allocates O(1), not O(buffer)."""
    buffer = ReceiveBuffer(1 << 22)
    buffer.feed(b"z" * (1 << 21))
    buffer.feed(b"z")
    assert buffer.take_until(b"\n", 1 << 22) is None  # now a growing bytearray
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(1000):
            buffer.feed(b"z")
            assert buffer.take_until(b"\n", 1 << 22) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 256 * 1024, f"a trickled byte allocated {peak - base} bytes"


def test_consuming_small_frames_does_not_copy_the_rest() -> None:
    buffer = ReceiveBuffer(1 << 22)
    buffer.feed(b"line\n" * 200_000)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(1000):
            assert buffer.take_line(100) == b"line"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 64 * 1024


# ---------------------------------------------------------------- properties


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(
    frames=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_lines_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(f + b"\n" for f in frames)
    buffer = ReceiveBuffer(1 << 16)
    out: list[bytes] = []
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        while (frame := buffer.take_until(b"\n", 1 << 16)) is not None:
            out.append(frame)
    assert out == frames
    assert len(buffer) == 0


@given(
    frames=st.lists(st.binary(max_size=30), max_size=20),
    delimiter=st.sampled_from([b"\r\n", b"\r\n\r\n", b"ab", b"\x00"]),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_until_any_chunking(frames: list[bytes], delimiter: bytes, cuts: list[int]) -> None:
    frames = [f for f in frames if delimiter not in f + delimiter[:-1] and not (f + delimiter).startswith(delimiter)]
    frames = [f for f in frames if (f + delimiter).find(delimiter) == len(f)]
    data = b"".join(f + delimiter for f in frames)
    buffer = ReceiveBuffer(1 << 16)
    out: list[bytes] = []
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        while (frame := buffer.take_until(delimiter, 1 << 16)) is not None:
            out.append(frame)
    assert out == frames


@given(
    data=st.binary(max_size=200).map(lambda b: bytes(x % 4 + 97 for x in b)),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_tuple_delimiters_match_a_reference_splitter(data: bytes, cuts: list[int]) -> None:
    """Incremental results equal splitting the whole data at once."""
    delims_arg = (b"ab", b"b", b"cd", b"dda")
    delims = normalize_delimiters(delims_arg)

    def reference(whole: bytes) -> list[bytes]:
        frames: list[bytes] = []
        pos = 0
        while True:
            best: tuple[int, int] | None = None
            for d in delims_arg:
                i = whole.find(d, pos)
                if i >= 0 and (best is None or i < best[0] or (i == best[0] and len(d) > best[1])):
                    best = (i, len(d))
            if best is None:
                return frames
            frames.append(whole[pos : best[0]])
            pos = best[0] + best[1]

    buffer = ReceiveBuffer(1 << 16)
    out: list[bytes] = []
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        while (frame := buffer.take_until(delims, 1 << 16)) is not None:
            out.append(frame)
    buffer.feed_eof()
    while (frame := buffer.take_until(delims, 1 << 16)) is not None:
        out.append(frame)
    assert out == reference(data)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=50), max_size=30),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_exactly_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    frames = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    data = b"".join(frames)
    buffer = ReceiveBuffer(1 << 16)
    out: list[bytes] = []
    want = iter(sizes)
    n = next(want, None)
    for chunk in chunked(data, cuts):
        buffer.feed(chunk)
        while n is not None and (frame := buffer.take_exactly(n)) is not None:
            out.append(frame)
            n = next(want, None)
    while n is not None and (frame := buffer.take_exactly(n)) is not None:
        out.append(frame)
        n = next(want, None)
    assert out == frames


# ---------------------------------------------------------------- differential: against a naive model


class NaiveBuffer:
    """The obviously correct (and quadratic) reference: one bytes object."""

    def __init__(self) -> None:
        self.data = b""

    def _until(self, delimiter: bytes, max_size: int) -> tuple[int, int] | None:
        i = self.data.find(delimiter)
        if i < 0:
            if len(self.data) >= max_size:
                raise FrameTooLongError(max_size)
            return None
        if i + len(delimiter) > max_size:
            raise FrameTooLongError(max_size)
        return i, i + len(delimiter)

    def take_line(self, max_size: int) -> bytes | None:
        found = self._until(b"\n", max_size)
        if found is None:
            return None
        frame, self.data = self.data[: found[0]], self.data[found[1] :]
        return frame[:-1] if frame.endswith(b"\r") else frame

    def take_until(self, delimiter: bytes, max_size: int, keep: bool) -> bytes | None:
        found = self._until(delimiter, max_size)
        if found is None:
            return None
        frame, self.data = self.data[: found[1] if keep else found[0]], self.data[found[1] :]
        return frame

    def take_exactly(self, n: int) -> bytes | None:
        if len(self.data) < n:
            return None
        frame, self.data = self.data[:n], self.data[n:]
        return frame

    def take_regex(self, pattern: re.Pattern[bytes], max_size: int) -> bytes | None:
        match = pattern.search(self.data, 0, min(len(self.data), max_size))
        if match is None:
            if len(self.data) >= max_size:
                raise FrameTooLongError(max_size)
            return None
        frame, self.data = self.data[: match.start()], self.data[match.end() :]
        return frame


PATTERN = re.compile(rb"\r?\n")
CHUNKS = st.one_of(
    st.binary(max_size=30).map(lambda b: b.translate(bytes.maketrans(b"\x00\x01", b"\n\r"))),
    st.sampled_from([b"\n", b"\r\n", b"ab\r", b"\n\r\n", b"x" * 300 + b"\n", b"y\n" * 40, b"\r\n\r\n"]),
)
TAKES = st.one_of(
    st.tuples(st.just("take_line"), st.integers(1, 400)),
    st.tuples(
        st.just("take_until"),
        st.sampled_from([b"\n", b"\r\n", b"\r\n\r\n", b"ab"]),
        st.integers(1, 400),
        st.booleans(),
    ),
    st.tuples(st.just("take_exactly"), st.integers(0, 90)),
    st.tuples(st.just("take_regex"), st.just(PATTERN), st.integers(1, 400)),
    st.tuples(st.just("some"), st.integers(1, 50)),
    st.tuples(st.just("peek"), st.integers(0, 90)),
    st.tuples(st.just("into"), st.integers(0, 90)),
)
# Rounds of a few feeds then a few takes, so chunks queue up behind tails.
OPS = st.lists(
    st.tuples(st.lists(st.tuples(st.just("feed"), CHUNKS), max_size=3), st.lists(TAKES, min_size=1, max_size=4)),
    max_size=25,
).map(lambda rounds: [op for feeds, takes in rounds for op in feeds + takes])


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except FrameTooLongError as exc:
        return ("too long", exc.max_size)


@given(ops=OPS)
def test_buffer_matches_a_naive_model(ops: list[tuple[Any, ...]]) -> None:
    """Any interleaving of feeds and takes (so queued chunks, batches, tails,
    straddling frames) gives what a naive single-bytes buffer gives."""
    real = ReceiveBuffer(1 << 16)
    model = NaiveBuffer()
    for name, *args in ops:
        if name == "feed":
            real.feed(args[0])
            model.data += args[0]
            continue
        if name == "peek":
            assert real.peek(args[0]) == model.data[: args[0]]
        elif name == "some":
            got = real.take_some(args[0])
            # Only the contiguous part may come back, but never nothing.
            assert (got == b"") == (model.data == b"")
            assert model.data.startswith(got) and len(got) <= args[0]
            model.data = model.data[len(got) :]
        elif name == "into":
            view = memoryview(bytearray(args[0]))
            n = real.take_into(view)
            assert bytes(view[:n]) == model.data[: args[0]]
            model.data = model.data[n:]
        else:
            expected = outcome(lambda: getattr(model, name)(*args))  # noqa: B023
            assert outcome(lambda: getattr(real, name)(*args)) == expected, (name, args)  # noqa: B023
        assert len(real) == len(model.data)
    assert real.peek() == model.data
