"""triostream._socketio: reading a plain trio.SocketStream's socket directly.

`read_socket` must be `trio.SocketStream.receive_some` with fewer frames:
the same bytes, the same checkpoints, the same exceptions. Each behaviour
is run through both (``READERS``) over real sockets, so a difference shows
as one of the pair failing. Then the streams: every kind of receive of a
`BufferedStream` over a plain socket reads with ``os.read`` (counted), and
nothing else does.
"""

from __future__ import annotations

import errno
import functools
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from scripted import counting_os_reads

import triostream._socketio as socketio
from triostream import BufferedStream, LengthPrefixed
from triostream._connection import _unread_bytes
from triostream._socketio import DIRECT_IO, direct_socket_stream, read_socket, socket_fd
from triostream.testing import open_socket_stream_pair, socket_stream_pair

pytestmark = pytest.mark.skipif(not DIRECT_IO, reason="os.read takes no socket here (Windows)")

Reader = Callable[[trio.SocketStream, int], Awaitable[bytes | bytearray]]


async def _trio_receive_some(stream: trio.SocketStream, size: int) -> bytes | bytearray:
    return await stream.receive_some(size)


READERS: dict[str, Reader] = {"trio's receive_some": _trio_receive_some, "read_socket": read_socket}


# ------------------------------------------------------------ which transports


async def test_a_plain_socket_stream_is_read_directly() -> None:
    async with socket_stream_pair("tcp") as (_client, server):
        assert direct_socket_stream(server) is server
        assert socket_fd(server) == server.socket.fileno() >= 0
        assert BufferedStream(server)._socket_stream is server


async def test_trios_socket_type_is_the_one_recognized() -> None:
    # The fast path keys on trio's private socket class: on a trio that
    # renamed it, this fails (instead of the fast path going quietly).
    with trio.socket.socket() as sock:
        assert type(sock) is socketio._TRIO_SOCKET_TYPE


async def test_other_streams_are_not_read_directly() -> None:
    _left, right = trio.testing.memory_stream_pair()
    assert direct_socket_stream(right) is None
    assert socket_fd(right) == -1
    assert BufferedStream(right)._socket_stream is None


class ForeignSocket(trio.socket.SocketType):
    """A socket type of one's own (as a custom socket factory makes): it
    wraps a real trio socket and counts its ``recv`` calls, which a stream
    over it must go through."""

    def __init__(self, inner: trio.socket.SocketType) -> None:
        super().__init__()
        self.inner = inner
        self.recvs = 0

    @property
    def type(self) -> socket.SocketKind:
        return self.inner.type

    def setsockopt(self, *args: Any) -> None:
        self.inner.setsockopt(*args)

    def fileno(self) -> int:
        return self.inner.fileno()

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        self.recvs += 1
        return await self.inner.recv(buflen, flags)

    def close(self) -> None:
        self.inner.close()


async def test_a_socket_stream_over_a_foreign_socket_type_is_read_through_it() -> None:
    a, b = trio.socket.socketpair()
    foreign = ForeignSocket(b)
    async with trio.SocketStream(a) as left, trio.SocketStream(foreign) as right, BufferedStream(right) as stream:
        assert direct_socket_stream(right) is None and socket_fd(right) == -1
        assert stream._socket_stream is None
        await left.send_all(b"line\n")
        with counting_os_reads() as reads, trio.fail_after(10):
            assert await stream.receive_line() == b"line"
        assert foreign.recvs >= 1 and reads.asked == []


async def test_a_closed_socket_has_no_descriptor() -> None:
    client, server = await open_socket_stream_pair("tcp")
    await client.aclose()
    await server.aclose()
    assert socket_fd(server) == -1


async def test_a_patched_receive_some_is_obeyed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = trio.SocketStream.receive_some

    async def patched(self: trio.SocketStream, max_bytes: int | None = None) -> bytes:
        calls.append(max_bytes or 0)
        return await real(self, max_bytes)

    async with socket_stream_pair("tcp") as (client, server):
        stream = BufferedStream(server)  # judged before the patch
        assert stream._socket_stream is server
        monkeypatch.setattr(trio.SocketStream, "receive_some", patched)
        assert direct_socket_stream(server) is None  # judged after it
        assert socket_fd(server) >= 0  # (Connection's own reads and writes: not receive_some)
        await client.send_all(b"line\n")
        with counting_os_reads() as reads:
            assert await stream.receive_line() == b"line"
        assert calls == [65536] and reads.asked == []


