"""The plugin's fault-injection factory, ``faulty_stream_pair`` (the other
fixtures are tested through pytester in test_testing_plugin.py)."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
import trio

from triostream import BufferedStream
from triostream.testing import Fault, FaultyStream

Factory = Callable[..., tuple[trio.abc.Stream, FaultyStream]]


async def test_a_reset_at_a_byte_offset_over_chosen_chunks(faulty_stream_pair: Factory) -> None:
    peer, faulty = faulty_stream_pair(receive=Fault.reset(at_byte=5), chunks=2)
    await peer.send_all(b"hello world")
    assert [await faulty.receive_some() for _ in range(3)] == [b"he", b"ll", b"o"]
    with pytest.raises(trio.BrokenResourceError) as info:
        await faulty.receive_some()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert faulty.bytes_received == 5


async def test_a_buffered_reader_keeps_what_came_before_the_fault(faulty_stream_pair: Factory) -> None:
    peer, faulty = faulty_stream_pair(receive=Fault.reset(at_byte=10))
    stream = BufferedStream(faulty)
    await peer.send_all(b"one\ntwo\nthree\n")
    assert await stream.receive_line() == b"one"
    assert await stream.receive_line() == b"two"
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_line()
    assert stream.peek() == b"th"  # the partial line stays buffered


async def test_a_send_fault_by_call_count(faulty_stream_pair: Factory) -> None:
    peer, faulty = faulty_stream_pair(send=Fault.raise_(lambda: OSError(errno.EPIPE, "Broken pipe"), at_call=1))
    await faulty.send_all(b"first")
    with pytest.raises(OSError) as info:
        await faulty.send_all(b"second")
    assert info.value.errno == errno.EPIPE
    assert await peer.receive_some() == b"first"


def test_each_call_makes_a_fresh_pair(faulty_stream_pair: Factory) -> None:
    first_peer, first = faulty_stream_pair()
    second_peer, second = faulty_stream_pair(receive=Fault.eof(at_byte=0))
    assert first_peer is not second_peer and first is not second
    assert first.receive_fault is None and second.receive_fault == Fault.eof(at_byte=0)
    assert isinstance(first, trio.abc.HalfCloseableStream)
