"""Network helpers over real loopback sockets: connect, serve, TLS, STARTTLS."""

from __future__ import annotations

import functools
import logging
import os
import ssl
import tempfile

import pytest
import trio
import trio.testing
from attack_kit import tls_contexts

from triostream import (
    BufferedStream,
    Connection,
    StartTLSRefusedError,
    connect_tcp,
    connect_unix,
    open_connection,
    serve_tcp,
    serve_unix,
)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) trusting a test CA for 'localhost'."""
    return tls_contexts()


async def start_server(nursery: trio.Nursery, handler, **kwargs) -> int:  # type: ignore[no-untyped-def]
    listeners = await nursery.start(functools.partial(serve_tcp, handler, 0, host="127.0.0.1", **kwargs))
    return int(listeners[0].socket.getsockname()[1])


async def echo_upper(conn: Connection) -> None:
    async for line in conn.lines():
        if line == b"QUIT":
            return
        await conn.send_all(line.upper() + b"\n")


async def test_connect_and_serve_tcp() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, echo_upper)
        async with connect_tcp("127.0.0.1", port) as conn:
            conn.write(b"hello\nworld\n")
            assert await conn.receive_line() == b"HELLO"
            assert await conn.receive_line() == b"WORLD"
            await conn.send_all(b"QUIT\n")
            assert await conn.receive_some() == b""
        nursery.cancel_scope.cancel()


async def test_tls_connect_and_serve(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, echo_upper, ssl_context=server_ctx)
        async with connect_tcp("127.0.0.1", port, ssl_context=client_ctx, server_hostname="localhost") as conn:
            assert isinstance(conn.transport_stream, trio.SSLStream)
            await conn.send_all(b"secret\n")
            assert await conn.receive_line() == b"SECRET"
        nursery.cancel_scope.cancel()


async def test_tls_rejects_an_untrusted_server(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _ = tls
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, echo_upper, ssl_context=server_ctx)
        with pytest.raises(trio.BrokenResourceError):
            async with connect_tcp("127.0.0.1", port, ssl_context=ssl.create_default_context()):
                pass
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- STARTTLS


async def starttls_server(conn: Connection, server_ctx: ssl.SSLContext, outcome: list[str]) -> None:
    line = await conn.receive_line()
    assert line == b"STARTTLS"
    try:
        await conn.start_tls(server_ctx, server_side=True, response=b"220 Ready\n")
    except StartTLSRefusedError:
        outcome.append("refused")
        # The connection is as it was: the injected plaintext is still there.
        outcome.append(bytes(await conn.receive_line()).decode())
        await conn.send_all(b"554 no\n")
        return
    outcome.append("upgraded")
    await conn.send_all(b"over tls: " + await conn.receive_line() + b"\n")


async def test_starttls_upgrade(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    outcome: list[str] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, functools.partial(starttls_server, server_ctx=server_ctx, outcome=outcome))
        async with connect_tcp("127.0.0.1", port) as conn:
            await conn.send_all(b"STARTTLS\n")
            assert await conn.receive_line() == b"220 Ready"
            await conn.start_tls(client_ctx, server_hostname="localhost")
            await conn.send_all(b"hi\n")
            assert await conn.receive_line() == b"over tls: hi"
        nursery.cancel_scope.cancel()
    assert outcome == ["upgraded"]


async def test_starttls_refused_when_plaintext_is_pipelined(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """CVE-2011-0411: commands sent after STARTTLS in the same packet must not
    be read as if they came through TLS."""
    server_ctx, _ = tls
    outcome: list[str] = []
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, functools.partial(starttls_server, server_ctx=server_ctx, outcome=outcome))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"STARTTLS\nRCPT TO:<evil>\n")
            reply = BufferedStream(stream)
            assert await reply.receive_line() == b"554 no"
        nursery.cancel_scope.cancel()
    assert outcome == ["refused", "RCPT TO:<evil>"]


async def test_buffered_stream_start_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    left, right = trio.testing.memory_stream_pair()
    client, server = BufferedStream(left), BufferedStream(right)
    await left.send_all(b"plaintext")
    assert await server.receive_exactly(5) == b"plain"  # reads ahead b"text"
    with trio.testing.assert_checkpoints(), pytest.raises(StartTLSRefusedError):
        await server.start_tls(server_ctx, server_side=True)
    assert server.transport_stream is right, "left as it was"
    assert await server.receive_some() == b"text"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(server.start_tls, server_ctx, server_side=True))
        await client.start_tls(client_ctx, server_hostname="localhost")
    await client.send_all(b"over tls\n")
    assert await server.receive_line() == b"over tls"


# ---------------------------------------------------------------- the server


async def test_serve_tcp_under_load_respects_max_connections() -> None:
    active = 0
    peak = 0

    async def handler(conn: Connection) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            async for line in conn.lines():
                await trio.sleep(0.001)
                await conn.send_all(b"ok " + line + b"\n")
        finally:
            active -= 1

    async def client(port: int, n: int, results: list[int]) -> None:
        async with connect_tcp("127.0.0.1", port) as conn:
            for i in range(3):
                await conn.send_all(b"%d-%d\n" % (n, i))
                assert await conn.receive_line() == b"ok %d-%d" % (n, i)
            await conn.send_eof()
            assert await conn.receive_some() == b""
            results.append(n)

    results: list[int] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handler, max_connections=50, backlog=1024)
            async with trio.open_nursery() as clients:
                for n in range(500):
                    clients.start_soon(client, port, n, results)
            nursery.cancel_scope.cancel()
    assert sorted(results) == list(range(500))
    assert 1 < peak <= 50


async def test_a_failing_handler_is_logged_and_the_server_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(conn: Connection) -> None:
        line = await conn.receive_line()
        if line == b"crash":
            raise RuntimeError("handler bug")
        await conn.send_all(b"fine\n")

    with caplog.at_level(logging.ERROR, logger="triostream"):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handler)
            async with connect_tcp("127.0.0.1", port) as conn:
                await conn.send_all(b"crash\n")
                assert await conn.receive_some() == b""
            async with connect_tcp("127.0.0.1", port) as conn:
                await conn.send_all(b"again\n")
                assert await conn.receive_line() == b"fine"
            nursery.cancel_scope.cancel()
    assert "handler bug" in caplog.text


async def test_graceful_shutdown_flushes_replies_in_flight() -> None:
    started = trio.Event()

    async def handler(conn: Connection) -> None:
        await conn.receive_line()
        conn.write(b"R" * 300_000)  # queued, not yet sent
        started.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            with server_scope:
                async with trio.open_nursery() as inner:
                    # No grace period: the handler (which would wait forever)
                    # is cancelled at once, and its reply still goes out.
                    task_status.started(await start_server(inner, handler, shutdown_timeout=0))

        port = await nursery.start(run_server)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"request\n")
            await started.wait()
            server_scope.cancel()  # shut down while the reply is in flight
            received = bytearray()
            with trio.fail_after(10):
                while chunk := await stream.receive_some():
                    received += chunk
        assert received == b"R" * 300_000


@pytest.mark.skipif(not hasattr(trio, "open_unix_socket"), reason="no Unix sockets")
async def test_unix_sockets() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_unix, echo_upper, path))
            async with connect_unix(path) as conn:
                await conn.send_all(b"unix\n")
                assert await conn.receive_line() == b"UNIX"
            nursery.cancel_scope.cancel()


async def test_open_connection_is_exported() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_connection(right) as conn:
        await left.send_all(b"x\n")
        assert await conn.receive_line() == b"x"


async def _echo_line(conn: Connection) -> None:
    line = await conn.receive_line()
    await conn.send_all(line + b"\n")


async def test_reuse_port_lets_two_servers_share_one_port() -> None:
    """With reuse_port=True a second server binds the same port (how
    several worker processes share one); without it the bind fails."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            first = await nursery.start(functools.partial(serve_tcp, _echo_line, 0, host="127.0.0.1", reuse_port=True))
            port = first[0].socket.getsockname()[1]
            with pytest.raises(OSError):
                await serve_tcp(_echo_line, port, host="127.0.0.1")
            await nursery.start(functools.partial(serve_tcp, _echo_line, port, host="127.0.0.1", reuse_port=True))
            for i in range(10):
                client = await trio.open_tcp_stream("127.0.0.1", port)
                await client.send_all(b"hello %d\n" % i)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = await client.receive_some()
                    assert chunk
                    reply += chunk
                assert reply == b"hello %d\n" % i
                await client.aclose()
            nursery.cancel_scope.cancel()


async def test_reuse_port_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="reuse_port"):
        await serve_tcp(_echo_line, 0, host="127.0.0.1", reuse_port=1)  # type: ignore[arg-type]
