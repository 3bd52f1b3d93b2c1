"""The triostream pytest plugin: stream fixtures and repeated random chunkings.

Installed with triostream (the ``pytest11`` entry point ``triostream``), so
every pytest run in an environment with triostream has it; ``-p
no:triostream`` turns it off. The async fixtures need pytest-trio (an async
test: ``trio_mode = true`` in the pytest configuration, or
``@pytest.mark.trio``).

Fixtures:

``memory_stream_pair``
  ``trio.testing.memory_stream_pair()``: two connected in-memory
  `trio.StapledStream` ends, ``(left, right)``. Synchronous; nothing to close.
``buffered_stream_pair``
  two `triostream.HalfCloseableBufferedStream`, each over one end of a fresh memory stream
  pair. Synchronous.
``socket_stream_pair``
  ``(client, server)``: two `trio.SocketStream` connected over TCP on
  127.0.0.1 (an async fixture: Trio tests only); both are closed at teardown
  (closing them earlier in the test is fine).
``faulty_stream_pair``
  a factory: ``peer, faulty = faulty_stream_pair(receive=Fault.reset(at_byte=10),
  send=None, chunks=None)`` gives a fresh memory stream pair whose second end
  is wrapped in a `~triostream.testing.FaultyStream` (over a
  `~triostream.testing.ChunkedStream` when ``chunks`` is given). Synchronous;
  call it as often as needed.
``chunking_seed``
  the seed of this repetition (an int, also shown in the test id as
  ``[seed=N]``).
``chunk_sizes``
  a list of chunk sizes drawn from ``random.Random(chunking_seed)``; pass it
  to ``ScriptedPeer(..., chunk_sizes=chunk_sizes)`` or
  ``split_chunks(data, chunk_sizes)``.

The ``chunkings`` marker, ``@pytest.mark.chunkings(n=20, max_chunk=16,
count=64)``: a test using ``chunking_seed`` or ``chunk_sizes`` runs ``n``
times, once per seed (ids ``test[seed=N]``); ``chunk_sizes`` then holds
``count`` sizes drawn uniformly from 1 to ``max_chunk``. The seeds are
distinct and derived from the test's node id, so every run (and every
pytest-xdist worker) collects the same ones. Without the marker a test using
these fixtures runs once; a test that parametrizes ``chunking_seed`` itself
keeps its own seeds; the marker on a test using neither fixture (or with bad
arguments) fails the collection of its module. ``--triostream-seed=N`` runs
every such test once, with seed N: the way to replay a failure. A failing
repetition's report has a section ``triostream chunking seed: N``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Generator
from typing import NoReturn, Protocol

import pytest
import trio
import trio.testing

from triostream._stream import HalfCloseableBufferedStream
from triostream.testing._chunking import ChunkedStream, ChunkSizes
from triostream.testing._faults import Fault, FaultyStream
from triostream.testing._sockets import socket_stream_pair as socket_stream_pair_cm

# A pytest plugin: pytest finds its hooks and fixtures by name. Nothing here
# is for import (and importing it imports pytest): triostream.testing must not
# re-export from this module.
__all__: list[str] = []

MemoryStream = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]

SEED_FIXTURE = "chunking_seed"
DEFAULT_REPETITIONS = 20
DEFAULT_MAX_CHUNK = 16
DEFAULT_COUNT = 64
_SEED_RANGE = 1_000_000  # seeds shown in test ids stay short


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("triostream")
    group.addoption(
        "--triostream-seed",
        type=int,
        default=None,
        metavar="N",
        help="run each test using the chunking_seed / chunk_sizes fixtures once, with seed N (replays a failure)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"chunkings(n={DEFAULT_REPETITIONS}, *, max_chunk={DEFAULT_MAX_CHUNK}, count={DEFAULT_COUNT}): run the test"
        " n times, each with its own reproducible chunking_seed and chunk_sizes (triostream)",
    )


def _misuse(message: str) -> NoReturn:
    """Fail the collection of a misused test with just ``message`` (no traceback)."""
    pytest.fail(message, pytrace=False)


def _chunking_args(marker: pytest.Mark | None, nodeid: str) -> tuple[int, int, int]:
    """``(n, max_chunk, count)`` from a ``chunkings`` marker (defaults without one: n=1)."""
    if marker is None:
        return 1, DEFAULT_MAX_CHUNK, DEFAULT_COUNT
    if len(marker.args) > 1:
        _misuse(f"{nodeid}: @pytest.mark.chunkings takes at most one positional argument (n)")
    unknown = set(marker.kwargs) - {"n", "max_chunk", "count"}
    if unknown or ("n" in marker.kwargs and marker.args):
        _misuse(
            f"{nodeid}: @pytest.mark.chunkings takes n, max_chunk and count, not {marker.args!r}, {marker.kwargs!r}"
        )
    values = {
        "n": marker.args[0] if marker.args else marker.kwargs.get("n", DEFAULT_REPETITIONS),
        "max_chunk": marker.kwargs.get("max_chunk", DEFAULT_MAX_CHUNK),
        "count": marker.kwargs.get("count", DEFAULT_COUNT),
    }
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _misuse(f"{nodeid}: @pytest.mark.chunkings({name}=...) must be an int >= 1, not {value!r}")
    if values["n"] > _SEED_RANGE:
        _misuse(f"{nodeid}: @pytest.mark.chunkings(n=...) must be at most {_SEED_RANGE}")
    return values["n"], values["max_chunk"], values["count"]


def chunking_seeds(nodeid: str, n: int) -> list[int]:
    """The ``n`` distinct seeds of the test ``nodeid``: a pure function of both
    (not of ``PYTHONHASHSEED``, the time or the run)."""
    return random.Random(f"triostream:{nodeid}").sample(range(_SEED_RANGE), n)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("chunkings")
    nodeid = metafunc.definition.nodeid
    if SEED_FIXTURE not in metafunc.fixturenames:
        if marker is not None:
            _misuse(f"{nodeid}: @pytest.mark.chunkings needs the test to use the chunk_sizes or chunking_seed fixture")
        return
    n, _, _ = _chunking_args(marker, nodeid)
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if SEED_FIXTURE in ([name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)):
            return  # the test pins its seeds itself
    chosen: int | None = metafunc.config.getoption("triostream_seed")
    seeds = [chosen] if chosen is not None else chunking_seeds(nodeid, n)
    metafunc.parametrize(SEED_FIXTURE, seeds, ids=[f"seed={seed}" for seed in seeds])


@pytest.fixture
def chunking_seed(request: pytest.FixtureRequest) -> int:
    """This repetition's seed. (`pytest_generate_tests` parametrizes it for
    every test that uses it; this body only runs where that did not happen.)"""
    chosen: int | None = request.config.getoption("triostream_seed")
    return chosen if chosen is not None else chunking_seeds(request.node.nodeid, 1)[0]


@pytest.fixture
def chunk_sizes(request: pytest.FixtureRequest, chunking_seed: int) -> list[int]:
    """``count`` chunk sizes in ``[1, max_chunk]`` from ``random.Random(chunking_seed)``
    (see the ``chunkings`` marker for ``count`` and ``max_chunk``)."""
    _, max_chunk, count = _chunking_args(request.node.get_closest_marker("chunkings"), request.node.nodeid)
    rng = random.Random(chunking_seed)
    return [rng.randint(1, max_chunk) for _ in range(count)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the seed of a failing chunking repetition to its report."""
    report = yield
    if report.failed:
        callspec = getattr(item, "callspec", None)
        seed = None if callspec is None else callspec.params.get(SEED_FIXTURE)
        if isinstance(seed, int):
            report.sections.append(
                ("triostream", f"triostream chunking seed: {seed} (replay with --triostream-seed={seed})")
            )
    return report


