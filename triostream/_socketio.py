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
5. any other exception: a schedule point first, as trio's ``_try_sync``
   makes (KeyboardInterrupt included); then an ``OSError`` becomes trio's
   stream error: ``EBADF`` (the socket was closed) a
   `trio.ClosedResourceError` (``from None``), anything else a
   `trio.BrokenResourceError` chained to the ``OSError``. An ``OSError``
   of the wait, or of the read after it, is translated alike, without a
   second schedule point (the wait was one). A close by another task
   during the wait raises `trio.ClosedResourceError` from ``wait_readable``
   (trio's ``notify_closing``), as it does in trio's path.

The same bytes, checkpoints and exceptions as trio's method (trio 0.27 to
0.35 read alike here; ``tests/test_socketio.py`` runs both side by side),
with one difference: the descriptor is read with ``os.read``, not the
socket object's ``recv``. It is asked for at each read, never kept (a
closed socket says -1: ``EBADF``). But if that number was closed behind
trio's back (``os.close``), and the kernel gave it to another file, trio's
``recv`` fails with ``ENOTSOCK`` (a `trio.ClosedResourceError`) where
``os.read`` reads the other file. Closing a trio socket's descriptor
behind its back already breaks trio (its epoll registration), so this is
not guarded against; ``ENOTSOCK`` is not mapped (``os.read`` never raises
it). Callers pass sizes of at least 1 (trio's method refuses less with
`ValueError`; ``os.read`` would return ``b""``).
(`Connection` reads and writes the descriptor of the same transports itself,
`socket_fd`: its reader task's loop and its replies sent in the handler's
task, see _connection.py; its reads translate errors with
`raise_stream_error` too.)

