"""The public types and options tell the truth, statically and at run time.

This module is type-checked in CI's lint stage (``mypy --strict``, and
``pyright tests/test_api.py``: both must read its static assertions the same
way): the ``assert_type`` lines are static assertions as well as run-time
calls.
"""

from __future__ import annotations

import math
import ssl
import sys
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
import trustme

import triostream
from triostream import (
    BufferedStream,
    Connection,
    HalfCloseableBufferedStream,
    WriteBufferFullError,
    connect_tcp,
    connect_unix,
    open_connection,
    serve_tcp,
    serve_unix,
)
from triostream.testing import open_socket_stream_pair

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


# ------------------------------------------------------------ static types


async def test_constructors_have_their_own_static_type() -> None:
    left, right = trio.testing.memory_stream_pair()
    conn = assert_type(Connection(left, idle_timeout=5.0, read_timeout=1, write_low_water=0), Connection)
    assert type(conn) is Connection
    stream = assert_type(BufferedStream(right), BufferedStream)
    assert type(stream) is BufferedStream
    half = assert_type(HalfCloseableBufferedStream(right), HalfCloseableBufferedStream)
    assert isinstance(half, trio.abc.HalfCloseableStream)
    await trio.aclose_forcefully(conn)
    await trio.aclose_forcefully(stream)


async def test_factories_have_their_static_type() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(left, idle_timeout=5.0) as conn:
        assert_type(conn, Connection)
        conn.write(b"typed")  # a Connection method: an error if conn were typed BufferedStream
        await conn.flush()
        assert await right.receive_some() == b"typed"


# ------------------------------------------------------- half-close claims


async def test_plain_buffered_stream_never_claims_half_close() -> None:
    client, server = await open_socket_stream_pair("tcp")
    stream = BufferedStream(server)
    assert not isinstance(stream, trio.abc.HalfCloseableStream)
    assert stream.can_send_eof  # it still works, without the promise
    await stream.send_eof()
    assert await client.receive_some() == b""
    await stream.aclose()
    await client.aclose()


def test_half_closeable_needs_a_half_closeable_transport() -> None:
    left, _ = trio.testing.memory_stream_pair()
    with pytest.raises(TypeError, match="HalfCloseableStream"):
        HalfCloseableBufferedStream(trio.SSLStream(left, ssl.create_default_context()))  # type: ignore[arg-type]


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.org").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_start_tls_leaves_no_false_half_close_claim() -> None:
    """After start_tls, nothing claims to be a HalfCloseableStream whose
    send_eof would raise NotImplementedError."""
    server_ctx, client_ctx = tls_contexts()
    client_raw, server_raw = await open_socket_stream_pair("tcp")
    client = HalfCloseableBufferedStream(client_raw)
    server = BufferedStream(server_raw)
    results: dict[str, BufferedStream] = {}

    async def upgrade_client() -> None:
        results["client"] = await client.start_tls(client_ctx, server_hostname="example.org")

    async def upgrade_server() -> None:
        results["server"] = await server.start_tls(server_ctx, server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upgrade_client)
        nursery.start_soon(upgrade_server)
    tls_client = results["client"]
    # The half-closeable one hands over to a plain stream and is detached.
    assert type(tls_client) is BufferedStream
    assert not isinstance(tls_client, trio.abc.HalfCloseableStream)
    assert isinstance(tls_client.transport_stream, trio.SSLStream)
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"old object")
    # A plain one upgrades in place and returns itself.
    assert results["server"] is server
    assert not isinstance(server, trio.abc.HalfCloseableStream)
    await tls_client.send_all(b"secret\n")
    assert await server.receive_line() == b"secret"
    assert not tls_client.can_send_eof
    await tls_client.aclose()
    await server.aclose()


