"""The code examples in the public docstrings (shown by the API reference)
run: each ``::`` block of a docstring of something `triostream` or
`triostream.testing` exports, or of its public members, runs inside the
setting its entry in `SETTINGS` gives it (the names the example takes for
granted), and the setting checks what it did. A new example without a
setting fails `test_every_docstring_example_has_a_setting`."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import triostream
import triostream.testing

#: An example's limit; they take well under a second.
TIMEOUT = 60

PRELUDE = """\
import ssl
import trio
import trio.testing
from hypothesis import given, settings, strategies as st
from triostream import *
from triostream.testing import *
"""


def literal_blocks(doc: str) -> list[str]:
    """The reST literal blocks (after a paragraph ending in ``::``)."""
    lines = inspect.cleandoc(doc).splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        if lines[index].rstrip().endswith("::"):
            index += 1
            while index < len(lines) and not lines[index].strip():
                index += 1
            body = []
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
                body.append(lines[index])
                index += 1
            blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
        else:
            index += 1
    return blocks


def documented() -> dict[str, list[str]]:
    """``{"name#k": code}`` for every example of the public API."""
    found: dict[str, list[str]] = {}
    for module in (triostream, triostream.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            owners = [(f"{module.__name__}.{name}", obj)]
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if not member.startswith("_") or member in ("__aiter__", "__anext__"):
                        owners.append((f"{module.__name__}.{name}.{member}", value))
            for qualname, owner in owners:
                doc = getattr(owner, "__doc__", None)
                if isinstance(doc, str) and (blocks := literal_blocks(doc)):
                    found[qualname] = blocks
    return found


def indent(code: str, spaces: int) -> str:
    return textwrap.indent(code, " " * spaces)


# Each setting is a program with ``{code}`` where the example goes (indented
# by the number that follows), and checks after it.
SETTINGS: dict[str, tuple[str, int]] = {
    "triostream.open_connection#0": (
        """
async def main() -> None:
    client, stream = trio.testing.memory_stream_pair()
    await client.send_all(b"a line from the peer\\n")
{code}
    assert line == b"a line from the peer"
    assert await client.receive_some() == b"hello\\n"  # written, flushed by the graceful close

trio.run(main)
""",
        4,
    ),
    "triostream.connect_tcp#0": (
        """
import functools

import trustme

ca = trustme.CA()
server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ca.issue_cert("127.0.0.1").configure_cert(server_context)


async def pong(stream: trio.SSLStream) -> None:
    buffered = BufferedStream(stream)
    assert await buffered.receive_line() == b"PING"
    await buffered.send_all(b"+PONG\\r\\n")
    await buffered.aclose()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_ssl_over_tcp, pong, 0, server_context, host="127.0.0.1")
        listeners = await nursery.start(serve)
        host, port = listeners[0].transport_listener.socket.getsockname()[:2]
{code}
        assert reply == b"+PONG"
        nursery.cancel_scope.cancel()


_create_default_context = ssl.create_default_context


def create_default_context(*args: object, **kwargs: object) -> ssl.SSLContext:
    context = _create_default_context(*args, **kwargs)
    ca.configure_trust(context)  # the example's default context, trusting this test's CA
    return context


ssl.create_default_context = create_default_context
trio.run(main)
""",
        8,
    ),
    "triostream.FrameChannel#0": (
        """
async def echo(stream: trio.abc.Stream) -> None:
    frames = FrameChannel(stream, LengthPrefixed(max_size=1 << 20))
    received.append(await frames.receive())
    await frames.send(b"reply")
    await frames.aclose()


async def main() -> None:
    async with socket_stream_pair() as (tcp_stream, peer), trio.open_nursery() as nursery:
        nursery.start_soon(echo, peer)
{code}
            frames_seen.append(frame)
    assert received == [b"hello"]
    assert frames_seen == [b"reply"]


received: list[bytes] = []
frames_seen: list[bytes] = []
trio.run(main)
""",
        8,
    ),
    "triostream.FrameParser#0": ("{code}", 0),
    "triostream.testing.socket_stream_pair#0": (
        """
async def main() -> None:
{code}

trio.run(main)
""",
        4,
    ),
    "triostream.testing.ChunkedStream#0": (
        """
codec = Netstring(1 << 16)
encode = codec.encode


async def my_decode(stream: trio.abc.Stream) -> bytes:
    return await FrameChannel(stream, codec).receive()


{code}

settings(max_examples=50, deadline=None)(test_my_decoder)()
""",
        0,
    ),
    "triostream.testing.run_with_each_fault#0": (
        """
{code}

trio.run(test_reset_anywhere)
""",
        0,
    ),
    "triostream.testing.run_script#0": (
        """
async def echo_server(stream: trio.abc.Stream) -> None:
    buffered = BufferedStream(stream)
    async for line in buffered.lines():
        await buffered.send_all(line.removeprefix(b"ECHO ") + b"\\n")
    await buffered.aclose()


async def main() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, server)
{code}


trio.run(main)
""",
        8,
    ),
}


EXAMPLES = {f"{name}#{k}": code for name, blocks in documented().items() for k, code in enumerate(blocks)}


def test_the_public_docstrings_have_examples() -> None:
    assert len(EXAMPLES) >= 8


def test_every_docstring_example_has_a_setting() -> None:
    assert sorted(EXAMPLES) == sorted(SETTINGS), "add a setting for each new example (or remove a stale one)"


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_a_docstring_example_runs(example: str, tmp_path: Path) -> None:
    template, spaces = SETTINGS[example]
    program = PRELUDE + template.replace("{code}", indent(EXAMPLES[example], spaces))
    script = tmp_path / "example.py"
    script.write_text(program)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{example}:\n{program}\n{done.stdout}\n{done.stderr}"
