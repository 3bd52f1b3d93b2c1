"""The receive benchmark's results as a plot and as the benchmarks page's tables.

Reads the JSON that ``bench_receive.py --json PATH`` writes, and

- writes a PNG (matplotlib, Agg): per fixed workload, the throughput of the
  main triostream APIs, their floors and the peers relative to ``split``; the
  per-call methods relative to ``split+checkpoint``; and the one-long-line
  workloads relative to ``split``. Bars are the median of the per-round
  ratios, whiskers the lowest and the highest round, black ticks the targets;
- with ``--markdown``, prints the measurement's description and the tables of
  docs/benchmarks.md, so that the page is pasted from the very run that the
  plot shows, and a test can check that it still matches the JSON.

Every figure is derived from the per-round times in the JSON the way
bench_receive.py derives its own (ratios within a round, then the median;
a peer with two line APIs counts as the faster of them in each round), so
the tables match the script's printed ones.

    python benchmarks/plot_receive.py results.json docs/_static/bench_receive.png
    python benchmarks/plot_receive.py results.json --markdown
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JSON_FORMAT = 1  # the bench_receive.py --json format this reads

Json = dict[str, Any]

SPLIT, CHECKPOINT = "split", "split+checkpoint"
PEERS = ("anyio", "asyncio", "uvloop", "tornado", "tricycle")


@dataclass(frozen=True)
class Row:
    """One row of a table (one bar of a group): the method at line workloads
    and the one at length-prefixed workloads (several: the faster of them in
    each round), or every method of ``peer``."""

    label: str
    lines: tuple[str, ...] = ()
    prefixed: tuple[str, ...] = ()
    peer: str | None = None
    color: str = "tab:blue"
    hatch: str | None = None

    def names(self, wl: Json) -> list[str]:
        """The row's methods at ``wl``; [] when one of them was not measured there."""
        measured = {m["name"]: m for m in wl["methods"] if m["median_s"] is not None and not m["error"]}
        if self.peer is not None:
            return [name for name, m in measured.items() if m["peer"] == self.peer]
        names = self.lines if wl["kind"] == "lines" else self.prefixed
        return list(names) if names and all(n in measured for n in names) else []


def both(label: str, lines: str, prefixed: str, color: str, hatch: str | None = None) -> Row:
    return Row(label, (lines,), (prefixed,), color=color, hatch=hatch)


FLOOR_BATCHES = both("split batches (floor)", "split batches", "split batches", "0.75", "//")
# lines().batches()'s contract around the same loop (lines only: the floor of
# the batch targets for lines).
FLOOR_LINES_BATCHES = Row("split lines batches (floor, contract)", ("split lines batches",), color="0.7", hatch="++")
TS_BATCH = both("ts batch", "ts batch lines", "ts batch frames", "tab:blue")
TS_BATCH_UNTIL = Row("ts batch until", ("ts batch until",), color="tab:blue")
FLOOR_GEN = both("split gen (floor)", "split gen", "split gen", "0.55", "\\\\")
# lines()'s contract around the same loop (lines only: the floor of the
# per-frame targets for lines).
FLOOR_LINES_GEN = Row("split lines gen (floor, contract)", ("split lines gen",), color="0.5", hatch="++")
TS_ITER = both("ts iter", "ts iter lines", "ts iter frames", "tab:green")
TS_ITER_UNTIL = Row("ts iter until", ("ts iter until",), color="tab:green")
FLOOR_NOWAIT = both("split nowait (floor)", "split nowait", "split nowait", "0.45", "..")
TS_NOWAIT = both("ts nowait", "ts nowait line", "ts nowait exactly", "tab:cyan")
TS_NOWAIT_UNTIL = Row("ts nowait until", ("ts nowait until",), color="tab:cyan")
FLOOR_CALL = both("split call (floor)", "split call", "split call", "0.65", "xx")
# receive_until's contract around the same lists (lines only: the floor of
# the per-call targets for lines).
FLOOR_UNTIL = Row("split until (floor, contract)", ("split until",), color="0.6", hatch="++")
TS_CALL = both("ts call", "ts call line", "ts call frame", "tab:purple")
TS_CALL_UNTIL = Row("ts call until", ("ts call until",), color="tab:pink")
TS_CALL_EXACTLY = Row("ts call exactly (2 calls/frame)", (), ("ts call exactly",), color="tab:olive")
SPLIT_ROW = both("split", SPLIT, SPLIT, "black")
CHECKPOINT_ROW = both("split+checkpoint", CHECKPOINT, CHECKPOINT, "0.3")
PEER_ROWS = [
    Row(peer, peer=peer, color=color)
    for peer, color in zip(PEERS, ("tab:orange", "tab:red", "tab:brown", "gold", "tab:olive"), strict=True)
]

