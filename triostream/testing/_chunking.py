"""`ChunkedStream`: deliver a stream's bytes in pieces of chosen sizes.

Real transports cut data wherever they like: a TCP segment boundary, a TLS
record, a kernel buffer filling up. Code that assumes one ``receive_some``
returns one message works on a developer's loopback and breaks in
production. `ChunkedStream` makes the cuts explicit and reproducible, and
`chunkings` lets a property test try many of them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, TypeAlias

import trio
from trio.lowlevel import checkpoint

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["ChunkSizes", "ChunkedStream", "chunkings"]

#: What `ChunkedStream` accepts as ``chunks``: a fixed size, sizes in order,
#: or a function of the piece index.
ChunkSizes: TypeAlias = int | Iterable[int] | Callable[[int], int]

_BUSY_RECEIVE = "another task is already receiving from this ChunkedStream"
_BUSY_SEND = "another task is already sending on this ChunkedStream"
_CLOSED = "this ChunkedStream was closed"


def _chunk_size(size: int) -> int:
    """Validate one chunk size: an int >= 1 (bools refused)."""
    if isinstance(size, bool):
        raise TypeError(f"a chunk size must be an int, not {size!r}")
    value = operator.index(size)  # TypeError for non-integers
    if value < 1:
        raise ValueError(f"chunk sizes must be >= 1, not {value}")
    return value


class _Sizes:
    """The size limit of the k-th piece (None: no limit), from a ``chunks`` argument."""

    def __init__(self, chunks: ChunkSizes) -> None:
        self._fixed: int | None = None
        self._function: Callable[[int], int] | None = None
        self._seen: list[int] = []  # sizes drawn so far (cycled once the source runs out)
        self._source: Iterator[int] | None = None
        if isinstance(chunks, int):
            self._fixed = _chunk_size(chunks)
        elif callable(chunks):
            self._function = chunks
        elif isinstance(chunks, Collection):
            # A finite collection: validate all of it now, for an early error.
            self._seen = [_chunk_size(size) for size in chunks]
        elif isinstance(chunks, Iterable):
            self._source = iter(chunks)
        else:
            raise TypeError(f"chunks must be an int, an iterable of ints or a callable, not {chunks!r}")

    def __call__(self, index: int) -> int | None:
        if self._fixed is not None:
            return self._fixed
        if self._function is not None:
            return _chunk_size(self._function(index))
        seen = self._seen
        if index < len(seen):
            return seen[index]
        if self._source is not None:
            # Draws happen in index order: index == len(seen) here.
            size = next(self._source, None)
            if size is not None:
                seen.append(_chunk_size(size))
                return seen[-1]
            self._source = None  # exhausted: cycle what it gave
        if not seen:
            return None  # an empty iterable: whole reads
        return seen[index % len(seen)]


class ChunkedStream(trio.abc.Stream):
    """A `trio.abc.Stream` whose ``receive_some`` returns pieces of chosen sizes.

    Wraps ``stream`` and returns its bytes unchanged, in order, nothing lost,
    nothing added, but cut into pieces whose sizes come from ``chunks``. Use
    it under the code being tested (your protocol, a `triostream.BufferedStream`)
    to check that it does not depend on how the transport happened to cut the
    data.

    Args:
      stream: the stream to read from and write to. The ChunkedStream owns
        it: `aclose` closes it.
      chunks: the largest size of each piece, in order of the pieces:

        * an ``int`` *n* >= 1: every piece is at most *n* bytes; ``1`` is
          one byte at a time, the harshest chunking;
        * an iterable of ints >= 1: the k-th piece is at most the k-th size.
          When the iterable runs out, its sizes start over (they are
          *cycled*), so a short list such as ``[3, 1, 5]`` cuts a stream of
          any length. An empty iterable means **whole reads**: each piece is
          whatever one read of ``stream`` returned, as if no ChunkedStream
          were there. A finite collection (list, tuple, range) is validated
          at construction; an iterator is read lazily, and the sizes it gave
          are kept to be cycled (one int per piece: for very long runs from
          an infinite source prefer a callable);
        * a callable ``size(k) -> int``: the limit of the k-th piece
          (counting from 0), called once per piece, in order.

        A size that is not an int >= 1 raises `ValueError` or `TypeError`
        (at construction for ints and collections, otherwise from the
        ``receive_some`` that draws it).

    **How pieces are cut.** Each non-empty piece returned draws the next
    size *s* and is at most ``min(s, max_bytes)`` bytes: a size is an upper
    bound, never a promise. The ChunkedStream keeps a *leftover* buffer:
    when it is empty, ``receive_some`` makes exactly one read of ``stream``
    (passing ``max_bytes`` through) and returns the first piece of it,
    keeping the rest; when it is not, the piece comes from the leftover
    without touching ``stream``. It never reads more to fill a piece up to
    *s* (that could block on a peer that is waiting for an answer), so a
    piece can be shorter than *s* when the underlying read was short. The
    index *k* counts pieces returned, not calls: a call that is cancelled,
    raises or returns ``b""`` draws no size, so a given ``chunks`` cuts the
    same bytes the same way whatever happens around it. At most one read of
    ``stream`` is buffered, so the leftover holds at most what that read
    returned (at most ``max_bytes`` when the caller gives it).

    **The stream contract.** ``receive_some`` is a full checkpoint on every
    path: when it reads, ``stream.receive_some`` is the checkpoint; when it
    serves the leftover, it calls `trio.lowlevel.checkpoint` first and cuts
    the piece only afterwards, so a cancellation consumes nothing. ``b""``
    (EOF) is returned only once the leftover is empty, and then on every
    later call, as ``stream`` returns it. Two tasks receiving at once get
    `trio.BusyResourceError`; after `aclose` every method raises
    `trio.ClosedResourceError` (``aclose`` itself is idempotent) and the
    leftover is dropped. ``max_bytes`` must be an int >= 1 or None
    (`ValueError`, `TypeError`).

    Sending is passed straight through to ``stream``: `send_all`,
    `wait_send_all_might_not_block` and `send_eof` are ``stream``'s own, with
    its checkpoints and errors; the ChunkedStream only adds the detection of
    two of them running at once (`trio.BusyResourceError`, which not every
    stream detects between ``send_all`` and ``send_eof``). Over a `trio.abc.HalfCloseableStream` the
    instance is one too (a private subclass, for ``isinstance`` checks such
    as `trio.testing.check_half_closeable_stream`'s) and `send_eof`
    delegates; over other streams ``send_eof`` raises `NotImplementedError`
    after a checkpoint (`can_send_eof` tells in advance). The wrapper passes
    `trio.testing.check_half_closeable_stream` over half-closeable streams
    and `trio.testing.check_two_way_stream` over the others (with sizes that
    let its megabyte transfer finish in reasonable time; one byte at a time
    is a checkpoint per byte).

    Example, a property test with `chunkings`::

        @given(chunking=chunkings(), payload=st.binary())
        def test_my_decoder(chunking: list[int], payload: bytes) -> None:
            async def main() -> None:
                left, right = trio.testing.memory_stream_pair()
                await left.send_all(encode(payload))
                await left.send_eof()
                assert await my_decode(ChunkedStream(right, chunking)) == payload

            trio.run(main)

    Attributes:
      transport_stream: the wrapped stream.
    """

    def __new__(cls, stream: trio.abc.Stream, chunks: ChunkSizes) -> ChunkedStream:
        # Over a half-closeable stream, be one too (isinstance checks).
        if cls is ChunkedStream and isinstance(stream, trio.abc.HalfCloseableStream):
            cls = _HalfCloseableChunkedStream
        return super().__new__(cls)

    def __init__(self, stream: trio.abc.Stream, chunks: ChunkSizes) -> None:
        self.transport_stream: trio.abc.Stream = stream
        self._sizes = _Sizes(chunks)
        self._pieces = 0
        self._leftover = b""
        self._position = 0  # _leftover[:_position] was handed out already
        self._receiving = False
        self._sending = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<ChunkedStream over {self.transport_stream!r}, {self.buffered} bytes left over>"

    @property
    def buffered(self) -> int:
        """How many bytes are in the leftover (read from the wrapped stream,
        not returned yet)."""
        return len(self._leftover) - self._position

    @property
    def pieces(self) -> int:
        """How many non-empty pieces `receive_some` has returned (the index of
        the next size drawn)."""
        return self._pieces

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return the next piece: at most the next chunk size and at most
        ``max_bytes`` bytes, or ``b""`` at EOF.

        Serves the leftover when there is one (after a checkpoint), else
        makes one read of the wrapped stream. A full checkpoint.

        Raises:
          ValueError: ``max_bytes`` < 1, or a drawn chunk size < 1.
          TypeError: ``max_bytes`` or a chunk size is not an int.
          trio.BusyResourceError: another task is receiving.
          trio.ClosedResourceError: the stream was closed.

        Anything the wrapped stream's ``receive_some`` raises passes through.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        if self._receiving:
            raise trio.BusyResourceError(_BUSY_RECEIVE)
        self._receiving = True
        try:
            if self._closed:
                await checkpoint()
                raise trio.ClosedResourceError(_CLOSED)
            if self._position < len(self._leftover):
                await checkpoint()
                if self._closed:  # closed by another task during the checkpoint
                    raise trio.ClosedResourceError(_CLOSED)
            else:
                data = await self.transport_stream.receive_some(max_bytes)
                if not data:
                    return b""
                self._leftover = bytes(data)
                self._position = 0
            return self._cut(max_bytes)
        finally:
            self._receiving = False

    def _cut(self, max_bytes: int | None) -> bytes:
        """Take the next piece from the (non-empty) leftover; synchronous."""
        size = self._sizes(self._pieces)  # may raise for a bad size: nothing consumed then
        start = self._position
        available = len(self._leftover) - start
        n = available if size is None else min(size, available)
        if max_bytes is not None and max_bytes < n:
            n = max_bytes
        piece = self._leftover[start : start + n]
        self._pieces += 1
        if n == available:
            self._leftover = b""
            self._position = 0
        else:
            self._position = start + n
        return piece

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """The wrapped stream's ``send_all`` (`trio.abc.SendStream` contract)."""
        if self._sending:
            raise trio.BusyResourceError(_BUSY_SEND)
        self._sending = True
        try:
            await self.transport_stream.send_all(data)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """The wrapped stream's ``wait_send_all_might_not_block``."""
        if self._sending:
            raise trio.BusyResourceError(_BUSY_SEND)
        self._sending = True
        try:
            await self.transport_stream.wait_send_all_might_not_block()
        finally:
            self._sending = False

    @property
    def can_send_eof(self) -> bool:
        """Whether the wrapped stream is half-closeable, so `send_eof` works."""
        return isinstance(self.transport_stream, trio.abc.HalfCloseableStream)

    async def send_eof(self) -> None:
        """The wrapped stream's ``send_eof`` (`trio.abc.HalfCloseableStream`).

        Over a stream that cannot half-close, raises `NotImplementedError`
        after a checkpoint, leaving the stream as it was.
        """
        stream = self.transport_stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            await checkpoint()
            raise NotImplementedError(f"{type(stream).__name__} cannot send EOF (half-close)")
        if self._sending:
            raise trio.BusyResourceError(_BUSY_SEND)
        self._sending = True
        try:
            await stream.send_eof()
        finally:
            self._sending = False

    async def aclose(self) -> None:
        """Close the wrapped stream and drop the leftover. Idempotent; a
        checkpoint. A receive blocked in the wrapped stream in another task
        gets `trio.ClosedResourceError` (from the wrapped stream)."""
        self._closed = True
        self._leftover = b""
        self._position = 0
        await self.transport_stream.aclose()


class _HalfCloseableChunkedStream(ChunkedStream, trio.abc.HalfCloseableStream):
    """What `ChunkedStream` instantiates over a `trio.abc.HalfCloseableStream`."""


def chunkings(max_chunk: int = 64) -> SearchStrategy[list[int]]:
    """A hypothesis strategy of ``chunks`` arguments for `ChunkedStream`.

    Draws lists of chunk sizes: ``[]`` (whole reads: every piece is what one
    read of the wrapped stream returned, the gentlest case), ``[1]`` (one
    byte at a time, the harshest), or a non-empty list of up to 16 sizes in
    ``1..max_chunk``, which `ChunkedStream` cycles. Shrinking goes towards
    ``[]``, then ``[1]``, then short lists of small sizes, so a failure is
    reported with the simplest chunking that shows it.

    Hypothesis is imported when this function is called, not when the module
    is imported: the rest of the harness works without it.

    Args:
      max_chunk: the largest chunk size drawn (>= 1). Sizes around the
        lengths of your protocol's headers and frames find the most bugs.

    Raises:
      ValueError: ``max_chunk`` < 1.
      ModuleNotFoundError: hypothesis is not installed.
    """
    max_chunk = operator.index(max_chunk)
    if max_chunk < 1:
        raise ValueError(f"max_chunk must be >= 1, not {max_chunk}")
    from hypothesis import strategies as st

    return st.one_of(
        st.just([]),
        st.just([1]),
        st.lists(st.integers(min_value=1, max_value=max_chunk), min_size=1, max_size=16),
    )
