"""Connected pairs of real sockets, for tests that need the kernel in the loop.

`trio.testing.memory_stream_pair` is fast and deterministic; real sockets add
what it cannot show: kernel buffers that fill up (so ``send_all`` blocks),
segments cut where the kernel likes, real ``send_eof`` (``shutdown(SHUT_WR)``)
and real resets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, TypeAlias

import trio
import trio.testing

__all__ = ["SocketKind", "open_socket_stream_pair", "socket_stream_pair"]

SocketKind: TypeAlias = Literal["tcp", "unix"]


async def open_socket_stream_pair(kind: SocketKind = "tcp") -> tuple[trio.SocketStream, trio.SocketStream]:
    """Return two connected sockets as `trio.SocketStream` objects: ``(client, server)``.

    What one end sends the other receives, both ways; both are
    half-closeable (``send_eof`` shuts down the sending direction). The caller owns both ends and must close them; the
    `socket_stream_pair` context manager does it for you.

    Args:
      kind: the transport.

        * ``"tcp"`` (default): a real TCP connection over the IPv4 loopback.
          A listener is opened on ``127.0.0.1`` on a port the kernel picks
          (`trio.open_tcp_listeners`), the client connects to it
          (`trio.testing.open_stream_to_socket_listener`), the server end is
          accepted, and the listener is closed before returning. Trio sets
          ``TCP_NODELAY`` on both ends. ``client`` is the connecting end,
          ``server`` the accepted one.
        * ``"unix"``: a connected pair of ``AF_UNIX`` stream sockets from
          `trio.socket.socketpair`: no listener and no file in the file
          system, so nothing to clean up and no path-length limits. The two
          ends are symmetric; which is called ``client`` is arbitrary. Raises
          `RuntimeError` on platforms without Unix sockets.

    Raises:
      ValueError: an unknown ``kind``.
      OSError: the sockets could not be created or connected (for TCP, no
        IPv4 loopback).
    """
    if kind == "tcp":
        return await _tcp_pair()
    if kind == "unix":
        await trio.lowlevel.checkpoint()
        if not hasattr(trio.socket, "AF_UNIX"):
            raise RuntimeError("Unix sockets are not available on this platform")
        left, right = trio.socket.socketpair(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        return trio.SocketStream(left), trio.SocketStream(right)
    raise ValueError(f"kind must be 'tcp' or 'unix', not {kind!r}")


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        listener = listeners[0]
        client = await trio.testing.open_stream_to_socket_listener(listener)
        try:
            server = await listener.accept()
        except BaseException:
            await trio.aclose_forcefully(client)
            raise
    finally:
        for each in listeners:
            await trio.aclose_forcefully(each)
    return client, server


@asynccontextmanager
async def socket_stream_pair(kind: SocketKind = "tcp") -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """`open_socket_stream_pair` as an async context manager that closes both ends.

    ::

        async with socket_stream_pair("unix") as (client, server):
            await client.send_all(b"ping")
            assert await server.receive_some() == b"ping"

    On leaving the block, normally or by an exception (cancellation
    included), both ends are closed with `trio.aclose_forcefully`; closing
    an end the block closed already is fine.
    """
    client, server = await open_socket_stream_pair(kind)
    try:
        yield client, server
    finally:
        try:
            await trio.aclose_forcefully(client)
        finally:
            await trio.aclose_forcefully(server)
