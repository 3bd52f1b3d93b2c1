"""The benchmark's target figures keep their side of the target when
printed: a figure just under it is not rounded up to it (``0.900x (target
>= 0.9x)`` marked FAIL read as a mistake), in ``bench_receive.py --check``'s
lines and in the page's table that ``plot_receive.py --markdown`` prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (dataclasses look their module up)
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture(scope="module", params=["bench_receive", "plot_receive"])
def script(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


@pytest.mark.parametrize(
    ("value", "limit", "op", "shown"),
    [
        (0.8999, 0.9, ">=", "0.8999"),
        (0.89996, 0.9, ">=", "0.89996"),
        (0.8994, 0.9, ">=", "0.899"),
        (0.9, 0.9, ">=", "0.900"),
        (0.90004, 0.9, ">=", "0.900"),
        (0.9497, 0.95, ">=", "0.9497"),
        (1.23456, 1.0, ">=", "1.235"),
        (17.0004, 17.0, "<=", "17.0004"),
        (16.9996, 17.0, "<=", "17.000"),
        (14.25, 17.0, "<=", "14.250"),
    ],
)
def test_a_figure_is_shown_on_its_side_of_the_target(
    script: ModuleType, value: float, limit: float, op: str, shown: str
) -> None:
    assert script.fmt_figure(value, limit, op) == shown


def test_a_failing_target_line_shows_its_figure_and_its_floor_below_the_target() -> None:
    bench = load("bench_receive")
    target = bench.Target("ts iter until vs split at lines-16KiB", 0.89996, 0.9, floor=("split gen", 0.8999))
    line = target.line()
    assert "FAIL" in line
    assert "0.89996x (target >= 0.9x)" in line
    assert "floor split gen 0.8999x: misses it too" in line