# Tables: ratios to split; per-call methods against split+checkpoint; ns per frame.
ITERATOR_ROWS = [
    FLOOR_BATCHES,
    FLOOR_LINES_BATCHES,
    TS_BATCH,
    TS_BATCH_UNTIL,
    FLOOR_GEN,
    FLOOR_LINES_GEN,
    TS_ITER,
    TS_ITER_UNTIL,
    FLOOR_NOWAIT,
    TS_NOWAIT,
    TS_NOWAIT_UNTIL,
]
CALL_ROWS = [FLOOR_CALL, FLOOR_UNTIL, TS_CALL, TS_CALL_UNTIL, TS_CALL_EXACTLY]
SPLIT_ROWS = [*ITERATOR_ROWS, CHECKPOINT_ROW, *PEER_ROWS]
NS_ROWS = [SPLIT_ROW, *ITERATOR_ROWS, *CALL_ROWS, CHECKPOINT_ROW, *PEER_ROWS]
# The plot's bars: one per API (the `until` twins are in the tables).
PLOT_ROWS = [FLOOR_BATCHES, TS_BATCH, FLOOR_GEN, TS_ITER, TS_NOWAIT, *PEER_ROWS]
SCALE_ROWS = [
    Row("ts call", ("ts call line",), color="tab:purple"),
    Row("ts nowait", ("ts nowait line",), color="tab:cyan"),
    Row("ts iter", ("ts iter lines",), color="tab:green"),
    Row("ts batch", ("ts batch lines",), color="tab:blue"),
    *PEER_ROWS,
]


# ------------------------------------------------------------------ figures


def load(path: str) -> Json:
    with open(path, encoding="utf-8") as f:
        data: Json = json.load(f)
    if data.get("format") != JSON_FORMAT:
        raise SystemExit(f"{path}: not a bench_receive.py --json file of format {JSON_FORMAT}")
    return data


def series(wl: Json, names: Sequence[str]) -> list[float | None]:
    """Per round, the time of the method (of the fastest of ``names``, in the
    rounds where all of them ran), as bench_receive.py's Results.series."""
    times = {m["name"]: m["times_s"] for m in wl["methods"]}
    rounds = max((len(t) for t in times.values()), default=0)
    out: list[float | None] = []
    for r in range(rounds):
        ts = [times[n][r] if n in times and r < len(times[n]) else None for n in names]
        out.append(min(t for t in ts if t is not None) if ts and None not in ts else None)
    return out


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float


def ratio(wl: Json, names: Sequence[str], reference: str) -> Ratio | None:
    """The median of the per-round throughput ratios (the reference's time /
    the method's time) and the lowest and highest round."""
    if not names:
        return None
    ref, t = series(wl, [reference]), series(wl, names)
    ratios = [r / m for r, m in zip(ref, t, strict=True) if r is not None and m is not None]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios)) if ratios else None


def ns_per_frame(wl: Json, names: Sequence[str]) -> float | None:
    """ns per frame (per 1 KiB read at the scaling workloads) of the median run."""
    times = [t for t in series(wl, names) if t is not None] if names else []
    if not times:
        return None
    per: int = wl["reads"] if wl["group"].startswith("scale-") else wl["count"]
    return statistics.median(times) / per * 1e9


def fixed_workloads(data: Json) -> list[Json]:
    return [wl for wl in data["workloads"] if not wl["group"].startswith("scale-")]


