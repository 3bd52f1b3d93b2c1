"""Trio's generic stream conformance checks, run over BufferedStream and
HalfCloseableBufferedStream."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import trio
import trio.testing
import trustme

from triostream import BufferedStream, HalfCloseableBufferedStream
from triostream.testing import open_socket_stream_pair

Pair = tuple[HalfCloseableBufferedStream, HalfCloseableBufferedStream]
Maker = Callable[[], Awaitable[tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]]]


def wrapped(make: Maker) -> Callable[[], Awaitable[Pair]]:
    async def maker() -> Pair:
        left, right = await make()
        # Small buffers so the checks' large transfers exercise refills.
        return HalfCloseableBufferedStream(left, max_buffer_size=4096, receive_size=1000), HalfCloseableBufferedStream(
            right
        )

    return maker


def wrapped_plain(
    make: Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]],
) -> Callable[[], Awaitable[tuple[BufferedStream, BufferedStream]]]:
    async def maker() -> tuple[BufferedStream, BufferedStream]:
        left, right = await make()
        return BufferedStream(left, max_buffer_size=4096, receive_size=1000), BufferedStream(right)

    return maker


async def memory_pair() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    return trio.testing.memory_stream_pair()


async def lockstep_pair() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    return trio.testing.lockstep_stream_pair()


async def socketpair_pair() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    return await open_socket_stream_pair("unix")


async def tcp_pair() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    return await open_socket_stream_pair("tcp")


async def fill(stream: trio.abc.SendStream) -> None:
    """Send until the transport blocks, so the pair starts out clogged."""

    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def clogged(make: Maker) -> Callable[[], Awaitable[Pair]]:
    async def maker() -> Pair:
        left, right = await wrapped(make)()
        await fill(left)
        await fill(right)
        return left, right

    return maker


async def test_memory_stream_pair() -> None:
    await trio.testing.check_half_closeable_stream(wrapped(memory_pair), None)


async def test_lockstep_stream_pair() -> None:
    # Lockstep streams are unbuffered: every pair is already clogged.
    await trio.testing.check_half_closeable_stream(wrapped(lockstep_pair), wrapped(lockstep_pair))


async def test_socketpair() -> None:
    await trio.testing.check_half_closeable_stream(wrapped(socketpair_pair), clogged(socketpair_pair))


async def test_tcp_loopback() -> None:
    await trio.testing.check_half_closeable_stream(wrapped(tcp_pair), clogged(tcp_pair))


async def test_tls_over_memory_is_a_two_way_stream() -> None:
    """Over trio.SSLStream (not half-closeable) the two-way checks apply."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("trio-test-1.example.org").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def tls_pair(
        make: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]],
    ) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        raw_client, raw_server = make()
        client = trio.SSLStream(raw_client, client_ctx, server_hostname="trio-test-1.example.org")
        server = trio.SSLStream(raw_server, server_ctx, server_side=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        return client, server

    async def memory() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await tls_pair(trio.testing.memory_stream_pair)

    async def lockstep() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await tls_pair(trio.testing.lockstep_stream_pair)

    await trio.testing.check_two_way_stream(wrapped_plain(memory), wrapped_plain(lockstep))


async def test_plain_buffered_stream_over_tcp_is_a_two_way_stream() -> None:
    """A plain BufferedStream never claims half-close, whatever its transport."""
    left, right = await wrapped_plain(tcp_pair)()
    assert not isinstance(left, trio.abc.HalfCloseableStream)
    await left.aclose()
    await right.aclose()
    await trio.testing.check_two_way_stream(wrapped_plain(tcp_pair), None)