@pytest.fixture
def memory_stream_pair() -> tuple[MemoryStream, MemoryStream]:
    """``trio.testing.memory_stream_pair()``: two connected in-memory streams,
    half-closeable, with unbounded buffers. Needs no running Trio loop, so
    sync and async tests alike can use it."""
    return trio.testing.memory_stream_pair()


@pytest.fixture
def buffered_stream_pair() -> tuple[HalfCloseableBufferedStream, HalfCloseableBufferedStream]:
    """Two `triostream.HalfCloseableBufferedStream` (default sizes), over the
    two ends of a fresh ``trio.testing.memory_stream_pair()``."""
    left, right = trio.testing.memory_stream_pair()
    return HalfCloseableBufferedStream(left), HalfCloseableBufferedStream(right)


@pytest.fixture
async def socket_stream_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """``(client, server)``: a TCP connection over 127.0.0.1, as two
    `trio.SocketStream`. The listener is closed before the test runs; both
    streams are closed at teardown. An async fixture (needs pytest-trio)."""
    async with socket_stream_pair_cm("tcp") as pair:
        yield pair


class FaultyStreamPairFactory(Protocol):
    def __call__(
        self, *, receive: Fault | None = None, send: Fault | None = None, chunks: ChunkSizes | None = None
    ) -> tuple[MemoryStream, FaultyStream]: ...


@pytest.fixture
def faulty_stream_pair() -> FaultyStreamPairFactory:
    """A factory: ``peer, faulty = faulty_stream_pair(receive=..., send=...,
    chunks=...)`` makes a fresh ``trio.testing.memory_stream_pair()`` and wraps
    its second end in a `FaultyStream` with the given faults (over a
    `ChunkedStream` delivering ``chunks`` first, when given). Hand ``faulty``
    to the code under test and drive ``peer``. Synchronous; call it as often
    as the test needs."""

    def make(
        *, receive: Fault | None = None, send: Fault | None = None, chunks: ChunkSizes | None = None
    ) -> tuple[MemoryStream, FaultyStream]:
        peer, end = trio.testing.memory_stream_pair()
        inner: trio.abc.Stream = end if chunks is None else ChunkedStream(end, chunks)
        return peer, FaultyStream(inner, receive=receive, send=send)

    return make
