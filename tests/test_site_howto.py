"""The named examples of the how-to guides (docs/howto/*.md), driven for real.

Each test runs one ``# example: NAME`` block with `site_examples.run_example`
and exercises what it defines over loopback TCP (port 0) or memory streams,
checking the behaviour the page describes. The whole programs of those pages
are run by tests/test_site_examples.py.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import ssl
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import trio
import trio.testing
from attack_kit import tls_contexts
from site_examples import example, run_example

from triostream import BufferedStream, Connection, connect_tcp, open_connection, serve_tcp

Handler = Callable[[Connection], Awaitable[object]]


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) trusting a test CA for 'localhost'."""
    return tls_contexts()


async def start_listening(nursery: trio.Nursery, serve: Callable[..., Awaitable[Any]]) -> int:
    """Start ``serve`` (which reports its listeners to ``task_status``, as
    `triostream.serve_tcp` does) in ``nursery``; return its first port."""
    listeners = await nursery.start(serve)
    return int(listeners[0].socket.getsockname()[1])


async def start_server(nursery: trio.Nursery, handler: Handler, **options: Any) -> int:
    """Serve ``handler`` on 127.0.0.1, a free port; return the port."""
    return await start_listening(nursery, functools.partial(serve_tcp, handler, 0, host="127.0.0.1", **options))


