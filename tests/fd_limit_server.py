"""A line-echo server for ``test_attack_fd_limit.py``, run as a subprocess
(under a low ``RLIMIT_NOFILE`` set by the test).

Usage: ``python fd_limit_server.py [default|unlimited]``: ``serve_tcp``
with its default ``max_connections``, or with ``max_connections=None``
(nothing but the accept back-off between the server and EMFILE). Prints
the port on stdout, then serves until killed; logs (WARNING and up) go to
stderr.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import trio

from triostream import Connection, serve_tcp


async def echo(conn: Connection) -> None:
    async for line in conn.lines():
        await conn.send_all(b"echo " + line + b"\n")


async def main(mode: str) -> None:
    options: dict[str, Any] = {} if mode == "default" else {"max_connections": None}
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(serve_tcp, echo, 0, host="127.0.0.1", **options))
        print(listeners[0].socket.getsockname()[1], flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "default")
