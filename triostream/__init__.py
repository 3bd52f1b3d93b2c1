"""triostream: buffered Trio streams that read frames, not chunks.

The public API is re-exported here; the modules behind it are private.
"""

from ._buffer import ReceiveBuffer, normalize_delimiters
from ._errors import FrameTooLongError, IncompleteReadError
from ._stream import BufferedStream, FrameIterator

__all__ = [
    "BufferedStream",
    "FrameIterator",
    "FrameTooLongError",
    "IncompleteReadError",
    "ReceiveBuffer",
    "normalize_delimiters",
]

__version__ = "0.1.0"