async def test_a_receive_some_patched_on_the_object_is_obeyed() -> None:
    calls: list[int] = []
    async with socket_stream_pair("tcp") as (client, server):
        stream = BufferedStream(server)
        real = server.receive_some

        async def patched(max_bytes: int | None = None) -> bytes:
            calls.append(max_bytes or 0)
            return await real(max_bytes)

        server.receive_some = patched  # type: ignore[method-assign]
        assert direct_socket_stream(server) is None
        await client.send_all(b"line\n")
        with counting_os_reads() as reads:
            assert await stream.receive_line() == b"line"
        assert calls == [65536] and reads.asked == []


@pytest.mark.parametrize("where", ["class", "object"])
async def test_a_patched_socket_recv_is_obeyed(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    # (Seen when the stream is made: read_socket tests only receive_some again.)
    async with socket_stream_pair("tcp") as (client, server):
        real = type(server.socket).recv

        async def patched(self: trio.socket.SocketType, buflen: int, flags: int = 0, /) -> bytes:
            calls.append(buflen)
            return await real(self, buflen, flags)

        if where == "class":
            monkeypatch.setattr(type(server.socket), "recv", patched)
        else:
            monkeypatch.setattr(server.socket, "recv", patched.__get__(server.socket))
        assert direct_socket_stream(server) is None
        stream = BufferedStream(server)
        await client.send_all(b"line\n")
        with counting_os_reads() as reads:
            assert await stream.receive_line() == b"line"
        assert calls == [65536] and reads.asked == []


def test_a_wrapper_installed_before_import_is_not_trios_code() -> None:
    # Why a tracing wrapper on the class, installed before triostream was
    # imported, turns the direct reads off: it is not trio's code, even
    # with functools.wraps's names.
    real = trio.SocketStream.receive_some

    @functools.wraps(real)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await real(*args, **kwargs)

    assert socketio._defined_in(real, "_highlevel_socket")
    assert not socketio._defined_in(wrapper, "_highlevel_socket")
    assert socketio._defined_in(socketio._TRIO_RECV, "_socket")
    assert not socketio._defined_in(real, "_socket")


# ------------------------------------------------------------ read_socket as receive_some


@pytest.mark.parametrize("reader", READERS)
async def test_bytes_there_are_returned_after_a_full_checkpoint(reader: str) -> None:
    async with socket_stream_pair("tcp") as (client, server):
        await client.send_all(b"abcdef")
        await trio.sleep(0.05)
        with trio.testing.assert_checkpoints():
            assert await READERS[reader](server, 4) == b"abcd"  # at most size
        with trio.testing.assert_checkpoints():
            assert await READERS[reader](server, 100) == b"ef"


@pytest.mark.parametrize("reader", READERS)
async def test_a_cancelled_read_reads_nothing_even_with_bytes_there(reader: str) -> None:
    async with socket_stream_pair("tcp") as (client, server):
        await client.send_all(b"kept")
        await trio.sleep(0.05)
        with trio.CancelScope() as scope:
            scope.cancel()
            await READERS[reader](server, 100)
        assert scope.cancelled_caught
        assert await READERS[reader](server, 100) == b"kept"


@pytest.mark.parametrize("reader", READERS)
async def test_a_read_waits_for_bytes_and_lets_others_run(reader: str) -> None:
    async with socket_stream_pair("tcp") as (client, server), trio.open_nursery() as nursery:
        order: list[str] = []

        async def later() -> None:
            order.append("sender ran")
            await client.send_all(b"late")

        nursery.start_soon(later)
        with trio.fail_after(10):
            data = await READERS[reader](server, 100)
        order.append("read")
        assert data == b"late" and order == ["sender ran", "read"]


@pytest.mark.parametrize("reader", READERS)
async def test_a_read_cancelled_while_waiting_loses_nothing(reader: str) -> None:
    async with socket_stream_pair("tcp") as (client, server):
        with trio.move_on_after(0.05) as scope:
            await READERS[reader](server, 100)
        assert scope.cancelled_caught
        await client.send_all(b"after")
        with trio.fail_after(10):
            assert await READERS[reader](server, 100) == b"after"


@pytest.mark.parametrize("reader", READERS)
async def test_eof_is_empty_bytes(reader: str) -> None:
    async with socket_stream_pair("tcp") as (client, server):
        await client.send_all(b"last")
        await client.send_eof()
        with trio.fail_after(10):
            got = b""
            while len(got) < 4:
                got += await READERS[reader](server, 100)
            assert got == b"last"
            with trio.testing.assert_checkpoints():
                assert await READERS[reader](server, 100) == b""


@pytest.mark.parametrize("reader", READERS)
async def test_a_closed_socket_raises_closed_after_a_checkpoint(reader: str) -> None:
    client, server = await open_socket_stream_pair("tcp")
    await client.aclose()
    await server.aclose()
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError) as caught:
        await READERS[reader](server, 100)
    assert caught.value.__cause__ is None  # (raised "from None": a close is not a socket failure)


