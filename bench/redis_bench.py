"""Celeriac against Celery 5.7 (and Dramatiq and Huey, when installed) on one Redis, in one run.

Run from the repository root (``pip install -e '.[bench]'`` adds Dramatiq and Huey)::

    .venv/bin/python bench/redis_bench.py [--tasks 20000] [--roundtrips 1000] [--repeat 1]
        [--systems celeriac,celeriac-O-default,celery,dramatiq,huey] [--redis-url URL]

Without ``--redis-url`` it starts a private ``redis-server`` on a free loopback port (no
persistence), so no other traffic shares the server; with it, that database is FLUSHED.
Each system gets the same measurements, in this order, on an empty database:

* enqueue: a fresh client process sends ``--tasks`` no-op tasks, one call each (tasks/s);
* drain: a worker with 2 processes (prefork or the system's equivalent, its default acks)
  starts on the full queue; the time from its first take until the queue and the unacked
  set are empty (tasks/s);
* worker RSS: the summed resident memory of the worker's processes after the drain;
* round trip: a client process runs ``--roundtrips`` sequential ``delay(i).get()`` (or the
  system's equivalent) against that worker, after 20 unmeasured ones (p50, p99 in ms).

No-op tasks ignore their results (no result write per task); the round trip task returns one.
A report is written to ``bench/results/redis-<UTC time>.md`` with this command line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class System:
    name: str
    app: str  # the module ``benchapp`` (noop and echo tasks), reading BENCH_REDIS_URL
    worker: list[str]
    send: str  # statement sending one no-op task
    roundtrip: str  # expression: one echo(i) call, waited for
    pending: list[str] = field(default_factory=list)  # Redis keys whose sizes must reach 0


CELERY_LIKE_APP = """
import os
from {module} import Celery

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("benchapp", broker=URL, backend=URL)


@app.task(name="bench.noop", ignore_result=True)
def noop():
    return None


@app.task(name="bench.echo")
def echo(x):
    return x
"""

DRAMATIQ_APP = """
import os
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

URL = os.environ["BENCH_REDIS_URL"]
broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop():
    return None


@dramatiq.actor(store_results=True)
def echo(x):
    return x
"""

HUEY_APP = """
import os
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop():
    return None


@huey.task()
def echo(x):
    return x
"""

_CELERY_KEYS = ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169", "unacked"]
SYSTEMS = {
    "celeriac": System(
        "celeriac",
        CELERY_LIKE_APP.format(module="celeriac"),
        [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            "benchapp",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "warning",
        ],
        "noop.delay()",
        "echo.delay(i).get(timeout=10)",
        _CELERY_KEYS,
    ),
    # Celeriac's default is -O fair (take messages only for idle slots); Celery's is -O default.
    "celeriac-O-default": System(
        "celeriac-O-default",
        CELERY_LIKE_APP.format(module="celeriac"),
        [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            "benchapp",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "warning",
            "-O",
            "default",
        ],
        "noop.delay()",
        "echo.delay(i).get(timeout=10)",
        _CELERY_KEYS,
    ),
    "celery": System(
        "celery",
        CELERY_LIKE_APP.format(module="celery"),
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchapp",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        "noop.delay()",
        "echo.delay(i).get(timeout=10)",
        _CELERY_KEYS,
    ),
    "dramatiq": System(
        "dramatiq",
        DRAMATIQ_APP,
        [str(BIN / "dramatiq"), "benchapp", "--processes", "2", "--threads", "1"],
        "noop.send()",
        "echo.send(i).get_result(block=True, timeout=10000)",
        ["dramatiq:default", "dramatiq:default.msgs"],
    ),
    "huey": System(
        "huey",
        HUEY_APP,
        [str(BIN / "huey_consumer"), "benchapp.huey", "-w", "2", "-k", "process", "-q"],
        "noop()",
        "echo(i).get(blocking=True, timeout=10)",
        ["huey.redis.bench"],
    ),
}

ENQUEUE = """
import json, time
from benchapp import *
{send}  # connect, load scripts
started = time.perf_counter()
for _ in range({n}):
    {send}
print(json.dumps({{"seconds": time.perf_counter() - started}}))
"""

ROUNDTRIP = """
import json, time
from benchapp import *
for i in range(20):
    {call}
times = []
for i in range({n}):
    started = time.perf_counter()
    assert {call} == i
    times.append(time.perf_counter() - started)
