"""triostream: buffered Trio streams that read frames, not chunks.

The public API is re-exported here; the modules behind it are private.
"""

from ._buffer import ReceiveBuffer
from ._channel import FrameChannel
from ._codecs import (
    Codec,
    Delimited,
    FixedSize,
    FrameDecoder,
    FrameParser,
    LengthPrefixed,
    Lines,
    Netstring,
    VarintPrefixed,
)
from ._connection import CloseReason, Connection, WriteBufferFullError, open_connection
from ._errors import CorruptFrameError, FrameTooLongError, IncompleteReadError, StartTLSRefusedError
from ._network import connect_tcp, connect_unix, serve_tcp, serve_unix
from ._stream import BatchIterator, BufferedStream, FrameIterator, HalfCloseableBufferedStream

__all__ = [
    "BatchIterator",
    "BufferedStream",
    "CloseReason",
    "Codec",
    "Connection",
    "CorruptFrameError",
    "Delimited",
    "FixedSize",
    "FrameChannel",
    "FrameDecoder",
    "FrameIterator",
    "FrameParser",
    "FrameTooLongError",
    "HalfCloseableBufferedStream",
    "IncompleteReadError",
    "LengthPrefixed",
    "Lines",
    "Netstring",
    "ReceiveBuffer",
    "StartTLSRefusedError",
    "VarintPrefixed",
    "WriteBufferFullError",
    "connect_tcp",
    "connect_unix",
    "open_connection",
    "serve_tcp",
    "serve_unix",
]

__version__ = "0.1.0"
