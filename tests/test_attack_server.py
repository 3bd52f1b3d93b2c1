"""The server under attack: shutdowns, accept errors, logging, defaults.

Part of the attack suite: what a server author may rely on from `serve_tcp`.

* **Shutdown.** Cancelling the server gives requests in progress a grace
  period (``shutdown_timeout``) to finish and flush their replies; handlers
  waiting between requests are closed at once; a reply that cannot be
  delivered ends in a TCP reset, never in a clean EOF after partial data.
* **handler_nursery.** Handlers run in the caller's nursery, and cancelling
  it cancels them.
* **Accept errors.** Lack of resources (EMFILE, ENFILE, ENOMEM, ENOBUFS)
  backs off and logs once per burst; any other accept error ends the server.
* **Logging.** A peer leaving mid-line, a timeout doing its job, a failed
  TLS handshake: INFO/DEBUG, no traceback. A handler's bug: ERROR with its
  traceback, rate-limited.
* **Defaults** are the documented ones; ``max_connections_per_host`` holds.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import re
from typing import Any, cast

import pytest
import trio
import trio.testing
from attack_kit import Countdown, RunningServer, is_reset, poll_until, read_until_end, serving, tls_contexts

from triostream import Connection, connect_tcp, serve_tcp, serve_unix
from triostream._options import ConnectionOptions
from triostream._server import _ERROR_BURST, _ERROR_WINDOW, ServerLimits, _ErrorLog, _Server, default_max_connections

# ---------------------------------------------------------------- shutdown


async def test_shutdown_lets_requests_in_progress_finish() -> None:
    """200 clients mid-request (their handlers busy for 0.5 s) when the server
    is cancelled: every one gets its whole reply, then EOF."""
    n = 200
    busy = 0
    all_busy = trio.Event()

    async def handler(conn: Connection) -> None:
        nonlocal busy
        async for line in conn.lines():
            busy += 1
            if busy == n:
                all_busy.set()
            await trio.sleep(0.5)  # the work
            await conn.send_all(b"reply to " + line + b" " + b"r" * 1000 + b"\n")

    replies: dict[int, bytes] = {}
    endings: list[BaseException | None] = []

    async def client(port: int, i: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"request %d\n" % i)
            data, ending = await read_until_end(stream)
            replies[i] = data
            endings.append(ending)

    shutdown_timeout, close_timeout = 5.0, 2.0
    with trio.fail_after(30):
        async with (
            serving(handler, shutdown_timeout=shutdown_timeout, close_timeout=close_timeout, backlog=1024) as server,
            trio.open_nursery() as clients,
        ):
            for i in range(n):
                clients.start_soon(client, server.port, i)
            await all_busy.wait()
            took = await server.stop()
        print(f"\n[attack figure] shutdown with {n} clients mid-request (0.5 s of work left): {took:.3f} s")
        assert took < shutdown_timeout + close_timeout + 3
    assert endings == [None] * n, "each reply ends in a clean EOF"
    assert replies == {i: b"reply to request %d " % i + b"r" * 1000 + b"\n" for i in range(n)}


async def test_shutdown_closes_handlers_between_requests_at_once() -> None:
    """Handlers waiting for the next request are closed at once: the server
    returns long before shutdown_timeout, and each client sees EOF."""
    n = 50
    served = 0
    all_served = trio.Event()

    async def handler(conn: Connection) -> None:
        nonlocal served
        async for line in conn.lines():
            await conn.send_all(b"ok " + line + b"\n")
            served += 1
            if served == n:
                all_served.set()

    endings: list[BaseException | None] = []

    async def client(port: int, i: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"%d\n" % i)
            data, ending = await read_until_end(stream)
            assert data == b"ok %d\n" % i
            endings.append(ending)

    shutdown_timeout = 20.0
    with trio.fail_after(30):
        async with (
            serving(handler, shutdown_timeout=shutdown_timeout, close_timeout=2) as server,
            trio.open_nursery() as clients,
        ):
            for i in range(n):
                clients.start_soon(client, server.port, i)
            await all_served.wait()
            await trio.sleep(0.1)  # each handler back in its wait for a line
            took = await server.stop()
    assert endings == [None] * n
    assert took < shutdown_timeout / 4, "did not wait out the grace period"


async def request_during_shutdown(server: RunningServer, parts: list[bytes]) -> tuple[bytes, float]:
    """Send ``parts[0]``, start the server's shutdown, then send the rest
    (0.2 s apart, well within the grace period); returns what came back
    (up to a clean EOF) and how long the shutdown took."""
    took: list[float] = []

    async def stop() -> None:
        took.append(await server.stop())

    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream, trio.open_nursery() as nursery:
        await stream.send_all(parts[0])
        await trio.sleep(0.2)  # the server has read it
        nursery.start_soon(stop)
        for part in parts[1:]:
            await trio.sleep(0.2)
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(part)
        data, ending = await read_until_end(stream)
        assert ending is None, repr(ending)
    return data, took[0]


async def test_a_frame_half_received_at_shutdown_gets_the_grace_period() -> None:
    """A request line half received when the shutdown begins: its handler is
    mid-frame, so it has the grace period to receive the rest and reply."""

    async def handler(conn: Connection) -> None:
        async for line in conn.lines():
            await conn.send_all(b"reply " + line + b"\n")

    shutdown_timeout, close_timeout = 3.0, 1.0
    with trio.fail_after(20):
        async with serving(handler, shutdown_timeout=shutdown_timeout, close_timeout=close_timeout) as server:
            data, took = await request_during_shutdown(server, [b"half a ", b"line\n"])
    assert data == b"reply half a line\n"
    assert took < shutdown_timeout + close_timeout + 3


async def test_a_request_of_several_frames_started_before_shutdown_gets_the_grace_period() -> None:
    """A request of two lines, the first received before the shutdown, the
    second 0.2 s into the grace period: the request started before the
    shutdown and finishes within the grace period, so it should be answered."""

    async def handler(conn: Connection) -> None:
        while True:
            first = await conn.receive_line()
            second = await conn.receive_line()
            await conn.send_all(b"reply " + first + b" " + second + b"\n")

    with trio.fail_after(20):
        async with serving(handler, shutdown_timeout=3, close_timeout=1) as server:
            data, _ = await request_during_shutdown(server, [b"first\n", b"second\n"])
    assert data == b"reply first second\n"


async def test_a_truncated_reply_ends_in_a_reset() -> None:
    """A reply that cannot be delivered by the end of the shutdown (the client
    does not read) is cut off with a TCP reset: the client cannot mistake
    the partial reply for a whole one followed by a clean EOF."""
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
            max_write_buffer_size=8_000_000,
            shutdown_timeout=shutdown_timeout,
            close_timeout=close_timeout,
        ) as server:
            # A client with a small receive window, so that the kernels cannot
            # absorb the whole reply.
            sock = trio.socket.socket()
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", server.port))
            stream = trio.SocketStream(sock)
            async with stream:
                await stream.send_all(b"give me a lot\n")
                await queued.wait()
                took = await server.stop()
                data, ending = await read_until_end(stream)
        assert took < shutdown_timeout + close_timeout + 3
    assert len(data) < 5_000_000
    assert ending is not None, f"clean EOF after {len(data)} of 5000000 bytes"
    assert is_reset(ending), repr(ending)


# ---------------------------------------------------------------- handler_nursery


async def test_cancelling_the_handler_nursery_cancels_the_handlers() -> None:
    started = trio.Event()
    outcome: list[str] = []

    async def handler(conn: Connection) -> None:
        await conn.receive_line()
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            handlers_scope = trio.CancelScope()
            handlers_done = trio.Event()

            async def own_handlers(task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
                with handlers_scope:
                    async with trio.open_nursery() as handlers:
                        task_status.started(handlers)
                        await trio.sleep_forever()
                handlers_done.set()

            handler_nursery = await outer.start(own_handlers)
            listeners = await outer.start(
                functools.partial(serve_tcp, handler, 0, host="127.0.0.1", handler_nursery=handler_nursery)
            )
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"hello\n")
                await started.wait()
                handlers_scope.cancel()
                with trio.fail_after(3):
                    await handlers_done.wait()
                assert outcome == ["cancelled"]
                data, _ = await read_until_end(stream)
                assert data == b""
            outer.cancel_scope.cancel()


async def test_a_closed_handler_nursery_ends_the_server_and_the_socket_is_still_closed() -> None:
    """Handing the server a nursery that has closed is a bug of the caller:
    the server ends with trio's RuntimeError at the first connection, and
    that connection's socket is closed all the same (its owner rule holds)."""

    async def handler(conn: Connection) -> None:
        pass

    async with trio.open_nursery() as handler_nursery:
        pass  # closed from here on
    errors: list[BaseException] = []

    async def run_server(task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve_tcp(handler, 0, host="127.0.0.1", handler_nursery=handler_nursery, task_status=task_status)
        except BaseException as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(run_server)
            stream = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
            async with stream:
                with trio.fail_after(3):
                    data, _ = await read_until_end(stream)
                assert data == b""
    assert len(errors) == 1
    found = errors[0]
    while hasattr(found, "exceptions"):  # (Base)ExceptionGroup, also on Python 3.10
        found = found.exceptions[0]
    assert isinstance(found, RuntimeError)


# ---------------------------------------------------------------- accept errors


class ScriptedListener:
    """Stands in for a `trio.SocketListener`: each ``accept`` takes the next
    item of the script (an exception to raise, or a stream to return), then
    waits forever."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.accepts: list[float] = []

    async def __aenter__(self) -> ScriptedListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def accept(self) -> Any:
        await trio.lowlevel.checkpoint()
        self.accepts.append(trio.current_time())
        if not self.script:
            await trio.sleep_forever()
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class RecordingNursery:
    """Stands in for the nursery connections are started in: records them."""

    def __init__(self, expected: int) -> None:
        self.started: list[tuple[Any, ...]] = []
        self.all_started = Countdown(expected)

    def start_soon(self, fn: Any, *args: Any) -> None:
        self.started.append(args)
        self.all_started.add()


def make_server(max_connections: int | None = 1) -> _Server:
    limits = ServerLimits(
        max_connections=max_connections, max_connections_per_host=None, handshake_timeout=None, shutdown_timeout=1.0
    )

    async def handler(conn: Connection) -> None:
        pass

    return _Server(handler, None, limits, ConnectionOptions(), shield=True)


def emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


async def run_accept_loop(server: _Server, listener: ScriptedListener, nursery: RecordingNursery) -> None:
    await server.accept_loop(cast(trio.SocketListener, listener), cast(trio.Nursery, nursery))


@pytest.mark.parametrize("code", ["EMFILE", "ENFILE", "ENOMEM", "ENOBUFS"])
async def test_accept_out_of_resources_backs_off_and_logs_once_per_burst(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    """Two bursts of 200 failures, a connection accepted between them: the
    loop keeps going (with max_connections=1, so every failure must give
    its slot back), backs off (few retries per second), and logs a bounded
    number of lines, none with a traceback."""
    error = getattr(errno, code)
    stream_1, stream_2 = object(), object()
    script: list[Any] = [
        *[OSError(error, code)] * 200,
        stream_1,
        *[OSError(error, code)] * 200,
        stream_2,
    ]
    listener = ScriptedListener(script)
    nursery = RecordingNursery(2)
    server = make_server(max_connections=None)
    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10_000):
        async with trio.open_nursery() as n:
            n.start_soon(run_accept_loop, server, listener, nursery)
            await nursery.all_started.done.wait()
            n.cancel_scope.cancel()
    assert [args[0] for args in nursery.started] == [stream_1, stream_2]
    # Backing off: in the first ten seconds of a burst, far fewer retries
    # than a fixed 0.1 s pause would make (100).
    first = listener.accepts[0]
    assert sum(1 for t in listener.accepts if t - first < 10) < 25
    records = [r for r in caplog.records if r.name == "triostream"]
    assert 2 <= len(records) <= 4, [r.getMessage() for r in records]
    assert all(r.exc_info is None for r in records)
    assert all(r.levelno < logging.ERROR for r in records)


async def test_accept_out_of_resources_gives_back_the_slot(autojump_clock: trio.testing.MockClock) -> None:
    """With max_connections=1, a failed accept must not keep the only slot."""
    stream = object()
    listener = ScriptedListener([emfile(), emfile(), emfile(), stream])
    nursery = RecordingNursery(1)
    server = make_server(max_connections=1)
    with trio.fail_after(100):
        async with trio.open_nursery() as n:
            n.start_soon(run_accept_loop, server, listener, nursery)
            await nursery.all_started.done.wait()
            n.cancel_scope.cancel()
    assert nursery.started[0][0] is stream


@pytest.mark.parametrize("code", ["EBADF", "EINVAL", "ENOTSOCK"])
async def test_any_other_accept_error_ends_the_server(autojump_clock: trio.testing.MockClock, code: str) -> None:
    listener = ScriptedListener([emfile(), OSError(getattr(errno, code), code)])
    server = make_server()
    with trio.fail_after(100), pytest.raises(OSError) as info:
        await run_accept_loop(server, listener, RecordingNursery(1))
    assert info.value.errno == getattr(errno, code)
    assert len(listener.accepts) == 2, "raised at once, not retried"


# ---------------------------------------------------------------- logging


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "triostream"]


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records and tracebacks among the triostream records."""
    return [
        f"{r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.name == "triostream" and (r.levelno >= logging.ERROR or r.exc_info is not None)
    ]


def ordinary(caplog: pytest.LogCaptureFixture, peer: str) -> list[logging.LogRecord]:
    """INFO/DEBUG records of the server that name ``peer``."""
    return [
        r
        for r in caplog.records
        if r.name == "triostream" and r.levelno in (logging.INFO, logging.DEBUG) and peer in r.getMessage()
    ]


def local_address(stream: trio.SocketStream) -> str:
    host, port = stream.socket.getsockname()[:2]
    return f"{host}:{port}"


async def test_a_peer_leaving_mid_line_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(conn: Connection) -> None:
        await conn.receive_line()

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            peer = local_address(stream)
            async with stream:
                await stream.send_all(b"half a li")
            await poll_until(lambda: server_records(caplog))
            await trio.sleep(0.05)
    assert problems(caplog) == []
    assert ordinary(caplog, peer), "one line at INFO/DEBUG naming the peer"


async def test_a_read_timeout_doing_its_job_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(conn: Connection) -> None:
        await conn.receive_line()

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler, read_timeout=0.2) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            peer = local_address(stream)
            async with stream:
                await stream.send_all(b"never ending")
                data, _ = await read_until_end(stream)  # the server hangs up
            assert data == b""
            await poll_until(lambda: server_records(caplog))
            await trio.sleep(0.05)
    assert problems(caplog) == []
    assert ordinary(caplog, peer), "one line at INFO/DEBUG naming the peer"