print(json.dumps({{"times": times}}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_client(code: str, workdir: Path, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def pending(conn: Any, keys: list[str]) -> int:
    total = 0
    for key in keys:
        kind = conn.type(key)
        total += {b"list": conn.llen, b"hash": conn.hlen, b"zset": conn.zcard}.get(
            kind, lambda _: 0
        )(key)
    return total


def group_rss_mb(pgid: int) -> float:
    """Summed VmRSS of the processes in process group ``pgid``."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def measure(
    system: System, url: str, tasks: int, roundtrips: int, workdir: Path
) -> dict[str, float]:
    (workdir / "benchapp.py").write_text(textwrap.dedent(system.app))
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(workdir)}
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    sent = run_client(ENQUEUE.format(send=system.send, n=tasks), workdir, env)
    before = pending(conn, system.pending)
    log = open(workdir / f"{system.name}-worker.log", "wb")  # noqa: SIM115 (the child's)
    worker = subprocess.Popen(
        system.worker,
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while pending(conn, system.pending) >= before:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{system.name} worker never started: see {log.name}")
            time.sleep(0.001)
        started = time.perf_counter()
        while pending(conn, system.pending) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{system.name} did not drain: see {log.name}")
            time.sleep(0.002)
        drained = time.perf_counter() - started
        rss = group_rss_mb(worker.pid)
        times = run_client(ROUNDTRIP.format(call=system.roundtrip, n=roundtrips), workdir, env)
    finally:
        stop(worker)
        log.close()
        conn.flushdb()
        conn.close()
    latencies = sorted(times["times"])
    return {
        "enqueue": tasks / sent["seconds"],
        "drain": tasks / drained,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rss": rss,
    }


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in ("celery", "kombu", "redis", "dramatiq", "huey", "hiredis"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    found["redis-server"] = server.stdout.split()[2] if server.returncode == 0 else "?"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    found["celeriac"] = commit.stdout.strip() or "?"
    return found


def available(name: str) -> bool:
    try:
        importlib.import_module(name.partition("-")[0])
    except ImportError:
        return False
    return True


def render(command: str, results: dict[str, dict[str, float]], info: dict[str, str]) -> str:
    peers = [name for name in results if not name.startswith(("celeriac", "celery"))]
    lines = [
        f"# Redis benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"Machine: {os.cpu_count()} CPUs; client, workers and redis-server share them.",
        "",
        "| system | enqueue tasks/s | drain tasks/s | round trip p50 ms | p99 ms | worker RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['enqueue']:,.0f} | {r['drain']:,.0f} | {r['p50']:.2f} | "
            f"{r['p99']:.2f} | {r['rss']:.1f} |"
        )
    ours, celery = results.get("celeriac"), results.get("celery")
    if ours and celery:
        fastest = max((results[p]["drain"] for p in peers), default=celery["drain"])
        fastest = max(fastest, celery["drain"])
        checks = [
            ("drain >= 5x Celery", ours["drain"] / celery["drain"], 5.0),
            ("drain >= 1.5x the fastest peer", ours["drain"] / fastest, 1.5),
            ("enqueue >= 5x Celery", ours["enqueue"] / celery["enqueue"], 5.0),
            ("worker RSS <= half of Celery's", celery["rss"] / ours["rss"], 2.0),
        ]
        lines += ["", "| target | ratio | met |", "|---|---:|---|"]
        lines += [
            f"| {what} | {ratio:.2f}x | {'yes' if ratio >= goal else 'no'} |"
            for what, ratio, goal in checks
        ]
        lines.append(
            f"| round trip p50 <= 1 ms | {ours['p50']:.2f} ms | "
            f"{'yes' if ours['p50'] <= 1.0 else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--roundtrips", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per system; medians kept")
    parser.add_argument("--systems", default="celeriac,celeriac-O-default,celery,dramatiq,huey")
    parser.add_argument("--redis-url", help="use this Redis database (it is flushed)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    command = " ".join([Path(sys.executable).name, *sys.argv])
    names = [n for n in args.systems.split(",") if n in SYSTEMS and available(n)]
    server = None
    url = args.redis_url
    scratch = tempfile.TemporaryDirectory(prefix="celeriac-bench-")
    try:
        if url is None:
            port = free_port()
            server = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    scratch.name,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if redis.Redis.from_url(url).ping():
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:  # interleaved, so drift in the machine hits every system
                workdir = Path(scratch.name) / name
                workdir.mkdir(exist_ok=True)
                result = measure(SYSTEMS[name], url, args.tasks, args.roundtrips, workdir)
                print(name, {k: round(v, 2) for k, v in result.items()}, flush=True)
                runs[name].append(result)
        results = {
            name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
            for name, rs in runs.items()
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        scratch.cleanup()
    report = render(command, results, versions())
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"redis-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.md"
    path.write_text(report)
    print(report)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
