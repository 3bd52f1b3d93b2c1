"""The fast paths a request/response server runs through on every request,
over real sockets on 127.0.0.1, and the contract they keep:

* `Connection.write` over a plain socket with nothing queued hands the bytes
  to the kernel in the caller's task (no hop to the writer task), queues
  whatever the kernel does not take, keeps the order, and reports a send
  error the way a queued write does;
* a receive that must read the socket costs one Trio schedule round, not two,
  and is still a full checkpoint on every path;
* the read after a direct reply passes its schedule point first and then
  reads the socket itself (the peer's next request is usually there by then);
* `BufferedStream.fill` reads more without consuming anything;
* a graceful close of a connection holding unread input lingers, so the last
  reply is not destroyed by the reset the kernel sends when a socket with
  unread bytes is closed.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import triostream._connection
from triostream import BufferedStream, CloseReason, Connection, FrameTooLongError, open_connection

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or socket.AF_UNIX is None, reason="POSIX sockets")


@asynccontextmanager
async def tcp_pair(client_rcvbuf: int | None = None) -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """A connected pair of trio.SocketStreams over 127.0.0.1 (the client's
    receive buffer set before connecting, if given: it sizes the window)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        sock = trio.socket.socket()
        if client_rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, client_rcvbuf)
        await sock.connect(("127.0.0.1", port))
        client = trio.SocketStream(sock)
        server = await listeners[0].accept()
    finally:
        await listeners[0].aclose()
    async with client, server:
        yield client, server


def raw_recv(stream: trio.SocketStream, n: int = 65536) -> bytes:
    """Read what the kernel already holds for ``stream``, without a Trio
    checkpoint (select with a short timeout: loopback delivery is immediate)."""
    import select

    fd = stream.socket.fileno()
    readable, _, _ = select.select([fd], [], [], 2.0)
    assert readable, "nothing arrived"
    sock = socket.socket(fileno=fd)
    try:
        return sock.recv(n)
    finally:
        sock.detach()


