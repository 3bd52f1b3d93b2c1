"""The named examples of docs/tutorial.md, run and driven for real.

Each server of the tutorial is driven over `trio.testing.memory_stream_pair`
(deterministic) and over a real TCP socket on 127.0.0.1; the test file of its
section 4 is run against the server it imports, and against a wrong one, to
show that those tests can fail.
"""

from __future__ import annotations

import functools
import struct
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
import trio
import trio.testing
from site_examples import example, run_example

import triostream
from triostream import BufferedStream, Connection, FrameChannel, FrameParser, LengthPrefixed
from triostream.testing import Fault, FaultyStream, ScriptMismatch

StreamHandler = Callable[[trio.abc.Stream], Awaitable[None]]
Pair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]
TestFunction = Callable[..., Awaitable[None]]


def handler_of(name: str) -> StreamHandler:
    return cast(StreamHandler, run_example(name)["handle"])


async def exchange(handle: StreamHandler, data: bytes) -> bytes:
    """Send ``data``, then EOF, to ``handle`` running over a memory stream,
    let it run to its end, and return everything it sent back."""
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(data)
    await client.send_eof()
    with trio.fail_after(10):
        await handle(server)
        return await read_to_eof(client)


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some():
        out += chunk
    return bytes(out)


def port_of(listeners: list[trio.SocketListener]) -> int:
    return cast(int, listeners[0].socket.getsockname()[1])


# ---------------------------------------------------------------- 1. the line server


LINE_SERVER = "tutorial-line-server"


async def test_line_server_replies_to_each_line_lf_or_crlf() -> None:
    handle = handler_of(LINE_SERVER)
    assert await exchange(handle, b"hello\r\nworld\n\nmixed Case 1\n") == b"HELLO\nWORLD\n\nMIXED CASE 1\n"


@pytest.mark.parametrize("size", [1025, 5000, 200_000], ids=["just-over", "longer", "over-the-buffer"])
async def test_line_server_refuses_an_over_long_line_and_carries_on(size: int) -> None:
    handle = handler_of(LINE_SERVER)
    data = b"a\n" + b"x" * (size - 1) + b"\nok\n" + b"y" * 1023 + b"\n"
    assert await exchange(handle, data) == b"A\nERR line too long\nOK\n" + b"Y" * 1023 + b"\n"


async def test_line_server_takes_a_line_of_exactly_max_line_bytes() -> None:
    handle = handler_of(LINE_SERVER)
    assert await exchange(handle, b"z" * 1022 + b"\r\n") == b"Z" * 1022 + b"\n"


async def test_line_server_ends_quietly_at_eof_inside_a_line() -> None:
    handle = handler_of(LINE_SERVER)
    assert await exchange(handle, b"one\ntw") == b"ONE\n"
    assert await exchange(handle, b"x" * 3000) == b"ERR line too long\n"  # EOF while skipping it


async def test_line_server_ends_quietly_on_a_reset() -> None:
    handle = handler_of(LINE_SERVER)
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"one\ntwo\nthree\n")
    faulty = FaultyStream(server, receive=Fault.reset(at_byte=6))
    with trio.fail_after(10):
        await handle(faulty)  # no exception escapes the handler
        assert await read_to_eof(client) == b"ONE\n"
    assert faulty.receive_fault_fired


async def test_line_server_waits_for_the_rest_of_a_line_and_loses_none_of_it() -> None:
    handle = handler_of(LINE_SERVER)
    client, server = trio.testing.memory_stream_pair()
    reader = BufferedStream(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle, server)
        for piece in (b"he", b"llo wo", b"rld", b"\r", b"\nsecond\n"):
            await client.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
        assert await reader.receive_line() == b"HELLO WORLD"
        assert await reader.receive_line() == b"SECOND"
        await client.send_eof()
    assert await reader.receive_some() == b""


async def test_line_server_over_tcp() -> None:
    handle = handler_of(LINE_SERVER)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
        with trio.fail_after(10):
            client = BufferedStream(await trio.open_tcp_stream("127.0.0.1", port_of(listeners)))
            async with client:
                await client.send_all(b"hello\r\n" + b"q" * 4000 + b"\nbye\n")
                assert await client.receive_line() == b"HELLO"
                assert await client.receive_line() == b"ERR line too long"
                assert await client.receive_line() == b"BYE"
                await client.send_eof()
                assert await client.receive_some() == b""
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- 2. the frame server