async def test_a_failed_tls_handshake_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    server_ctx, _ = tls_contexts()

    async def handler(conn: Connection) -> None:
        await conn.receive_line()

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler, ssl_context=server_ctx) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            peer = local_address(stream)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
                await read_until_end(stream)
            await poll_until(lambda: server_records(caplog))
            await trio.sleep(0.05)
    assert problems(caplog) == []
    assert ordinary(caplog, peer), "one line at INFO/DEBUG naming the peer"


async def test_a_failed_starttls_is_one_info_line_that_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """A handler whose start_tls fails (the client answers in plaintext) and
    lets the error out: one INFO line naming the peer, no traceback, and it
    says why (the TLS library's reason: trio's BrokenResourceError carries it
    as its __cause__, its own message is empty)."""
    server_ctx, _ = tls_contexts()
    raised: list[BaseException] = []

    async def handler(conn: Connection) -> None:
        await conn.receive_line()
        try:
            await conn.start_tls(server_ctx, server_side=True, response=b"220 go\r\n")
        except trio.BrokenResourceError as exc:
            raised.append(exc)
            raise

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            peer = local_address(stream)
            async with stream:
                await stream.send_all(b"STARTTLS\r\n")
                await stream.receive_some()  # the go-ahead
                await stream.send_all(b"EHLO still plaintext\r\n" * 4)
                await read_until_end(stream)
            await poll_until(lambda: ordinary(caplog, peer))
    assert problems(caplog) == []
    [exc] = raised
    assert exc.__cause__ is not None and str(exc.__cause__)
    [line] = [r.getMessage() for r in ordinary(caplog, peer)]
    assert line.endswith(str(exc.__cause__)), line


