"""The conformance kit passes triostream's streams and fails broken wrappers."""

from __future__ import annotations

import operator

import pytest
import trio

from triostream import BufferedStream, FrameChannel, Lines, start_connection
from triostream.testing._conformance import check_buffered_stream


class Wrapper(trio.abc.HalfCloseableStream):
    """A minimal correct buffered wrapper; the broken ones below change one thing."""

    def __init__(self, transport: trio.abc.HalfCloseableStream) -> None:
        self.transport = transport
        self.buffer = b""
        self.receiving = False

    async def _more(self) -> bytes:
        return bytes(await self.transport.receive_some(4096))

    def _check(self, max_bytes: int | None) -> None:
        if max_bytes is not None and operator.index(max_bytes) < 1:
            raise ValueError("max_bytes must be >= 1")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if self.receiving:
            raise trio.BusyResourceError
        self.receiving = True
        try:
            if not self.buffer:
                self.buffer = await self._more()
            else:
                await trio.lowlevel.checkpoint()
            n = max_bytes or len(self.buffer)
            data, self.buffer = self.buffer[:n], self.buffer[n:]
            return data
        finally:
            self.receiving = False

    async def receive_line(self) -> bytes:
        # Linear: remembers how far it searched.
        searched = 0
        parts = [self.buffer]
        size = len(self.buffer)
        while (i := parts[-1].find(b"\n")) < 0:
            searched += len(parts[-1])
            chunk = await self._more()
            if not chunk:
                raise EOFError
            parts.append(chunk)
            size += len(chunk)
        whole = b"".join(parts)
        end = searched + i
        line, self.buffer = whole[:end], whole[end + 1 :]
        return line

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport.send_eof()

    async def aclose(self) -> None:
        self.buffer = b""
        await self.transport.aclose()


class DropsOnCancel(Wrapper):
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if not self.buffer:
            self.buffer = await self._more()
        n = max_bytes or len(self.buffer)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        await trio.lowlevel.checkpoint()  # cancelled here: the data is gone
        return data


class SkipsCheckpoints(Wrapper):
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check(max_bytes)
        if not self.buffer:
            self.buffer = await self._more()
        n = max_bytes or len(self.buffer)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data  # buffered path: no checkpoint at all


async def test_a_correct_wrapper_passes() -> None:
    await check_buffered_stream(lambda t, n: Wrapper(t), max_buffered=8192)  # type: ignore[arg-type]


async def test_triostream_streams_pass() -> None:
    await check_buffered_stream(lambda t, n: BufferedStream(t), max_buffered=65536)
    await check_buffered_stream(lambda t, n: start_connection(n, t, max_buffer_size=65536), max_buffered=2 * 65536)
    # A FrameChannel is a channel, not a stream: the stream it runs on passes.
    await check_buffered_stream(lambda t, n: FrameChannel(t, Lines(100)).stream, max_buffered=65536)


async def test_fails_a_wrapper_that_drops_data_on_cancellation() -> None:
    with pytest.raises(AssertionError, match="cancel"):
        await check_buffered_stream(lambda t, n: DropsOnCancel(t))  # type: ignore[arg-type]


async def test_fails_a_wrapper_that_skips_checkpoints() -> None:
    with pytest.raises(AssertionError):
        await check_buffered_stream(lambda t, n: SkipsCheckpoints(t))  # type: ignore[arg-type]