def big_scaling_workloads(data: Json) -> list[Json]:
    """The longer line of every scaling group that was run whole."""
    bigs = {group["big"] for group in data["scaling"].values()}
    return [wl for wl in data["workloads"] if wl["name"] in bigs]


def target_limits(data: Json, reference: str) -> dict[tuple[str, str], float]:
    """(method, workload) -> the target of ``f"{method} vs {reference} at {workload}"``."""
    limits: dict[tuple[str, str], float] = {}
    for t in data["targets"]:
        method, sep, rest = t["name"].partition(f" vs {reference} at ")
        if sep:
            limits[(method, rest)] = t["target"]
    return limits


def targets_summary(data: Json) -> tuple[int, int, int]:
    """(passed, failed, skipped or not measured)."""
    targets = data["targets"]
    passed = sum(t["passed"] is True for t in targets)
    failed = sum(t["passed"] is False for t in targets)
    return passed, failed, len(targets) - passed - failed


def machine_line(data: Json) -> str:
    """The machine, as one line: CPU, cores, OS."""
    machine = data["metadata"]["machine"]
    cpu = machine["cpu_model"] or "unknown CPU"
    return f"{cpu}, {machine['cpu_count']} CPUs, {machine['platform']}"


def versions_line(data: Json) -> str:
    meta = data["metadata"]
    peers = ", ".join(
        f"{name} {ver}" if ver else f"{name} not installed" for name, ver in meta["peers"].items() if name != "asyncio"
    )
    return f"Python {meta['python']}, trio {meta['trio']}, triostream {meta['triostream']}; {peers}"


# --------------------------------------------------------------------- plot


def plot(data: Json, path: str, dpi: int = 100) -> None:
    """Write the three panels to ``path`` as a PNG, drawn by the Agg backend
    (no display, no pyplot state)."""
    # matplotlib ships its types (3.8+); where it is not installed (CI's lint
    # venv has the `test` extra only) mypy sees Any.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # type: ignore[import-not-found, unused-ignore]
    from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]

    meta = data["metadata"]
    fig = Figure(figsize=(13, 11), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.25, 1])
    fixed = fixed_workloads(data)
    panels: list[tuple[Any, list[Json], list[Row], str, str]] = [
        (fig.add_subplot(grid[0, :]), fixed, PLOT_ROWS, SPLIT, "fixed workloads: x split (hand-written loop = 1)"),
        (
            fig.add_subplot(grid[1, 0]),
            fixed,
            [TS_CALL, TS_CALL_UNTIL, TS_CALL_EXACTLY],
            CHECKPOINT,
            "one awaited call per frame: x split+checkpoint",
        ),
        (
            fig.add_subplot(grid[1, 1]),
            big_scaling_workloads(data),
            SCALE_ROWS,
            SPLIT,
            "one long line in 1 KiB reads: x split",
        ),
    ]
    for ax, workloads, rows, reference, title in panels:
        draw_bars(ax, data, workloads, rows, reference)
        ax.set_title(title, fontsize=11, loc="left")
    fig.suptitle(
        f"triostream {meta['triostream']}, receive side: throughput relative to a hand-written Trio loop\n"
        f"bars: median of {meta['rounds']} interleaved rounds' ratios; whiskers: lowest and highest round;"
        " black ticks: targets",
        fontsize=12,
    )
    pinned = meta["pinned"] or "not pinned"
    fig.supxlabel(
        f"measured {meta['date'][:10]} on {machine_line(data)}; {pinned}; {meta['clock']} clock\n{versions_line(data)}",
        fontsize=8,
    )
    fig.savefig(path, format="png")


