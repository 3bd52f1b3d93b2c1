"""Shared pieces of the attack suite (``tests/test_attack_*.py``): a server
that a test can start and stop and time, TLS contexts, and the counters that
prove nothing was left behind (tasks, `Connection` objects)."""

from __future__ import annotations

import functools
import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
import trustme

from triostream import Connection, serve_tcp


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) trusting a test CA for 'localhost'."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def count_tasks() -> int:
    """Every task of this run, counted from the root task down."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def poll_until(condition: Callable[[], object], interval: float = 0.01) -> None:
    """Wait until ``condition()`` is true, polling: for what no event tells
    (log records, task counts). The caller bounds the wait."""
    while not condition():  # noqa: ASYNC110 (nothing to wait on but the state itself)
        await trio.sleep(interval)


async def tasks_settle_at(expected: int, within: float = 3.0) -> int:
    """Poll (bounded) until `count_tasks` is ``expected``: connection tasks
    take a moment to finish after their peer has gone. Returns the last count."""
    with trio.move_on_after(within):
        await poll_until(lambda: count_tasks() == expected)
    return count_tasks()


class Countdown:
    """Counts events (clients connected, handlers busy); ``done`` is set at
    the ``target``-th."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = trio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


def live_connections() -> int:
    """`Connection` objects still alive after a full garbage collection."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Connection))


def rss_kib() -> int:
    """This process's resident set size (KiB, from /proc; 0 where unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RunningServer:
    """A `serve_tcp` running in a scope of its own: ``port`` to connect to,
    `stop` to cancel it (a shutdown) and learn how long it took to return."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.finished = trio.Event()
        self.port = 0

    async def stop(self) -> float:
        start = trio.current_time()
        self.scope.cancel()
        await self.finished.wait()
        return trio.current_time() - start

    async def _run(
        self,
        handler: Callable[[Connection], Awaitable[object]],
        kwargs: dict[str, Any],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(
                        functools.partial(serve_tcp, handler, 0, host="127.0.0.1", **kwargs)
                    )
                    self.port = int(listeners[0].socket.getsockname()[1])
                    task_status.started()
        finally:
            self.finished.set()


@asynccontextmanager
async def serving(handler: Callable[[Connection], Awaitable[object]], **kwargs: Any) -> AsyncIterator[RunningServer]:
    """Run ``serve_tcp(handler, 0, host="127.0.0.1", **kwargs)`` for a block;
    the block's end stops it (if the test has not) and waits for it."""
    server = RunningServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server._run, handler, kwargs)
        try:
            yield server
        finally:
            server.scope.cancel()


async def read_until_end(stream: trio.abc.ReceiveStream) -> tuple[bytes, BaseException | None]:
    """Everything ``stream`` delivers, and how it ended: None for a clean EOF,
    else the error (a reset shows as `trio.BrokenResourceError`)."""
    data = bytearray()
    try:
        while chunk := await stream.receive_some():
            data += chunk
    except (trio.BrokenResourceError, OSError) as exc:
        return bytes(data), exc
    return bytes(data), None


def is_reset(exc: BaseException | None) -> bool:
    """True if ``exc`` is (or was caused by) a TCP reset."""
    while exc is not None:
        if isinstance(exc, ConnectionResetError):
            return True
        exc = exc.__cause__
    return False
