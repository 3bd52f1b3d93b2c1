"""RESP benchmark: redis-benchmark against examples/redis_server.py and its peers.

    python benchmarks/bench_resp.py            # 100,000 requests, -c 50, 3 rounds: ~4 min
    python benchmarks/bench_resp.py --quick    # 2,000 requests, -c 10, 1 round: ~20 s (smoke)
    python benchmarks/bench_resp.py --rounds 5 --requests 200000

Servers (each a fresh process per measurement; see `resp_peers.py`):

* ``example``: ``examples/redis_server.py`` (triostream ``serve_tcp`` + ``Connection``);
* ``trio raw``: a hand-written Trio server (``receive_some`` + parsing, no triostream);
* ``asyncio``, ``uvloop``: an ``asyncio.Protocol`` with the same parser (uvloop if installed);
* ``redis-server``: Redis itself (single-threaded C), if installed.

All Python servers run the example's command code, so they differ only in
I/O and framing. Each round measures every server with ``redis-benchmark
-t set,get -n N -c C``, once unpipelined and once with ``-P 16``, in an order
rotated by one per round (interleaved, so drift in the machine's load hits
all alike). With two or more cores, the server is pinned to core 1 and
redis-benchmark to core 0 (``taskset``). The table shows the median of the
rounds (SET and GET averaged), the ratio to ``trio raw``, and the server's CPU
time per request (from ``/proc``), the figure that tells where the time goes.

``--workers``: the example with ``--workers 2`` against ``--workers 1``,
both unpinned (the two workers need both cores, which redis-benchmark
shares), in the same interleaved rounds.

Exit status 0; 2 if a run failed (redis-benchmark reported an error).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLE = REPO / "examples" / "redis_server.py"
PEERS = HERE / "resp_peers.py"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Target:
    name: str
    command: tuple[str, ...]  # {port} is replaced; "" for redis-server's free port
    pinned: bool = True
    banners: int = 1  # "listening on" lines to wait for (None: poll the port)
    cpu: bool = True  # measure the process's CPU time


def _targets(workers: bool) -> list[Target]:
    py = sys.executable
    targets = [
        Target("example", (py, str(EXAMPLE), "--port", "{port}")),
        Target("trio raw", (py, str(PEERS), "trio", "--port", "{port}")),
        Target("asyncio", (py, str(PEERS), "asyncio", "--port", "{port}")),
    ]
    try:
        import uvloop  # noqa: F401

        targets.append(Target("uvloop", (py, str(PEERS), "uvloop", "--port", "{port}")))
    except ImportError:
        print("uvloop: skipped (not installed)")
    server = shutil.which("redis-server")
    if server:
        cmd = (server, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
        targets.append(Target("redis-server", cmd, banners=0))
    else:
        print("redis-server: skipped (not installed)")
    if workers:
        targets.append(Target("example 1 worker*", (py, str(EXAMPLE), "--port", "{port}"), pinned=False))
        targets.append(
            Target(
                "example 2 workers*",
                (py, str(EXAMPLE), "--port", "{port}", "--workers", "2"),
                pinned=False,
                banners=2,
                cpu=False,
            )
        )
    return targets


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@contextlib.contextmanager
def _server(target: Target, cores: str | None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    command = [part.replace("{port}", str(port)) for part in target.command]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert process.stdout is not None
        # Count banners rather than lines: the workers of one server share the
        # pipe, and their lines once arrived interleaved ("did not start: b'\\n'").
        seen, output = 0, b""
        while seen < target.banners:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"{target.name} did not start: {output!r}")
            output += line
            seen = output.count(b"listening on")
        deadline = time.monotonic() + 10
        while True:  # and it answers
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(100) == b"+PONG\r\n":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.name} does not answer on port {port}")
            time.sleep(0.05)
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _benchmark(port: int, requests: int, clients: int, pipeline: int, core: str | None) -> dict[str, float]:
    command = ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(clients), "-t", "set,get"]
    command += ["-P", str(pipeline), "--csv"]
    if core is not None:
        command = ["taskset", "-c", core, *command]
    result = subprocess.run(command, capture_output=True, timeout=600, check=False)
    out = result.stdout.decode()
    rows = {row["test"]: float(row["rps"]) for row in csv.DictReader(io.StringIO(out)) if row.get("rps")}
    if result.returncode or set(rows) != {"SET", "GET"} or re.search("rror", out + result.stderr.decode()):
        raise RuntimeError(f"redis-benchmark failed ({result.returncode}): {out} {result.stderr.decode()}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="redis-benchmark against the RESP example and its peers")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 requests, -c 10, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 2 comparison")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    requests = args.requests or (2000 if args.quick else 100_000)
    clients = args.clients or (10 if args.quick else 50)
    if not shutil.which("redis-benchmark"):
        print("redis-benchmark is not installed (Debian: redis-tools): nothing to measure")
        return
    cores = os.cpu_count() or 1
    pin = cores >= 2 and shutil.which("taskset") is not None
    server_core, client_core = ("1", "0") if pin else (None, None)
    print(
        f"redis-benchmark -t set,get -n {requests} -c {clients} [-P 16]; {rounds} round(s); "
        + ("server on core 1, redis-benchmark on core 0" if pin else "not pinned")
    )
    targets = _targets(workers=not args.no_workers)
    rps: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    failed = False
    for r in range(rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for target in order:
            for pipeline in (1, 16):
                cores_for = server_core if target.pinned else None
                try:
                    with _server(target, cores_for) as (process, port):
                        before = _cpu_seconds(process.pid) if target.cpu else 0.0
                        rows = _benchmark(port, requests, clients, pipeline, client_core if target.pinned else None)
                        used = _cpu_seconds(process.pid) - before if target.cpu else 0.0
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"{target.name} -P {pipeline}: ERROR {exc}")
                    failed = True
                    continue
                mean = statistics.mean(rows.values())
                rps.setdefault((target.name, pipeline), []).append(mean)
                cpu.setdefault((target.name, pipeline), []).append(used / (2 * requests) * 1e6)
                print(f"  round {r + 1}: {target.name:<20} -P {pipeline:<2} {mean:>10,.0f} req/s", flush=True)

    def med(name: str, p: int) -> float | None:
        values = rps.get((name, p))
        return statistics.median(values) if values else None

    print()
    print("| server | req/s | vs trio raw | server CPU µs/req | req/s -P 16 | vs trio raw | CPU µs/req -P 16 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for target in targets:
        cells = [target.name]
        for p in (1, 16):
            value, base = med(target.name, p), med("trio raw", p)
            cells.append(f"{value:,.0f}" if value else "-")
            cells.append(f"{value / base:.2f}x" if value and base else "-")
            per = cpu.get((target.name, p))
            cells.append(f"{statistics.median(per):.1f}" if per and target.cpu else "-")
        print("| " + " | ".join(cells) + " |")
    one, two = med("example 1 worker*", 1), med("example 2 workers*", 1)
    one16, two16 = med("example 1 worker*", 16), med("example 2 workers*", 16)
    if one and two and one16 and two16:
        ratios = f"{two / one:.2f}x unpipelined, {two16 / one16:.2f}x with -P 16"
        print(f"\n--workers 2 / --workers 1 (* unpinned): {ratios}")
    if failed:
        sys.exit(2)


if __name__ == "__main__":
    main()
