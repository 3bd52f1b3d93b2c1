"""A transport for tests: delivers given chunks, then EOF or an error (or,
`LateStream`, a read that returns after a close); a spy that records
which methods of a class were called; and a counter of the socket reads
`triostream._socketio.read_socket` makes (`counting_os_reads`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from unittest.mock import patch

import pytest
import trio
import trio.testing

import triostream._socketio


@contextlib.contextmanager
def calls_to(cls: type, *names: str) -> Iterator[list[str]]:
    """Patch the methods ``names`` of ``cls`` to append their name to the
    list yielded, in call order, and then run as before."""
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(cls, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return call

    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(patch.object(cls, name, spy(name)))
        yield calls


@contextlib.contextmanager
def results_of(cls: type, name: str) -> Iterator[list[tuple[tuple[Any, ...], dict[str, Any], Any]]]:
    """Patch the method ``name`` of ``cls`` to record each call's arguments
    (``self`` left out), keyword arguments and result, in call order."""
    records: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = []
    real = getattr(cls, name)

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        records.append((args, kwargs, result))
        return result

    with patch.object(cls, name, call):
        yield records


class ScriptedStream(trio.abc.HalfCloseableStream):
    """Returns the scripted chunks one per ``receive_some`` (split further when
    ``max_bytes`` is smaller), then EOF, or raises ``error`` instead of EOF.

    Records every ``max_bytes`` it was asked for, and what was sent to it.
    Each receive is a full checkpoint, as Trio's streams are.
    """

    def __init__(self, chunks: Iterable[bytes], error: BaseException | None = None) -> None:
        self.chunks = [bytes(c) for c in chunks if c]
        self.error = error
        self.requests: list[int | None] = []
        self.sent = bytearray()
        self.eof_sent = False
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        self.requests.append(max_bytes)
        if not self.chunks:
            if self.error is not None:
                raise self.error
            return b""
        chunk = self.chunks[0]
        if max_bytes is not None and len(chunk) > max_bytes:
            self.chunks[0] = chunk[max_bytes:]
            return chunk[:max_bytes]
        del self.chunks[0]
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        self.eof_sent = True

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


class NoHalfClose(trio.abc.Stream):
    """Wraps a stream and hides its ``send_eof`` (like trio.SSLStream)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class AsBytes(NoHalfClose):
    """Wraps a stream; its reads return bytes, as a socket's do. (Trio's
    memory streams return a bytearray, which the iterators' reads only feed:
    their one-call feed and cut, and the batch loop's own reads after it,
    take bytes.)"""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (taken modulo len + 1)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


class LateStream(ScriptedStream):
    """Returns its chunks, then a read that is not interrupted by a close:
    it returns ``late`` once ``arrive`` is set, whatever happened
    meanwhile (as a transport whose close does not end a pending read)."""

    def __init__(self, chunks: Iterable[bytes] = (), late: bytes = b"late\n") -> None:
        super().__init__(chunks)
        self.arrive = trio.Event()
        self.late = late

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.chunks:
            return await super().receive_some(max_bytes)
        await self.arrive.wait()
        return self.late


async def closed_during_a_late_read(
    stream: trio.abc.AsyncResource, transport: LateStream, step: Callable[[], Awaitable[object]]
) -> None:
    """Run ``step()`` in another task; once it waits in the transport's late
    read, close ``stream``, then let the read return: the step must raise
    `trio.ClosedResourceError`."""
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await step()

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()
        transport.arrive.set()


class OsReads:
    """The sizes `read_socket` asked ``os.read`` for, and how many bytes each
    call returned."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.got: list[int] = []


@contextlib.contextmanager
def counting_os_reads() -> Iterator[OsReads]:
    """Counts `read_socket`'s ``os.read`` calls (its module's name for it is
    patched: nothing else is touched)."""
    reads = OsReads()
    real = triostream._socketio._os_read

    def counted(fd: int, size: int) -> bytes:
        reads.asked.append(size)
        data = real(fd, size)
        reads.got.append(len(data))
        return data

    triostream._socketio._os_read = counted
    try:
        yield reads
    finally:
        triostream._socketio._os_read = real
