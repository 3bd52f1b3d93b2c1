"""The harness shared by the ports of peer projects' stream tests
(``tests/test_peer_*.py``): a `BufferedStream` (or a `Connection`) and the
peer that feeds it, over three kinds of transport, and a deadline for each
test.

Kinds (the ``kind`` fixture runs each test over each):

* ``"script"``: `Script`, an in-process transport whose ``receive_some``
  returns exactly the chunks the peer fed it, one per read (split only by
  ``max_bytes``), then EOF or a chosen error. Not a transport triostream
  knows, so the stream takes its general paths.
* ``"socket"``: real TCP on 127.0.0.1 (`trio.SocketStream`, from
  `triostream.testing.open_socket_stream_pair`): the stream's lean paths.
* ``"connection"``: a `triostream.Connection` (`open_connection`, its
  defaults: read-ahead) over real TCP on 127.0.0.1. Its helper task reads
  ahead into the buffer, so what a test sees buffered (``peek``) can be
  more than over a plain stream; the tests that look say so. It is closed
  at once at the end (a graceful close with unread bytes lingers).

`Peer.send` lets every task run until all are blocked again after each
chunk, so a reader started before it (`reading`, `feed_and_read`) sees the
chunks one at a time. Over loopback TCP that holds too: a chunk sent is in
the receiving socket when ``send`` returns, and Trio polls for I/O before it
decides that all tasks are blocked.

A test module imports the ``kind`` fixture (``from peer_harness import kind
as kind``: the redundant alias marks it used, as pytest finds it by name)
and decorates each async test with `deadline`.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import pytest
import trio
import trio.testing
from trio.lowlevel import checkpoint

from triostream import BufferedStream, open_connection
from triostream.testing import open_socket_stream_pair

__all__ = [
    "KINDS",
    "TEST_DEADLINE",
    "Peer",
    "Reader",
    "Script",
    "cancel_when_blocked",
    "deadline",
    "feed_and_read",
    "kind",
    "open_pair",
    "packets",
    "reading",
]

KINDS = ("script", "socket", "connection")

#: Seconds each test decorated with `deadline` may run.
TEST_DEADLINE = 10.0

P = ParamSpec("P")
T = TypeVar("T")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The transport under the stream: ``"script"`` or ``"socket"``."""
    param: str = request.param
    return param


