"""triostream.testing: a harness for testing stream code.

* `ChunkedStream` and `chunkings()`: deliver received data in chosen pieces.
* `Fault`, `FaultyStream`, `run_with_each_fault`: inject resets, early EOF,
  stalls and closes at a byte offset or call count.
* `open_socket_stream_pair`, `socket_stream_pair`: real loopback sockets.
* `check_buffered_stream` (returns a `ConformanceReport`): a conformance kit
  for buffered wrappers and line readers.
* `ScriptedPeer`, `run_script`, `ScriptMismatch`: drive one end with an
  expect/send script.

The pytest plugin (fixtures ``memory_stream_pair``, ``socket_stream_pair``,
``buffered_stream_pair``, ``faulty_stream_pair``, the ``chunkings`` marker)
is registered through an
entry point and is not imported here, so this package needs no pytest.
"""

from ._chunking import ChunkedStream, chunkings
from ._conformance import ConformanceReport, check_buffered_stream
from ._faults import Fault, FaultyStream, run_with_each_fault
from ._scripted import ScriptedPeer, ScriptMismatch, run_script, split_chunks
from ._sockets import open_socket_stream_pair, socket_stream_pair

__all__ = [
    "ChunkedStream",
    "ConformanceReport",
    "Fault",
    "FaultyStream",
    "ScriptMismatch",
    "ScriptedPeer",
    "check_buffered_stream",
    "chunkings",
    "open_socket_stream_pair",
    "run_script",
    "run_with_each_fault",
    "socket_stream_pair",
    "split_chunks",
]