def draw_bars(ax: Any, data: Json, workloads: list[Json], rows: list[Row], reference: str) -> None:
    """Grouped bars: a group per workload, a bar per row that ran there."""
    limits = target_limits(data, reference)
    width = 0.85 / len(rows)
    labelled: set[str] = set()
    tick_drawn = False
    for i, row in enumerate(rows):
        for g, wl in enumerate(workloads):
            names = row.names(wl)
            r = ratio(wl, names, reference)
            if r is None:
                continue
            x = g - 0.425 + width * (i + 0.5)
            label = None if row.label in labelled else row_label(row, data)
            labelled.add(row.label)
            ax.bar(
                x,
                r.median,
                width,
                color=row.color,
                hatch=row.hatch,
                edgecolor="white" if row.hatch is None else "0.3",
                linewidth=0.5,
                label=label,
                yerr=[[r.median - r.low], [r.high - r.median]],
                error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "0.2"},
            )
            limit = next((limits[(n, wl["name"])] for n in names if (n, wl["name"]) in limits), None)
            if limit is not None:
                ax.plot(
                    [x - width / 2, x + width / 2],
                    [limit, limit],
                    color="black",
                    linewidth=2,
                    label=None if tick_drawn else "target",
                )
                tick_drawn = True
    ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(workloads)), [wl["name"].replace("-", "\n", 1) for wl in workloads])
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlim(-0.5, len(workloads) - 0.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"x {reference} (higher is faster)")
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    # Outside the axes, on the right (constrained layout makes room): inside,
    # it hides the bars of the first group under the whiskers' height.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def row_label(row: Row, data: Json) -> str:
    """The legend's name of a row (a peer's: with its API)."""
    if row.peer == "anyio":
        return f"anyio ({data['metadata']['anyio_backend']} backend)"
    if row.peer in ("asyncio", "uvloop"):
        return f"{row.peer} (faster of readline, readuntil)"
    return row.label


# ----------------------------------------------------------------- markdown


def fmt_ratio(r: Ratio | None) -> str:
    return "-" if r is None else f"{r.median:.2f}x ({r.low:.2f}-{r.high:.2f})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


MARK = "<!-- plot_receive.py --markdown: {} -->"


def section(name: str, lines: list[str]) -> list[str]:
    """A generated part of the page, between comments that the page's test
    finds (MyST drops HTML comments from the output)."""
    return [MARK.format(name), *lines, MARK.format("end"), ""]


def markdown(data: Json) -> str:
    """The page's generated parts: what ran where (``run``), the tables
    (``tables``) and the targets' verdicts (``targets``)."""
    meta = data["metadata"]
    fixed = fixed_workloads(data)
    names = [wl["name"] for wl in fixed]
    passed, failed, other = targets_summary(data)
    run = [
        f"- date: {meta['date']}",
        f"- machine: {machine_line(data)}",
        f"- receiver and sender: {meta['pinned'] or 'not pinned'}",
        f"- {meta['rounds']} interleaved rounds, {meta['clock']} clock, run time {meta['duration_s']:.0f} s"
        + (" (`--quick`)" if meta["quick"] else ""),
        f"- {versions_line(data)}; asyncio's default loop {meta['asyncio_default_loop']},"
        f" anyio's backend {meta['anyio_backend']}",
        f"- command: `{meta['command']}`",
    ]

    def label(row: Row) -> str:
        return row_label(row, data)

    def measured(rows: Sequence[Row]) -> list[Row]:
        """The rows measured at some workload (a file written before a row
        existed, such as ``split nowait``'s, renders as it did)."""
        return [r for r in rows if any(r.names(wl) for wl in fixed)]

    tables = [
        "**Throughput relative to `split`** (the median of the per-round ratios `split`'s time / the"
        " method's time, higher is faster; in brackets the lowest and the highest round):",
        "",
        *table(
            ["method", *names],
            [[label(r)] + [fmt_ratio(ratio(wl, r.names(wl), SPLIT)) for wl in fixed] for r in measured(SPLIT_ROWS)],
        ),
        "",
        "**Per-call methods relative to `split+checkpoint`** (the same loop with one"
        " `await trio.lowlevel.checkpoint()` per frame):",
        "",
        *table(
            ["method", *names],
            [[label(r)] + [fmt_ratio(ratio(wl, r.names(wl), CHECKPOINT)) for wl in fixed] for r in measured(CALL_ROWS)],
        ),
        "",
        "**ns per frame** (the median run):",
        "",
        *table(
            ["method", *names],
            [[label(r)] + [fmt_ns(ns_per_frame(wl, r.names(wl))) for wl in fixed] for r in measured(NS_ROWS)],
        ),
    ]
    if data["checkpoint_ns"] is not None:
        tables += ["", f"A bare `await trio.lowlevel.checkpoint()` loop: {data['checkpoint_ns']:.0f} ns per call."]
    tables += scaling_markdown(data)
    verdicts = [
        f"**{passed} of {len(data['targets'])} targets pass**, {failed} fail"
        + (f", {other} skipped or not measured" if other else "")
        + ". The failures, each with its floor (the hand-written equivalent of the API measured, against"
        " the same reference in the same rounds) where it has one:",
        "",
        *table(
            ["target", "figure", "needed", "floor"],
            [
                [
                    f"`{t['name']}`",
                    f"{fmt_figure(t['figure'], t['target'], t['op'])}{t['unit']}",
                    f"{t['op']} {t['target']:g}{t['unit']}",
                    fmt_floor(t),
                ]
                for t in data["targets"]
                if t["passed"] is False
            ],
        ),
    ]
    return "\n".join(section("run", run) + section("tables", tables) + section("targets", verdicts))


