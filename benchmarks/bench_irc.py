"""Fan-out benchmark: examples/irc_server.py against miniircd, in one run.

One channel, ``--members`` members (200), ``--senders`` of them (4) sending
``PRIVMSG #bench`` at a fixed total rate (``--rates``, messages/s) for
``--duration`` seconds, and one more member that joins and then never reads
(a 4 KiB receive window). Every member but the senders and the non-reader
counts the messages it gets and their delivery latency (the send time rides
in the message; senders and receivers share this process's monotonic
clock). Printed per server and rate: deliveries/s, the share delivered, p50
and p99 latency, the server's CPU time per 1000 deliveries, its peak memory,
and what happened to the non-reader.

    python benchmarks/bench_irc.py            # 200 members, 200 and 800 msg/s, 5 s each
    python benchmarks/bench_irc.py --quick    # 50 members, 100 msg/s, 1 s: a smoke run

Each round starts a fresh server process. With two or more CPUs the server
is pinned to CPU 0 and this load generator to CPU 1 (``taskset`` /
``sched_setaffinity``). The load generator uses raw Trio sockets (no
triostream), so it measures both servers the same way. miniircd
(``pip install miniircd``) is skipped with a message when not installed.
The example runs with ``--flood-rate 0``: miniircd has no flood control.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "irc_server.py"
CHANNEL = b"#bench"


@dataclass
class Result:
    server: str
    rate: int
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    latencies: list[int] = field(default_factory=list)  # ns
    elapsed: float = 0.0
    cpu: float = 0.0  # server CPU seconds during the run
    peak_rss_kib: int = 0
    slow_fate: str = "still connected"
    error: str = ""


# ------------------------------------------------------------ servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def start_server(name: str, port: int) -> subprocess.Popen[bytes]:
    if name == "triostream":
        command = [sys.executable, str(EXAMPLE), "--port", str(port), "--flood-rate", "0"]
    else:
        command = [
            sys.executable,
            "-c",
            "import miniircd; miniircd.main()",
            "--listen",
            "127.0.0.1",
            "--ports",
            str(port),
        ]
        if os.geteuid() == 0:  # miniircd refuses to run as root unless told so
            command += ["--setuid", "root"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(_pin(0) + command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.05)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kib(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def miniircd_installed() -> bool:
    try:
        subprocess.run([sys.executable, "-c", "import miniircd"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        return False
    return True


# ------------------------------------------------------------ the load


class Member:
    def __init__(self, stream: trio.SocketStream, nick: bytes) -> None:
        self.stream = stream
        self.nick = nick
        self.pending = b""

    async def lines(self) -> list[bytes]:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        *lines, self.pending = (self.pending + data).split(b"\r\n")
        return lines

    async def wait_for(self, code: bytes) -> None:
        while True:
            for line in await self.lines():
                if line.split(b" ", 2)[1:2] == [code]:
                    return


async def join(port: int, nick: bytes, rcvbuf: int | None = None) -> Member:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    member = Member(trio.SocketStream(sock), nick)
    await member.stream.send_all(b"NICK %s\r\nUSER %s 0 * :bench\r\n" % (nick, nick))
    await member.wait_for(b"001")
    await member.stream.send_all(b"JOIN %s\r\n" % CHANNEL)
    await member.wait_for(b"366")
    return member


async def run_load(result: Result, port: int, members: int, senders: int, duration: float, pid: int) -> None:
    everyone: list[Member] = []
    limiter = trio.CapacityLimiter(20)

    async def add(i: int) -> None:
        async with limiter:
            everyone.append(await join(port, b"m%d" % i))

    async with trio.open_nursery() as nursery:
        for i in range(members):
            nursery.start_soon(add, i)
    slow = await join(port, b"slow", rcvbuf=4096)
    everyone.sort(key=lambda m: int(m.nick[1:]))
    sending, reading = everyone[:senders], everyone[senders:]
    per_sender = result.rate / senders
    total_sent = 0
    result.latencies = latencies = []
    counts = [0]
    watcher = reading[0]
    stop_reading = trio.Event()
    start = 0.0

    async def reader(member: Member) -> None:
        now_ns = time.monotonic_ns
        while not stop_reading.is_set():
            with trio.move_on_after(0.2):
                lines = await member.lines()
                t = now_ns()
                for line in lines:
                    if b" PRIVMSG " in line:
                        counts[0] += 1
                        latencies.append(t - int(line.rsplit(b" ", 1)[1]))
                    elif member is watcher and line.startswith(b":slow!") and b" QUIT " in line:
                        reason = line.split(b" :", 1)[1].decode(errors="replace")
                        result.slow_fate = f"dropped after {trio.current_time() - start:.1f} s ({reason})"

    async def sender(member: Member, index: int) -> None:
        nonlocal total_sent
        interval = 1 / per_sender
        next_at = trio.current_time()
        seq = 0
        end = start + duration
        while next_at < end:
            now = trio.current_time()
            due = []
            while next_at <= now and next_at < end:
                due.append(b"PRIVMSG %s :%d %d %d\r\n" % (CHANNEL, index, seq, time.monotonic_ns()))
                seq += 1
                next_at += interval
            if due:
                await member.stream.send_all(b"".join(due))
                total_sent += len(due)
            await trio.sleep_until(next_at)

    cpu_before = _proc_cpu(pid)
    async with trio.open_nursery() as nursery:
        for member in everyone:
            nursery.start_soon(reader, member)
        start = trio.current_time()
        async with trio.open_nursery() as senders_nursery:
            for index, member in enumerate(sending):
                senders_nursery.start_soon(sender, member, index)
        # Let the queues drain: until every reader has everything, or 3 s.
        expected = total_sent * (len(everyone) - 1)
        with trio.move_on_after(3):
            while counts[0] < expected:  # noqa: ASYNC110 (counting, no event)
                await trio.sleep(0.05)
        result.elapsed = trio.current_time() - start
        stop_reading.set()
    result.cpu = _proc_cpu(pid) - cpu_before
    result.sent = total_sent
    result.expected = expected
    result.delivered = counts[0]
    for member in [*everyone, slow]:
        member.stream.socket.close()


def run_round(name: str, rate: int, members: int, senders: int, duration: float) -> Result:
    result = Result(name, rate)
    port = _free_port()
    process = start_server(name, port)
    try:
        trio.run(run_load, result, port, members, senders, duration, process.pid)
        result.peak_rss_kib = _peak_rss_kib(process.pid)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        process.kill()
        process.wait()
    return result


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 members, 100 msg/s, 1 s")
    parser.add_argument("--members", type=int, default=200, help="reading members, senders included")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rates", default="200,800", help="total messages/s, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of sending per round")
    parser.add_argument("--servers", default="triostream,miniircd")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.rates, args.duration = 50, "100", 1.0
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    servers = args.servers.split(",")
    if "miniircd" in servers and not miniircd_installed():
        print("miniircd: skipped (not installed: pip install miniircd)")
        servers.remove("miniircd")
    print(
        f"fan-out: 1 channel, {args.members} reading members + 1 not reading, {args.senders} senders, "
        f"{args.duration:g} s per round, CPUs {'pinned' if _pin(0) else 'not pinned'}"
    )
    header = (
        f"{'server':<11} {'msg/s':>6} {'deliveries/s':>13} {'delivered':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU ms/1k':>9} {'peak RSS':>9}  non-reader"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for rate in (int(r) for r in args.rates.split(",")):
        for name in servers:  # interleaved: each rate runs every server before the next
            r = run_round(name, rate, args.members, args.senders, args.duration)
            if r.error:
                failed = True
                print(f"{name:<11} {rate:>6} ERROR {r.error}")
                continue
            share = r.delivered / r.expected if r.expected else 0.0
            print(
                f"{name:<11} {rate:>6} {r.delivered / r.elapsed:>13,.0f} {share:>9.1%}"
                f" {percentile(r.latencies, 0.5):>7.1f} {percentile(r.latencies, 0.99):>7.1f}"
                f" {1000 * r.cpu * 1000 / max(r.delivered, 1):>9.2f} {r.peak_rss_kib / 1024:>6.1f} MiB  {r.slow_fate}",
                flush=True,
            )
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
