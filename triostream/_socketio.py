"""Reading and writing a plain `trio.SocketStream`'s socket directly.

The plan. ``trio.SocketStream.receive_some(n)`` goes through three
coroutines and two context managers before it reaches the socket:
``receive_some`` itself, the socket's ``recv`` wrapper and its
``_nonblocking_helper`` (whose ``_try_sync`` is the checkpoint sandwich),
and ``_translate_socket_errors_to_stream_errors`` around them. `read_socket`
does what that path does, in one coroutine:

1. a cancel point (``checkpoint_if_cancelled``): a cancelled read reads
   nothing;
2. one ``os.read`` of the socket's descriptor (on a stream socket, what
   ``recv`` with no flags is);
3. bytes (``b""`` at EOF): a schedule point (``cancel_shielded_checkpoint``),
   then they are returned. So the read is a full checkpoint, as trio's is;
4. ``BlockingIOError`` (nothing to read yet): ``wait_readable`` (a full
   checkpoint; a cancellation there reads nothing), then read again;
5. another ``OSError``: trio's stream error, after a schedule point when
   no wait came before it. ``EBADF``/``ENOTSOCK`` (the socket was closed)
   become `trio.ClosedResourceError`, anything else
   `trio.BrokenResourceError` chained to the ``OSError``. A close by another
   task during the wait raises `trio.ClosedResourceError` from
   ``wait_readable`` (trio's ``notify_closing``), as it does in trio's path.

Same bytes, same checkpoints, same exceptions as trio's method (trio 0.27
to 0.35 read alike here); ``tests/test_socketio.py`` runs both side by
side. The descriptor is asked for at each use, never kept: a closed socket
says -1 (``EBADF``), where a kept number could by then name another file.
(`Connection` reads and writes the descriptor of the same transports itself,
`socket_fd`: its reader task's loop and its replies sent in the handler's
task, see _connection.py.)

When. `direct_socket_stream` says which transports qualify: a
`trio.SocketStream` (a final class) whose socket is trio's own socket type
(not a `trio.testing` fake, nor a socket factory's), on a POSIX system
(``os.read`` and ``os.write`` do not take Windows sockets), while
``SocketStream.receive_some`` is still trio's (a test that patches it, to
inject errors, gets its patch, even one made after the stream: each
`read_socket` tests it again). `BufferedStream` asks once, when it is
made, and keeps the answer with the transport it was about
(``BufferedStream._socket_stream``): each read tests that the transport is
still that one, so after ``start_tls`` (or any new ``transport_stream``)
reads go through ``receive_some`` again.

Why. It is the refill path's cost per read. 16 KiB lines in 64 KiB reads
over loopback TCP (the benchmarks' sender, 11 interleaved rounds, medians of
per-round ratios): ``receive_until`` per call 1.25x its speed through
``receive_some``; 1 KiB lines, ``lines().batches()`` 1.07x; 4 KiB
length-prefixed frames, ``frames()`` 1.13x. The saving per read is the
three coroutines' frames, two context managers and a generator (about 280
bytecodes of the 680 a 16 KiB line costs per call, a read being a quarter
of them); over TCP the code that runs after each read also runs with caches
the kernel's network work has cooled, so each bytecode saved counts for more
than in one process.
"""

from __future__ import annotations

import errno
import os
from typing import TypeGuard

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled, wait_readable

# errno values trio's SocketStream reports as "already closed".
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

# trio's own SocketStream.receive_some, as imported: a patched one is obeyed
# (tested when a transport is judged, and again at each read).
_SocketStream = trio.SocketStream
_TRIO_RECEIVE_SOME = _SocketStream.receive_some

# trio's socket class (private in trio; 0.27, the oldest this package
# supports, to 0.35 name it so). Without it no transport qualifies, and reads go through receive_some.
_TRIO_SOCKET_TYPE: type | None = getattr(getattr(trio, "_socket", None), "_SocketType", None)

_os_read = os.read

# Whether os.read and os.write take a socket's descriptor.
DIRECT_IO = os.name == "posix"


def _plain_socket_stream(transport: trio.abc.Stream) -> TypeGuard[trio.SocketStream]:
    """Whether ``transport`` is a plain `trio.SocketStream` over trio's own
    socket type, on a POSIX system (`DIRECT_IO`)."""
    return (
        type(transport) is _SocketStream
        and DIRECT_IO
        and _TRIO_SOCKET_TYPE is not None
        and type(transport.socket) is _TRIO_SOCKET_TYPE
    )


def direct_socket_stream(transport: trio.abc.Stream) -> trio.SocketStream | None:
    """``transport`` when `read_socket` may read it in place of its
    ``receive_some``: a plain `trio.SocketStream` over trio's own socket
    type, on a POSIX system (`DIRECT_IO`), while
    ``trio.SocketStream.receive_some`` is trio's. Else None."""
    if _plain_socket_stream(transport) and _SocketStream.receive_some is _TRIO_RECEIVE_SOME:
        return transport
    return None


def socket_fd(transport: trio.abc.Stream) -> int:
    """The descriptor of a plain `trio.SocketStream` (as for
    `direct_socket_stream`, a patched ``receive_some`` aside: `Connection`'s
    reads and writes of its own, whose tests count ``receive_some`` calls to
    show them); -1 for any other transport, and once its socket is closed
    (``fileno()`` is read at each call)."""
    return transport.socket.fileno() if _plain_socket_stream(transport) else -1


async def read_socket(transport: trio.abc.Stream, size: int) -> bytes | bytearray:
    """``transport.receive_some(size)``, reading its socket directly (see the
    module's comment), for a transport `direct_socket_stream` accepted (the
    caller's test; typed as any stream, so that its call sites need no
    cast): up to ``size`` bytes (at least 1), ``b""`` at EOF. A full
    checkpoint; a cancellation reads nothing.

    Raises:
      trio.ClosedResourceError: the socket was closed (before the read, or
        by another task while it waited).
      trio.BrokenResourceError: any other socket error (chained to it).
    """
    if _SocketStream.receive_some is not _TRIO_RECEIVE_SOME:
        # Patched since the caller's test (a test injecting errors): obeyed.
        return await transport.receive_some(size)
    sock = transport.socket  # type: ignore[attr-defined]  # (a SocketStream: see above)
    await checkpoint_if_cancelled()
    try:
        data = _os_read(sock.fileno(), size)
    except BlockingIOError:
        pass
    except OSError as exc:
        await cancel_shielded_checkpoint()
        raise _stream_error(exc) from (None if exc.errno in _CLOSED_ERRNOS else exc)
    else:
        await cancel_shielded_checkpoint()
        return data
    while True:
        await wait_readable(sock)
        try:
            return _os_read(sock.fileno(), size)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise _stream_error(exc) from (None if exc.errno in _CLOSED_ERRNOS else exc)


def _stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """The stream error trio's SocketStream raises for a socket's ``exc``."""
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")