When. `direct_socket_stream` says which transports qualify: a
`trio.SocketStream` (a final class) whose socket is trio's own socket type
(not a `trio.testing` fake, nor a socket factory's), on a POSIX system
(``os.read`` and ``os.write`` do not take Windows sockets), while its
``receive_some`` and its socket's ``recv`` are trio's: neither replaced on
the class nor on the object (a test that patches one, to inject errors,
gets its patch). `read_socket` tests ``receive_some`` again at each read,
so a patch of it made after the stream counts too; a replaced ``recv`` is
seen when the stream is made. A wrapper installed on the class before
this module was imported (a tracing tool's) is not trio's code: then no
transport qualifies. `BufferedStream` asks once, when it is made, and
keeps the answer with the transport it was about
(``BufferedStream._socket_stream``): each read tests that the transport is
still that one, so after ``start_tls`` (or any new ``transport_stream``)
reads go through ``receive_some`` again.

Why. It is the refill path's cost per read. 16 KiB lines in 64 KiB reads
over loopback TCP (the benchmarks' sender, 11 interleaved rounds, medians of
per-round ratios): ``receive_until`` per call 1.25x its speed through
``receive_some``; 1 KiB lines, ``lines().batches()`` 1.07x; 4 KiB
length-prefixed frames, ``frames()`` 1.13x. The saving per read is the
three coroutines' frames, two context managers and a generator: about 280
bytecodes per read, 70 of the 768 a 16 KiB line cost per call (four lines to
a read; traced over TCP). Over TCP each bytecode saved counts for more than
in one process: the same 90 bytecodes per line between ``receive_until``
and its floor cost about 550 ns per line there and about 200 in one
process (most likely caches cooled by the kernel's network work between
reads; this machine has no hardware counters to show it).
"""

from __future__ import annotations

import errno
import os
from typing import NoReturn, TypeGuard

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled, wait_readable

_SocketStream = trio.SocketStream

# trio's socket class (private in trio; 0.27, the oldest this package
# supports, to 0.35 name it so). Without it no transport qualifies, and
# reads go through receive_some.
_TRIO_SOCKET_TYPE: type | None = getattr(getattr(trio, "_socket", None), "_SocketType", None)


def _defined_in(func: object, module_name: str) -> bool:
    """Whether ``func``'s code was compiled from trio's module
    ``module_name``: a wrapper (even one made with functools.wraps, which
    copies names but not code) is not."""
    module = getattr(trio, module_name, None)
    code = getattr(func, "__code__", None)
    return module is not None and code is not None and code.co_filename == getattr(module, "__file__", None)


# trio's own SocketStream.receive_some and socket recv, as found when this
# module is imported, if they are trio's code (not a wrapper installed
# before: then nothing qualifies). A transport is read directly only while
# both are still these, and neither is replaced on the objects themselves:
# a patch (a test injecting errors, a tracing wrapper) is obeyed. Both are
# tested when a transport is judged, receive_some again at each read (see
# read_socket).
_TRIO_RECEIVE_SOME: object = _SocketStream.receive_some
_TRIO_RECV: object = getattr(_TRIO_SOCKET_TYPE, "recv", None)
if not (_defined_in(_TRIO_RECEIVE_SOME, "_highlevel_socket") and _defined_in(_TRIO_RECV, "_socket")):
    _TRIO_SOCKET_TYPE = None

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


def _patched(transport: trio.SocketStream) -> bool:
    """Whether the receive_some or the socket's recv of ``transport`` is no
    longer trio's (on the classes or on the objects)."""
    return (
        _SocketStream.receive_some is not _TRIO_RECEIVE_SOME
        or type(transport.socket).recv is not _TRIO_RECV
        or "receive_some" in vars(transport)
        or "recv" in vars(transport.socket)
    )


def direct_socket_stream(transport: trio.abc.Stream) -> trio.SocketStream | None:
    """``transport`` when `read_socket` may read it in place of its
    ``receive_some``: a plain `trio.SocketStream` over trio's own socket
    type, on a POSIX system (`DIRECT_IO`), whose ``receive_some`` and
    socket ``recv`` are trio's. Else None."""
    if _plain_socket_stream(transport) and not _patched(transport):
        return transport
    return None


def socket_fd(transport: trio.abc.Stream) -> int:
    """The descriptor of a plain `trio.SocketStream` (as for
    `direct_socket_stream`, patches aside: `Connection`'s reads and writes
    of its own, whose tests count ``receive_some`` calls to show them); -1
    for any other transport, and once its socket is closed (``fileno()`` is
    read at each call)."""
    return transport.socket.fileno() if _plain_socket_stream(transport) else -1


async def read_socket(transport: trio.abc.Stream, size: int) -> bytes | bytearray:
    """``transport.receive_some(size)``, reading its socket directly (see the
    module's comment), for a transport `direct_socket_stream` accepted (the
    caller's test; typed as any stream, so that its call sites need no
    cast): up to ``size`` bytes (the callers' sizes are at least 1),
    ``b""`` at EOF. A full checkpoint on every path; a cancellation reads
    nothing. When the stream's ``receive_some`` has been replaced since it
    was judged (on the class or on the object), that is called instead.

    Raises:
      trio.ClosedResourceError: the socket was closed (before the read, or
        by another task while it waited).
      trio.BrokenResourceError: any other socket error, the wait's
        included (chained to it).
    """
    sock = transport.socket  # type: ignore[attr-defined]  # (a SocketStream: see above)
    if _SocketStream.receive_some is not _TRIO_RECEIVE_SOME or "receive_some" in transport.__dict__:
        # receive_some replaced since the transport was judged (`_patched`'s
        # first and third tests, written out: a call per read): obeyed. Not
        # the socket's recv, which is judged once: the two tests more cost
        # about 1 % per 1 KiB read over TCP, and the test of the object's
        # dict here 2-4 % (one 4 MiB line in 1 KiB reads, 9 interleaved
        # rounds), which obeying a patch on the object is worth.
        return await transport.receive_some(size)
    await checkpoint_if_cancelled()
    try:
        data = _os_read(sock.fileno(), size)
    except BlockingIOError:
        pass
    except BaseException as exc:
        # trio's path makes its schedule point before any error but a
        # would-block (KeyboardInterrupt included), then translates.
        await cancel_shielded_checkpoint()
        if isinstance(exc, OSError):
            raise_stream_error(exc)
        raise
    else:
        await cancel_shielded_checkpoint()
        return data
    while True:
        try:
            await wait_readable(sock)
            return _os_read(sock.fileno(), size)
        except BlockingIOError:
            pass
        except OSError as exc:  # (the wait's too, as trio translates them)
            raise_stream_error(exc)


def raise_stream_error(exc: OSError) -> NoReturn:
    """Raise the stream error trio's SocketStream raises for a socket's
    ``exc``: ``EBADF`` (the socket closed) as `trio.ClosedResourceError`,
    unchained; anything else as `trio.BrokenResourceError` chained to
    ``exc``. (trio also maps ``ENOTSOCK``, which ``os.read`` never raises:
    see the module's comment.)"""
    if exc.errno == errno.EBADF:
        raise trio.ClosedResourceError("this socket was already closed") from None
    raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
