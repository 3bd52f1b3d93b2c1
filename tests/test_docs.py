"""The README's usage example runs as shown; the benchmark script still works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "README has a python example"
    return match.group(1)


async def test_readme_example_serves_a_client() -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 15
    # Run the example's handler over a memory stream instead of port 7878.
    namespace: dict[str, object] = {}
    exec(code.replace("trio.run(trio.serve_tcp, handle, 7878)", ""), namespace)
    handle = namespace["handle"]
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle, server)  # type: ignore[arg-type]
        await client.send_all(b"hello\r\nDATA 5\nabcdeDATA 3\r\nxyz")
        await client.send_eof()
        replies = b""
        while chunk := await client.receive_some():
            replies += chunk
            if replies.count(b"\n") == 2:
                break
    assert replies == b"got 5 bytes\ngot 3 bytes\n"


def test_benchmark_quick_run_smoke(tmp_path: Path) -> None:
    """The benchmark runs end to end (its figures are not judged here: no
    wall-clock assertions in tests; see benchmarks/README.md)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_receive.py"), "--quick", "--reps=1", "--only=lines-16B"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "triostream iter" in result.stdout
    assert "ERROR" not in result.stdout