class StepCounter(trio.abc.Instrument):
    """Counts the steps (schedule rounds) of one task."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


# ------------------------------------------------------------ direct writes


async def test_write_goes_to_the_socket_at_once_when_nothing_is_queued() -> None:
    async with tcp_pair() as (client, server), open_connection(server) as conn:
        conn.write(b"hello\n")
        # No checkpoint since the write: the writer task has not run, yet
        # the kernel has the bytes and nothing is queued.
        assert conn.write_buffer_size == 0
        assert raw_recv(client) == b"hello\n"


async def test_only_a_reply_goes_direct_pushes_are_joined_by_the_writer() -> None:
    async with tcp_pair() as (client, server), open_connection(server) as conn:
        conn.write(b"first\n")  # direct
        conn.write(b"second\n")  # no input since: queued (fan-out style)
        conn.write(b"third\n")
        assert conn.write_buffer_size == len(b"second\nthird\n")
        await conn.flush()  # the writer sends both in one go
        assert raw_recv(client) == b"first\nsecond\nthird\n"
        await client.send_all(b"request\n")
        assert await conn.receive_line() == b"request"
        conn.write(b"reply\n")  # new input arrived: direct again
        assert conn.write_buffer_size == 0
        assert raw_recv(client) == b"reply\n"


async def test_direct_write_queues_what_the_kernel_does_not_take_and_keeps_the_order() -> None:
    async with tcp_pair() as (client, server):
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        async with open_connection(server, max_write_buffer_size=64 << 20) as conn:
            big = bytes(range(256)) * (32 << 10)  # 8 MiB: more than the socket buffers hold
            conn.write(big)
            queued = conn.write_buffer_size
            assert 0 < queued < len(big)  # part went to the kernel, the rest waits
            conn.write(b"tail")  # behind the queue, never before it
            assert conn.write_buffer_size == queued + 4
            got = bytearray()
            while len(got) < len(big) + 4:
                got += await client.receive_some(1 << 20)
            assert got == big + b"tail"
            await conn.flush()
            assert conn.write_buffer_size == 0


async def test_direct_write_error_ends_the_connection_like_a_queued_one() -> None:
    async with tcp_pair() as (client, server), open_connection(server) as conn:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await client.aclose()  # the peer resets the connection
        await trio.sleep(0.05)
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(1000):  # the first writes may still be accepted
                conn.write(b"x" * 1000)
                await trio.sleep(0.001)
        assert conn.close_reason is CloseReason.ERROR
        assert isinstance(conn.close_error, OSError | trio.BrokenResourceError)


async def test_no_direct_write_over_tls_or_memory_streams() -> None:
    stream, _peer = trio.testing.memory_stream_pair()
    async with open_connection(stream) as conn:
        conn.write(b"queued")
        assert conn.write_buffer_size == 6  # the writer task sends it
        await conn.flush()


# ------------------------------------------------------------ lean receives


@pytest.mark.parametrize("connection", [False, True], ids=["BufferedStream", "Connection-no-read-ahead"])
@pytest.mark.parametrize("arrived", [True, False], ids=["bytes-already-in-the-kernel", "bytes-arrive-later"])
async def test_a_receive_that_reads_the_socket_takes_one_schedule_round(connection: bool, arrived: bool) -> None:
    counter = StepCounter()
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=False) as conn:
        stream: BufferedStream = conn if connection else BufferedStream(server)
        if arrived:
            await client.send_all(b"line\n")
            await trio.sleep(0.05)

        async def receive() -> bytes:
            counter.task = trio.lowlevel.current_task()
            return await stream.receive_line()

        trio.lowlevel.add_instrument(counter)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                if not arrived:
                    await trio.sleep(0.05)
                    await client.send_all(b"line\n")
        finally:
            trio.lowlevel.remove_instrument(counter)
        # Counted from the task's first step on: the read is the one
        # checkpoint (it waits for the socket, or passes a schedule point
        # when the bytes were there). Before: a leading checkpoint made it two.
        assert counter.steps == 1
        if not connection:
            stream.detach()


@pytest.mark.parametrize("case", ["buffered", "read", "eof", "closed", "reset"])
async def test_lean_receive_is_a_full_checkpoint_on_every_path(case: str) -> None:
    async with tcp_pair() as (client, server):
        stream = BufferedStream(server)
        if case == "buffered":
            stream.unreceive(b"ready\n")
        elif case == "read":
            await client.send_all(b"ready\n")
            await trio.sleep(0.05)
        elif case == "eof":
            await client.send_eof()
            await trio.sleep(0.05)
        elif case == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            await client.send_all(b"partial")
            await client.aclose()
            await trio.sleep(0.05)
        else:
            await stream.aclose()
        with trio.testing.assert_checkpoints():
            try:
                await stream.receive_line()
            except (EOFError, trio.ClosedResourceError, trio.BrokenResourceError):
                assert case in ("eof", "closed", "reset")
            else:
                assert case in ("buffered", "read")


async def test_lean_receive_cancelled_consumes_nothing() -> None:
    async with tcp_pair() as (client, server):
        stream = BufferedStream(server)
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.receive_line()  # cancelled before it reads anything
        await client.send_all(b"one\ntwo\n")
        with trio.move_on_after(5):
            assert await stream.receive_line() == b"one"
        stream.unreceive(b"zero\n")
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.receive_line()  # a buffered frame, but cancelled first
        assert await stream.receive_line() == b"zero"
        assert await stream.receive_line() == b"two"


# ------------------------------------------------------------ the read after a reply


class ReceiveSomeCounter:
    """Counts calls of trio.SocketStream.receive_some (patched on the class)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = trio.SocketStream.receive_some

        async def counted(stream: trio.SocketStream, max_bytes: int | None = None) -> bytes:
            self.calls += 1
            return await original(stream, max_bytes)

        monkeypatch.setattr(trio.SocketStream, "receive_some", counted)


async def answered(client: trio.SocketStream, conn: Connection) -> None:
    """One request/response round: the connection's reply goes direct."""
    await client.send_all(b"request\n")
    assert await conn.receive_line() == b"request"
    conn.write(b"reply\n")
    assert conn.write_buffer_size == 0
    assert raw_recv(client) == b"reply\n"