@pytest.mark.parametrize("reader", READERS)
async def test_a_close_by_another_task_during_the_wait_raises_closed(reader: str) -> None:
    async with socket_stream_pair("tcp") as (_client, server), trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.sleep(0.05)
            await server.aclose()

        nursery.start_soon(close_soon)
        with trio.fail_after(10), pytest.raises(trio.ClosedResourceError):
            await READERS[reader](server, 100)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("waiting", [False, True], ids=["reset before the read", "reset during the wait"])
async def test_a_reset_connection_raises_broken_chained_to_the_os_error(reader: str, waiting: bool) -> None:
    async with socket_stream_pair("tcp") as (client, server), trio.open_nursery() as nursery:

        async def reset() -> None:
            if waiting:
                await trio.sleep(0.05)
            # Unread bytes and a zero linger: the close sends a RST.
            client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.aclose()

        if waiting:
            nursery.start_soon(reset)
        else:
            await reset()
            await trio.sleep(0.05)
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
            await READERS[reader](server, 100)
        assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_an_error_of_the_wait_is_a_broken_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = OSError(errno.EINVAL, "the poller refused the descriptor")

    async def failing_wait(sock: object) -> None:
        raise failure

    monkeypatch.setattr(socketio, "wait_readable", failing_wait)
    async with socket_stream_pair("tcp") as (_client, server):
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
            await read_socket(server, 100)  # nothing there: it waits
        assert caught.value.__cause__ is failure


async def test_a_keyboard_interrupt_in_the_read_leaves_after_a_schedule_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(fd: int, size: int) -> bytes:
        raise KeyboardInterrupt

    async with socket_stream_pair("tcp") as (_client, server):
        monkeypatch.setattr(socketio, "_os_read", interrupted)
        with trio.testing.assert_checkpoints(), pytest.raises(KeyboardInterrupt):
            await read_socket(server, 100)


async def test_a_read_that_waits_reads_again_only_once_woken() -> None:
    async with socket_stream_pair("tcp") as (client, server), trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.sleep(0.2)
            await client.send_all(b"late")

        nursery.start_soon(later)
        with counting_os_reads() as reads, trio.fail_after(10):
            assert await read_socket(server, 100) == b"late"
        assert reads.asked == [100, 100]  # the one that would block, the one after the wake-up: no polling


async def test_a_read_with_bytes_there_makes_one_os_read() -> None:
    async with socket_stream_pair("tcp") as (client, server):
        await client.send_all(b"x" * 10)
        await trio.sleep(0.05)
        with counting_os_reads() as reads:
            assert await read_socket(server, 7) == b"x" * 7
        assert reads.asked == [7]


# ------------------------------------------------------------ every receive of a stream

Consume = Callable[[BufferedStream, int, int], Awaitable[list[bytes]]]


async def _first_n(iterator: Any, count: int, batches: bool = False) -> list[bytes]:
    frames: list[bytes] = []
    async for item in iterator:
        frames.extend(item if batches else [item])
        if len(frames) >= count:
            break
    return frames


async def _some(stream: BufferedStream, count: int, size: int) -> list[bytes]:
    got = b""
    while len(got) < count * size:
        got += await stream.receive_some()
    return [got[k : k + size] for k in range(0, len(got), size)]


async def _filled(stream: BufferedStream, count: int, size: int) -> list[bytes]:
    while len(stream.peek()) < count * size:
        await stream.fill()
    return [await stream.receive_exactly(size) for _ in range(count)]


