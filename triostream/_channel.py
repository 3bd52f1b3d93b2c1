"""`FrameChannel`: a `trio.abc.Channel[bytes]` of frames over a byte stream."""

from __future__ import annotations

import trio

from ._codecs import Codec
from ._errors import IncompleteReadError
from ._stream import BufferedStream, FrameIterator

__all__ = ["FrameChannel"]


class FrameChannel(trio.abc.Channel[bytes]):
    """Frames over a stream, as a Trio channel (the shape python-trio/trio#796
    sketched: ``LineChannel``, ``LengthPrefixedChannel``).

    ::

        channel = FrameChannel(tcp_stream, LengthPrefixed(max_size=1 << 20))
        await channel.send(b"hello")
        async for frame in channel:
            ...

    Args:
      stream: a `BufferedStream`, or any `trio.abc.Stream`, which is then
        wrapped in one whose ``max_buffer_size`` fits the codec's largest
        frame (at least 64 KiB).
      codec: the framing (`triostream.Lines`, `triostream.LengthPrefixed`,
        `triostream.Netstring`, ...).

    `send` encodes and sends one frame; `receive` returns the next one. Both
    are full checkpoints, and `receive` keeps the core's contract: a
    cancelled receive consumes nothing. Two tasks sending (or receiving) at
    once get `trio.BusyResourceError`. `receive` raises `trio.EndOfChannel`
    at a clean EOF between frames and `IncompleteReadError` at EOF inside one
    (also inside a frame the codec was skipping); `FrameTooLongError` and
    `CorruptFrameError` as the codec says (see `BufferedStream.receive_frame`).
    A frame that ``codec.encode`` refuses raises `ValueError` in `send`,
    before anything is sent.

    Attributes:
      stream: the `BufferedStream` the frames travel over.
      codec: the codec, as given.
    """

    stream: BufferedStream
    codec: Codec

    def __init__(self, stream: trio.abc.Stream, codec: Codec) -> None:
        if not isinstance(stream, BufferedStream):
            stream = BufferedStream(stream, max_buffer_size=max(codec.wire_limit, 65536))
        self.stream = stream
        self.codec = codec
        # Validate now that the codec fits the stream's buffer.
        stream._decoder(codec)

    def __repr__(self) -> str:
        return f"<FrameChannel {self.codec!r} over {self.stream!r}>"

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        """Encode ``value`` and send it (a full checkpoint, also when the
        codec refuses the frame).

        Raises:
          ValueError: the codec refuses the frame (nothing is sent).
          trio.BusyResourceError: another task is sending.
          trio.ClosedResourceError: the channel was closed.

        `trio.BrokenResourceError` and other transport errors pass through
        unchanged.
        """
        try:
            frame = self.codec.encode(value)
        except Exception:
            await trio.lowlevel.checkpoint()  # an error path is a checkpoint too
            raise
        await self.stream.send_all(frame)

    async def receive(self) -> bytes:
        """The next frame (a full checkpoint; all or nothing).

        Raises:
          trio.EndOfChannel: clean EOF between frames.
          IncompleteReadError: EOF inside a frame, or inside an over-long
            frame being skipped (``.skipped`` > 0).
          FrameTooLongError, CorruptFrameError: as the codec says (see
            `BufferedStream.receive_frame`).
          trio.BusyResourceError, trio.ClosedResourceError: as for any receive.
        """
        try:
            return await self.stream.receive_frame(self.codec)
        except IncompleteReadError as exc:
            if exc.partial or exc.skipped:
                raise
            raise trio.EndOfChannel from None

    def receive_nowait(self) -> bytes:
        """`receive` from the buffer only; `trio.WouldBlock` when no whole
        frame is buffered (no checkpoint), otherwise errors as `receive`."""
        try:
            return self.stream.receive_frame_nowait(self.codec)
        except IncompleteReadError as exc:
            if exc.partial or exc.skipped:
                raise
            raise trio.EndOfChannel from None

    def __aiter__(self) -> FrameChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def frames(self) -> FrameIterator:
        """The fast iterator of `BufferedStream.frames` for this channel:
        buffered frames without a checkpoint per frame; a clean EOF ends it,
        errors as for `receive`."""
        return self.stream.frames(self.codec)

    async def aclose(self) -> None:
        """Close the channel and its stream (idempotent, a checkpoint)."""
        await self.stream.aclose()

    def detach(self) -> tuple[trio.abc.Stream, bytes]:
        """Give up the stream: ``(transport_stream, leftover_bytes)``, as
        `BufferedStream.detach`; the channel is closed afterwards."""
        return self.stream.detach()