async def test_the_read_after_a_reply_passes_a_schedule_point_then_reads_the_socket_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading at once after a direct reply mostly finds nothing (the peer
    has not answered yet) and costs Trio a failed recv, an epoll
    registration and a wake-up; the read after a reply yields first and then
    reads the socket without going through receive_some."""
    counter = ReceiveSomeCounter(monkeypatch)
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=False) as conn:
        await answered(client, conn)
        await client.send_all(b"next\n")
        await trio.sleep(0.05)
        before = counter.calls
        with trio.testing.assert_checkpoints():
            assert await conn.receive_line() == b"next"
        assert counter.calls == before  # read with one os.read, after the checkpoint


async def test_the_read_after_a_reply_waits_when_nothing_has_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ReceiveSomeCounter(monkeypatch)
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=False) as conn:
        await answered(client, conn)
        before = counter.calls
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.sleep(0.05)
                await client.send_all(b"late\n")

            nursery.start_soon(later)
            with trio.fail_after(10):
                assert await conn.receive_line() == b"late"
        assert counter.calls == before + 1  # the miss waits in receive_some


@pytest.mark.parametrize("where", ["the reader task", "the read after a reply"])
@pytest.mark.parametrize("code", [errno.EBADF, errno.ECONNRESET], ids=["EBADF", "ECONNRESET"])
async def test_the_connections_own_socket_reads_raise_what_receive_some_raises(
    where: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader task's loop and the read after a reply read the socket with
    # os.read themselves; a socket error there ends the connection with the
    # error receive_some raises for it (trio's translation, as read_socket
    # makes it): a closed socket (EBADF) ClosedResourceError, anything else
    # BrokenResourceError chained to the OSError.
    real = os.read
    failing: list[int] = []

    def read(fd: int, size: int) -> bytes:
        if fd in failing:
            raise OSError(code, os.strerror(code))
        return real(fd, size)

    monkeypatch.setattr(os, "read", read)  # (the connection calls os.read; read_socket has its own name)
    read_ahead = where == "the reader task"
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=read_ahead) as conn:
        if not read_ahead:
            await answered(client, conn)
        failing.append(server.socket.fileno())
        await client.send_all(b"lost\n")
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
            await conn.receive_line()
        assert conn.close_reason is CloseReason.ERROR
        assert caught.value.__cause__ is conn.close_error
        if code == errno.EBADF:
            assert type(conn.close_error) is trio.ClosedResourceError
            assert conn.close_error.__cause__ is None
        else:
            assert type(conn.close_error) is trio.BrokenResourceError
            assert isinstance(conn.close_error.__cause__, OSError)
            assert conn.close_error.__cause__.errno == code


async def test_the_read_after_a_reply_cancelled_consumes_nothing() -> None:
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=False) as conn:
        await answered(client, conn)
        await client.send_all(b"kept\n")
        await trio.sleep(0.05)
        with trio.CancelScope() as scope:
            scope.cancel()
            with trio.testing.assert_checkpoints():
                await conn.receive_line()
        assert scope.cancelled_caught
        assert conn.peek() == b""  # not read either: still in the kernel
        with trio.fail_after(10):
            assert await conn.receive_line() == b"kept"


@pytest.mark.parametrize("case", ["eof", "reset"])
async def test_the_read_after_a_reply_reports_eof_and_errors_like_receive_some(case: str) -> None:
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=False) as conn:
        await answered(client, conn)
        if case == "eof":
            await client.send_all(b"partial")
            await client.send_eof()
        else:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            await client.aclose()
        await trio.sleep(0.05)
        with trio.testing.assert_checkpoints():
            if case == "eof":
                with pytest.raises(EOFError):
                    await conn.receive_line()
                assert conn.peek() == b"partial"  # an incomplete line: nothing consumed
            else:
                with pytest.raises(trio.BrokenResourceError):
                    await conn.receive_line()
        if case == "reset":
            assert conn.close_reason is CloseReason.ERROR
            assert isinstance(conn.close_error, trio.BrokenResourceError)
            assert isinstance(conn.close_error.__cause__, ConnectionResetError)


# ------------------------------------------------------------ fill


async def test_fill_adds_bytes_without_consuming() -> None:
    async with tcp_pair() as (client, server):
        stream = BufferedStream(server, max_buffer_size=16)
        await client.send_all(b"abc")
        with trio.testing.assert_checkpoints():
            assert await stream.fill() == 3
        assert stream.peek() == b"abc"
        await client.send_all(b"defghijklmnopqrstuvwxyz")
        while len(stream.peek()) < 16:
            await stream.fill()
        with pytest.raises(FrameTooLongError), trio.testing.assert_checkpoints():
            await stream.fill()  # full: no frame can grow
        assert stream.receive_exactly_nowait(16) == b"abcdefghijklmnop"
        await client.send_eof()
        got = b""
        while n := await stream.fill():
            got = stream.peek()
            assert n > 0
        assert got == b"qrstuvwxyz"
        with trio.testing.assert_checkpoints():
            assert await stream.fill() == 0  # EOF, again
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError), trio.testing.assert_checkpoints():
            await stream.fill()


@pytest.mark.parametrize("read_ahead", [True, False])
async def test_fill_on_a_connection_waits_for_more(read_ahead: bool) -> None:
    async with tcp_pair() as (client, server), open_connection(server, read_ahead=read_ahead) as conn:
        await client.send_all(b"*1\r\n$4\r\nPI")
        got = len(conn.peek())  # (the read-ahead task may have buffered them already)
        while len(conn.peek()) < 10:
            got += await conn.fill()
        assert got == 10
        assert conn.peek() == b"*1\r\n$4\r\nPI"
        async with trio.open_nursery() as nursery:

            async def more() -> None:
                await trio.sleep(0.05)
                await client.send_all(b"NG\r\n")

            nursery.start_soon(more)
            assert await conn.fill() >= 4
        assert conn.peek() == b"*1\r\n$4\r\nPING\r\n"

        async def second() -> None:
            await conn.fill()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await conn.fill()
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------ lingering close


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="Linux socket option")
async def test_graceful_close_with_unread_input_delivers_the_last_reply() -> None:
    """The server answers a client that is still sending (a flooder, or a
    request it refuses) and closes. Closing a socket that holds unread bytes
    makes the kernel reset the connection and drop what it has not sent; the
    reply is only safe if the close first drains the input (lingering)."""
    reply = b"R" * (1 << 20)
    async with tcp_pair(client_rcvbuf=65536) as (client, server):
        # The whole reply fits in the server's kernel (trio's default
        # TCP_NOTSENT_LOWAT of 16 KiB raised), so the flush ends at once;
        # the client does not read yet and its window is small, so most of
        # the reply is still unsent when the server closes. Measured without
        # the linger: the client got 127,574 bytes, then a reset.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 4 << 20)
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                async with open_connection(server, max_write_buffer_size=8 << 20) as conn:
                    await conn.receive_line()
                    conn.write(reply + b"\nbye\n")
                    # leaving the block: a graceful close, with unread input

            nursery.start_soon(serve)
            await client.send_all(b"request\n" + b"garbage " * 12_000)  # within the linger budget
            await trio.sleep(1.0)  # the server has closed (after lingering 0.5 s)
            got = bytearray()
            with trio.fail_after(10):
                while data := await client.receive_some(1 << 20):
                    got += data
            assert len(got) == len(reply) + 5
            assert got.endswith(b"\nbye\n")


async def test_graceful_close_without_unread_input_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # A linger would now wait 60 s for a client that neither reads nor closes.
    monkeypatch.setattr(triostream._connection, "_LINGER_QUIET", 60.0)
    async with tcp_pair() as (client, server):
        with trio.fail_after(20):
            async with open_connection(server) as conn:
                await client.send_all(b"request\n")
                assert await conn.receive_line() == b"request"
                conn.write(b"reply\n")
        assert raw_recv(client) == b"reply\n"


async def test_linger_is_bounded_for_a_peer_that_keeps_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flood is never quiet and close_timeout is long: only the linger's
    # own bounds (time, bytes) end it.
    monkeypatch.setattr(triostream._connection, "_LINGER_TIME", 60.0)
    async with tcp_pair() as (client, server), trio.open_nursery() as nursery:

        async def flood() -> None:
            with trio.move_on_after(30):
                try:
                    while True:
                        await client.send_all(b"x" * 65536)
                except trio.BrokenResourceError:
                    return  # the server gave up and reset
            raise AssertionError("the close never cut the flood off")

        nursery.start_soon(flood)
        with trio.fail_after(20):
            async with open_connection(server, close_timeout=120) as conn:
                await conn.receive_some()


def test_fill_is_the_same_method_on_a_connection() -> None:
    assert Connection.fill is BufferedStream.fill


@pytest.mark.parametrize("read_timeout", [None, 5.0])
async def test_a_wait_for_the_reader_opens_a_cancel_scope_only_for_a_deadline(
    monkeypatch: pytest.MonkeyPatch, read_timeout: float | None
) -> None:
    """A receive that waits for the reader task (read-ahead) opens a cancel
    scope only when it has a deadline (``read_timeout``): without one, each
    wait would enter and leave a scope that can never fire (about a seventh
    of a frame loop's cost per 16 KiB line over a Connection)."""
    scopes: list[float] = []
    move_on_at = trio.move_on_at

    def counted(deadline: float, *args: object, **kwargs: object) -> trio.CancelScope:
        scopes.append(deadline)
        return move_on_at(deadline, *args, **kwargs)  # type: ignore[arg-type]

    left, right = trio.testing.memory_stream_pair()
    got = []
    with trio.fail_after(10):
        async with open_connection(right, read_timeout=read_timeout) as conn:
            monkeypatch.setattr(trio, "move_on_at", counted)  # (as _connection calls it)
            frames = conn.lines()
            for i in range(5):
                await left.send_all(b"a" * i)  # the head of a line: the next step waits for the rest
                await trio.testing.wait_all_tasks_blocked()
                await left.send_all(b"b\n")
                got.append(await frames.__anext__())
            monkeypatch.undo()
    assert got == [b"a" * i + b"b" for i in range(5)]
    if read_timeout is None:
        assert scopes == []
    else:
        assert len(scopes) >= 4 and all(deadline < float("inf") for deadline in scopes)