def deadline(test: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Run the async test ``test`` under ``trio.fail_after(TEST_DEADLINE)``:
    a receive that waits when it should not fails the test with
    `trio.TooSlowError` instead of hanging the run."""

    @functools.wraps(test)
    async def with_deadline(*args: P.args, **kwargs: P.kwargs) -> T:
        with trio.fail_after(TEST_DEADLINE):
            return await test(*args, **kwargs)

    return with_deadline


class Script(trio.abc.HalfCloseableStream):
    """A transport delivering what the test feeds it: each chunk fed is one
    ``receive_some`` result (split only by ``max_bytes``), in order; then EOF
    (`feed_eof`) or an exception (`feed_error`). What is sent to it is kept
    in `sent`; `eof_sent` tells whether ``send_eof`` was called."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes | BaseException] = collections.deque()
        self._eof = False
        self._wake = trio.Event()
        self.sent = bytearray()
        self.eof_sent = False
        self.closed = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._chunks.append(bytes(data))
        self._wake.set()

    def feed_error(self, exc: BaseException) -> None:
        """The next read, once the chunks fed before are read, raises ``exc``."""
        self._chunks.append(exc)
        self._wake.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.closed:
            await checkpoint()
            raise trio.ClosedResourceError
        while not self._chunks and not self._eof:
            self._wake = trio.Event()
            await self._wake.wait()
            if self.closed:
                raise trio.ClosedResourceError
        await checkpoint()
        if not self._chunks:
            return b""
        chunk = self._chunks.popleft()
        if isinstance(chunk, BaseException):
            raise chunk
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._chunks.appendleft(rest)
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await checkpoint()
        if self.closed or self.eof_sent:
            raise trio.ClosedResourceError
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await checkpoint()

    async def send_eof(self) -> None:
        await checkpoint()
        self.eof_sent = True

    async def aclose(self) -> None:
        self.closed = True
        self._wake.set()
        await checkpoint()


class Peer:
    """The other end of a pair from `open_pair`: sends to the stream, and
    reads what the stream sent."""

    def __init__(self, transport: Script | trio.SocketStream) -> None:
        self.transport = transport

    async def send(self, *chunks: bytes | bytearray | memoryview, settle: bool = True) -> None:
        """Send each chunk; with ``settle``, then wait until every task is
        blocked (a reader waiting for it has taken it in)."""
        for chunk in chunks:
            if isinstance(self.transport, Script):
                self.transport.feed(chunk)
                await checkpoint()
            else:
                await self.transport.send_all(chunk)
            if settle:
                await trio.testing.wait_all_tasks_blocked()

    async def eof(self) -> None:
        """Close the peer's sending side: the stream reads EOF after the data."""
        if isinstance(self.transport, Script):
            self.transport.feed_eof()
            await checkpoint()
        else:
            await self.transport.send_eof()
        await trio.testing.wait_all_tasks_blocked()

    async def received(self) -> bytes:
        """Everything the stream sent, once it has sent EOF (call its
        ``send_eof`` first)."""
        if isinstance(self.transport, Script):
            await checkpoint()
            assert self.transport.eof_sent, "the stream has not sent EOF"
            return bytes(self.transport.sent)
        out = bytearray()
        while data := await self.transport.receive_some():
            out += data
        return bytes(out)


@asynccontextmanager
async def open_pair(
    kind: str, *, max_buffer_size: int = 65536, receive_size: int = 65536
) -> AsyncIterator[tuple[BufferedStream, Peer]]:
    """A `BufferedStream` (a `Connection` for ``"connection"``) over a
    transport of the given kind, and its peer; both closed at the end."""
    transport: Script | trio.SocketStream
    peer_end: Script | trio.SocketStream
    if kind == "script":
        transport = peer_end = Script()
    elif kind in ("socket", "connection"):
        peer_end, transport = await open_socket_stream_pair("tcp")
    else:
        raise ValueError(f"unknown transport kind {kind!r}")
    if kind == "connection":
        try:
            async with open_connection(transport, max_buffer_size=max_buffer_size, receive_size=receive_size) as conn:
                yield conn, Peer(peer_end)
                # (At once: a graceful close with unread bytes buffered
                # lingers for half a second, reading the peer's.)
                await trio.aclose_forcefully(conn)
        finally:
            await trio.aclose_forcefully(peer_end)
        return
    stream = BufferedStream(transport, max_buffer_size=max_buffer_size, receive_size=receive_size)
    try:
        yield stream, Peer(peer_end)
    finally:
        await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(peer_end)


class Reader:
    """A call run in the background by `reading`: `result` returns its value
    or raises its exception."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.exc: Exception | None = None

    async def _run(self, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            self.value = await fn()
        except Exception as exc:
            self.exc = exc
        self.done.set()

    async def result(self) -> Any:
        await self.done.wait()
        if self.exc is not None:
            raise self.exc
        return self.value


@asynccontextmanager
async def reading(fn: Callable[[], Awaitable[Any]]) -> AsyncIterator[Reader]:
    """Start ``fn()`` in a task and let it block (waiting for data) before the
    block runs; at the end of the block wait for it to finish."""
    reader = Reader()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader._run, fn)
        await trio.testing.wait_all_tasks_blocked()
        yield reader
        await reader.done.wait()


async def feed_and_read(peer: Peer, fn: Callable[[], Awaitable[Any]], chunks: list[bytes], *, eof: bool = False) -> Any:
    """Start ``fn()`` reading, then send ``chunks`` one at a time (each taken
    in before the next is sent), then EOF if asked; return what ``fn``
    returned, or raise what it raised."""
    async with reading(fn) as reader:
        await peer.send(*chunks)
        if eof:
            await peer.eof()
    return await reader.result()


async def cancel_when_blocked(fn: Callable[[], Awaitable[object]]) -> bool:
    """Run ``fn()`` and cancel it as soon as every task is blocked (it waits
    for data that does not come); return True if it was cancelled, False if
    it finished first."""
    scope = trio.CancelScope()

    async def cancel() -> None:
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel)
        with scope:
            await fn()
        nursery.cancel_scope.cancel()
    return scope.cancelled_caught


def packets(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes (the last one shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