async def test_a_handler_bug_is_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(conn: Connection) -> None:
        await conn.receive_line()
        raise RuntimeError("bug")

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(10):
        async with serving(handler) as server:
            async with connect_tcp("127.0.0.1", server.port) as conn:
                await conn.send_all(b"trigger\n")
                assert await conn.receive_some() == b""
            await poll_until(lambda: problems(caplog))
            await trio.sleep(0.1)
    errors = [r for r in caplog.records if r.name == "triostream" and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


async def test_a_burst_of_handler_bugs_logs_a_bounded_number_of_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = 50
    raised = 0
    all_raised = trio.Event()

    async def handler(conn: Connection) -> None:
        nonlocal raised
        await conn.receive_line()
        raised += 1
        if raised == n:
            all_raised.set()
        raise RuntimeError("bug")

    async def client(port: int) -> None:
        async with connect_tcp("127.0.0.1", port) as conn:
            await conn.send_all(b"trigger\n")
            assert await conn.receive_some() == b""

    with caplog.at_level(logging.DEBUG, logger="triostream"), trio.fail_after(20):
        async with serving(handler) as server, trio.open_nursery() as clients:
            for _ in range(n):
                clients.start_soon(client, server.port)
            await all_raised.wait()
    tracebacks = [r for r in caplog.records if r.name == "triostream" and r.exc_info is not None]
    assert 1 <= len(tracebacks) <= _ERROR_BURST


async def test_suppressed_handler_errors_are_counted_when_the_window_ends(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    errors = _ErrorLog()
    with caplog.at_level(logging.DEBUG, logger="triostream"):
        for _ in range(50):
            errors.report("peer", RuntimeError("bug"))
        await trio.sleep(_ERROR_WINDOW + 1)
        errors.report("peer", RuntimeError("bug"))
    records = [r for r in caplog.records if r.name == "triostream"]
    assert [r.exc_info is not None for r in records] == [True] * _ERROR_BURST + [False, True]
    assert str(50 - _ERROR_BURST) in records[_ERROR_BURST].getMessage()


# ---------------------------------------------------------------- defaults


def documented_default(doc: str, name: str) -> str:
    """The first parenthesised value after ``name`` in a docstring."""
    match = re.search(rf"``{name}``[^(]*\(([^);:]+)", doc)
    assert match, f"{name} is not documented"
    return match.group(1)


@pytest.mark.parametrize("serve", [serve_tcp, serve_unix])
def test_server_defaults_are_safe_and_documented(serve: Any) -> None:
    params = inspect.signature(serve).parameters
    assert params["handshake_timeout"].default == 10
    assert params["idle_timeout"].default == 300
    assert params["shutdown_timeout"].default == 5
    assert params["max_connections"].default == "auto"
    assert params["max_connections_per_host"].default is None
    doc = inspect.getdoc(serve_tcp) or ""
    assert documented_default(doc, "handshake_timeout") == "10 s"
    assert documented_default(doc, "idle_timeout").startswith("300 s")
    assert documented_default(doc, "shutdown_timeout") == "5"
    assert "auto" in documented_default(doc, "max_connections")


def test_default_max_connections_leaves_file_descriptors_free() -> None:
    resource = pytest.importorskip("resource")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        assert default_max_connections() == 1000
    else:
        assert 1 <= default_max_connections() == max(1, soft - 64) < soft


def test_clients_have_a_handshake_timeout_by_default() -> None:
    from triostream import connect_unix

    for connect in (connect_tcp, connect_unix):
        assert inspect.signature(connect).parameters["handshake_timeout"].default == 10


async def test_max_connections_per_host() -> None:
    """Two connections from 127.0.0.1 are served; a third is closed at once
    while they are open; once one leaves, a new one is served again."""

    async def echo(conn: Connection) -> None:
        async for line in conn.lines():
            await conn.send_all(b"echo " + line + b"\n")

    with trio.fail_after(10):
        async with serving(echo, max_connections_per_host=2) as server:
            async with connect_tcp("127.0.0.1", server.port) as first, connect_tcp("127.0.0.1", server.port) as second:
                for conn in (first, second):
                    await conn.send_all(b"hi\n")
                    assert await conn.receive_line() == b"echo hi"
                third = await trio.open_tcp_stream("127.0.0.1", server.port)
                async with third:
                    data, _ = await read_until_end(third)
                    assert data == b""
                for conn in (first, second):
                    await conn.send_all(b"still here\n")
                    assert await conn.receive_line() == b"echo still here"
            # Both gone: the host's count went back down.
            for _ in range(2):
                with trio.fail_after(3):
                    async with connect_tcp("127.0.0.1", server.port) as conn:
                        await conn.send_all(b"again\n")
                        assert await conn.receive_line() == b"echo again"


async def test_tls_handshakes_count_against_max_connections_per_host() -> None:
    """A host's silent TLS clients are refused beyond the limit, and their
    slots come back when handshake_timeout cuts them off."""
    server_ctx, client_ctx = tls_contexts()

    async def echo(conn: Connection) -> None:
        async for line in conn.lines():
            await conn.send_all(b"echo " + line + b"\n")

    with trio.fail_after(10):
        async with serving(echo, ssl_context=server_ctx, handshake_timeout=0.3, max_connections_per_host=2) as server:
            silent = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(2)]
            with pytest.raises(trio.BrokenResourceError):
                async with connect_tcp(
                    "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
                ) as conn:
                    await conn.send_all(b"x\n")
                    await conn.receive_line()
            for stream in silent:
                async with stream:
                    await read_until_end(stream)  # cut off by handshake_timeout
            await trio.sleep(0.1)
            async with connect_tcp(
                "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
            ) as conn:
                await conn.send_all(b"x\n")
                assert await conn.receive_line() == b"echo x"
