"""TLS under attack: peers that never finish (or never start) a handshake.

Part of the attack suite: each test is a hostile peer a server meets, and
what a server author may rely on when it does.

* A client that opens TCP and says nothing, or sends half a ClientHello, is
  cut off after ``handshake_timeout``; it costs nothing afterwards (no task,
  no `Connection`, no ``max_connections`` slot), so normal clients are
  served throughout, and the server still shuts down within its bound.
* Shutting down while clients are mid-handshake returns promptly, even with
  no timeout configured.
* A client's ``handshake_timeout`` holds against a server that never answers.
* `serve_unix` speaks TLS too.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import struct
import tempfile

import pytest
import trio
import trio.testing
from attack_kit import (
    Countdown,
    count_tasks,
    is_reset,
    live_connections,
    read_until_end,
    rss_kib,
    serving,
    tasks_settle_at,
    tls_contexts,
)

from triostream import Connection, connect_tcp, connect_unix, serve_unix

# What the tests measured, printed at the end of the module (pytest -s).
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts()


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> object:
    yield
    for name, value in FIGURES.items():
        print(f"\n[attack figure] {name}: {value}")


async def echo(conn: Connection) -> None:
    async for line in conn.lines():
        await conn.send_all(b"echo " + line + b"\n")


async def normal_tls_client(port: int, client_ctx: ssl.SSLContext | None, text: bytes) -> None:
    """A well-behaved client: handshake (unless ``client_ctx`` is None), one
    request, its reply."""
    async with connect_tcp("127.0.0.1", port, ssl_context=client_ctx, server_hostname="localhost") as conn:
        await conn.send_all(text + b"\n")
        assert await conn.receive_line() == b"echo " + text


async def hostile_client(port: int, payload: bytes, connected: Countdown, cut_off: list[int]) -> None:
    """Open TCP, send ``payload`` (maybe nothing), then wait for the server
    to hang up (a FIN or a reset: either way, cut off)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        connected.add()
        if payload:
            await stream.send_all(payload)
        await read_until_end(stream)
        cut_off.append(1)


