"""File-descriptor exhaustion: a server under ``ulimit -n 256`` meets 400
clients at once.

Part of the attack suite. The server (``fd_limit_server.py``, a subprocess
with ``RLIMIT_NOFILE`` lowered to 256) must serve every client in turn,
stay alive, log a bounded number of lines (no traceback per failed
accept), and serve a fresh client afterwards. With the default
``max_connections`` (derived from the limit) it never reaches EMFILE; with
``max_connections=None`` it does, and the accept loop's back-off carries it
through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from attack_kit import read_until_end

resource = pytest.importorskip("resource")

HERE = Path(__file__).parent
LIMIT = 256
CLIENTS = 400


def lower_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))


async def collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some():
        into += chunk


async def client(port: int, i: int, served: list[int], hold: float) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"client %d\n" % i)
        reply = bytearray()
        while not reply.endswith(b"\n"):
            chunk = await stream.receive_some()
            assert chunk, f"client {i}: EOF before the reply"
            reply += chunk
        assert reply == b"echo client %d\n" % i
        await trio.sleep(hold)  # hold the connection: many at once, for a while
        await stream.send_eof()
        data, ending = await read_until_end(stream)
        assert (data, ending) == (b"", None)
    served.append(i)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux rlimits and /proc")
@pytest.mark.parametrize("mode", ["default", "unlimited"])
async def test_a_server_at_its_fd_limit_keeps_serving(mode: str) -> None:
    # Without a limit, the server sits at EMFILE while the first wave of
    # clients holds its connections: the longer, the more a logger without
    # back-off would write.
    hold = 0.3 if mode == "default" else 1.0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, str(HERE / "fd_limit_server.py"), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lower_fd_limit,
            env=env,
        )
        assert process.stdout is not None and process.stderr is not None
        stderr = bytearray()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, process.stderr, stderr)
                out = bytearray()
                while not out.endswith(b"\n"):
                    chunk = await process.stdout.receive_some()
                    assert chunk, f"server died: {bytes(stderr).decode(errors='replace')}"
                    out += chunk
                port = int(out)

                served: list[int] = []
                async with trio.open_nursery() as clients:
                    for i in range(CLIENTS):
                        clients.start_soon(client, port, i, served, hold)
                assert sorted(served) == list(range(CLIENTS))
                assert process.poll() is None, "the server is still running"

                # Recovery: a fresh client is served.
                fresh: list[int] = []
                await client(port, CLIENTS, fresh, 0)
                assert fresh == [CLIENTS]

                await trio.sleep(0.2)
                lines = bytes(stderr).decode(errors="replace").splitlines()
                print(f"\n[attack figure] fd limit {LIMIT}, {CLIENTS} clients, {mode}: {len(lines)} stderr lines")
                # The default max_connections keeps the server from EMFILE:
                # not one failed accept. Without it, one line when a burst of
                # failures begins and one when it ends.
                assert len(lines) <= (0 if mode == "default" else 4), "\n".join(lines[:40])
                assert not any("Traceback" in line for line in lines), "\n".join(lines[:40])
                nursery.cancel_scope.cancel()
        finally:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()
