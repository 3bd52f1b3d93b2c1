"""Connection: read-ahead, write queue, close lifecycle, errors, timeouts."""

from __future__ import annotations

import random
import socket
import ssl
import struct

import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme
from scripted import ScriptedStream

from triostream import (
    CloseReason,
    Connection,
    IncompleteReadError,
    WriteBufferFullError,
    open_connection,
)
from triostream.testing import socket_stream_pair


class CountingStream(trio.abc.HalfCloseableStream):
    """Wraps a stream and counts its transport sends."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.sends = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some():
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------- reading


async def test_receives_over_tcp_with_read_ahead() -> None:
    async with socket_stream_pair() as (client, server), open_connection(server, max_buffer_size=1024) as conn:
        await client.send_all(b"GET /\r\nHost: x\r\n\r\nBODY1234")
        assert await conn.receive_line() == b"GET /"
        assert await conn.receive_until(b"\r\n\r\n") == b"Host: x"
        assert await conn.receive_exactly(8) == b"BODY1234"
        await client.send_eof()
        assert await conn.receive_some() == b""
        assert conn.peer_eof


async def test_read_ahead_notices_eof_while_idle_and_respects_max_buffer() -> None:
    async with socket_stream_pair() as (client, server), open_connection(server, max_buffer_size=4096) as conn:
        await client.send_all(b"x" * 100)
        await client.send_eof()
        with trio.fail_after(5):
            while not conn.peer_eof:  # noqa: ASYNC110 - polling on purpose: no receive may run
                await trio.sleep(0.001)
        assert conn.peer_eof, "EOF seen without any receive call"
        assert await conn.receive_until_eof() == b"x" * 100


async def test_read_ahead_stops_at_max_buffer_size() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right, max_buffer_size=1000, receive_size=300) as conn:
        await left.send_all(b"y" * 5000)
        await trio.testing.wait_all_tasks_blocked()
        assert len(conn.peek()) == 1000, "never past max_buffer_size"
        assert await conn.receive_exactly(600) == b"y" * 600
        await trio.testing.wait_all_tasks_blocked()
        assert len(conn.peek()) == 1000, "reading resumes when room is made"


# ---------------------------------------------------------------- writing


async def test_write_coalesces_small_writes() -> None:
    left, right = trio.testing.memory_stream_pair()
    counting = CountingStream(right)
    async with open_connection(counting) as conn:
        for i in range(1000):
            conn.write(b"%04d" % i)
        await conn.flush()
        assert counting.sends < 20, f"{counting.sends} transport sends for 1000 writes"
        got = b""
        while len(got) < 4000:
            got += await left.receive_some()
        assert got == b"".join(b"%04d" % i for i in range(1000))


async def test_backpressure_with_a_peer_that_stops_reading() -> None:
    async with (
        socket_stream_pair() as (client, server),
        open_connection(server, max_write_buffer_size=200_000, write_high_water=100_000) as conn,
    ):
        chunk = b"z" * 10_000
        queued = 0
        with pytest.raises(WriteBufferFullError):
            for _ in range(10_000):
                conn.write(chunk)
                queued += len(chunk)
        assert conn.write_buffer_size <= 200_000
        with trio.move_on_after(0.2) as scope:
            await conn.drain()
        assert scope.cancelled_caught, "drain waits while the peer does not read"

        async def reader() -> bytes:
            return await read_all(client)

        async with trio.open_nursery() as nursery:
            results: list[bytes] = []

            async def collect() -> None:
                results.append(await reader())

            nursery.start_soon(collect)
            await conn.drain()
            assert conn.write_buffer_size <= conn.write_low_water
            await conn.send_all(b"end")
            await conn.aclose()
        assert results[0] == chunk * (queued // len(chunk)) + b"end"


async def test_send_all_larger_than_the_write_buffer() -> None:
    async with socket_stream_pair() as (client, server):
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def collect() -> None:
                received.append(await read_all(client))

            nursery.start_soon(collect)
            async with open_connection(server, max_write_buffer_size=5000, write_high_water=2000) as conn:
                await conn.send_all(bytes(range(256)) * 100)
        assert received[0] == bytes(range(256)) * 100


# ---------------------------------------------------------------- closing


async def test_graceful_close_flushes_and_sends_eof() -> None:
    async with socket_stream_pair() as (client, server):
        async with open_connection(server) as conn:
            conn.write(b"a" * 100_000)
            conn.write(b"tail")
        assert conn.closed
        assert conn.close_reason is CloseReason.LOCAL
        assert await read_all(client) == b"a" * 100_000 + b"tail"


async def test_forceful_close_drops_the_queue() -> None:
    left, right = trio.testing.lockstep_stream_pair()
    async with open_connection(right) as conn:
        conn.write(b"q" * 10)
        await trio.aclose_forcefully(conn)
        assert conn.closed
        assert conn.write_buffer_size == 0
    with pytest.raises(trio.ClosedResourceError):
        conn.write(b"more")
    await left.aclose()


class QuietTransport(trio.abc.HalfCloseableStream):
    """A transport for the close tests below: sends are kept in ``sent``,
    receives wait until it is closed, ``send_eof`` and ``aclose`` are a
    checkpoint (``closed`` tells). Each subclass changes one thing."""

    def __init__(self) -> None:
        self.closed = trio.Event()
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.closed.wait()
        raise trio.ClosedResourceError

    async def aclose(self) -> None:
        self.closed.set()
        await trio.lowlevel.checkpoint()


class SendFailsAfterASecond(QuietTransport):
    """Sends fail after a second: a peer that reset the connection while a
    reply was on its way."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep(1)
        raise trio.BrokenResourceError("connection reset by peer")