async def _into(stream: BufferedStream, count: int, size: int) -> list[bytes]:
    frames = []
    for _ in range(count):
        target = bytearray(size)
        await stream.receive_exactly_into(target)
        frames.append(bytes(target))
    return frames


def _codec(size: int) -> LengthPrefixed:
    return LengthPrefixed(size)


# Each receive, how its frames go on the wire ("line", "prefixed" or "raw"),
# and how to take ``count`` of them of ``size`` bytes.
RECEIVES: dict[str, tuple[str, Consume]] = {
    "receive_line": ("line", lambda s, n, size: _repeat(n, lambda: s.receive_line())),
    "receive_until": ("line", lambda s, n, size: _repeat(n, lambda: s.receive_until(b"\n"))),
    "receive_some": ("raw", _some),
    "receive_exactly": ("raw", lambda s, n, size: _repeat(n, lambda: s.receive_exactly(size))),
    "receive_exactly_into": ("raw", _into),
    "fill": ("raw", _filled),
    "receive_frame": ("prefixed", lambda s, n, size: _repeat(n, lambda: s.receive_frame(_codec(size)))),
    "lines()": ("line", lambda s, n, size: _first_n(s.lines(), n)),
    "lines().batches()": ("line", lambda s, n, size: _first_n(s.lines().batches(), n, batches=True)),
    "frames()": ("prefixed", lambda s, n, size: _first_n(s.frames(_codec(size)), n)),
    "frames().batches()": ("prefixed", lambda s, n, size: _first_n(s.frames(_codec(size)).batches(), n, True)),
}


async def _repeat(count: int, receive: Callable[[], Awaitable[bytes]]) -> list[bytes]:
    return [await receive() for _ in range(count)]


# (frames, frame size, the stream's receive_size), the whole wire sent
# before the receive starts (it fits in the kernel's buffers): one short
# frame in one read; one long frame over many reads (the loops that queue reads without a
# delimiter); many medium frames over many reads (the frame loops' own reads);
# frames of 8 KiB and more (the frame loops' long-frame loop and its reads).
SHAPES = {
    "one short frame": (1, 5, 65536),
    "one frame over 20 reads": (1, 20_000, 1024),
    "50 medium frames": (50, 1000, 4096),
    "6 long frames": (6, 9000, 16384),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("receive", RECEIVES)
async def test_every_receive_over_a_plain_socket_reads_it_directly(receive: str, shape: str) -> None:
    # Every byte the stream takes from the kernel comes through os.read: the
    # sum of what os.read returned is all the kernel no longer holds (FIONREAD).
    count, size, receive_size = SHAPES[shape]
    kind, consume = RECEIVES[receive]
    frames = [bytes([65 + k % 26]) * size for k in range(count)]
    if kind == "line":
        wire = b"".join(frame + b"\n" for frame in frames)
    elif kind == "prefixed":
        wire = b"".join(struct.pack(">I", size) + frame for frame in frames)
    else:
        wire = b"".join(frames)
    async with (
        socket_stream_pair("tcp") as (client, server),
        BufferedStream(server, receive_size=receive_size, max_buffer_size=65536) as stream,
    ):
        await client.send_all(wire)
        await trio.sleep(0.05)  # all of it in the receiver's kernel buffer (loopback)
        with counting_os_reads() as reads, trio.fail_after(10):
            assert await consume(stream, count, size) == frames
        taken = len(wire) - _unread_bytes(server)
    assert taken > 0 and sum(reads.got) == taken  # none by trio's receive_some (socket.recv)
    assert len(reads.got) >= (taken + receive_size - 1) // receive_size  # (each read asks for at most receive_size)


async def test_after_start_tls_reads_go_through_the_tls_stream() -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with socket_stream_pair("tcp") as (client, server), BufferedStream(server) as stream:
        tls_client = trio.SSLStream(client, client_ctx, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tls_client.do_handshake)
            await stream.start_tls(server_ctx, server_side=True)
        await tls_client.send_all(b"secret\n")
        with counting_os_reads() as reads, trio.fail_after(10):
            assert await stream.receive_line() == b"secret"
        assert reads.asked == []  # the SSLStream read it (its own socket reads are trio's)