FRAME_SERVER = "tutorial-frame-server"
CODEC = LengthPrefixed(max_size=65536)


async def test_frame_server_upper_cases_each_frame_whatever_it_holds() -> None:
    namespace = run_example(FRAME_SERVER)
    assert namespace["CODEC"] == CODEC
    handle = cast(StreamHandler, namespace["handle"])
    requests = [b"hello\nworld", b"", b"\x00\xff\r\n", b"m" * 65536]
    parser = FrameParser(CODEC)
    parser.feed(await exchange(handle, b"".join(CODEC.encode(r) for r in requests)))
    parser.feed_eof()
    assert list(parser) == [r.upper() for r in requests]


async def test_frame_server_refuses_a_huge_declared_frame_without_waiting_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handle = handler_of(FRAME_SERVER)
    client, server = trio.testing.memory_stream_pair()
    # Declares 2 GiB, sends 3 bytes of it, and keeps the connection open.
    await client.send_all(CODEC.encode(b"first") + struct.pack(">I", 1 << 31) + b"abc")
    with trio.fail_after(60):  # virtual seconds: a handler waiting for the body would time out
        await handle(server)
    replies = FrameChannel(client, CODEC)
    assert [frame async for frame in replies] == [b"FIRST", b"ERR frame too long"]


async def test_frame_server_ends_quietly_at_eof_inside_a_frame() -> None:
    handle = handler_of(FRAME_SERVER)
    replies = await exchange(handle, CODEC.encode(b"ok") + CODEC.encode(b"cut short")[:7])
    assert replies == CODEC.encode(b"OK")


async def test_frame_server_over_tcp() -> None:
    handle = handler_of(FRAME_SERVER)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
        with trio.fail_after(10):
            async with FrameChannel(await trio.open_tcp_stream("127.0.0.1", port_of(listeners)), CODEC) as channel:
                await channel.send(b"over\ntcp")
                assert await channel.receive() == b"OVER\nTCP"
                await channel.stream.send_eof()
                with pytest.raises(trio.EndOfChannel):
                    await channel.receive()
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- 3. the Connection server


CONNECTION_SERVER = "tutorial-connection-server"


def connection_handler() -> Callable[[Connection], Awaitable[None]]:
    return cast(Callable[[Connection], Awaitable[None]], run_example(CONNECTION_SERVER)["handle"])


async def test_connection_server_over_tcp() -> None:
    serve = cast(Callable[..., Awaitable[None]], run_example(CONNECTION_SERVER)["serve"])
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, 0, "127.0.0.1")
        port = port_of(listeners)
        with trio.fail_after(10):
            async with triostream.connect_tcp("127.0.0.1", port) as conn:
                conn.write(b"hello\r\nworld\n")
                assert await conn.receive_line() == b"HELLO"
                assert await conn.receive_line() == b"WORLD"
                await conn.send_eof()
                assert [line async for line in conn.lines()] == []  # the server closed its side
            async with triostream.connect_tcp("127.0.0.1", port) as conn:
                await conn.send_all(b"fine\n" + b"w" * 2000 + b"\nnever read\n")
                assert await conn.receive_line() == b"FINE"
                assert await conn.receive_line() == b"ERR line too long"
                assert await conn.receive_some() == b"", "the server hangs up after an over-long line"
        nursery.cancel_scope.cancel()


async def test_connection_server_options_are_the_ones_the_page_describes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def fake_serve_tcp(handler: object, port: int, **options: Any) -> None:
        seen.update(options, port=port)

    namespace = run_example(CONNECTION_SERVER)
    monkeypatch.setattr(triostream, "serve_tcp", fake_serve_tcp)
    await cast(Callable[[int], Awaitable[None]], namespace["serve"])(8000)
    assert seen["port"] == 8000
    assert seen["max_buffer_size"] == 8192
    assert seen["max_write_buffer_size"] == 256 * 1024
    assert seen["read_timeout"] == seen["write_timeout"] == 10.0
    assert seen["idle_timeout"] == 300.0


