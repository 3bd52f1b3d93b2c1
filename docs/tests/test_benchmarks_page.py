"""The benchmarks page and its plot come from one run's JSON, and stay so.

docs/_static/bench_receive.json is what ``bench_receive.py --check --json``
wrote; docs/benchmarks.md pastes the output of ``plot_receive.py --markdown``
over it, and shows the plot that ``plot_receive.py`` drew from it. These tests
remake both from the committed JSON: a page edited by hand, or a JSON replaced
without pasting the new tables, fails here. (No figure is judged: the run's
numbers are whatever that machine measured.)
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "_static" / "bench_receive.json"
PLOT = ROOT / "docs" / "_static" / "bench_receive.png"
PAGE = ROOT / "docs" / "benchmarks.md"
SCRIPT = ROOT / "benchmarks" / "plot_receive.py"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The generated parts of the page, as plot_receive.py --markdown marks them.
SECTION = re.compile(
    r"^<!-- plot_receive\.py --markdown: (\w+) -->\n(.*?)^<!-- plot_receive\.py --markdown: end -->$",
    re.MULTILINE | re.DOTALL,
)


def plot_receive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180, cwd=ROOT, check=False
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_from_the_committed_json(tmp_path: Path) -> None:
    out = tmp_path / "bench_receive.png"
    result = plot_receive(str(RESULTS), str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    data = out.read_bytes()
    width, height = png_size(data)
    # 13 x 11 inches at 100 dpi; a blank figure of that size would be a few KB,
    # three panels of bars, labels and legends are well over 50 KB.
    assert (width, height) == (1300, 1100)
    assert len(data) > 50_000
    assert data.rstrip().endswith(b"IEND\xaeB`\x82")


def test_the_committed_plot_is_a_png() -> None:
    width, height = png_size(PLOT.read_bytes())
    assert width >= 800 and height >= 600


def test_page_tables_are_the_json_s() -> None:
    """Every generated part of the page is what --markdown prints now."""
    result = plot_receive(str(RESULTS), "--markdown")
    assert result.returncode == 0, result.stdout + result.stderr
    generated = dict(SECTION.findall(result.stdout))
    assert set(generated) == {"run", "tables", "targets"}
    on_page = dict(SECTION.findall(PAGE.read_text(encoding="utf-8")))
    assert set(on_page) == set(generated), "paste the whole output of plot_receive.py --markdown"
    for name, text in generated.items():
        assert on_page[name] == text, f"section {name!r} of docs/benchmarks.md differs from the JSON's"


def test_page_shows_the_plot() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert "](_static/bench_receive.png)" in page
    assert "```python" not in page  # commands are console blocks: python blocks would be run by the site tests


def test_json_metadata() -> None:
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert data["format"] == 1
    meta = data["metadata"]
    for key in ("date", "command", "python", "trio", "triostream", "peers", "clock", "rounds", "pinned"):
        assert key in meta, key
    assert set(meta["machine"]) >= {"platform", "cpu_count", "cpu_model"}
    assert set(meta["peers"]) == {"anyio", "asyncio", "uvloop", "tornado", "tricycle"}
    assert "bench_receive.py" in meta["command"] and "--json" in meta["command"]
    assert not meta["quick"] and meta["only"] is None  # the page shows a full run
    workloads = {wl["name"]: wl for wl in data["workloads"]}
    assert {"lines-16B", "lines-16KiB", "prefixed-64B", "scale-tcp-4MiB", "scale-mem-4MiB"} <= set(workloads)
    for wl in workloads.values():
        split = next(m for m in wl["methods"] if m["name"] == "split")
        assert split["x_split"]["median"] == 1.0
        assert len(split["times_s"]) == meta["rounds"]
    summary = data["summary"]
    assert summary["passed"] + summary["failed"] + summary["other"] == len(data["targets"])
    for target in data["targets"]:
        assert set(target) >= {"name", "figure", "target", "passed"}