async def read_until_end(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until EOF or a reset (bounded by the caller's deadline)."""
    received = bytearray()
    try:
        while chunk := await stream.receive_some():
            received += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(received)


# ---------------------------------------------------------------- tls.md


async def test_starttls_upgrades_and_replies_over_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    ns = run_example("howto-tls-starttls")
    handle = cast(Callable[..., Awaitable[None]], ns["handle"])
    client = cast(Callable[[int, ssl.SSLContext], Awaitable[bytes]], ns["client"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, functools.partial(handle, ssl_context=server_ctx))
            assert await client(port, client_ctx) == b"250 HELLO"
            nursery.cancel_scope.cancel()


async def test_starttls_refuses_plaintext_pipelined_after_the_command(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls
    handle = cast(Callable[..., Awaitable[None]], run_example("howto-tls-starttls")["handle"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, functools.partial(handle, ssl_context=server_ctx))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                reader = BufferedStream(stream)
                assert await reader.receive_line() == b"220 ready"
                await reader.send_all(b"NOOP\r\n")
                assert await reader.receive_line() == b"530 send STARTTLS first"
                # The injection: a command behind STARTTLS, in the same packet.
                await reader.send_all(b"STARTTLS\r\nMAIL FROM:<evil>\r\n")
                rest = await read_until_end(reader)
            assert rest == b"554 data after STARTTLS\r\n", "refused, and the injected command never ran"
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- detach.md


async def echo_lines(conn: Connection) -> None:
    """The upstream server behind the proxy: echoes lines until EOF."""
    async for line in conn.lines():
        await conn.send_all(line + b"\n")


async def test_connect_proxy_relays_the_bytes_pipelined_behind_the_request() -> None:
    handle = cast(Handler, run_example("howto-detach-connect-proxy")["handle"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            upstream_port = await start_server(nursery, echo_lines)
            proxy_port = await start_server(nursery, handle)
            stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
            async with stream:
                client = BufferedStream(stream)
                # The request and the first bytes of the tunnel in one write: the
                # proxy's buffer reads them together, and detach hands them over.
                await client.send_all(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\nping\n" % upstream_port)
                assert await client.receive_line() == b"HTTP/1.1 200 Connection established"
                assert await client.receive_line() == b""
                assert await client.receive_line() == b"ping"
                await client.send_all(b"pong\n")
                assert await client.receive_line() == b"pong"
                # EOF travels through the relay both ways, and the tunnel closes.
                await stream.send_eof()
                assert await read_until_end(client) == b""
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "request_head",
    [b"CONNECT 10.255.255.1:80 HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    ids=["target-not-allowed", "not-connect"],
)
async def test_connect_proxy_refuses_other_requests(request_head: bytes) -> None:
    handle = cast(Handler, run_example("howto-detach-connect-proxy")["handle"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handle)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(request_head)
                assert await read_until_end(stream) == b"HTTP/1.1 403 Forbidden\r\n\r\n"
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- subprocess.md

CHILD = r"""
import sys
sys.stderr.write("e" * 99 + "\n" + ("noise " * 20 + "\n") * 3000)  # 363 KB first: more than a pipe holds
sys.stderr.flush()
print("first")
print("y" * 10000)
print("after the long line")
sys.stdout.write("tail without a line ending")
sys.stdout.flush()
sys.stderr.write("last error line\n")
sys.exit(3)
"""


async def test_subprocess_lines_from_stdout_and_stderr_at_once() -> None:
    ns = run_example("howto-subprocess-lines")
    run = cast(Callable[..., Awaitable[int]], ns["run"])
    max_line = cast(int, ns["MAX_LINE"])
    out: list[bytes] = []
    err: list[bytes] = []
    with trio.fail_after(30):
        status = await run([sys.executable, "-c", CHILD], out.append, err.append)
    assert status == 3
    assert out == [b"first", b"y" * max_line, b"after the long line", b"tail without a line ending"]
    assert err[0] == b"e" * 99
    assert err[1:-1] == [b"noise " * 20] * 3000
    assert err[-1] == b"last error line"


async def test_subprocess_read_lines_over_any_receive_stream() -> None:
    """read_lines itself, over an in-memory pipe: CRLF, an over-long last line
    cut short by EOF, nothing kept beyond MAX_LINE."""
    ns = run_example("howto-subprocess-lines")
    read_lines = cast(Callable[..., Awaitable[None]], ns["read_lines"])
    max_line = cast(int, ns["MAX_LINE"])
    send, receive = trio.testing.memory_stream_one_way_pair()
    lines: list[bytes] = []
    await send.send_all(b"a\r\nb\n" + b"z" * (3 * max_line))
    await send.aclose()
    with trio.fail_after(10):
        await read_lines(receive, lines.append)
    assert lines == [b"a", b"b", b"z" * max_line]


# ---------------------------------------------------------------- fanout.md


def new_hub() -> Any:
    return cast(Callable[[], Any], run_example("howto-fanout-hub")["Hub"])()


async def test_fanout_drops_the_client_that_does_not_read_and_serves_the_others() -> None:
    """Deterministic: the slow client is a lockstep stream nobody reads, so its
    writer blocks on the first send and its queue can only grow."""
    hub = new_hub()
    queue_size = 8192

    async def serve(stream: trio.abc.Stream) -> None:
        async with open_connection(stream, max_write_buffer_size=queue_size, write_high_water=queue_size // 2) as conn:
            await hub.handle(conn)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sender, sender_server = trio.testing.memory_stream_pair()
            fast, fast_server = trio.testing.memory_stream_pair()
            _slow, slow_server = trio.testing.lockstep_stream_pair()
            for end in (sender_server, fast_server, slow_server):
                nursery.start_soon(serve, end)
            await trio.testing.wait_all_tasks_blocked()
            assert len(hub.clients) == 3
            reader = BufferedStream(fast)
            messages = 4 * queue_size // 500
            for i in range(messages):
                message = b"%04d " % i + b"x" * 495
                await sender.send_all(message + b"\n")
                assert await reader.receive_line() == message, "the fast client gets every message, in order"
            assert hub.dropped == 1
            assert len(hub.clients) == 2
            nursery.cancel_scope.cancel()


async def test_fanout_hub_over_tcp() -> None:
    hub = new_hub()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, hub.handle, max_write_buffer_size=256 * 1024)
            async with connect_tcp("127.0.0.1", port) as alice, connect_tcp("127.0.0.1", port) as bob:
                for _ in range(1000):  # both registered (bounded wait)
                    if len(hub.clients) == 2:
                        break
                    await trio.sleep(0.01)
                assert len(hub.clients) == 2
                await alice.send_all(b"hello bob\n")
                assert await bob.receive_line() == b"hello bob"
                await bob.send_all(b"hi alice\n")
                assert await alice.receive_line() == b"hi alice"
            nursery.cancel_scope.cancel()
    assert hub.dropped == 0


# ---------------------------------------------------------------- survive.md


def survive_example() -> dict[str, object]:
    return run_example("howto-survive-server")


async def test_survive_server_answers_and_refuses_an_over_long_line() -> None:
    ns = survive_example()
    serve = cast(Callable[..., Awaitable[None]], ns["serve"])
    max_line = cast(int, ns["MAX_LINE"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_listening(nursery, functools.partial(serve, 0, "127.0.0.1"))
            async with connect_tcp("127.0.0.1", port) as conn:
                await conn.send_all(b"ping\r\n")
                assert await conn.receive_line() == b"OK ping"
                await conn.send_all(b"x" * (2 * max_line) + b"\r\n")
                assert await conn.receive_line() == b"ERR line too long"
                assert await read_until_end(conn) == b""
            nursery.cancel_scope.cancel()


async def test_survive_server_drops_a_slowloris_and_logs_it_at_info(caplog: pytest.LogCaptureFixture) -> None:
    ns = survive_example()
    ns["READ_TIMEOUT"] = 0.2  # the module-level setting, shortened for the test
    serve = cast(Callable[..., Awaitable[None]], ns["serve"])
    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_listening(nursery, functools.partial(serve, 0, "127.0.0.1"))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET / HTT")  # ...and never the rest
                assert await read_until_end(stream) == b"", "cut off by read_timeout"
            for _ in range(1000):  # the server logs once its handler has ended (bounded wait)
                if any(r.name == "triostream" and r.levelno == logging.INFO for r in caplog.records):
                    break
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    ours = [r for r in caplog.records if r.name == "triostream"]
    assert [r.levelno for r in ours if r.levelno >= logging.INFO] == [logging.INFO], "one INFO line, no error"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_survive_main_shuts_down_gracefully_on_sigterm() -> None:
    main = cast(Callable[..., Awaitable[None]], survive_example()["main"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_listening(nursery, functools.partial(main, 0, "127.0.0.1"))
            async with connect_tcp("127.0.0.1", port) as conn:
                await conn.send_all(b"ping\r\n")
                assert await conn.receive_line() == b"OK ping"
                os.kill(os.getpid(), signal.SIGTERM)  # main's signal receiver gets it
                # Waiting between requests: the handler is cancelled at once and
                # the connection closed gracefully.
                assert await read_until_end(conn) == b""
        # main returned by itself: the nursery had nothing left to wait for.


# ---------------------------------------------------------------- codec.md


@pytest.fixture
def bulk_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The codec block as the module ``bulk``, as the page saves it."""
    module = types.ModuleType("bulk")
    # In sys.modules before it runs: dataclasses look their module up there.
    monkeypatch.setitem(sys.modules, "bulk", module)
    block = example("howto-codec-bulk")
    exec(compile(block.code, f"docs/{block.page}:{block.line}", "exec"), module.__dict__)
    return module


def test_codec_page_tests_pass(bulk_module: types.ModuleType) -> None:
    """The page's test module, run as pytest would: every ``test_*`` passes
    (the property test runs its examples, each under its own trio.run)."""
    tests = run_example("howto-codec-bulk-tests")
    names = sorted(name for name in tests if name.startswith("test_"))
    assert names == ["test_any_chunking", "test_errors_consume_nothing", "test_truncated_frame_at_eof"]
    for name in names:
        cast(Callable[[], None], tests[name])()


async def test_codec_usage(bulk_module: types.ModuleType) -> None:
    main = cast(Callable[[], Awaitable[None]], run_example("howto-codec-bulk-usage")["main"])
    await main()


def test_codec_limits_and_corruption(bulk_module: types.ModuleType) -> None:
    """The duties the page lists, checked on the codec it defines."""
    from triostream import CorruptFrameError, FrameParser, FrameTooLongError

    bulk = bulk_module.Bulk(max_size=300)
    assert bulk == bulk_module.Bulk(max_size=300), "a value: equal codecs share a decoding state"
    assert bulk.wire_limit == len(bulk.encode(b"x" * 300))
    with pytest.raises(ValueError):
        bulk.encode(b"x" * 301)
    # Too many digits: too long before the header ends, nothing consumed.
    parser = FrameParser(bulk)
    parser.feed(b"$00000")
    with pytest.raises(FrameTooLongError) as too_long:
        parser.next_frame()
    assert too_long.value.declared is None
    assert parser.buffer.peek() == b"$00000"
    # A body without its CRLF: corrupt, at the trailer's offset.
    parser = FrameParser(bulk)
    parser.feed(b"$2\r\nhiXY")
    with pytest.raises(CorruptFrameError) as corrupt:
        parser.next_frame()
    assert corrupt.value.offset == 6
    # A header still arriving is not an error.
    parser = FrameParser(bulk)
    parser.feed(b"$1\r")
    assert parser.next_frame() is None
    parser.feed(b"\na\r\n")
    assert parser.next_frame() == b"a"