async def test_connection_server_queues_at_most_the_high_water_mark_for_a_client_not_reading() -> None:
    handle = connection_handler()
    client, server = trio.testing.lockstep_stream_pair()  # no buffer: a send waits for the reader
    requests = b"".join(b"line %d\n" % i for i in range(3000))
    opened: list[Connection] = []

    async def serve_one() -> None:
        async with triostream.open_connection(server, write_high_water=4096) as conn:
            opened.append(conn)
            await handle(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one)
        nursery.start_soon(client.send_all, requests)
        await trio.testing.wait_all_tasks_blocked()
        # The client reads nothing: the handler waits in send_all with a bounded queue.
        (conn,) = opened
        assert 4096 < conn.write_buffer_size <= 4096 + len(b"LINE 2999\n")
        got = b""
        while len(got) < len(requests):
            got += await client.receive_some()
        assert got == requests.upper()
        await client.send_eof()
        assert await client.receive_some() == b""


# ---------------------------------------------------------------- 4. the tests of the tutorial


@pytest.fixture
def tutorial_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The test file of section 4, with ``upper_server`` the module of section 3."""
    yield load_tutorial_tests(monkeypatch, run_example(CONNECTION_SERVER))


def load_tutorial_tests(monkeypatch: pytest.MonkeyPatch, server: dict[str, object]) -> dict[str, Any]:
    module = types.ModuleType("upper_server")
    module.__dict__.update(server)
    monkeypatch.setitem(sys.modules, "upper_server", module)
    namespace: dict[str, Any] = run_example("tutorial-tests")
    more = example("tutorial-tests-more")  # "Add these to the same file"
    exec(compile(more.code, f"docs/{more.page}:{more.line}", "exec"), namespace)
    return namespace


def doc_test(namespace: dict[str, Any], name: str) -> TestFunction:
    return cast(TestFunction, namespace[name])


async def test_tutorial_test_replies(tutorial_tests: dict[str, Any], memory_stream_pair: Pair) -> None:
    await doc_test(tutorial_tests, "test_replies")(memory_stream_pair)


@pytest.mark.chunkings(n=5)
async def test_tutorial_test_replies_in_any_chunking(
    tutorial_tests: dict[str, Any], memory_stream_pair: Pair, chunk_sizes: list[int]
) -> None:
    await doc_test(tutorial_tests, "test_replies_in_any_chunking")(memory_stream_pair, chunk_sizes)


async def test_tutorial_test_over_long_line(tutorial_tests: dict[str, Any], memory_stream_pair: Pair) -> None:
    await doc_test(tutorial_tests, "test_an_over_long_line_ends_the_conversation")(memory_stream_pair)


async def test_tutorial_test_line_never_ends(
    tutorial_tests: dict[str, Any], memory_stream_pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    await doc_test(tutorial_tests, "test_a_line_that_never_ends_is_cut_off")(memory_stream_pair, autojump_clock)


async def test_tutorial_test_reset_at_any_byte(tutorial_tests: dict[str, Any]) -> None:
    await doc_test(tutorial_tests, "test_a_reset_at_any_byte_ends_the_connection_cleanly")()


async def test_tutorial_tests_fail_for_a_wrong_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tutorial's tests have teeth: a server that forgets the upper case,
    or one that ignores the over-long line, fails them."""

    async def lower_case(conn: Connection) -> None:
        async for line in conn.lines(max_size=1024):
            await conn.send_all(line.lower() + b"\n")

    tests = load_tutorial_tests(monkeypatch, {"handle": lower_case})
    with pytest.RaisesGroup(ScriptMismatch, flatten_subgroups=True):
        await doc_test(tests, "test_replies")(trio.testing.memory_stream_pair())

    async def unlimited(conn: Connection) -> None:
        async for line in conn.lines():
            await conn.send_all(line.upper() + b"\n")

    tests = load_tutorial_tests(monkeypatch, {"handle": unlimited})
    with pytest.RaisesGroup(ScriptMismatch, flatten_subgroups=True):
        await doc_test(tests, "test_an_over_long_line_ends_the_conversation")(trio.testing.memory_stream_pair())