async def half_a_client_hello(client_ctx: ssl.SSLContext) -> bytes:
    """The first half of a real ClientHello (captured over a memory stream)."""
    left, right = trio.testing.memory_stream_pair()
    tls_client = trio.SSLStream(left, client_ctx, server_hostname="localhost")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tls_client.do_handshake)
        hello = await right.receive_some()
        nursery.cancel_scope.cancel()
    assert hello[:1] == b"\x16", "a TLS handshake record"
    return bytes(hello[: len(hello) // 2])


@pytest.mark.parametrize("attack", ["silent", "half-hello"])
async def test_clients_that_never_finish_the_handshake_cost_nothing(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], attack: str
) -> None:
    """500 clients connect and never complete a handshake, against 50 slots:
    every one is cut off after handshake_timeout, a normal client is served
    during the attack and after it, nothing is left behind (tasks,
    Connections, slots), and the shutdown afterwards is within its bound."""
    server_ctx, client_ctx = tls
    payload = b"" if attack == "silent" else await half_a_client_hello(client_ctx)
    n = 500
    shutdown_timeout, close_timeout = 1.0, 1.0
    with trio.fail_after(60):
        async with serving(
            echo,
            ssl_context=server_ctx,
            handshake_timeout=0.3,
            max_connections=50,
            backlog=1024,
            shutdown_timeout=shutdown_timeout,
            close_timeout=close_timeout,
        ) as server:
            tasks_before = count_tasks()
            await normal_tls_client(server.port, client_ctx, b"before")
            assert await tasks_settle_at(tasks_before) == tasks_before
            rss_before = rss_kib()
            connected = Countdown(n)
            cut_off: list[int] = []
            async with trio.open_nursery() as attackers:
                for _ in range(n):
                    attackers.start_soon(hostile_client, server.port, payload, connected, cut_off)
                await connected.done.wait()
                # All 500 are connected (queued behind 50 slots): a normal
                # client is still served, once the attackers ahead of it are
                # cut off.
                await normal_tls_client(server.port, client_ctx, b"during")
            assert len(cut_off) == n
            await normal_tls_client(server.port, client_ctx, b"after")
            # Every slot is free: 50 normal clients at once are all served.
            async with trio.open_nursery() as clients:
                for i in range(50):
                    clients.start_soon(normal_tls_client, server.port, client_ctx, b"%d" % i)
            assert await tasks_settle_at(tasks_before) == tasks_before, "tasks left behind"
            assert live_connections() == 0, "Connection objects left behind"
            FIGURES[f"{attack}: tasks before/after {n} clients"] = f"{tasks_before}/{count_tasks()}"
            FIGURES[f"{attack}: RSS before/after {n} clients"] = f"{rss_before}/{rss_kib()} KiB"
            took = await server.stop()
        FIGURES[f"{attack}: shutdown afterwards"] = f"{took:.3f} s"
        assert took < shutdown_timeout + close_timeout + 3


async def test_shutdown_with_clients_mid_handshake_and_no_timeouts(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """No handshake or idle timeout configured, 50 clients silent in their
    handshake: cancelling the server still returns promptly, and every
    client is hung up on."""
    server_ctx, _ = tls
    n = 50
    shutdown_timeout, close_timeout = 2.0, 2.0
    with trio.fail_after(30):
        async with serving(
            echo,
            ssl_context=server_ctx,
            handshake_timeout=None,
            idle_timeout=None,
            shutdown_timeout=shutdown_timeout,
            close_timeout=close_timeout,
        ) as server:
            connected = Countdown(n)
            cut_off: list[int] = []
            async with trio.open_nursery() as attackers:
                for _ in range(n):
                    attackers.start_soon(hostile_client, server.port, b"", connected, cut_off)
                await connected.done.wait()
                await trio.sleep(0.3)  # let the server accept them all
                took = await server.stop()
            assert len(cut_off) == n
        FIGURES["shutdown with 50 clients mid-handshake, no timeouts"] = f"{took:.3f} s"
        assert took < shutdown_timeout + close_timeout + 3


async def test_client_handshake_timeout_against_a_silent_server(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """connect_tcp(ssl_context=...) to a server that accepts TCP and never
    answers: TooSlowError after handshake_timeout, and the socket is closed
    (the server sees EOF)."""
    _, client_ctx = tls
    with trio.fail_after(10):
        listener = trio.socket.socket()
        async with trio.open_nursery() as nursery:
            with listener:
                await listener.bind(("127.0.0.1", 0))
                listener.listen(1)
                port = listener.getsockname()[1]
                server_saw_eof = trio.Event()

                async def silent_server() -> None:
                    sock, _ = await listener.accept()
                    with sock:
                        while await sock.recv(65536):  # the ClientHello, then EOF
                            pass
                    server_saw_eof.set()

                nursery.start_soon(silent_server)
                start = trio.current_time()
                with pytest.raises(trio.TooSlowError):
                    async with connect_tcp("127.0.0.1", port, ssl_context=client_ctx, handshake_timeout=0.3):
                        pass
                assert trio.current_time() - start < 0.3 + 3
                with trio.fail_after(3):
                    await server_saw_eof.wait()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
async def test_serve_unix_with_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with tempfile.TemporaryDirectory() as tmp, trio.fail_after(10):
        path = os.path.join(tmp, "sock")
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_unix, echo, path, ssl_context=server_ctx))
            async with connect_unix(path, ssl_context=client_ctx, server_hostname="localhost") as conn:
                assert isinstance(conn.transport_stream, trio.SSLStream)
                await conn.send_all(b"over unix and tls\n")
                assert await conn.receive_line() == b"echo over unix and tls"
            # A plaintext client is not served in the clear.
            stream = await trio.open_unix_socket(path)
            async with stream:
                await stream.send_all(b"plaintext\n")
                data, _ = await read_until_end(stream)
                assert b"echo" not in data
            nursery.cancel_scope.cancel()


async def test_a_tls_reply_to_a_peer_that_stops_reading_is_bounded_and_reset(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """Over TLS, a reply the client never reads: the shutdown still returns
    within shutdown_timeout + close_timeout (the TLS close is bounded too),
    and the client sees the TCP connection reset, not a clean end."""
    server_ctx, client_ctx = tls
    queued = trio.Event()

    async def handler(conn: Connection) -> None:
        await conn.receive_line()
        conn.write(b"x" * 5_000_000)
        queued.set()
        await conn.flush()

    shutdown_timeout, close_timeout = 0.2, 0.5
    with trio.fail_after(30):
        async with serving(
            handler,
            ssl_context=server_ctx,
            max_write_buffer_size=8_000_000,
            shutdown_timeout=shutdown_timeout,
            close_timeout=close_timeout,
        ) as server:
            sock = trio.socket.socket()
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", server.port))
            stream = trio.SSLStream(trio.SocketStream(sock), client_ctx, server_hostname="localhost")
            async with stream:
                await stream.send_all(b"give me a lot\n")
                await queued.wait()
                took = await server.stop()
                data, ending = await read_until_end(stream)
        assert took < shutdown_timeout + close_timeout + 3
    assert len(data) < 5_000_000
    assert is_reset(ending), repr(ending)


def reset(stream: trio.SocketStream) -> None:
    """Make closing ``stream`` send a TCP reset."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_storm_of_resets_leaves_nothing_behind(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    """300 clients that connect and reset at once, or after a request or half
    a ClientHello: no ERROR, no traceback, no task left, and a normal client
    is served afterwards."""
    server_ctx, client_ctx = tls
    hello = await half_a_client_hello(client_ctx)
    ssl_context = server_ctx if transport == "tls" else None

    async def rude_client(port: int, i: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        if i % 3 == 1:
            await stream.send_all(b"request\n" if ssl_context is None else hello)
        elif i % 3 == 2:
            await trio.sleep(0.05)
        reset(stream)
        await stream.aclose()

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(30):
        async with serving(echo, ssl_context=ssl_context, handshake_timeout=2, backlog=1024) as server:
            tasks_before = count_tasks()
            async with trio.open_nursery() as clients:
                for i in range(300):
                    clients.start_soon(rude_client, server.port, i)
            assert await tasks_settle_at(tasks_before) == tasks_before, "tasks left behind"
            await normal_tls_client(server.port, client_ctx if ssl_context else None, b"hi")
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info is not None]
    assert bad == []
    # The log records (kept by caplog) hold the reason as text, not the
    # exception, so they do not keep the connections alive.
    assert live_connections() == 0


async def test_garbage_after_the_handshake_is_not_an_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    """A client completes its handshake, then sends bytes that are not TLS
    records: the connection ends, logged at INFO/DEBUG without a traceback."""
    server_ctx, client_ctx = tls
    ended = trio.Event()

    async def handler(conn: Connection) -> None:
        try:
            await echo(conn)
        finally:
            ended.set()

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler, ssl_context=server_ctx) as server:
            tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
            tls_stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
            await tls_stream.do_handshake()
            await tls_stream.send_all(b"fine\n")
            assert await tls_stream.receive_some() == b"echo fine\n"
            await tcp.send_all(b"\x17\x03\x03\x00\x10" + b"not a real record")
            await ended.wait()
            await trio.aclose_forcefully(tls_stream)
            await trio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "triostream"]
    assert records, "the end is logged"
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info is not None] == []