async def test_half_closeable_start_tls_refusal_leaves_it_as_it_was() -> None:
    server_ctx, _ = tls_contexts()
    left, right = trio.testing.memory_stream_pair()
    stream = HalfCloseableBufferedStream(right)
    await left.send_all(b"STARTTLS\r\ninjected")
    assert await stream.receive_line() == b"STARTTLS"
    with pytest.raises(triostream.StartTLSRefusedError):
        await stream.start_tls(server_ctx, server_side=True)
    assert stream.peek() == b"injected"
    await stream.send_eof()  # still half-closeable
    assert await left.receive_some() == b""


# ---------------------------------------------------------------- options


BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"max_buffer_size": 0}, ValueError),
    ({"max_buffer_size": -5}, ValueError),
    ({"max_buffer_size": 1.5}, TypeError),
    ({"max_buffer_size": True}, TypeError),
    ({"receive_size": 0}, ValueError),
    ({"receive_size": "64"}, TypeError),
    ({"max_write_buffer_size": 0}, ValueError),
    ({"write_high_water": 0}, ValueError),
    ({"write_low_water": -1}, ValueError),
    ({"write_low_water": 10, "write_high_water": 5}, ValueError),
    ({"write_high_water": 1 << 21}, ValueError),  # over max_write_buffer_size
    ({"read_ahead": 1}, TypeError),
    ({"idle_timeout": 0}, ValueError),
    ({"idle_timeout": -1.0}, ValueError),
    ({"idle_timeout": math.inf}, ValueError),
    ({"read_timeout": math.nan}, ValueError),
    ({"write_timeout": "5"}, TypeError),
    ({"write_timeout": True}, TypeError),
    ({"close_timeout": None}, TypeError),
    ({"close_timeout": math.inf}, ValueError),
    ({"close_timeout": 0}, ValueError),
    ({"write_timout": 1.0}, TypeError),  # a typo is an unexpected keyword
]


async def _serve_tcp_now(**options: Any) -> None:
    await serve_tcp(_never_called, 0, host="127.0.0.1", **options)


async def _serve_unix_now(**options: Any) -> None:
    await serve_unix(_never_called, "/nonexistent-dir/never-bound.sock", **options)


async def _never_called(conn: Connection) -> None:
    raise AssertionError("no connection should be served")


FACTORIES: dict[str, Callable[..., object]] = {
    "Connection": lambda **o: Connection(trio.testing.memory_stream_pair()[0], **o),
    "open_connection": lambda **o: open_connection(trio.testing.memory_stream_pair()[0], **o),
    "connect_tcp": lambda **o: connect_tcp("127.0.0.1", 9, **o),
    "connect_unix": lambda **o: connect_unix("/nonexistent", **o),
}


@pytest.mark.parametrize(("options", "error"), BAD_OPTIONS, ids=lambda x: repr(x) if isinstance(x, dict) else "")
@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_bad_option_is_refused_by_the_call_itself(
    factory: str, options: dict[str, Any], error: type[Exception]
) -> None:
    """No event loop, no connection, no socket: the call itself refuses."""
    with pytest.raises(error):
        FACTORIES[factory](**options)


@pytest.mark.parametrize(("options", "error"), BAD_OPTIONS, ids=lambda x: repr(x) if isinstance(x, dict) else "")
@pytest.mark.parametrize("serve", [_serve_tcp_now, _serve_unix_now])
async def test_serve_refuses_bad_options_before_listening(
    serve: Callable[..., Any], options: dict[str, Any], error: type[Exception]
) -> None:
    # A plain exception from the call (never an exception group), before any
    # socket exists: the Unix path is in a directory that does not exist, so
    # binding would raise OSError instead.
    with trio.fail_after(10), pytest.raises(error):
        await serve(**options)


@pytest.mark.parametrize(("options", "error"), [({"max_connections": 0}, ValueError), ({"backlog": 0}, ValueError)])
async def test_serve_refuses_bad_server_options(options: dict[str, Any], error: type[Exception]) -> None:
    with trio.fail_after(10), pytest.raises(error):
        await _serve_tcp_now(**options)
    with trio.fail_after(10), pytest.raises(error):
        await _serve_unix_now(**options)