def fmt_floor(target: Json) -> str:
    """A target's floor and whether it misses the target too ("-" for none,
    and in files written before floors were recorded)."""
    floor = target.get("floor")
    if not floor or floor["figure"] is None:
        return "-"
    verdict = ": misses it too" if target.get("floor_misses") else ""
    return f"{floor['method']} {fmt_figure(floor['figure'], target['target'], target['op'])}x{verdict}"


def fmt_figure(value: float, limit: float, op: str) -> str:
    """``value`` with 3 decimals, or as many more as it takes to keep it on
    its side of ``limit`` (``op`` ``>=`` or ``<=``, the side that passes):
    0.89996 against 0.9 is 0.89996, not 0.900, which would read as a pass.
    (bench_receive.py prints its verdicts' figures with it too.)"""
    passes = value >= limit if op == ">=" else value <= limit
    for digits in range(3, 10):
        shown = round(value, digits)
        if (shown >= limit if op == ">=" else shown <= limit) == passes:
            return f"{value:.{digits}f}"
    return repr(value)


def fmt_ns(ns: float | None) -> str:
    return "-" if ns is None else f"{ns:,.0f}"


def scaling_markdown(data: Json) -> list[str]:
    """One long line in 1 KiB reads: x split at the longer line, and the
    growth t(long) / t(short) (16 linear, 256 quadratic)."""
    groups = data["scaling"]
    if not groups:
        return []
    bigs = {wl["name"]: wl for wl in data["workloads"]}
    methods: list[str] = []
    for group in groups.values():
        for m in bigs[group["big"]]["methods"]:
            if m["name"] not in methods and m["median_s"] is not None:
                methods.append(m["name"])
    rows = []
    for name in methods:
        cells = [fmt_ratio(ratio(bigs[g["big"]], [name], SPLIT)) for g in groups.values()]
        cells += [f"{g['ratios'][name]:.1f}" if name in g["ratios"] else "-" for g in groups.values()]
        rows.append([name, *cells])
    header = ["method"] + [f"x split, {g['big']}" for g in groups.values()]
    header += [f"t({g['big']}) / t({g['small']})" for g in groups.values()]
    return [
        "",
        "**One long line in 1 KiB reads** (x split at the longer line; its time over the shorter line's,"
        " median of the rounds: 16 is linear, 256 quadratic):",
        "",
        *table(header, rows),
    ]


# --------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="the file written by bench_receive.py --json")
    parser.add_argument("png", nargs="?", help="where to write the plot")
    parser.add_argument("--markdown", action="store_true", help="print the benchmarks page's tables")
    parser.add_argument("--dpi", type=int, default=100, help="the PNG's dots per inch (default 100)")
    args = parser.parse_args(argv)
    if not args.png and not args.markdown:
        parser.error("give a PNG path, --markdown, or both")
    data = load(args.json)
    if args.markdown:
        sys.stdout.write(markdown(data))
    if args.png:
        plot(data, args.png, args.dpi)
    return 0


if __name__ == "__main__":
    sys.exit(main())
