"""Shared pieces of the benchmarks: temporary projects, worker processes, timing, RSS."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


PYTHON = sys.executable


Results = dict[str, dict[str, float]]


def report(script: str, results: Results, tasks: int, roundtrips: int, where: str = "") -> str:
    """The Markdown report of one run: a table per system, then ratios to Celery prefork."""
    peer = results.get("celery prefork")
    lines = [
        f"command: .venv/bin/python bench/{script} --tasks {tasks} --roundtrips {roundtrips}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}  "
        f"machine: {os.cpu_count()} cores{where}",
        "",
        "| system | enqueue/s | drain/s | round trip p50 ms | p99 ms | worker RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['enqueue_per_s']:.0f} | {r['drain_per_s']:.0f} | "
            f"{r['rtt_p50_ms']:.2f} | {r['rtt_p99_ms']:.2f} | {r['worker_rss_mib']:.0f} |"
        )
    if peer:
        lines += ["", "Ratios against Celery prefork (above 1 is better for Celeriac):", ""]
        for name, r in results.items():
            if name == "celery prefork":
                continue
            lines.append(
                f"- {name}: enqueue x{r['enqueue_per_s'] / peer['enqueue_per_s']:.2f}, "
                f"drain x{r['drain_per_s'] / peer['drain_per_s']:.2f}, "
                f"round trip p50 x{peer['rtt_p50_ms'] / r['rtt_p50_ms']:.2f} faster, "
                f"RSS x{peer['worker_rss_mib'] / r['worker_rss_mib']:.2f} smaller"
            )
    return "\n".join(lines) + "\n"


def run_main(
    script: str,
    doc: str | None,
    systems: Iterable[str],
    measure: Callable[[str, int, int], dict[str, float]],
    client: Callable[[str, str, str, int], dict[str, Any]],
    *,
    tasks: int,
    roundtrips: int,
    where: str = "",
) -> None:
    """The command line every benchmark script has: ``--client ...`` (a measuring client
    process), or ``[--tasks N] [--roundtrips N] [--only SYSTEM] [--out FILE]``."""
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, folder, mode, count = sys.argv[2:6]
        print(json.dumps(client(kind, folder, mode, int(count))))
        return
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--tasks", type=int, default=tasks)
    parser.add_argument("--roundtrips", type=int, default=roundtrips)
    parser.add_argument("--only", action="append", choices=sorted(systems))
    parser.add_argument("--out", type=Path, help="Also write the report to this file.")
    args = parser.parse_args()
    names = args.only or list(systems)
    results = {name: measure(name, args.tasks, args.roundtrips) for name in names}
    text = report(script, results, args.tasks, args.roundtrips, where)
    print(text)
    if args.out:
        args.out.write_text(text)