async def test_serve_tcp_validates_through_nursery_start() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(ValueError, match="read_timeout"):
                await nursery.start(_serve_tcp_with_bad_option)


async def _serve_tcp_with_bad_option(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
    await serve_tcp(_never_called, 0, host="127.0.0.1", read_timeout=-1.0, task_status=task_status)


def test_good_options_are_accepted_and_normalised() -> None:
    conn = Connection(trio.testing.memory_stream_pair()[0], idle_timeout=5, write_high_water=100)
    assert conn.idle_timeout == 5.0 and isinstance(conn.idle_timeout, float)
    assert conn.write_low_water == 25


# ------------------------------------------------------- misuse and errors


def test_write_buffer_full_is_would_block_not_busy() -> None:
    assert issubclass(WriteBufferFullError, trio.WouldBlock)
    assert not issubclass(WriteBufferFullError, trio.BusyResourceError)


@pytest.mark.parametrize(
    "call",
    ["receive_line", "receive_some", "flush", "drain", "send_all", "wait_send_all_might_not_block", "write"],
)
async def test_connection_without_helpers_raises_runtime_error(call: str) -> None:
    left, right = trio.testing.memory_stream_pair()
    conn = Connection(right)
    await left.send_all(b"a line\n")
    with trio.fail_after(5), pytest.raises(RuntimeError, match="open_connection"):
        if call == "write":
            conn.write(b"x")
        elif call == "send_all":
            await conn.send_all(b"x")
        else:
            await getattr(conn, call)()
    await conn.aclose()  # closing one never started still works


async def test_unstarted_connection_start_tls_raises_runtime_error() -> None:
    server_ctx, _ = tls_contexts()
    conn = Connection(trio.testing.memory_stream_pair()[0])
    with trio.fail_after(5), pytest.raises(RuntimeError, match="open_connection"):
        await conn.start_tls(server_ctx, server_side=True)
    await conn.aclose()


class RecordingStream(trio.abc.HalfCloseableStream):
    """Records the max_bytes of every receive_some."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.asked: list[int | None] = []

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self.asked.append(max_bytes)
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_receive_some_never_asks_transport_for_more_than_receive_size() -> None:
    left, right = trio.testing.memory_stream_pair()
    transport = RecordingStream(right)
    stream = BufferedStream(transport, receive_size=1024)
    await left.send_all(bytes(5000))
    got = await stream.receive_some(10**9)
    assert 1 <= len(got) <= 1024
    got_small = await stream.receive_some(10)
    assert len(got_small) <= 10
    assert transport.asked and all(n is not None and n <= 1024 for n in transport.asked)


async def test_write_counts_bytes_of_typed_memoryviews() -> None:
    left, right = trio.testing.memory_stream_pair()
    data = memoryview(bytes(range(80))).cast("L")
    async with open_connection(right) as conn:
        conn.write(data)
        assert conn.write_buffer_size == 80
        await conn.flush()
        assert conn.write_buffer_size == 0
    received = b""
    while chunk := await left.receive_some():
        received += chunk
    assert received == bytes(range(80))


async def test_unreceive_counts_bytes_of_typed_memoryviews() -> None:
    _, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    stream.unreceive(memoryview(bytes(range(8))).cast("L"))
    assert stream._buffer.offset == 0
    assert stream.peek() == bytes(range(8))
    assert await stream.receive_exactly(8) == bytes(range(8))
    assert stream._buffer.offset == 8


async def test_receive_woken_by_another_tasks_close_says_so() -> None:
    _, right = trio.testing.memory_stream_pair()
    stream = BufferedStream(right)
    caught: list[BaseException] = []

    async def receiver() -> None:
        try:
            await stream.receive_line()
        except trio.ClosedResourceError as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()
    assert len(caught) == 1
    assert "closed" in str(caught[0])


def test_start_tls_docstring_has_no_raw_control_characters() -> None:
    for obj in (Connection.start_tls, BufferedStream.start_tls, open_connection):
        assert obj.__doc__ is not None
        assert "\r" not in obj.__doc__