@pytest.mark.parametrize("read_ahead", [True, False])
async def test_a_send_failing_while_the_close_flushes_ends_the_close(
    autojump_clock: trio.testing.MockClock, read_ahead: bool
) -> None:
    """The graceful close waits for the queue to drain; the transport fails
    under the writer meanwhile: the close ends then, the queued bytes
    dropped and the reason ERROR. (The writer used to end silently during a
    close, which then waited out all of ``close_timeout`` with nothing left
    that could drain the queue: seen as connection tasks outliving a storm
    of resetting clients by seconds.)"""
    transport = SendFailsAfterASecond()
    async with open_connection(transport, close_timeout=60, read_ahead=read_ahead) as conn:
        conn.write(b"a reply the peer will never see")
        start = trio.current_time()
    assert trio.current_time() - start < 2  # (virtual seconds: the send fails at 1)
    assert conn.close_reason is CloseReason.ERROR
    assert isinstance(conn.close_error, trio.BrokenResourceError)
    assert conn.write_buffer_size == 0
    assert transport.closed.is_set()


class ReceiveFailsOnCue(QuietTransport):
    """Receives fail (a reset) when ``fail_receive`` is set; sends wait
    until it is closed (a peer not reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_receive = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.closed.wait()
        raise trio.ClosedResourceError

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.fail_receive.wait()
        raise trio.BrokenResourceError("connection reset by peer")


@pytest.mark.parametrize("method", ["receive_some", "receive_line"])
async def test_a_read_failing_while_the_close_flushes_is_no_eof(method: str) -> None:
    """One task waits in a receive; another closes (the flush waits for a
    peer that does not read); then the read-ahead task's read fails. The
    receive must not take that for an EOF, nor spin: the connection ended
    by an error and the close ends too. (The read-ahead task ignored errors
    once a close had begun: ``receive_some`` returned ``b""`` for the reset,
    ``receive_line`` went round its wait, set for good, until the close
    gave up after ``close_timeout``.)"""
    transport = ReceiveFailsOnCue()
    outcome: list[object] = []
    with trio.fail_after(30):  # (a guard: the bug spins for close_timeout)
        async with open_connection(transport, close_timeout=600) as conn, trio.open_nursery() as nursery:

            async def receive() -> None:
                try:
                    outcome.append(await getattr(conn, method)())
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    outcome.append(exc)

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            conn.write(b"a reply the peer does not read")
            nursery.start_soon(conn.aclose)
            await trio.testing.wait_all_tasks_blocked()
            transport.fail_receive.set()
    assert len(outcome) == 1
    assert isinstance(outcome[0], trio.BrokenResourceError | trio.ClosedResourceError), outcome
    assert conn.close_reason is CloseReason.ERROR
    assert isinstance(conn.close_error, trio.BrokenResourceError)


class SlowEof(QuietTransport):
    """``send_eof`` waits until ``eof_may_go`` is set (any transport's may
    yield there: a checkpoint at least)."""

    def __init__(self) -> None:
        super().__init__()
        self.eof_may_go = trio.Event()

    async def send_eof(self) -> None:
        await self.eof_may_go.wait()


async def test_a_send_during_the_close_is_refused_as_closed_not_busy() -> None:
    """The graceful close holds the send side while it sends its EOF. A
    `Connection.send_all` in another task meanwhile is refused with
    `trio.ClosedResourceError`: the connection is closing. It raised
    `trio.BusyResourceError`, the error of two tasks misusing one
    connection, which this is not. (Found by
    tests/test_connection_lifecycle_fuzz.py.)"""
    transport = SlowEof()
    async with open_connection(transport, close_timeout=60) as conn, trio.open_nursery() as nursery:
        nursery.start_soon(conn.aclose)
        await trio.testing.wait_all_tasks_blocked()
        assert conn._sending, "the close holds the send side (its EOF)"
        with pytest.raises(trio.ClosedResourceError):
            await conn.send_all(b"too late")
        transport.eof_may_go.set()
    assert conn.close_reason is CloseReason.LOCAL
    assert transport.sent == b""


async def test_a_receive_and_the_closes_lingering_never_read_the_transport_at_once() -> None:
    """Without read-ahead a receive reads the transport in its own task, and
    a graceful close with bytes unread lingers (reads and drops the peer's
    bytes) in a read of its own: Trio refuses two reads of one socket at
    once (`trio.BusyResourceError`). A receive that starts while the close
    lingers is refused with `trio.ClosedResourceError` (it reached the
    socket and got the transport's BusyResourceError); a close that begins
    while a receive reads does not linger, and that receive ends with
    `trio.ClosedResourceError` when the transport closes. (Found by
    tests/test_connection_lifecycle_fuzz.py.)"""
    async with socket_stream_pair() as (client, server):
        async with open_connection(server, read_ahead=False) as conn, trio.open_nursery() as nursery:
            await client.send_all(b"unread")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(conn.aclose)
            await trio.testing.wait_all_tasks_blocked()
            assert getattr(conn, "_lingering", True), "the close reads and drops what the peer sent"
            with pytest.raises(trio.ClosedResourceError):
                await conn.receive_line()
        assert conn.close_reason is CloseReason.LOCAL

    async with socket_stream_pair() as (client, server):
        async with open_connection(server, read_ahead=False) as conn, trio.open_nursery() as nursery:
            await client.send_all(b"a line begun")
            outcome: list[BaseException] = []

            async def receive() -> None:
                try:
                    await conn.receive_line()
                except Exception as exc:
                    outcome.append(exc)

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            assert conn.peek() == b"a line begun"
            with trio.fail_after(10):
                await conn.aclose()
            assert not getattr(conn, "_lingering", False)
        assert [type(exc) for exc in outcome] == [trio.ClosedResourceError]
        assert conn.close_reason is CloseReason.LOCAL


async def test_close_on_exception_in_the_block_is_forceful_and_propagates() -> None:
    _, right = trio.testing.memory_stream_pair()
    with pytest.raises(KeyError):
        async with open_connection(right) as conn:
            conn.write(b"never flushed")
            raise KeyError("app bug")
    assert conn.closed


async def test_close_reasons_and_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right) as conn:
        conn.add_close_callback(lambda c: calls.append("first"))
        conn.add_close_callback(lambda c: 1 / 0)
        conn.add_close_callback(lambda c: calls.append(f"third {c.close_reason and c.close_reason.name}"))
        await left.send_all(b"bye")
        await left.send_eof()
        assert await conn.receive_until_eof() == b"bye"
    assert calls == ["first", "third PEER_EOF"]
    assert "close callback" in caplog.text
    conn.add_close_callback(lambda c: calls.append("late"))
    assert calls[-1] == "late", "a callback added after the close runs at once"
    await conn.aclose()
    assert calls.count("first") == 1, "callbacks run once"


async def test_send_eof_then_writes_refused_and_detach() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right) as conn:
        conn.write(b"last words")
        await conn.send_eof()
        assert await read_all(left) == b"last words"
        with pytest.raises(trio.ClosedResourceError):
            conn.write(b"more")
        await left.send_all(b"still receiving\nleft")
        assert await conn.receive_line() == b"still receiving"
        await trio.testing.wait_all_tasks_blocked()
        transport, leftover = conn.detach()
        assert transport is right
        assert leftover == b"left"
        assert conn.closed


async def test_detach_while_the_read_ahead_task_has_just_read_loses_nothing() -> None:
    """``detach`` stops the read-ahead task and hands over what is buffered.
    Through a plain socket's ``receive_some``, a read that found bytes at
    once was resumed only after a schedule point: a detach meanwhile lost
    those bytes (neither buffered nor left in the socket). The reader now
    reads and buffers in one step. Here the reader reads six bytes at a time:
    it has read the second six when the receive of the first returns, and
    the detach comes before or after it resumes (Trio's order, about even)."""
    for attempt in range(40):
        async with socket_stream_pair() as (client, server):
            await client.send_all(b"first\nsecond")
            await client.send_eof()
            async with open_connection(server, receive_size=6) as conn:
                assert await conn.receive_line() == b"first"
                transport, leftover = conn.detach()
                rest = bytearray(leftover)
                while data := await transport.receive_some():
                    rest += data
                await transport.aclose()
                assert rest == b"second", attempt


async def test_detach_over_tls_while_the_read_ahead_task_reads_is_refused() -> None:
    """Over TLS the read-ahead task cannot read and buffer in one step: a
    detach while it is in a read could lose what that read brings, and is
    refused (`trio.BusyResourceError`); with ``read_ahead=False`` it works."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    for read_ahead in (True, False):
        async with socket_stream_pair() as (client, server):
            tls_server = trio.SSLStream(server, server_context, server_side=True)
            tls_client = trio.SSLStream(client, client_context, server_hostname="localhost")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tls_client.do_handshake)
                await tls_server.do_handshake()
            async with open_connection(tls_server, read_ahead=read_ahead) as conn:
                await tls_client.send_all(b"hello\nrest")
                assert await conn.receive_line() == b"hello"
                await trio.testing.wait_all_tasks_blocked()
                if read_ahead:
                    with pytest.raises(trio.BusyResourceError, match="read_ahead=False"):
                        conn.detach()
                    assert not conn.closed
                else:
                    transport, leftover = conn.detach()
                    assert transport is tls_server
                    assert leftover == b"rest"


# ---------------------------------------------------------------- errors


async def test_peer_reset_mid_frame_delivers_data_then_broken() -> None:
    async with socket_stream_pair() as (client, server), open_connection(server) as conn:
        await client.send_all(b"line one\nline tw")
        # An abortive close: RST instead of FIN.
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()
        with trio.fail_after(5):
            await conn.wait_closed()
        assert conn.close_reason is CloseReason.ERROR
        assert isinstance(conn.close_error, (trio.BrokenResourceError, OSError))
        assert await conn.receive_line() == b"line one", "data before the reset is delivered"
        with pytest.raises(trio.BrokenResourceError) as info:
            await conn.receive_line()
        assert info.value.__cause__ is conn.close_error
        assert conn.peek() == b"line tw", "nothing lost"
        with pytest.raises(trio.BrokenResourceError):
            conn.write(b"x")


@pytest.mark.parametrize("method", ["receive_some", "receive_line", "receive_exactly", "receive_until_eof"])
async def test_a_receive_waiting_when_the_peer_resets_raises_broken(method: str) -> None:
    """The receive is already waiting for the read-ahead task when the reset
    comes: it raises `trio.BrokenResourceError` (chained from the error), as
    a receive started after it does. ``receive_some`` returned ``b""`` there,
    a clean EOF, for a connection that had ended by an error."""
    args = {"receive_exactly": (10,)}.get(method, ())
    async with socket_stream_pair() as (client, server), open_connection(server) as conn:
        outcome: list[object] = []

        async def receive() -> None:
            try:
                outcome.append(await getattr(conn, method)(*args))
            except trio.BrokenResourceError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.aclose()
        assert conn.close_reason is CloseReason.ERROR
        assert len(outcome) == 1 and isinstance(outcome[0], trio.BrokenResourceError), outcome
        assert outcome[0].__cause__ is conn.close_error


async def test_a_receive_waiting_when_the_idle_timeout_strikes_raises_broken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same for the idle timeout: `trio.BrokenResourceError` from
    `trio.TooSlowError`, not ``b""``."""
    _left, right = trio.testing.memory_stream_pair()
    async with open_connection(right, idle_timeout=30) as conn:
        with pytest.raises(trio.BrokenResourceError) as info:
            await conn.receive_some()
        assert trio.current_time() >= 30 - 1e-6
        assert conn.close_reason is CloseReason.TIMEOUT
        assert isinstance(info.value.__cause__, trio.TooSlowError)


async def test_transport_error_in_helper_is_not_an_exception_group() -> None:
    transport = ScriptedStream([b"partial"], error=trio.BrokenResourceError("boom"))
    async with open_connection(transport) as conn:
        with pytest.raises(trio.BrokenResourceError):
            await conn.receive_line()
    assert conn.close_reason is CloseReason.ERROR


async def test_a_bug_in_a_helper_propagates() -> None:
    transport = ScriptedStream([], error=ZeroDivisionError("a genuine bug"))
    with pytest.raises(BaseException) as info:
        async with open_connection(transport) as conn:
            await conn.wait_closed()
    assert info.group_contains(ZeroDivisionError)


def root_task() -> trio.lowlevel.Task:
    task = trio.lowlevel.current_root_task()
    assert task is not None
    return task


async def test_cancelling_the_block_leaves_no_tasks_or_sockets() -> None:
    rng = random.Random(3)
    for _ in range(30):
        async with socket_stream_pair() as (client, server):
            before = len(root_task().child_nurseries[0].child_tasks)
            with trio.move_on_after(rng.choice([0, 0.0005, 0.002, 0.01])):
                async with open_connection(server, idle_timeout=60) as conn:
                    conn.write(b"x" * rng.randrange(1, 100_000))
                    await client.send_all(b"data\n" * rng.randrange(1, 50))
                    async for _ in conn.lines():
                        await trio.sleep(0.001)
            assert conn.closed
            assert server.socket.fileno() == -1, "the socket is closed"
            after = len(root_task().child_nurseries[0].child_tasks)
            assert after == before, "no helper task survives the block"


# ---------------------------------------------------------------- timeouts


async def test_idle_timeout(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right, idle_timeout=30) as conn:
        await trio.sleep(10)
        await left.send_all(b"activity\n")
        assert await conn.receive_line() == b"activity"
        await conn.wait_closed()
        assert trio.current_time() >= 40 - 1e-6
        assert conn.close_reason is CloseReason.TIMEOUT
        assert isinstance(conn.close_error, trio.TooSlowError)


async def test_read_timeout_slowloris(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right, read_timeout=5) as conn:
        await left.send_all(b"fast\n")
        assert await conn.receive_line() == b"fast"

        async def trickle() -> None:
            for byte in b"slowloris":
                await left.send_all(bytes([byte]))
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            with pytest.raises(trio.BrokenResourceError) as info:
                await conn.receive_line()
            nursery.cancel_scope.cancel()
        assert conn.close_reason is CloseReason.TIMEOUT
        assert isinstance(info.value.__cause__, trio.TooSlowError)


async def test_write_timeout_peer_not_reading(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.lockstep_stream_pair()
    async with open_connection(right, write_timeout=3) as conn:
        conn.write(b"nobody reads this")
        await conn.wait_closed()
        assert conn.close_reason is CloseReason.TIMEOUT
        with pytest.raises(trio.BrokenResourceError):
            await conn.drain()
    await left.aclose()


# ---------------------------------------------------------------- conformance


async def test_connection_passes_trio_two_way_stream_checks() -> None:
    async with trio.open_nursery() as nursery:

        async def maker() -> tuple[Connection, Connection]:
            left, right = trio.testing.memory_stream_pair()
            a, b = Connection(left), Connection(right)
            a._start(nursery)
            b._start(nursery)
            return a, b

        await trio.testing.check_two_way_stream(maker, None)
        nursery.cancel_scope.cancel()


async def test_receive_contract_holds_on_connection() -> None:
    """All or nothing under cancellation, through the read-ahead path."""
    rng = random.Random(11)
    data = bytes(rng.choice(b"ab\n") for _ in range(20_000))
    left, right = trio.testing.memory_stream_pair()
    received = bytearray()
    async with open_connection(right, max_buffer_size=256, receive_size=17) as conn, trio.open_nursery() as nursery:

        async def sender() -> None:
            for i in range(0, len(data), 50):
                await left.send_all(data[i : i + 50])
                await trio.lowlevel.checkpoint()
            await left.send_eof()

        nursery.start_soon(sender)
        while True:
            with trio.move_on_after(rng.choice([0, 0.0001, 0.001])):
                try:
                    received += await conn.receive_until(b"\n", keep_delimiter=True)
                except IncompleteReadError as exc:
                    received += exc.partial
                    break
    assert bytes(received) == data
