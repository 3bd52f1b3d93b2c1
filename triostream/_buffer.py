"""The receive buffer: pure, synchronous, no I/O and no trio import.

`ReceiveBuffer` holds the bytes that arrived from a transport and not yet
handed out, and cuts frames out of them. It is the sans-I/O half of
`triostream.BufferedStream`: the Trio layer feeds it what the transport
returns and asks it for frames; everything about *where a frame ends* lives
here, where it can be tested without an event loop.

The plan
--------

Most reads bring whole frames and the head of the next one, so the buffer is
built to hand frames out of the chunk the transport returned, without
copying the chunk, and to copy a frame once, when it is cut:

* **The chunk and its queue.** The unconsumed bytes are ``_data[_pos:]``,
  then the queued chunks ``_more`` (the first one from ``_more_off``),
  ``_more_len`` bytes in all. ``_data`` is usually a chunk as it came (a
  ``bytes``, adopted without a copy when everything before it was consumed);
  a chunk that arrives behind an unconsumed tail is queued, unjoined. A
  frame that straddles chunks is joined once, when its end is found, and
  the chunk it ends in becomes ``_data``, again without a copy. Only what
  needs one contiguous region (a tuple of delimiters, a regular expression,
  `peek` past ``_data``, a codec's header split across chunks, `unreceive`)
  merges queued chunks into ``_data``: a small tail is joined to the chunk,
  a larger one goes into a ``bytearray`` that grows in place.
* **Search memory.** A search that fails remembers how far it looked, so
  the next one resumes there: for one delimiter (``_skey``, ``_snext``, an
  index into ``_data``), for the queued chunks (``_qkey``, ``_qgen``,
  ``_qpos`` and the ``_qsearched`` chunks already searched) and for a tuple
  of delimiters (``_mkey``, ``_mfound``, ``_mscan``). The memory survives
  failed calls (``None`` results, `FrameTooLongError`, a cancelled caller)
  and is dropped when it could be wrong: ``_gen`` changes whenever ``_data``
  or the queue head is replaced, and `unreceive` forgets everything.
* **The batch.** A short frame with more bytes after it is not cut alone:
  a window of ``_data`` after it is split in one ``bytes.split``
  (``_batch``, ``_batch_key``; ``_batch_window`` doubles while batches are
  used up, up to ``_BATCH_MAX``), and the next takes with the same
  delimiter pop ``_batch[_batch_next]`` and move ``_pos`` past it. Any
  other way of consuming drops the batch first (`_drop_batch`).
* **Frames cut ahead.** The frame iterators ask `peek_frames` for the
  whole frames at the head of ``_data`` *without* consuming them, hand them
  out one by one and move ``_pos`` past them afterwards (the stream settles
  the cursor first if anything else looks at the buffer meanwhile).
* **A read fed and cut in one call.** `_feed_first`, `_feed_batch`,
  `_feed_cut` (and a codec's twins, see `FrameDecoder._bind_feed`) take a
  read in the usual state (nothing queued, no batch, no EOF, the tail
  searched) and cut the frame it completes, or all of its frames, as they
  adopt it; in any other state they just `feed` it and return ``None``.
  They exist for speed: each is a few Python calls fewer per read than
  `feed` and a take (see their docstrings for what they measured).

Invariants
----------

* ``0 <= _pos <= len(_data)``; queued chunks follow ``_data[_pos:]``, and
  when ``_data`` is used up the first one is adopted (`_adopt_next`).
* A search memory entry for a key says: there is no match starting in
  ``[_pos, _snext)`` (resp. in the first ``_qsearched`` queued chunks).
* ``_batch[_batch_next:_batch_len]`` are the next frames at ``_pos``, each
  followed by ``_batch_key``, ending at ``_batch_end``; ``_batch_cr`` says
  whether a line among them may end in ``\\r``.
* Every ``take_*`` method either returns a whole frame and consumes exactly
  its bytes, returns ``None`` and consumes nothing (more data is needed), or
  raises and consumes nothing. So does every route above.

Cost (the "linear" house rule)
------------------------------

* ``feed`` is O(1) for a ``bytes`` chunk (adopted or queued), O(chunk)
  for any other (one copy); it never copies the buffer. A merge costs
  O(chunk) amortized: a tail is joined only when it is no longer than the
  chunk, and a bytearray is compacted only when more than half of it is
  consumed.
* For a given delimiter each byte is searched once, however it trickles in
  (a frame arriving one byte per read costs O(frame) in all, not
  O(frame**2)), and copied into its frame once, plus the amortized merges
  above. The split work a dropped batch wastes stays within a constant
  factor of the bytes consumed: the window restarts at
  ``_BATCH_MIN_WINDOW`` bytes after a drop and doubles only while batches
  are used up.
* Worst case: `take_regex` cannot resume a search and rescans at most
  ``max_size`` bytes per call; a tuple of delimiters searches each one, so
  its cost is O(bytes x delimiters).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable
from itertools import islice

from ._errors import FrameTooLongError
from ._options import check_non_negative, check_positive

__all__ = ["Delimiters", "ReceiveBuffer"]

#: A single delimiter, or a tuple of alternatives (see `normalize_delimiters`,
#: which is internal: `triostream` does not export it).
Delimiters = bytes | tuple[bytes, ...]
# A frame iterator's read fed and cut in one call (see ReceiveBuffer._feeds).
FeedFirst = Callable[[bytes | bytearray], "bytes | None"]
# A batch iterator's read fed and cut in one call: the frames, and whether
# they were all the whole frames buffered (then a take finds nothing until
# more bytes come, and raises nothing).
FeedBatch = Callable[[bytes | bytearray], "tuple[list[bytes], bool, int, int] | None"]
# Both, then the second's twin for a read that the caller knows follows the
# state its test checks (see ReceiveBuffer._feed_batch's ``tested``): the
# frame iterators' own reads after a cut (FrameDecoder._bind_feed).
Feeds = tuple[FeedFirst, FeedBatch, FeedBatch]

_delimiter_cache: dict[object, Delimiters] = {}

_LF = b"\n"
# Modes of ReceiveBuffer._take_single.
_PLAIN, _KEEP, _STRIP_CR = 0, 1, 2
# For ReceiveBuffer.peek_frames (used by the frame iterators).
LINE_MODE, PLAIN_MODE = _STRIP_CR, _PLAIN
# Batches (see ReceiveBuffer._take_single): only for frames of at most
# _BATCH_FRAME_MAX bytes (for longer ones copying dominates the per-call
# overhead a batch saves), when at least _BATCH_MIN bytes follow the frame,
# split in a window that starts at _BATCH_MIN_WINDOW bytes and doubles.
_BATCH_FRAME_MAX = 256
_BATCH_MIN = 64
_BATCH_MIN_WINDOW = 1024
_BATCH_MAX = 1 << 16

# Frames cut together (_region_frames): with one bytes.split up to this size,
# above it with a find per frame (see _find_frames).
_SPLIT_FRAME_MAX = 512

# Lines cut by _find_frames: below this size (the first line's) one find for
# \r over the chunk, above it a test per line (see there). _feed_batch: the
# same test per line above it; below it, unless the second line ends in
# \r\n, one find for \r after the loop (see there).
_CR_SCAN_FRAME_MAX = 2048

# A frame joined from the end of one chunk and the start of the next: below
# this size as two slices added (two copies more), above it through
# memoryviews (one copy, but four objects and the buffer protocol). Hot
# cache, Python 3.11: 1 KiB frames 221 against 372 ns, 4 KiB 266 against 411,
# 16 KiB 407 against 444.
_JOIN_COPY_MAX = 8192

# Below this size a frame is copied out with a plain slice; above it through a
# memoryview, which avoids the intermediate bytearray a slice would create.
_SMALL_COPY = 1024


def normalize_delimiters(delimiter: bytes | bytearray | memoryview | tuple[bytes, ...]) -> Delimiters:
    """Validate a delimiter argument and return its canonical form.

    A single bytes-like delimiter becomes ``bytes``; a tuple becomes a tuple of
    distinct ``bytes`` in their original order, or plain ``bytes`` if it holds
    only one. Empty delimiters and empty tuples raise `ValueError`; other
    types raise `TypeError`. Results are cached, so calling this per receive
    is cheap.
    """
    if type(delimiter) is bytes and delimiter:
        return delimiter
    try:
        return _delimiter_cache[delimiter]
    except (KeyError, TypeError):
        pass
    result: Delimiters
    if isinstance(delimiter, tuple):
        if not delimiter:
            raise ValueError("the tuple of delimiters is empty")
        items: list[bytes] = []
        for item in delimiter:
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise TypeError(f"delimiters must be bytes, not {type(item).__name__}")
            b = bytes(item)
            if not b:
                raise ValueError("a delimiter may not be empty")
            if b not in items:
                items.append(b)
        result = items[0] if len(items) == 1 else tuple(items)
    elif isinstance(delimiter, (bytes, bytearray, memoryview)):
        result = bytes(delimiter)
        if not result:
            raise ValueError("the delimiter may not be empty")
    else:
        raise TypeError(f"delimiter must be bytes or a tuple of bytes, not {type(delimiter).__name__}")
    if isinstance(delimiter, tuple):
        if len(_delimiter_cache) >= 256:
            _delimiter_cache.clear()
        _delimiter_cache[delimiter] = result
    return result


def _has_long_frame(data: bytes, delimiter: bytes, start: int, stop: int, max_size: int) -> bool:
    """Whether a frame of ``data[start:stop]`` (which ends with ``delimiter``,
    as does each frame) is longer than ``max_size``, its delimiter included.

    Steps from frame boundary to frame boundary, each step to the last
    delimiter that ends within ``max_size`` bytes (one ``rfind``), so the
    steps are about (stop - start) / max_size, however short the frames;
    no step means a frame over the limit. A list of the frames' sizes cost
    batches of 16-byte lines cut with ``max_size=512`` more than the cut
    itself (ReceiveBuffer alone, 64 KiB chunks, minimum of 15 rounds: 238
    µs per read, 102 without a limit; with this check 123)."""
    size = len(delimiter)
    while stop - start > max_size:
        last = data.rfind(delimiter, start, start + max_size)
        if last < 0:
            return True
        start = last + size
    return False


def _cut_rest(
    chunk: bytes, start: int, i: int, delimiter: bytes, max_size: int, strip: bool, batch: list[bytes]
) -> tuple[int, int, int]:
    """The frames of ``chunk`` from ``start``, the first ending at the
    one-byte ``delimiter`` found at ``i`` (>= 0), appended to ``batch``
    (which holds the frame before them, already tested against
    ``max_size``): the hand-written find loop, with ``strip`` (lines) one
    ``\\r`` before each delimiter dropped. Stops before a frame of
    ``max_size`` bytes or more (it stays for the next take to raise).
    Returns where the frames cut end (past the last one's delimiter), the
    next delimiter (-1: none after them; else the end of that frame over
    the limit) and how many of them ended in ``\\r\\n``.

    Lines of `_CR_SCAN_FRAME_MAX` bytes and more, or ``\\r\\n`` ones (the
    first tells), are tested one by one for the ``\\r`` and the limit;
    other frames are cut by the find loop alone, the limit tested once at
    C speed (only when the frames span more than it) and, for lines, the
    ``\\r`` found by one scan after the loop. (Before, the limit per frame
    with the test for \\r was 16 of 41 instructions per line: 1 KiB lines
    in reads of 8-64 KiB, in one process, cachegrind, lines() 7,311 ->
    7,229 instructions per line, the find-loop generator 6,249. The scan
    after the loop runs over bytes it just read; before it, over bytes not
    yet in the cache, it cost 46 ns per 1 KiB line: a batch loop 487 ->
    441 ns per line without it, the split loop 428.) The test for a \\r
    needs no ``i > start``: the byte before ``start`` is the delimiter
    that ends the frame before.

    The cut of `ReceiveBuffer._feed_batch` and of the iterators' loops
    over their own reads (`BatchIterator._batches`,
    `FrameIterator._frames`). One call per read, not the loop written out
    in each of the three: A/B of the two versions (medians of per-round
    ratios), in one process (15 rounds, fastest of 3) at 16 KiB lines
    the batch loop 0.911x -> 0.906x of `split batches` (about a call per
    read), at 1 KiB lines the frame and batch loops within 1 % either way;
    over TCP (21 rounds) within the spread both ways. (The batch loop
    writes out the loop for long lines again: measured later at 16 KiB
    lines with the contract floor beside it, the call was 1.6 % of that
    loop's time per line.) O(bytes cut).
    """
    # (The loops call batch.append, not a bound method kept in a local:
    # Python 3.11 and later run such a call as a specialized instruction;
    # 1 KiB lines in reads of 8-64 KiB, in one process, a batch loop 503 ->
    # 490 ns per line. Python 3.10 was the other way round, by about as
    # much, measured alone.)
    at = start
    crs = 0
    if strip and (i - start >= _CR_SCAN_FRAME_MAX or (i > 0 and chunk[i - 1] == 13)):
        while i >= 0 and i - start < max_size:
            if chunk[i - 1] == 13:
                batch.append(chunk[start : i - 1])
                crs += 1
            else:
                batch.append(chunk[start:i])
            start = i + 1
            i = chunk.find(delimiter, start)
        return start, i, crs
    first = len(batch)
    while i >= 0:
        batch.append(chunk[start:i])
        start = i + 1
        i = chunk.find(delimiter, start)
    if start - at > max_size and max(map(len, batch)) >= max_size:
        # A frame over the limit: the batch ends before it.
        k = first
        start = at
        while len(batch[k]) < max_size:
            start += len(batch[k]) + 1
            k += 1
        i = start + len(batch[k])
        del batch[k:]
    if strip and chunk.find(b"\r", at, start) >= 0:
        # Some line ends in \r\n after all (mixed endings; or a \r inside
        # a line): strip them now.
        for k in range(first, len(batch)):
            if batch[k][-1:] == b"\r":
                batch[k] = batch[k][:-1]
                crs += 1
    return start, i, crs


class ReceiveBuffer:
    """Bytes received and not yet consumed, with incremental frame search.

    Args:
      capacity: the size at which the owner stops reading more into the
        buffer. The buffer does not refuse bytes beyond it; it only uses it to
        know that, once full, no more data will come to settle an open
        question (see the tuple rule in `take_until`). An int >= 1
        (`ValueError`, `TypeError` otherwise).

    Attributes:
      capacity: as given (the owner may change it).

    The buffer also records end-of-file (`feed_eof`): after it, frames that
    would need more bytes can never complete, and ambiguous delimiter matches
    are settled with what is there.

    **For custom codecs.** A `triostream.FrameDecoder` gets the stream's
    buffer in ``decode(buffer)`` and may use: ``len(buffer)`` and
    ``bool(buffer)`` (bytes buffered), `eof`, `offset` (for error messages),
    `peek` (look without consuming), and the consuming methods `take_exactly`,
    `take_until`, `take_line`, `take_regex`, `skip` and `discard_until`. Each
    ``take_*`` method consumes a whole frame or nothing, so a decoder that
    checks ``len(buffer)`` against the frame's size before consuming keeps the
    all-or-nothing rule. The other methods (`feed`, `feed_eof`, `unreceive`,
    `clear`, `take_some`, `take_into`, `take_all`) belong to whoever owns the
    buffer (a `triostream.BufferedStream`, a `triostream.FrameParser`), not
    to decoders.
    """

    capacity: int

    __slots__ = (
        "_batch",
        "_batch_cr",
        "_batch_end",
        "_batch_key",
        "_batch_len",
        "_batch_next",
        "_batch_window",
        "_data",
        "_eof",
        "_fed",
        "_gen",
        "_mfound",
        "_mkey",
        "_more",
        "_more_len",
        "_more_off",
        "_mscan",
        "_pos",
        "_qcarry",
        "_qgen",
        "_qkey",
        "_qpos",
        "_qsearched",
        "_qtotal",
        "_skey",
        "_snext",
        "capacity",
    )

    def __init__(self, capacity: int = 65536) -> None:
        capacity = check_positive("capacity", capacity)
        # _data[_pos:] is the unconsumed content. _data is bytes while that is
        # cheap (it lets fresh chunks be adopted without a copy and frames be
        # sliced out with one), and a bytearray while a long frame accumulates.
        self._data: bytes | bytearray = b""
        self._pos = 0
        # Chunks fed while _data still held a tail wait here, unjoined, so a
        # frame straddling two chunks costs a copy of that frame, not of the
        # next chunk: _more[0][_more_off:], then _more[1:], follow _data[_pos:];
        # _more_len is how many bytes that is.
        self._more: deque[bytes] = deque()
        self._more_off = 0
        self._more_len = 0
        # _gen changes whenever _data or the queue head is replaced or _data
        # grows; within one generation _pos only moves forward. What
        # _take_across searched in the queue is valid while _qkey, _qgen and
        # _qpos still hold: the first _qsearched chunks have no delimiter,
        # _qtotal bytes with the tail, whose last len(delimiter) - 1 bytes
        # are _qcarry.
        self._gen = 0
        self._qkey: bytes | None = None
        self._qgen = self._qpos = self._qsearched = self._qtotal = 0
        self._qcarry = b""
        self._eof = False
        self._fed = 0  # bytes fed in all, minus those pushed back (see unreceive): gives `offset`
        self.capacity = capacity
        # Single-delimiter search memory: searching _skey from _snext (an index
        # into _data) finds the next occurrence, i.e. there is none starting
        # in [_pos, _snext).
        self._skey: bytes | None = None
        self._snext = 0
        # Tuple-of-delimiters search memory, one slot per delimiter: _mfound[i]
        # is the index of its next occurrence when >= _pos (else stale), and
        # _mscan[i] is where to resume searching.
        self._mkey: tuple[bytes, ...] | None = None
        self._mfound: list[int] = []
        self._mscan: list[int] = []
        # A batch: the frames that follow _pos, split from the buffer in one
        # go. _batch[_batch_next:_batch_len] are the next frames (delimited by
        # _batch_key, not included); any other consumption empties it.
        self._batch: list[bytes] = []
        self._batch_key: bytes | None = None
        self._batch_next = 0
        self._batch_len = 0
        self._batch_window = _BATCH_MIN_WINDOW
        self._batch_cr = True  # may a line of the batch end in \r?
        self._batch_end = 0  # where the batch's last frame (and its delimiter) ends in _data

    # ------------------------------------------------------------------ state

    def __len__(self) -> int:
        return len(self._data) - self._pos + self._more_len

    def __bool__(self) -> bool:
        return len(self._data) > self._pos or self._more_len > 0

    def __repr__(self) -> str:
        return f"<ReceiveBuffer {len(self)} bytes{' eof' if self._eof else ''}>"

    @property
    def eof(self) -> bool:
        """True once `feed_eof` was called: no more bytes will arrive."""
        return self._eof

    @property
    def offset(self) -> int:
        """The stream offset of the next byte to be consumed, that is how
        many bytes were consumed so far. Bytes pushed back with `unreceive`
        count as not consumed: it moves the offset back by as many bytes,
        not below 0 (more than were consumed count as received first). For
        error messages such as `CorruptFrameError`'s."""
        return self._fed - (len(self._data) - self._pos + self._more_len)  # len(self), inlined: hot

    @property
    def room(self) -> int:
        """How many bytes can be fed before reaching `capacity` (never negative)."""
        room = self.capacity - len(self)
        return room if room > 0 else 0

    def _final(self) -> bool:
        """True when no more data can arrive to settle a pending match."""
        return self._eof or len(self) >= self.capacity

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Amortized O(len(chunk)); never copies the
        whole buffer. Raises `RuntimeError` after `feed_eof`."""
        if type(chunk) is not bytes:
            chunk = memoryview(chunk).cast("B")  # count bytes, not items
        size = len(chunk)
        if not size:
            return
        if self._eof:
            raise RuntimeError("data fed after EOF")
        self._fed += size
        if not self._more_len and len(self._data) == self._pos and type(chunk) is bytes:
            # Everything before was consumed: adopt the chunk, no copy. The
            # search memory is about consumed bytes: forget it.
            self._data = chunk
            self._pos = 0
            self._gen += 1
            self._skey = None
            self._mkey = None
        elif self._more_len or len(self._data) > self._pos:
            # Behind a tail: queue it; the next frame search joins only what
            # it needs (see _take_across).
            self._more.append(chunk if type(chunk) is bytes else bytes(chunk))
            self._more_len += size
        else:
            self._append(chunk)

    def _append(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add ``chunk`` to _data itself (the queue must be empty)."""
        self._gen += 1
        data = self._data
        pos = self._pos
        remaining = len(data) - pos
        if not remaining:
            self._set_data(chunk if type(chunk) is bytes else bytes(chunk), pos)
        elif type(data) is bytearray:
            if pos > remaining:
                # Compact when more than half is dead: O(remaining), amortized
                # against the consumed bytes.
                del data[:pos]
                self._shift(pos)
            data += chunk
        elif remaining <= len(chunk):
            # A small tail: joining costs O(len(chunk)).
            self._set_data(data[pos:] + chunk, pos)
        else:
            grown = bytearray(memoryview(data)[pos:])
            grown += chunk
            self._set_data(grown, pos)

    def _merge_next(self) -> None:
        """Move the first queued chunk into _data (a long frame grows)."""
        chunk = self._more.popleft()
        off = self._more_off
        self._more_off = 0
        self._more_len -= len(chunk) - off
        self._append(memoryview(chunk)[off:] if off else chunk)

    def _merge_all(self) -> None:
        """Move every queued chunk into _data, for the searches that need one
        contiguous region (tuples, regular expressions)."""
        while self._more:
            self._merge_next()

    def _adopt_next(self) -> None:
        """_data is used up: make the first queued chunk the new _data, no copy."""
        chunk = self._more.popleft()
        off = self._more_off
        self._more_off = 0
        self._more_len -= len(chunk) - off
        self._data = chunk
        self._pos = off
        self._gen += 1
        self._skey = None
        self._mkey = None
        self._batch_len = self._batch_next = 0

    def clear(self) -> None:
        """Drop everything buffered (the EOF flag stays as it is)."""
        self._data = b""
        self._pos = 0
        self._gen += 1
        self._more.clear()
        self._more_off = self._more_len = 0
        self._skey = None
        self._mkey = None
        self._drop_batch()

    def feed_eof(self) -> None:
        """Record that the transport reached end-of-file. Idempotent."""
        self._eof = True

    def unreceive(self, data: bytes | bytearray | memoryview) -> None:
        """Push ``data`` back in front of the buffered bytes.

        It will be the next thing consumed. O(len(data) + len(self)); resets
        the search memory. Allowed after EOF (the bytes were received before
        it). The buffer may exceed `capacity` afterwards. Any bytes-like
        object is counted in bytes (a typed ``memoryview`` too).
        """
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        if not len(data):
            return
        self._merge_all()
        # The bytes count as not consumed: `offset` moves back by as many,
        # not below 0 (more bytes than were consumed count as received
        # first).
        held = len(self._data) - self._pos + len(data)
        if self._fed < held:
            self._fed = held
        merged = bytearray(data)
        merged += memoryview(self._data)[self._pos :]
        self._data = merged
        self._pos = 0
        self._gen += 1
        self._skey = None
        self._mkey = None
        self._drop_batch()

    def _set_data(self, data: bytes | bytearray, shift: int) -> None:
        self._data = data
        self._shift(shift)

    def _shift(self, shift: int) -> None:
        # Index x of the old storage is index x - shift of the new one.
        if shift:
            self._pos -= shift
            self._snext -= shift
            self._batch_end -= shift
            if self._mkey is not None:
                self._mfound = [f - shift for f in self._mfound]
                self._mscan = [s - shift for s in self._mscan]

    # ------------------------------------------------------------------ output

    def _drop_batch(self) -> None:
        """Forget the batch: some other way of consuming moves _pos."""
        self._batch_len = self._batch_next = 0
        self._batch_window = _BATCH_MIN_WINDOW
        self._batch = []

    def _cut(self, start: int, stop: int, consume_to: int) -> bytes:
        """Return data[start:stop] as bytes and consume through consume_to."""
        if self._batch_len:
            self._drop_batch()
        data = self._data
        self._pos = consume_to
        if type(data) is bytes:
            if start == 0 and stop == len(data):
                return data
            return data[start:stop]
        if stop - start < _SMALL_COPY:
            return bytes(data[start:stop])
        with memoryview(data) as view:
            return view[start:stop].tobytes()

    def peek(self, max_bytes: int | None = None) -> bytes:
        """Return up to ``max_bytes`` buffered bytes (all if None) without
        consuming them. Raises `ValueError` for a negative ``max_bytes``
        (not "all", as asyncio's ``read(-1)``), `TypeError` for a
        non-integer."""
        if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 0):
            max_bytes = check_non_negative("max_bytes", max_bytes)
        if self._more and (max_bytes is None or max_bytes > len(self._data) - self._pos):
            self._merge_all()
        pos = self._pos
        stop = len(self._data)
        if max_bytes is not None and max_bytes < stop - pos:
            stop = pos + max_bytes
        return bytes(self._data[pos:stop])

    # ------------------------------------------------- the cursor (built-in codecs)

    # Private: the built-in decoders of ``_codecs.py`` parse headers in place
    # through these. Custom decoders use the public methods (see the class
    # docstring), which keep the all-or-nothing rule by themselves.

    def _view(self) -> tuple[bytes | bytearray, int]:
        """``(data, pos)``: the next bytes are ``data[pos:]`` (more may follow in
        the queue, see `_make_contiguous`). For decoders that parse in place;
        indices into ``data`` are valid until the buffer is changed."""
        return self._data, self._pos

    def _make_contiguous(self, n: int) -> bool:
        """Make the next ``n`` bytes contiguous in `_view`, joining queued chunks
        as needed; False (with everything buffered joined) if fewer than ``n``
        bytes are buffered. Amortized O(bytes joined)."""
        while len(self._data) - self._pos < n:
            if not self._more:
                return False
            self._merge_next()
        return True

    def _byte_at(self, index: int) -> int:
        """The buffered byte ``index`` bytes ahead of the next one to be
        consumed, without consuming or copying anything; IndexError if fewer
        are buffered."""
        data = self._data
        at = self._pos + index
        if at < len(data):
            return data[at]
        at -= len(data)
        off = self._more_off
        for chunk in self._more:
            if at < len(chunk) - off:
                return chunk[off + at]
            at -= len(chunk) - off
            off = 0
        raise IndexError("not that many bytes buffered")

    def skip(self, n: int) -> int:
        """Consume and drop up to ``n`` bytes without copying them; returns
        how many were dropped (fewer than ``n`` only if fewer are buffered).
        Raises `ValueError` for a negative ``n``, `TypeError` for a
        non-integer."""
        if type(n) is not int or n < 0:
            n = check_non_negative("n", n)
        dropped = 0
        while dropped < n:
            pos = self._pos
            step = min(n - dropped, len(self._data) - pos)
            if step:
                if self._batch_len:
                    self._drop_batch()
                self._pos = pos + step
                dropped += step
            if dropped == n or not self._more:
                break
            self._adopt_next()
        return dropped

    def take_some(self, max_bytes: int | None = None) -> bytes:
        """Consume and return up to ``max_bytes`` buffered bytes (all if None).

        Returns ``b""`` only when the buffer is empty. The whole buffer comes
        back without a copy when it is a single received chunk. Returns only
        what is contiguous: the rest comes with the next call. Raises
        `ValueError` for ``max_bytes`` < 1, `TypeError` for a non-integer.
        """
        if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 1):
            max_bytes = check_positive("max_bytes", max_bytes)
        if self._more and len(self._data) == self._pos:
            self._adopt_next()
        pos = self._pos
        stop = len(self._data)
        if max_bytes is not None and max_bytes < stop - pos:
            stop = pos + max_bytes
        return self._cut(pos, stop, stop)

    def take_exactly(self, n: int) -> bytes | None:
        """Consume and return exactly ``n`` bytes, or None if fewer are
        buffered. Raises `ValueError` for a negative ``n`` (a length a codec
        computed from a peer's header, say), `TypeError` for a non-integer,
        consuming nothing."""
        if type(n) is not int or n < 0:
            n = check_non_negative("n", n)
        return self._take_exactly(n)

    def _take_exactly(self, n: int) -> bytes | None:
        """`take_exactly` for callers that checked ``n`` (an int >= 0)
        themselves: the stream's ``receive_exactly`` methods and the built-in
        codecs. Checked twice, ``receive_exactly_nowait``'s loop at 64-byte
        length-prefixed frames (two calls per frame, no I/O, fastest of 15)
        went from 765-780 to 823-851 ns per frame; through this, 738-796. A
        custom codec's ``take_exactly`` pays the check and this call."""
        pos = self._pos
        stop = pos + n
        if stop > len(self._data):
            if n > len(self):
                return None
            return self._take_across_exactly(n)
        return self._cut(pos, stop, stop)

    def _take_across_exactly(self, n: int) -> bytes:
        """take_exactly when the frame runs into the queued chunks: one copy
        of the frame; the chunk it ends in becomes _data without a copy."""
        if self._batch_len:
            self._drop_batch()
        data = self._data
        parts: list[bytes | memoryview] = [memoryview(data)[self._pos :]]
        need = n - (len(data) - self._pos)
        more = self._more
        while need:
            chunk = more[0]
            off = self._more_off
            available = len(chunk) - off
            if available > need:
                parts.append(memoryview(chunk)[off : off + need])
                self._more_off = off + need
                self._more_len -= need
                break
            parts.append(memoryview(chunk)[off:] if off else chunk)
            more.popleft()
            self._more_off = 0
            self._more_len -= available
            need -= available
        frame = b"".join(parts)
        del parts
        self._data = b""
        self._pos = 0
        self._gen += 1
        self._skey = None
        self._mkey = None
        if more:
            self._adopt_next()
        return frame

    def take_into(self, view: memoryview) -> int:
        """Copy up to ``len(view)`` buffered bytes into the writable byte
        ``view``, consume them and return how many were copied."""
        total = 0
        while True:
            pos = self._pos
            n = min(len(view) - total, len(self._data) - pos)
            if n:
                if self._batch_len:
                    self._drop_batch()
                with memoryview(self._data) as source:
                    view[total : total + n] = source[pos : pos + n]
                self._pos = pos + n
                total += n
            if total == len(view) or not self._more:
                return total
            self._adopt_next()

    def take_all(self, max_size: int) -> bytes | None:
        """After EOF, consume and return everything; None before EOF.

        Raises `FrameTooLongError` (consuming nothing) as soon as more than
        ``max_size`` bytes are buffered, EOF or not.
        """
        if len(self) > max_size:
            raise FrameTooLongError(max_size, f"more than max_size={max_size} bytes before EOF")
        if not self._eof:
            return None
        self._merge_all()
        return self.take_some()

    def take_line(self, max_size: int) -> bytes | None:
        """Consume and return a line ending in ``\\n``, without the ``\\n`` and
        without one ``\\r`` right before it.

        ``max_size`` counts the consumed bytes, line ending included. Returns
        None when no ``\\n`` is buffered yet and fewer than ``max_size`` bytes
        are; raises `FrameTooLongError` otherwise. Consumes nothing unless a
        line is returned.
        """
        i = self._batch_next
        if i < self._batch_len and self._batch_key is _LF:
            piece = self._batch[i]
            if len(piece) >= max_size:
                raise FrameTooLongError(max_size)
            self._batch_next = i + 1
            self._pos += len(piece) + 1
            return piece[:-1] if self._batch_cr and piece[-1:] == b"\r" else piece
        # A long line in contiguous bytes: cut it here (the common case for
        # long lines; _take_single does the rest).
        data = self._data
        pos = self._pos
        if type(data) is bytes:
            i = data.find(b"\n", self._snext if self._skey is _LF and self._snext > pos else pos)
            if _BATCH_FRAME_MAX < i - pos < max_size:
                if self._batch_len:
                    self._drop_batch()
                self._pos = i + 1
                return data[pos : i - 1] if data[i - 1] == 13 else data[pos:i]
            if i < 0:
                # Remember the failed search: the queued chunks are next.
                self._skey = _LF
                self._snext = len(data)
                if len(data) - pos >= max_size:
                    raise FrameTooLongError(max_size)
                if not self._more_len:
                    return None
                if len(self._more) == 1:
                    return self._take_straddling(_LF, max_size, _STRIP_CR)
                return self._take_across(_LF, max_size, _STRIP_CR)
        return self._take_single(_LF, max_size, _STRIP_CR)

    def take_until(self, delimiters: Delimiters, max_size: int, keep_delimiter: bool = False) -> bytes | None:
        """Consume and return the frame before the next delimiter.

        ``delimiters`` is non-empty ``bytes``, or a tuple of two or more
        distinct non-empty ``bytes`` (a `triostream.Delimited` codec's
        ``delimiters`` attribute has this form). An empty delimiter raises
        `ValueError`; other values are not checked here, where every call
        counts. With a tuple,
        the earliest match wins (the shortest frame) and at the same position
        the longest delimiter wins; a match is not taken while a delimiter
        that would win could still complete with more data (``b"\\r"`` at
        the end of the buffer, when ``b"\\r\\n"`` is also a delimiter), unless
        no more data can come (EOF or a full buffer).

        ``max_size`` counts the consumed bytes, delimiter included. Returns the
        frame (with its delimiter if ``keep_delimiter``), or None when more
        data is needed; raises `FrameTooLongError` when the first delimiter
        ends beyond ``max_size`` or ``max_size`` bytes hold none. Consumes
        nothing unless a frame is returned.
        """
        if type(delimiters) is not bytes:
            return self._take_until_any(delimiters, max_size, keep_delimiter)  # type: ignore[arg-type]
        i = self._batch_next
        if i < self._batch_len and (self._batch_key is delimiters or self._batch_key == delimiters):
            piece = self._batch[i]
            size = len(piece) + len(delimiters)
            if size > max_size:
                raise FrameTooLongError(max_size)
            self._batch_next = i + 1
            self._pos += size
            return piece + delimiters if keep_delimiter else piece
        data = self._data
        pos = self._pos
        if type(data) is bytes:
            i = data.find(delimiters, self._snext if self._skey == delimiters and self._snext > pos else pos)
            end = i + len(delimiters)
            if i - pos > _BATCH_FRAME_MAX and end - pos <= max_size:
                if self._batch_len:
                    self._drop_batch()
                self._pos = end
                return data[pos:end] if keep_delimiter else data[pos:i]
            if i < 0:
                self._skey = delimiters
                self._snext = len(data) - len(delimiters) + 1
                if not self._more_len:
                    if len(data) - pos >= max_size:
                        raise FrameTooLongError(max_size)
                    return None
                if len(delimiters) == 1 and len(self._more) == 1:
                    if len(data) - pos >= max_size:
                        raise FrameTooLongError(max_size)
                    return self._take_straddling(delimiters, max_size, _KEEP if keep_delimiter else _PLAIN)
        return self._take_single(delimiters, max_size, _KEEP if keep_delimiter else _PLAIN)

    def _take_straddling(self, delimiter: bytes, max_size: int, mode: int, j: int | None = None) -> bytes | None:
        """A frame that began in _data (searched to its end: no delimiter
        there) and may end in the one chunk queued behind it: the way a long
        frame usually meets its end, in the read that brought it.
        One-byte delimiters only (none can straddle the two). ``j``: where
        the delimiter is in that chunk (-1: nowhere), when the caller
        searched already.

        `_take_across` and `_join_across` in one step, for this case: their
        generality (many chunks, long delimiters, search memory across
        calls) cost a third of the time of a batch of 16 KiB lines. When
        short frames follow this one, `_join_across` runs instead, to split
        them in one go.
        """
        more = self._more
        chunk = more[0]
        off = self._more_off
        data = self._data
        pos = self._pos
        head = len(data) - pos
        if j is None:
            j = chunk.find(delimiter, off)
        if j < 0:
            # Not here either: what _take_across would remember.
            self._qkey, self._qgen, self._qpos = delimiter, self._gen, pos
            self._qsearched, self._qtotal, self._qcarry = 1, head + len(chunk) - off, b""
            if head + len(chunk) - off >= max_size:
                raise FrameTooLongError(max_size)
            return None
        if head + j - off + 1 > max_size:
            raise FrameTooLongError(max_size)
        if chunk.find(delimiter, j + 1, j + 2 + _BATCH_FRAME_MAX) >= 0:
            return self._join_across(0, j, delimiter, mode)
        if mode == _KEEP:
            return self._take_joined(pos, j + 1 - off)
        if mode == _STRIP_CR and j > off and chunk[j - 1] == 13:
            return self._take_joined(pos, j - 1 - off, 2)
        if mode == _STRIP_CR and j == off and head and data[-1] == 13:
            return self._join_across(0, j, delimiter, mode)  # the \r ends _data: rare
        return self._take_joined(pos, j - off, 1)

    def _take_joined(self, start: int, need: int, skip: int = 0) -> bytes:
        """Consume through the end of _data and ``need + skip`` bytes of the
        one queued chunk, which becomes _data; return ``_data[start:]`` and
        the first ``need`` of those bytes, joined (one copy). For frames
        (from ``start``, at or after _pos) that end in that chunk (``skip``:
        a delimiter not returned); the caller has checked that it holds
        ``need + skip`` bytes."""
        more = self._more
        chunk = more[0]
        off = self._more_off
        data = self._data
        if len(data) - start + need < _JOIN_COPY_MAX and type(data) is bytes:
            frame = data[start:] + chunk[off : off + need]  # (see _JOIN_COPY_MAX)
        else:
            frame = b"".join((memoryview(data)[start:], memoryview(chunk)[off : off + need]))
        more.popleft()
        self._more_len = 0
        self._more_off = 0
        self._data = chunk
        self._pos = off + need + skip
        self._gen += 1
        self._skey = None
        self._mkey = None
        if self._batch_len:
            self._drop_batch()
        return frame

    def _has_frame(self, delimiter: bytes, max_size: int) -> bool:
        """Whether a frame ending at ``delimiter`` is whole at the head of the
        buffer's current chunk and within ``max_size`` (False when it is not
        known without more work). Consumes nothing; the search is remembered,
        so the take that follows does not repeat it."""
        i = self._search(delimiter)
        return i >= 0 and i + len(delimiter) - self._pos <= max_size

    def _search(self, delimiter: bytes) -> int:
        """The next ``delimiter`` in _data from _pos, or -1: a ``find`` that
        resumes where the last search for it stopped, and remembers where it
        stopped (the match, so that the take that follows does not search
        again; or how far it looked: see the search memory in the module
        docstring)."""
        data = self._data
        pos = self._pos
        i = data.find(delimiter, self._snext if self._skey == delimiter and self._snext > pos else pos)
        self._skey = delimiter
        self._snext = i if i >= 0 else len(data) - len(delimiter) + 1
        return i

    def take_lines(self, max_size: int) -> list[bytes] | None:
        """Consume and return every whole line buffered (at least one), as
        `take_line` would return them one by one.

        Returns None or raises exactly when `take_line` would (nothing
        consumed). A line over ``max_size`` after the first ends the batch
        before it: it stays buffered, and the next call raises.
        """
        return self._take_batch(_LF, max_size, _STRIP_CR)

    def take_until_batch(self, delimiter: bytes, max_size: int) -> list[bytes] | None:
        """`take_lines` for `take_until` with one delimiter, not kept."""
        return self._take_batch(delimiter, max_size, _PLAIN)

    def _take_batch(self, delimiter: bytes, max_size: int, mode: int) -> list[bytes] | None:
        # Every Python call here is paid per chunk (a batch of 16 KiB lines
        # is four frames): the usual cases take two or three.
        lines = mode == _STRIP_CR
        data = self._data
        if (
            self._skey == delimiter
            and self._snext >= len(data) - len(delimiter) + 1
            and len(data) - self._pos < max_size
        ):
            # The search memory says _data holds no delimiter: only the head
            # of a frame (or nothing), which may end in the queued chunk.
            if not self._more:
                return None
            if len(delimiter) == 1 and len(self._more) == 1:
                chunk = self._more[0]
                j = chunk.find(delimiter, self._more_off)  # one search, for both routes
                if j >= 0 and chunk.find(delimiter, j + 1, j + 2 + _BATCH_FRAME_MAX) < 0:
                    long = self._straddling_batch(delimiter, max_size, mode, j)
                    if long is not None:
                        return long
                first = self._take_straddling(delimiter, max_size, mode, j)
                if first is None:
                    return None
                batch = [first]
                more = self._split_batch(delimiter, max_size, mode)
                if more:
                    batch += more
                if not self._more:
                    return batch
                return self._batch_loop(batch, delimiter, max_size, lines)
        if (
            len(data) - self._pos > _SPLIT_FRAME_MAX
            and len(delimiter) == 1
            and not self._more
            and not self._batch_len
            and type(data) is bytes
            and len(data) - self._pos <= max_size
        ):
            # One chunk, nothing queued behind it (at 16 KiB lines in 64 KiB
            # reads the usual case), no longer than max_size (no frame can be
            # over it): when its first frame is long, its frames are cut by
            # `_find_frames` directly, not through `_split_batch`,
            # `_region_frames` and `_search`: three calls fewer per read.
            # ReceiveBuffer alone, 16 KiB lines in 64 KiB chunks, 21
            # interleaved rounds: 0.758x to 0.790x of the find loop (at 1 KiB
            # lines, or in unaligned chunks: no change).
            pos = self._pos
            at = self._search(delimiter)  # (remembered: _split_batch below does not search again)
            if at < 0:
                if len(data) - pos < max_size:  # (else take_line raises)
                    return None
            elif at - pos > _SPLIT_FRAME_MAX:
                found = self._find_frames(delimiter, max_size, mode, None, at)
                assert found is not None  # (None only for a first frame over max_size)
                self._pos = found[1]
                self._skey = delimiter  # searched to the end of the chunk
                self._snext = len(data)
                return found[0]
        cut = self._split_batch(delimiter, max_size, mode)
        if cut is None:
            # Not in one piece of bytes (or the first frame is refused):
            # one frame the ordinary way, which raises or returns None.
            first = self.take_line(max_size) if lines else self.take_until(delimiter, max_size)
            if first is None:
                return None
            cut = [first]
        elif not self._more:
            return cut  # the usual case: the frames of one chunk
        return self._batch_loop(cut, delimiter, max_size, lines)

    def _feeds(self, delimiter: bytes, max_size: int, mode: int) -> Feeds | None:
        """`_feed_first` and `_feed_batch` bound to a framing, then the second
        told ``tested`` (for the frame iterators, see
        `FrameDecoder._bind_feed`), or None when ``delimiter`` is longer
        than one byte."""
        if len(delimiter) != 1:
            return None
        return (
            functools.partial(self._feed_first, delimiter, max_size, mode, 0, False),
            functools.partial(self._feed_batch, delimiter, max_size, mode, False),
            functools.partial(self._feed_batch, delimiter, max_size, mode, True),
        )

    def _feed_first(
        self,
        delimiter: bytes,
        max_size: int,
        mode: int,
        short: int,
        tested: bool,
        chunk: bytes | bytearray,
    ) -> bytes | None:
        """`feed` ``chunk``, then, in the usual case, consume and return the
        frame that it completes: what `take_line` (``mode`` ``LINE_MODE``)
        or `take_until` (``PLAIN_MODE``) with a one-byte ``delimiter`` would
        return next. Otherwise returns None with the chunk fed and nothing
        consumed: the caller cuts as usual.

        The usual case (a frame iterator's read): bytes fed, nothing queued,
        no batch left to pop (a used-up one is dropped), no EOF, and the
        unconsumed tail searched already (no delimiter in it: the head of a
        frame, or nothing). ``tested``: the caller has made that test (a
        receive whose own search has just gone through the tail, see
        `BufferedStream.receive_line`). The frame is the tail and the
        chunk's head joined (one copy; none when nothing was buffered); the
        chunk becomes _data. A frame under ``short`` bytes is only fed, as
        is one of ``max_size`` bytes or more (the take raises), and the rare
        ``\\r`` that ends the tail before a ``\\n`` that starts the chunk
        (the take strips it). A receive's read passes ``short``
        _BATCH_FRAME_MAX: a short line is left to the take's route, which
        cuts it and the lines after it into the buffer's batch for the next
        calls. (``chunk`` comes last, so that a caller can bind the rest:
        `_feeds`, `BufferedStream._read_and_cut`.)

        Why it exists: `feed`, then `take_line`, `_take_straddling` and
        `_take_joined` (or the batch cutter's route, see `_feed_batch`) are
        several Python calls per read, where a read brings a few long frames
        (at 16 KiB lines, four per 64 KiB read): about 0.3 µs each, measured
        as in `_feed_batch`. The test, the search and the join are one call
        (`_feed_joined`'s join written out), where they were three (this,
        `_feed_read`, `_feed_joined`), and a receive that made the test
        calls this itself (it called `_feed_read`, which called this). 16
        KiB lines in fresh 64 KiB reads that do not end on a line, medians
        of paired per-round ratios: ``lines()`` 262 -> 250 bytecodes per
        line, 1.009x faster in one process (61 interleaved rounds); the
        ``_nowait`` loops, without the wrapper, 1.003x and 1.007x in one
        process, 1.036x and 1.039x over loopback TCP (61 rounds). The
        usual case is written out three times more: at the head of
        `_feed_batch` and of `_feed_cut`, and in the long-frame loop of
        `FrameIterator._frames` (the join and the stores, after its own
        test): keep them alike.
        """
        data = self._data
        pos = self._pos
        head = len(data) - pos
        if (
            type(chunk) is bytes
            and (
                tested
                or (
                    not self._more_len
                    and self._batch_next >= self._batch_len  # (no batch, or one used up)
                    and not self._eof
                    and (not head or (self._skey == delimiter and self._snext >= len(data)))
                )
            )
            and (j := chunk.find(delimiter)) >= 0
            and short <= head + j < max_size
            and (j or not head or mode != _STRIP_CR or data[-1] != 13)
        ):
            end = j - 1 if mode == _STRIP_CR and j and chunk[j - 1] == 13 else j
            # (_feed_joined, written out: see above.)
            if not head:
                frame = chunk[:end]
            elif head + end < _JOIN_COPY_MAX and type(data) is bytes:
                frame = data[pos:] + chunk[:end]  # (see _JOIN_COPY_MAX)
            else:
                frame = b"".join((memoryview(data)[pos:], memoryview(chunk)[:end]))
            if self._batch_len:  # (used up: its window is kept)
                self._batch_len = self._batch_next = 0
                self._batch = []
            self._fed += len(chunk)
            self._data = chunk
            self._pos = j + 1
            self._gen += 1
            self._skey = None
            self._mkey = None
            return frame
        self.feed(chunk)
        return None

    def _feed_cut(self, delimiter: bytes, max_size: int, mode: int, chunk: bytes | bytearray) -> bytes | None:
        """`_feed_first` for a receive's read (its test made, ``short``
        _BATCH_FRAME_MAX), with the frames that follow in ``chunk`` cut at
        once into the buffer's batch, which the next takes pop: for a
        receive whose caller checkpoints between frames
        (`BufferedStream._read_and_cut`). Only when the frame after the
        first is long too (a short one is left to the take, which splits
        a batch of short frames), and none can be over ``max_size``. The
        pieces keep a ``\\r`` before the delimiter, as `_take_single`'s do
        (``_batch_cr`` says whether a pop must strip one).

        Why: a line sliced out of a read after a checkpoint (Trio's
        scheduler ran in between) was copied from bytes no longer in the
        closest cache, into memory just as cold; cut in one pass right
        after the read they are hot. 1 KiB lines in one process (9
        interleaved rounds): ``receive_line`` 4758 -> 4616 ns per call,
        ``receive_until`` 4732 -> 4380. Not when frames come without a
        checkpoint between them (a ``_nowait`` loop): slicing each as it is
        taken reuses the memory the frame before was freed from, and the
        batch cost 752 -> 871 ns per line there.

        The cut is `_feed_first` and a find loop: it was `_feed_batch`'s,
        whose frames (the first among them, lines already stripped) this
        then rearranged into the batch, and which left no batch for lines
        ending in \\r\\n. 16 KiB lines over loopback TCP (benchmarks'
        sender, 61 interleaved rounds, fastest of 3, both in one process):
        ``receive_line`` 1.057x, ``receive_until`` 1.037x; in one process
        1.00x-1.01x, and cachegrind counts the same instructions per line
        within 0.1 % (636 bytecodes per line, 652 before). A shorter path
        per read, not fewer instructions, is what the receiver gains there:
        over TCP it shares its core with the kernel's network work.

        The first frame is `_feed_first`'s usual case written out (its
        test, the join, the stores; a line of _BATCH_FRAME_MAX to
        _SPLIT_FRAME_MAX bytes goes to `_feed_first`, which cuts it, and
        anything else is only fed: `_feed_first` would search the read
        again to find that): the call was 116 of the 570 bytecodes of a
        ``receive_line`` that reads (16 KiB lines in 64 KiB reads; 520
        now). cachegrind, in one process, per line: 83,332 -> 82,262
        instructions, 1,265 -> 1,232 mispredicted branches (the floor,
        ``split until``: 78,962 and 1,109). Over loopback TCP (41
        interleaved rounds on a busy host, spread 0.55x-1.7x), medians of
        the ratios to ``split+checkpoint``: ``receive_line`` 0.880x ->
        0.891x, ``receive_until`` 0.830x -> 0.855x.
        """
        data = self._data
        pos = self._pos
        head = len(data) - pos
        if type(chunk) is not bytes:
            self.feed(chunk)  # (as _feed_first would: it joins only from bytes)
            return None
        j = chunk.find(delimiter)
        if not (
            j >= 0
            and _SPLIT_FRAME_MAX <= head + j < max_size
            and (j or not head or mode != _STRIP_CR or data[-1] != 13)
        ):
            # A frame under _SPLIT_FRAME_MAX: so are, most likely, the next
            # ones, which the take splits into a batch (400-byte lines:
            # receive_line 3856 -> 4156 ns per call when they were cut here);
            # _feed_first cuts it from _BATCH_FRAME_MAX bytes (its ``short``).
            # Anything else (no frame, one over the limit, the \r case, a
            # line under _BATCH_FRAME_MAX) is only fed, here: _feed_first
            # would search the whole read again to find as much.
            if j >= 0 and _BATCH_FRAME_MAX <= head + j < _SPLIT_FRAME_MAX:
                return self._feed_first(delimiter, max_size, mode, _BATCH_FRAME_MAX, True, chunk)
            self.feed(chunk)
            return None
        # The first frame: _feed_first's usual case, written out (keep them
        # alike; the test above is its test, ``tested`` and ``short`` 0).
        end = j - 1 if mode == _STRIP_CR and j and chunk[j - 1] == 13 else j
        if not head:
            first = chunk[:end]
        elif head + end < _JOIN_COPY_MAX and type(data) is bytes:
            first = data[pos:] + chunk[:end]  # (see _JOIN_COPY_MAX)
        else:
            first = b"".join((memoryview(data)[pos:], memoryview(chunk)[:end]))
        if self._batch_len:  # (used up: its window is kept)
            self._batch_len = self._batch_next = 0
            self._batch = []
        self._fed += len(chunk)
        self._data = chunk
        self._pos = at = start = j + 1
        self._gen += 1
        self._skey = None
        self._mkey = None
        i = chunk.find(delimiter, start)
        second = i - start
        if second < _SPLIT_FRAME_MAX or len(chunk) - at >= max_size:
            if i < 0:
                self._skey = delimiter  # (searched to the end)
                self._snext = len(chunk)
            return first
        batch = [b""]  # (not a frame: the batch begins at index 1, as _batch_next says)
        # Whether a line of the batch ends in \r (then each pop tests its
        # line): for long lines a test per line, for shorter ones one find
        # after the loop (see _CR_SCAN_FRAME_MAX). A test per pop instead
        # measured about 2 % slower at 16 KiB lines over TCP (one run of
        # 35 rounds, about its spread).
        if mode == _STRIP_CR and second >= _CR_SCAN_FRAME_MAX:
            cr = False
            while i >= 0:
                if chunk[i - 1] == 13:
                    cr = True
                batch.append(chunk[start:i])
                start = i + 1
                i = chunk.find(delimiter, start)
        else:
            while i >= 0:
                batch.append(chunk[start:i])
                start = i + 1
                i = chunk.find(delimiter, start)
            cr = mode != _STRIP_CR or chunk.find(b"\r", at, start) >= 0
        self._batch = batch
        self._batch_next = 1
        self._batch_len = len(batch)
        self._batch_key = delimiter
        self._batch_end = start
        self._batch_cr = cr
        return first

    def _feed_joined(self, chunk: bytes, start: int, need: int, skip: int) -> bytes:
        """Feed ``chunk`` and consume a frame that begins at ``start`` in
        _data (at or after _pos) and ends ``need`` bytes into the chunk,
        followed by ``skip`` bytes not returned (a delimiter): return
        ``_data[start:]`` and ``chunk[:need]`` joined (one copy, none when
        _data has nothing from ``start``). The chunk becomes _data. For the
        iterators' reads (`_feed_first`, a codec's ``_feed_first``): nothing
        may be queued and no batch left to pop (a used-up one is dropped),
        and the chunk holds ``need + skip`` bytes (the caller checked). `feed` and `_take_joined` do the same in
        two calls: 0.3-0.4 µs more per read (16 KiB lines, as in
        `_feed_batch`). (`_feed_first` writes this out for lines.)"""
        data = self._data
        head = len(data) - start
        if not head:
            frame = chunk[:need]
        elif head + need < _JOIN_COPY_MAX and type(data) is bytes:
            frame = data[start:] + chunk[:need]  # (see _JOIN_COPY_MAX)
        else:
            frame = b"".join((memoryview(data)[start:], memoryview(chunk)[:need]))
        if self._batch_len:  # (used up: see _feed_first; its window is kept)
            self._batch_len = self._batch_next = 0
            self._batch = []
        self._fed += len(chunk)
        self._data = chunk
        self._pos = need + skip
        self._gen += 1
        self._skey = None
        self._mkey = None
        return frame

    def _feed_batch(
        self, delimiter: bytes, max_size: int, mode: int, tested: bool, chunk: bytes | bytearray
    ) -> tuple[list[bytes], bool, int, int] | None:
        """`_feed_first`, for a batch: the whole frames that ``chunk``
        completes, consumed, as `take_lines` (``mode`` ``LINE_MODE``) or
        `take_until_batch` (``PLAIN_MODE``) would return them next, and
        whether no whole frame is left (nor a tail that a take would refuse);
        or None, with the chunk fed and nothing consumed. Then where the
        second frame begins in the chunk (now _data) and the bytes each
        frame after the first occupies beyond its own (-1: they differ, or
        are not known): `receive_frame` hands those frames out as a cut
        (`_FramesAhead.fed`), the cursor moved back to there.

        The first frame as `_feed_first` cuts it (its test says when the
        fast route applies; ``tested`` as there: a batch iterator's read
        after a read so cut), long frames after it with the
        hand-written find loop, short ones by `_split_batch`. Measured (ReceiveBuffer
        alone, 64 KiB chunks, minimum of 21 rounds, µs per read): 16 KiB
        lines 8.4 through `feed` and `take_lines` -> 7.3 (the split loop:
        6.4).
        """
        # (`BatchIterator._batches` writes the first frame's join out again,
        # its test made, for reads of lines of 512 bytes and more, and
        # `FrameIterator._frames` for reads of medium frames: keep them
        # alike; the frames after it all three cut with `_cut_rest`.)
        # The first frame: `_feed_first`'s test, search and join written
        # out (keep them alike). Speed-ups at 16 KiB lines against the
        # three calls this was (_feed_first, then _feed_read, _feed_joined),
        # medians of paired per-round ratios, ``lines().batches()`` and
        # ``iter_until(b"\n").batches()``: written out, 1.036x and 1.011x
        # in one process (fresh 64 KiB reads that do not end on a line, 25
        # interleaved rounds), 1.034x and 1.075x over loopback TCP (41
        # rounds); through one call to the joined `_feed_first`, 1.006x and
        # 1.014x, 1.032x and 1.015x.
        data = self._data
        pos = self._pos
        head = len(data) - pos
        if (
            type(chunk) is bytes
            and (
                tested
                or (
                    not self._more_len
                    and self._batch_next >= self._batch_len
                    and not self._eof
                    and (not head or (self._skey == delimiter and self._snext >= len(data)))
                )
            )
            and (j := chunk.find(delimiter)) >= 0
            and head + j < max_size
            and (j or not head or mode != _STRIP_CR or data[-1] != 13)
        ):
            end = j - 1 if mode == _STRIP_CR and j and chunk[j - 1] == 13 else j
            if not head:
                batch = [chunk[:end]]
            elif head + end < _JOIN_COPY_MAX and type(data) is bytes:
                batch = [data[pos:] + chunk[:end]]  # (see _JOIN_COPY_MAX)
            else:
                batch = [b"".join((memoryview(data)[pos:], memoryview(chunk)[:end]))]
            if self._batch_len:
                self._batch_len = self._batch_next = 0
                self._batch = []
            self._fed += len(chunk)
            self._data = chunk
            self._gen += 1
            self._mkey = None
            start = j + 1  # (where _pos goes, set below with the search memory)
        else:
            self.feed(chunk)
            return None
        i = chunk.find(delimiter, start)
        strip = mode == _STRIP_CR
        if 0 <= i - start <= _SPLIT_FRAME_MAX:
            self._pos = start
            self._skey = delimiter  # (remembered: _split_batch does not search again)
            self._snext = i
            more = self._split_batch(delimiter, max_size, mode)
            if more:
                batch += more
            drained = self._skey == delimiter and self._snext >= len(chunk) and len(chunk) - self._pos < max_size
            return batch, drained, start, -1
        # The hand-written find loop, and the test for \r of _find_frames,
        # in `_cut_rest` (which the iterators' loops call for their own
        # reads too): calling _find_frames cost 0.5-0.9 µs more per read at
        # 16 KiB lines (7.3 -> 8.4, ReceiveBuffer alone, as above).
        at = start
        start, i, crs = _cut_rest(chunk, start, i, delimiter, max_size, strip, batch)
        self._pos = start
        self._skey = delimiter  # searched to the end of the chunk, or to the frame over the limit
        self._snext = len(chunk) if i < 0 else i
        # (What each frame after the first occupies beyond its bytes: the
        # \n, or \r\n when every one ended so; -1 when they differ.)
        extra = 1 if not crs else 2 if crs == len(batch) - 1 else -1
        return batch, i < 0 and len(chunk) - start < max_size, at, extra

    def _straddling_batch(self, delimiter: bytes, max_size: int, mode: int, j: int) -> list[bytes] | None:
        """`_take_batch` for long frames, the way they usually arrive: the
        frame begun in _data (searched: no delimiter there) ends at ``j`` in
        the one chunk queued behind it, and a long frame follows it there
        (the caller looked). Joins that frame, makes the chunk _data and cuts
        its other frames with `_find_frames` (one-byte delimiters only).
        Returns None, consuming nothing, when a frame may be over
        ``max_size`` or a \\r may end _data: `_take_straddling` and
        `_split_batch` handle those.

        Why a method of its own: the general route (`_take_straddling`,
        `_take_joined`, `_split_batch`, `_region_frames`, `_search`,
        `_find_frames`) is six calls per read, and at 16 KiB lines (four
        frames per 64 KiB read) they cost as much again as the frames' own
        search and copy: 1.7 against 1.0 µs per line in one process
        (/tmp measurements, ReceiveBuffer alone, 64536-byte chunks).
        """
        chunk = self._more[0]
        off = self._more_off
        if len(chunk) - j > max_size:
            return None
        data = self._data
        pos = self._pos
        if len(data) - pos + j - off + 1 > max_size:
            raise FrameTooLongError(max_size)
        if mode != _STRIP_CR or (j > off and chunk[j - 1] != 13):
            end = j
        elif j > off:
            end = j - 1
        else:
            return None  # the \r may end _data: rare
        if len(data) - pos + end - off < _JOIN_COPY_MAX and type(data) is bytes:
            batch = [data[pos:] + chunk[off:end]]  # (see _JOIN_COPY_MAX)
        else:
            batch = [b"".join((memoryview(data)[pos:], memoryview(chunk)[off:end]))]
        # Consumed through the delimiter: the chunk becomes _data.
        self._more.popleft()
        self._more_len = self._more_off = 0
        self._data = chunk
        self._pos = j + 1
        self._gen += 1
        self._mkey = None
        if self._batch_len:
            self._drop_batch()
        i = chunk.find(delimiter, j + 1)
        if i >= 0:
            # No frame after it can be over max_size (the rest of the chunk
            # is not): _find_frames takes its hand-written loop.
            found = self._find_frames(delimiter, max_size, mode, None, i)
            assert found is not None  # (None only for a first frame over max_size)
            batch += found[0]
            self._pos = found[1]
        self._skey = delimiter  # searched to the end of the chunk
        self._snext = len(chunk)
        return batch

    def _batch_loop(self, batch: list[bytes], delimiter: bytes, max_size: int, lines: bool) -> list[bytes]:
        """`_take_batch` for frames in the chunks queued behind, or in a bytearray."""
        mode = _STRIP_CR if lines else _PLAIN
        while True:
            more = self._split_batch(delimiter, max_size, mode)
            if more:
                batch += more
                if not self._more:
                    return batch  # what is left of _data holds no whole frame
                continue
            try:
                frame = self.take_line(max_size) if lines else self.take_until(delimiter, max_size)
            except FrameTooLongError:
                return batch  # stays buffered: the next call raises it
            if frame is None:
                return batch
            batch.append(frame)

    def _split_batch(self, delimiter: bytes, max_size: int, mode: int) -> list[bytes] | None:
        """Consume and return the whole frames at the head of _data (see
        `_region_frames`), or return None, consuming nothing."""
        if self._batch_next < self._batch_len and self._batch_key == delimiter and type(self._data) is bytes:
            # _data was split already (by `_join_across` or `_take_single`):
            # take that batch rather than split the same bytes again, which
            # doubled the cost of 128-byte lines arriving in reads that do
            # not end on a line (124 against 63 ns per line for the split
            # loop, ReceiveBuffer alone).
            cut = self._take_own_batch(len(delimiter), max_size, mode)
            if cut is not None:
                more = self._split_batch(delimiter, max_size, mode)  # frames past the batch's window
                return cut + more if more else cut
        found = self._region_frames(delimiter, max_size, mode, None)
        if found is None:
            return None
        if self._batch_len:
            self._drop_batch()
        frames, self._pos, _, searched = found
        if searched:
            # No delimiter after the last frame: remember it, so that the
            # next search does not scan the unfinished tail again.
            self._skey = delimiter
            self._snext = len(self._data) - len(delimiter) + 1
        return frames

    def _take_own_batch(self, size: int, max_size: int, mode: int) -> list[bytes] | None:
        """Consume and return the rest of the buffer's batch (frames that
        end in a delimiter of ``size`` bytes), or None, consuming nothing,
        if one of them is over ``max_size``. A list copy; Python work per
        frame only for lines ending in \\r, and for the limit when the
        batch spans more than ``max_size`` bytes."""
        pieces = self._batch[self._batch_next : self._batch_len]
        if self._batch_end - self._pos > max_size and max(map(len, pieces)) + size > max_size:
            return None  # one by one: take_line / take_until stop before it
        self._pos = self._batch_end
        if mode == _STRIP_CR and self._batch_cr:
            pieces = [p[:-1] if p[-1:] == b"\r" else p for p in pieces]
        self._drop_batch()
        return pieces

    def peek_frames(
        self, delimiter: bytes, max_size: int, mode: int, window: int
    ) -> tuple[list[bytes], int, bool, int] | None:
        """The whole frames at the head of _data, not consumed, for a frame
        iterator to hand out one by one (consuming each as it does): cut from
        at most ``window`` bytes (plus the first frame), as
        ``(frames, extra, drained, size)`` where each frame occupies
        ``len(frame) + extra`` bytes, ``size`` bytes in all, and ``drained``
        says that no delimiter follows them in _data and the bytes after
        them are fewer than ``max_size`` (with nothing queued behind _data,
        a take after them returns None). None when there are
        none, and in every case where frame sizes would vary (lines ending
        in a mix of ``\\n`` and ``\\r\\n``). ``mode`` is ``LINE_MODE`` for
        `take_line` frames, ``PLAIN_MODE`` for `take_until` frames without
        their delimiter (constants of this module, for the frame iterators
        and codecs built in).
        """
        found = self._region_frames(delimiter, max_size, mode, window)
        if found is None or found[2] < 0:
            return None
        # (An unfinished tail of max_size bytes makes the next take raise.)
        return found[0], found[2], found[3] and len(self._data) - found[1] < max_size, found[1] - self._pos

    def _region_frames(
        self, delimiter: bytes, max_size: int, mode: int, window: int | None
    ) -> tuple[list[bytes], int, int, bool] | None:
        """The whole frames at the head of _data, cut at C speed as the
        hand-written ``receive_some`` + ``bytes.split`` loop cuts them: one
        ``find`` (resuming from the search memory), one ``rfind`` for the
        last delimiter (within ``window`` bytes past the first frame, if
        given), one ``split``. Returns ``(frames, stop, extra, searched)``:
        consuming them means moving _pos to ``stop``; each occupies
        ``len(frame) + extra`` bytes, unless ``extra`` is -1 (lines with
        mixed endings); ``searched``: no delimiter follows ``stop`` in _data.
        Returns None, consuming nothing, when _data holds no whole frame,
        when it is a bytearray (split would hand out bytearrays) or when the
        first frame is over ``max_size``: `take_line` / `take_until` handle
        those (and frames that run past _data).

        Cost: O(bytes cut + the unfinished tail after the last delimiter,
        when that is searched: the next search resumes past it), so each
        byte is scanned a bounded number of times. In ``_STRIP_CR`` mode
        one more ``find`` for ``\\r``; when there are any, one ``count`` of
        ``\\r\\n``, and one slice per line only if lines mix ``\\n`` and
        ``\\r\\n``.
        """
        data = self._data
        if type(data) is not bytes:
            return None
        first = self._search(delimiter)
        if first < 0:
            return None
        pos = self._pos
        size = len(delimiter)
        if size > 1 or first - pos > _SPLIT_FRAME_MAX:
            # Long frames; and delimiters longer than one byte, which may
            # overlap themselves (b"||" in b"|||"): rfind would find a last
            # match that the left-to-right search never reaches.
            return self._find_frames(delimiter, max_size, mode, window, first)
        bound = len(data) if window is None else first + window
        whole = bound >= len(data)  # up to the last delimiter in _data
        end = data.rfind(delimiter, first) if whole else data.rfind(delimiter, first, bound)
        stop = end + size
        extra = size  # bytes consumed per frame beyond the piece split returns
        cut = delimiter
        if mode == _STRIP_CR and data.find(b"\r", pos, end) >= 0:
            if data.count(b"\r\n", pos, stop) == data.count(b"\n", pos, stop):
                cut = b"\r\n"  # every line ends in \r\n (CRLF protocols): split on that
                extra = 2
            else:
                extra = -1  # mixed endings: one slice per line ending in \r
        # Split the whole chunk rather than copy the frames' region out of it
        # first, when the bytes that costs (the consumed head before pos, the
        # unfinished tail after stop) are fewer than the region's: the
        # hand-written loop's chunks mostly start and end on a frame
        # boundary, and the region copy was 6 % of its time at 1 KiB lines.
        if whole and pos + len(data) - stop < stop - pos and (not pos or data.find(cut, 0, pos) == pos - len(cut) >= 0):
            pieces = data.split(cut)
            if pos:
                del pieces[0]  # the end of a frame taken before (the first cut ends at pos)
            del pieces[-1]  # what follows the last delimiter
        else:
            pieces = data[pos : stop - len(cut)].split(cut)
        if extra < 0:
            pieces = [p[:-1] if p[-1:] == b"\r" else p for p in pieces]
        if stop - pos > max_size and (
            # Some frame may be over the limit: is one? At C speed, the
            # cheaper of two ways: a pass over the frames' lengths, or, when
            # the limit is many frames long, a step per max_size bytes.
            _has_long_frame(data, delimiter, pos, stop, max_size)
            if len(pieces) * max_size > 8 * (stop - pos)
            else max(map(len, pieces)) + (extra if extra > 0 else 2) > max_size
        ):
            # Keep the frames before the first one over it.
            if extra < 0:
                sizes = [len(p) + size for p in data[pos:end].split(delimiter)]
            else:
                sizes = [len(p) + extra for p in pieces]
            if max(sizes) > max_size:
                keep = next(k for k, n in enumerate(sizes) if n > max_size)
                if not keep:
                    return None
                del pieces[keep:]
                return pieces, pos + sum(sizes[:keep]), extra, False
        return pieces, stop, extra, whole

    def _find_frames(
        self, delimiter: bytes, max_size: int, mode: int, window: int | None, first: int
    ) -> tuple[list[bytes], int, int, bool] | None:
        """`_region_frames` for long frames: a ``find`` per frame, from the
        one at ``first`` on. ``bytes.split`` on one byte tests every byte in
        a loop, while ``find`` runs a vectorized search: split is the faster
        for frames under about 512 bytes, find 1.4x at 1 KiB and 4x at
        16 KiB (benchmarks/bench_receive.py, without I/O)."""
        data = self._data
        assert type(data) is bytes  # checked by _region_frames
        pos = self._pos
        size = len(delimiter)
        limit = len(data) if window is None else min(len(data), first + window)
        # Lines: for lines shorter than _CR_SCAN_FRAME_MAX one find for \r
        # over the region costs less than the test per line (64 KiB: 0.9 µs;
        # the test: 36 ns a line, 2.3 µs for 1 KiB lines), and when it finds
        # none the lines need no test. Longer lines are tested one by one:
        # at 16 KiB that find cost as much as the search for the frames'
        # ends (the test is one per many bytes).
        strip = mode == _STRIP_CR
        if strip and first - pos < _CR_SCAN_FRAME_MAX and data.find(b"\r", pos, limit) < 0:
            strip = False
        pieces: list[bytes] = []
        crs = 0
        start = pos
        i = first
        if limit == len(data) and limit - pos <= max_size:
            # No frame can be over max_size, no window: the hand-written
            # loop itself (the tests dropped from it were a third of its
            # cost at 1 KiB lines).
            if not strip:
                while i >= 0:
                    pieces.append(data[start:i])
                    start = i + size
                    i = data.find(delimiter, start)
                return pieces, start, size, True
            while i >= 0:
                if data[i - 1] == 13 and i > start:
                    pieces.append(data[start : i - 1])
                    crs += 1
                else:
                    pieces.append(data[start:i])
                start = i + 1
                i = data.find(delimiter, start)
            return pieces, start, 1 if not crs else 2 if crs == len(pieces) else -1, True
        # A frame may be over the limit (each is tested: the first over it
        # ends the cut), or a window ends the region. (The \r scan above
        # serves this loop too, and find's own end bounds it: before, each
        # line paid a \r test and a window test here. A frame loop over
        # 1 KiB lines with max_size=4096, in one process: 0.55x -> 0.62x of
        # split, 0.61x without a limit.)
        if not strip:
            while i >= 0 and i + size - start <= max_size:
                pieces.append(data[start:i])
                start = i + size
                i = data.find(delimiter, start, limit)
        else:
            while i >= 0 and i + size - start <= max_size:
                if i > start and data[i - 1] == 13:
                    pieces.append(data[start : i - 1])
                    crs += 1
                else:
                    pieces.append(data[start:i])
                start = i + size
                i = data.find(delimiter, start, limit)
        if not pieces:
            return None  # the first frame is over max_size
        if not crs:
            extra = size
        elif crs == len(pieces):
            extra = 2
        else:
            extra = -1
        return pieces, start, extra, i < 0 and limit == len(data)

    def _take_single(self, delimiter: bytes, max_size: int, mode: int) -> bytes | None:
        """The search behind `take_line` and `take_until` when no batch is ready.

        Finds the next delimiter (resuming where the last search stopped).
        When more data follows the frame, splits a window of the buffer into
        a batch of frames at C speed, so the next calls just pop pieces; the
        window doubles while batches keep being used up and shrinks back when
        another kind of receive intervenes, so unused batch work stays within
        a constant factor of the bytes consumed.
        """
        if not delimiter:
            # (Here, off the fast paths: an empty delimiter ends up here.)
            raise ValueError("the delimiter is empty")
        while True:
            data = self._data
            pos = self._pos
            start = self._snext if self._skey == delimiter and self._snext > pos else pos
            i = data.find(delimiter, start)
            self._skey = delimiter
            if i >= 0:
                break
            stop = len(data)
            self._snext = stop - len(delimiter) + 1
            if stop - pos >= max_size:
                raise FrameTooLongError(max_size)
            if not self._more:
                return None
            return self._take_across(delimiter, max_size, mode)
        self._snext = i
        end = i + len(delimiter)
        if end - pos > max_size:
            raise FrameTooLongError(max_size)
        stop = len(data)
        # (BufferedStream.receive_line and receive_until make this test
        # too, inline, to leave such a frame to the take: keep them alike.)
        if end - pos <= _BATCH_FRAME_MAX and stop - end >= _BATCH_MIN and type(data) is bytes:
            if self._batch_next < self._batch_len:
                self._drop_batch()  # a batch for another delimiter, unused
            elif self._batch_len:
                self._batch_window = min(self._batch_window * 2, _BATCH_MAX)  # the last one was used up
            limit = max(pos + self._batch_window, end)
            region = data if pos == 0 and limit >= stop else data[pos:limit]
            batch = region.split(delimiter)
            self._batch_end = (pos if region is not data else 0) + len(region) - len(batch.pop())
            # (the pop: the unfinished piece after the last delimiter)
            self._batch = batch
            self._batch_key = delimiter
            self._batch_next = 0
            self._batch_len = len(batch)
            self._batch_cr = b"\r" in region  # else no line of the batch needs its \r stripped
            if mode == _STRIP_CR:
                return self.take_line(max_size)
            return self.take_until(delimiter, max_size, mode == _KEEP)
        if mode == _STRIP_CR and i > pos and data[i - 1] == 13:
            return self._cut(pos, i - 1, end)
        return self._cut(pos, end if mode == _KEEP else i, end)

    def _take_across(self, delimiter: bytes, max_size: int, mode: int) -> bytes | None:
        """The frame did not end in _data: look for its end in the queued chunks.

        Chunks are searched one by one, each once (what was searched is
        remembered until _data, _pos or the queue head change), and stay
        unjoined, like the baseline's list of pieces: when the delimiter turns
        up, the frame is joined in one copy and the chunk it ends in becomes
        _data without a copy (split in one go when it is fresh and its next
        frame short, like the batches of `_take_single`). Returns None when no
        queued chunk ends the frame yet. A delimiter straddling two chunks
        (rare: only delimiters longer than one byte) is found by merging
        them into _data and searching again.
        """
        data = self._data
        pos = self._pos
        more = self._more
        size = len(delimiter)
        if self._qkey == delimiter and self._qgen == self._gen and self._qpos == pos:
            k, total, carry = self._qsearched, self._qtotal, self._qcarry
        else:
            k, total = 0, len(data) - pos
            carry = bytes(data[max(pos, len(data) - size + 1) :])
        while k < len(more):
            chunk = more[k]
            off = self._more_off if k == 0 else 0
            if carry and delimiter in carry + chunk[off : off + size - 1]:
                for _ in range(k + 1):
                    self._merge_next()
                return self._take_single(delimiter, max_size, mode)
            j = chunk.find(delimiter, off)
            if j >= 0:
                if total + j - off + size > max_size:
                    raise FrameTooLongError(max_size)
                return self._join_across(k, j, delimiter, mode)
            total += len(chunk) - off
            if size > 1:
                carry = (carry + chunk[max(off, len(chunk) - size + 1) :])[1 - size :]
            k += 1
            self._qkey, self._qgen, self._qpos = delimiter, self._gen, pos
            self._qsearched, self._qtotal, self._qcarry = k, total, carry
        if total >= max_size:
            raise FrameTooLongError(max_size)
        return None

    def _searched_queued(self, delimiter: bytes, queued: int, appended: int) -> None:
        """The stream queued chunks itself, after the first ``queued`` ones
        (``appended`` bytes in all), having seen that none holds the one-byte
        ``delimiter`` (see `BufferedStream._receive_more`): record them as
        searched, so that `_take_across` does not search them again."""
        if self._qkey == delimiter and self._qgen == self._gen and self._qpos == self._pos:
            if self._qsearched != queued:
                return  # the chunks before them are not all searched yet
            self._qtotal += appended
        elif queued == 0:
            self._qkey, self._qgen, self._qpos = delimiter, self._gen, self._pos
            self._qtotal = len(self._data) - self._pos + appended
            self._qcarry = b""
        else:
            return
        self._qsearched = len(self._more)

    def _join_across(self, k: int, j: int, delimiter: bytes, mode: int) -> bytes:
        """Consume the frame that ends at ``j`` in queued chunk ``k``: join its
        pieces once and make chunk ``k`` the new _data."""
        more = self._more
        chunk = more[k]
        off = self._more_off if k == 0 else 0
        size = len(delimiter)
        after = j + size
        if self._batch_len:
            self._drop_batch()
        pieces: list[bytes] | None = None
        if off == 0 and len(chunk) <= _BATCH_MAX and chunk.find(delimiter, after, after + _BATCH_FRAME_MAX + size) >= 0:
            # The next frame is short too: split the fresh chunk in one go
            # (it becomes the batch once the chunk is _data, below).
            pieces = chunk.split(delimiter)
        parts: list[bytes | bytearray | memoryview] = [memoryview(self._data)[self._pos :]]
        parts.append(memoryview(more[0])[self._more_off :])
        parts.extend(islice(more, 1, k))
        if k:
            parts.append(memoryview(chunk)[:j])
        else:
            parts[1] = parts[1][: j - off]
        if mode == _KEEP:
            parts.append(delimiter)
        elif mode == _STRIP_CR:
            # Drop one b"\r" before the b"\n", wherever the pieces put it.
            for index in range(len(parts) - 1, -1, -1):
                if len(parts[index]):
                    if parts[index][-1] == 13:
                        parts[index] = memoryview(parts[index])[:-1]
                    break
        frame = b"".join(parts)
        del parts
        if k:
            # Drop the k chunks the frame used up, in C (a popleft loop
            # cost about 0.25 µs per chunk: a long line in small reads).
            self._more_len -= sum(map(len, islice(more, k))) - self._more_off
            self._more_off = 0
            rest = list(islice(more, k, None))
            more.clear()
            more.extend(rest)
        self._more_len -= after - self._more_off
        self._more_off = after
        self._adopt_next()
        if pieces is not None and len(pieces) > 2:
            # pieces[0] ended the frame just joined; pieces[1] starts at _pos.
            # (Set before _adopt_next, which forgets any batch, this split
            # was thrown away: a whole-chunk split wasted per read.)
            self._batch = pieces
            self._batch_key = delimiter
            self._batch_next = 1
            self._batch_len = len(pieces) - 1  # the last piece is unfinished
            self._batch_cr = b"\r" in chunk
            self._batch_end = len(chunk) - len(pieces[-1])
        return frame

    def _find_any(self, delimiters: tuple[bytes, ...]) -> tuple[int, int]:
        """Return (index, length) of the winning match, (-1, 0) if none is
        buffered, or (-2, 0) if the winner is not decided yet."""
        data = self._data
        pos = self._pos
        stop = len(data)
        if self._mkey != delimiters:
            self._mkey = delimiters
            self._mfound = [-1] * len(delimiters)
            self._mscan = [pos] * len(delimiters)
        found = self._mfound
        scan = self._mscan
        best = -1
        best_len = 0
        for k, delimiter in enumerate(delimiters):
            at = found[k]
            if at < pos:
                resume = scan[k]
                at = data.find(delimiter, resume if resume > pos else pos)
                if at < 0:
                    scan[k] = stop - len(delimiter) + 1
                    continue
                found[k] = at
            if best < 0 or at < best or (at == best and len(delimiter) > best_len):
                best = at
                best_len = len(delimiter)
        if best < 0 or self._final():
            return best, best_len
        # Could a delimiter that would beat the current winner still complete?
        # Only matches that run past the end of the data qualify, so at most
        # len(delimiter) - 1 start positions per delimiter are checked.
        for delimiter in delimiters:
            length = len(delimiter)
            last = best if length > best_len else best - 1
            for q in range(max(pos, stop - length + 1), last + 1):
                if data.startswith(delimiter[: stop - q], q):
                    return -2, 0
        return best, best_len

    def _take_until_any(self, delimiters: tuple[bytes, ...], max_size: int, keep_delimiter: bool) -> bytes | None:
        if b"" in delimiters:
            raise ValueError("a delimiter is empty")
        if self._more:
            self._merge_all()
        pos = self._pos
        at, length = self._find_any(delimiters)
        if at == -2:
            return None
        if at < 0:
            if len(self._data) - pos >= max_size:
                raise FrameTooLongError(max_size)
            return None
        end = at + length
        if end - pos > max_size:
            raise FrameTooLongError(max_size)
        return self._cut(pos, end if keep_delimiter else at, end)

    def take_regex(self, pattern: re.Pattern[bytes], max_size: int, keep_delimiter: bool = False) -> bytes | None:
        """Consume and return the frame before the first match of ``pattern``.

        The match acts as the delimiter and counts towards ``max_size``. Only
        the first ``max_size`` buffered bytes are searched, so a call costs
        O(max_size) at most; the search is not incremental (a regular
        expression generally is not) and is repeated in full on every call.
        The match is taken as found in the buffered data: write patterns
        whose match cannot grow with more data (``rb"\\r?\\n"``, not ``rb"\\n+"``).
        A pattern that matches the empty string raises `ValueError`.
        Returns None when more data is needed; raises `FrameTooLongError` when
        ``max_size`` buffered bytes hold no match. Consumes nothing unless a
        frame is returned.
        """
        if self._more:
            self._merge_all()
        data = self._data
        pos = self._pos
        stop = len(data)
        limit = pos + max_size
        match = pattern.search(data, pos, limit if limit < stop else stop)
        if match is None:
            if stop - pos >= max_size:
                raise FrameTooLongError(max_size)
            return None
        start, end = match.span()
        if start == end:
            raise ValueError(f"the pattern {pattern.pattern!r} matched an empty string")
        return self._cut(pos, end if keep_delimiter else start, end)

    def discard_until(self, delimiters: Delimiters) -> tuple[int, bool]:
        """Drop bytes up to and including the next delimiter (``delimiters``
        as for `take_until`), in bounded memory: the pure half of
        `triostream.BufferedStream.discard_until`.

        Returns ``(dropped, found)``. When no delimiter is buffered, drops all
        but the last ``len(longest delimiter) - 1`` bytes (which may start a
        delimiter) and returns ``found=False``, so memory stays bounded while
        a caller keeps feeding and discarding.
        """
        self._merge_all()
        pos = self._pos
        stop = len(self._data)
        if type(delimiters) is bytes:
            frame = self.take_until(delimiters, stop - pos + len(delimiters) + 1)
            keep = len(delimiters) - 1
        else:
            frame = self._take_until_any(delimiters, stop - pos + max(map(len, delimiters)) + 1, False)  # type: ignore[arg-type]
            keep = max(map(len, delimiters)) - 1  # type: ignore[arg-type]
        if frame is not None:
            return self._pos - pos, True
        drop_to = max(pos, stop - keep)
        if drop_to > pos and self._batch_len:
            self._drop_batch()
        self._pos = drop_to
        return drop_to - pos, False
