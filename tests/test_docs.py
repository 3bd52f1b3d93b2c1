"""The README's usage example runs as shown and no client can crash it; the
benchmark script still works.

The example is taken from README.md as it is and executed without its last
line (``trio.run(trio.serve_tcp, handle, 7878)``): its ``handle`` is run over
memory streams, and under a real `trio.serve_tcp` on 127.0.0.1 (port 0) that
hostile clients talk to over TCP, with Python sockets and with ``nc``.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent

#: The example's last line, which the tests replace by their own server.
RUN_LINE = "trio.run(trio.serve_tcp, handle, 7878)"

#: Upper bound for one conversation; they normally take milliseconds.
TIMEOUT = 15.0

#: The example's ``handle``: typed for a SocketStream, also run over memory streams here.
Handler = Callable[[trio.abc.Stream], Awaitable[None]]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "README has a python example"
    return match.group(1)


def readme_handler() -> Handler:
    """The example's ``handle``, from executing the README's code without its last line."""
    code = readme_example()
    assert code.rstrip().endswith(RUN_LINE), "the example ends by serving handle on port 7878"
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(code.rstrip().removesuffix(RUN_LINE), namespace)
    handle = namespace["handle"]
    assert callable(handle)
    return cast(Handler, handle)


def test_readme_example_is_short() -> None:
    # It is the first code a reader sees.
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) <= 25


# --------------------------------------------------- over memory streams


async def converse(request: bytes, *, close_after: bool = False) -> bytes:
    """Run the README's handler on one end of a memory stream pair; send
    ``request`` from the other, then EOF, and return every reply up to the
    handler closing its end. If the handler raises, so does this.

    ``close_after``: close the client end right after sending instead, without
    reading (the handler's replies then hit a broken stream).
    """
    handle = readme_handler()
    client, server = trio.testing.memory_stream_pair()
    replies = b""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle, server)
            await client.send_all(request)
            if close_after:
                await client.aclose()
                return b""
            await client.send_eof()
            while chunk := await client.receive_some():
                replies += chunk
        # The nursery is done: the handler returned (without raising).
    return replies


async def test_readme_example_serves_a_client() -> None:
    replies = await converse(b"hello\r\nDATA 5\nabcdeDATA 3\r\nxyz")
    assert replies == b"got 5 bytes\ngot 3 bytes\n"


FOLLOW_UP = b"DATA 3\nxyz"

#: (request, replies): what each hostile input gets; a well-formed DATA
#: command follows where the connection can carry on.
HOSTILE = {
    # EOF in the middle of a body or of a line: nothing to answer, the handler returns.
    "truncated-body": (b"DATA 5\nhel", b""),
    "truncated-line": (b"DATA 3\nabcDATA 1", b"got 3 bytes\n"),
    "truncated-long-line": (b"DATA " + b"9" * 2000, b"ERR line too long\n"),
    # A size the handler refuses (over max_buffer_size, not a number): answered, the line is done.
    "too-big": (b"DATA 999999\n" + FOLLOW_UP, b"ERR bad size\ngot 3 bytes\n"),
    "one-over-the-limit": (b"DATA 65537\n" + FOLLOW_UP, b"ERR bad size\ngot 3 bytes\n"),
    "at-the-limit": (b"DATA 65536\n" + b"z" * 65536 + FOLLOW_UP, b"got 65536 bytes\ngot 3 bytes\n"),
    "huge-number": (b"DATA " + b"9" * 1000 + b"\n" + FOLLOW_UP, b"ERR bad size\ngot 3 bytes\n"),
    "not-a-number": (b"DATA x\nDATA -1\nDATA \nDATA 0x10\n" + FOLLOW_UP, b"ERR bad size\n" * 4 + b"got 3 bytes\n"),
    # A line over max_size=1024: answered, skipped through its newline.
    "long-line": (b"x" * 2000 + b"\n" + FOLLOW_UP, b"ERR line too long\ngot 3 bytes\n"),
    "long-crlf-line": (b"DATA " + b"1" * 300_000 + b"\r\n" + FOLLOW_UP, b"ERR line too long\ngot 3 bytes\n"),
}


@pytest.mark.parametrize(("request_", "expected"), list(HOSTILE.values()), ids=list(HOSTILE))
async def test_readme_example_answers_hostile_input(request_: bytes, expected: bytes) -> None:
    assert await converse(request_) == expected


async def test_readme_example_survives_a_client_that_hangs_up_without_reading() -> None:
    # The replies go to a closed stream: trio.BrokenResourceError in the handler.
    await converse(b"DATA 3\nxyz" * 10, close_after=True)


# ------------------------------------------------ under a real TCP server


@asynccontextmanager
async def readme_server() -> AsyncIterator[tuple[int, Callable[[int], Awaitable[None]]]]:
    """Serve the README's handler with `trio.serve_tcp`, as the example does,
    on 127.0.0.1 and a free port. Yields ``(port, wait_for_handlers)``;
    ``await wait_for_handlers(n)`` returns once ``n`` connections have been
    handled to the end. A handler that raises crashes `trio.serve_tcp`, as
    in the example, and the exception comes out of the ``async with``.
    """
    handle = readme_handler()
    finished_send, finished_receive = trio.open_memory_channel[None](math.inf)
    finished = 0

    async def counted(stream: trio.SocketStream) -> None:
        await handle(stream)
        finished_send.send_nowait(None)

    async def wait_for_handlers(n: int) -> None:
        nonlocal finished
        while finished < n:
            await finished_receive.receive()
            finished += 1

    with trio.fail_after(TIMEOUT * 4):
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                functools.partial(trio.serve_tcp, counted, 0, host="127.0.0.1")
            )
            try:
                yield listeners[0].socket.getsockname()[1], wait_for_handlers
            finally:
                nursery.cancel_scope.cancel()


async def tcp_session(port: int, request: bytes, *, reset: bool = False) -> bytes:
    """Connect, send ``request``, then either half-close and return every
    reply up to the server's close (like ``nc -N``), or reset the connection
    (SO_LINGER 0: a RST, not a FIN) and return ``b""``."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            if reset:
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return b""
            await stream.send_eof()
            replies = b""
            while chunk := await stream.receive_some():
                replies += chunk
            return replies


async def test_readme_example_over_tcp_keeps_serving_after_hostile_clients() -> None:
    async with readme_server() as (port, wait_for_handlers):
        sessions = 0
        for request, expected in HOSTILE.values():
            assert await tcp_session(port, request) == expected, request[:40]
            sessions += 1
        # Resets: in the middle of a body, and with replies left unread.
        for request in [b"DATA 5\nhel", b"DATA 3\nxyz" * 1000, b"x" * 5000]:
            assert await tcp_session(port, request, reset=True) == b""
            sessions += 1
        # Every handler so far ended on its own, none raised (or the server
        # would have crashed), and the server still serves a new client.
        await wait_for_handlers(sessions)
        assert await tcp_session(port, b"DATA 2\nokDATA 0\n") == b"got 2 bytes\ngot 0 bytes\n"


@pytest.fixture
def nc_command() -> list[str]:
    """``nc -N`` (netcat-openbsd: half-close after stdin's EOF), or skip.
    A synchronous fixture, so that the skip reason shows in ``pytest -rs``."""
    nc = shutil.which("nc")
    if nc is None:
        pytest.skip("nc not installed (CI installs netcat-openbsd)")
    usage = subprocess.run([nc, "-h"], capture_output=True, timeout=10, check=False)
    if b"-N" not in usage.stdout + usage.stderr:
        pytest.skip("the installed nc has no -N option; this test needs netcat-openbsd")
    return [nc, "-N", "-w", "5"]


async def test_readme_example_with_netcat(nc_command: list[str]) -> None:
    # printf 'DATA 5\nhel' | nc -N 127.0.0.1 PORT, and the other hostile inputs, one nc each.
    async with readme_server() as (port, wait_for_handlers):
        requests = [b"DATA 5\nhel", b"DATA 999999\n", b"DATA x\n", b"y" * 2000 + b"\n", b"DATA 3\nabc"]
        replies = []
        for request in requests:
            with trio.fail_after(TIMEOUT):
                result = await trio.run_process(
                    [*nc_command, "127.0.0.1", str(port)], stdin=request, capture_stdout=True, capture_stderr=True
                )
            replies.append(result.stdout)
        await wait_for_handlers(len(requests))
    assert replies == [b"", b"ERR bad size\n", b"ERR bad size\n", b"ERR line too long\n", b"got 3 bytes\n"]


# ---------------------------------------------------------- benchmarks


def test_benchmark_quick_run_smoke(tmp_path: Path) -> None:
    """The benchmark runs end to end (its figures are not judged here: no
    wall-clock assertions in tests; see benchmarks/README.md)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_receive.py"), "--quick", "--rounds=1", "--only=lines-16B"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ts iter lines" in result.stdout
    assert "ts batch lines" in result.stdout
    assert "ERROR" not in result.stdout
