"""Embedded SQLite broker: Celeriac's pools against Celery 5.7 on kombu's SQLite transport.

For each system, in one run, on a fresh SQLite file, with 2 worker processes (threads: 2
threads; solo: 1): enqueue N no-op tasks with no worker running (enqueue rate), start the
worker and let it drain them (drain rate, from the first to the last stored result, so
start-up time is not counted), then R sequential ``delay().get()`` round trips (p50, p99),
and the worker's resident memory (the process and its children).

Celery's peer is its SQLAlchemy transport on SQLite (``sqla+sqlite://``, polling every 10 ms
instead of kombu's default 1 s)
with the ``db+sqlite://`` result backend: the closest thing Celery has to an embedded
broker. Both clients wait for results polling every 10 ms.

    .venv/bin/python bench/sqlite_pools.py --tasks 2000 --roundtrips 300
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import PYTHON, percentile, run_main, start, stop, tree_rss_mib, wait_for, write_module

CELERIAC_TASKS = """
from celeriac import Celery

app = Celery("benchtasks", broker="sqlite:///{db}")


@app.task
def noop():
    return None
"""

CELERY_TASKS = """
from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqla

kombu_sqla.Transport.polling_interval = 0.01  # kombu's default is 1 s: be fair to Celery

app = Celery("benchtasks", broker="sqla+sqlite:///{db}", backend="db+sqlite:///{db}")


@app.task
def noop():
    return None
"""

SYSTEMS = {
    "celeriac prefork": ("celeriac", ["-P", "prefork", "-c", "2"]),
    "celeriac threads": ("celeriac", ["-P", "threads", "-c", "2"]),
    "celeriac solo": ("celeriac", ["-P", "solo"]),
    "celeriac asyncio": ("celeriac", ["-P", "asyncio", "-c", "2"]),
    "celery prefork": ("celery", ["-P", "prefork", "-c", "2"]),
}


def stored_times(system: str, db: Path) -> list[float]:
    """Unix times at which results were stored, read straight from the SQLite file."""
    with sqlite3.connect(db) as conn:
        query = (
            "SELECT stored_at FROM celeriac_results"
            if system == "celeriac"
            else "SELECT date_done FROM celery_taskmeta"
        )
        try:
            rows = conn.execute(query).fetchall()
        except sqlite3.OperationalError:  # the worker has not created its tables yet
            return []
        if system == "celeriac":
            return [float(r[0]) for r in rows]
        return [
            dt.datetime.fromisoformat(str(r[0])).replace(tzinfo=dt.UTC).timestamp()
            for r in rows
            if r[0]
        ]


def client(kind: str, folder: str, mode: str, count: int) -> dict[str, Any]:
    """Runs in a subprocess: enqueue ``count`` tasks, or make ``count`` round trips."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]  # bench/ must not shadow packages
    sys.path.insert(0, folder)
    import benchtasks  # type: ignore[import-not-found]

    if mode == "enqueue":
        started = time.perf_counter()
        for _ in range(count):
            benchtasks.noop.delay()
        return {"seconds": time.perf_counter() - started}
    benchtasks.noop.delay().get(timeout=30, interval=0.01)  # warm up connections
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        benchtasks.noop.delay().get(timeout=30, interval=0.01)
        latencies.append(time.perf_counter() - started)
    return {"latencies": latencies}


def run_client(kind: str, folder: Path, mode: str, count: int) -> dict[str, Any]:
    out = subprocess.run(
        [PYTHON, __file__, "--client", kind, str(folder), mode, str(count)],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(name: str, tasks: int, roundtrips: int) -> dict[str, float]:
    kind, pool_args = SYSTEMS[name]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        db = folder / "bench.sqlite"
        source = CELERIAC_TASKS if kind == "celeriac" else CELERY_TASKS
        write_module(folder, "benchtasks", source.format(db=db))
        enqueue = run_client(kind, folder, "enqueue", tasks)["seconds"]
        env = {**os.environ, "PYTHONPATH": str(folder)}
        argv = [PYTHON, "-m", kind, "-A", "benchtasks", "worker", "-l", "warning", *pool_args]
        worker = start(argv, folder, env, folder / "worker.log")
        try:
            wait_for(lambda: len(stored_times(kind, db)) >= tasks, 600, f"{name} drain")
            times = sorted(stored_times(kind, db))
            drain = (tasks - 1) / max(times[-1] - times[0], 1e-9)
            rss = tree_rss_mib(worker.pid)
            latencies = run_client(kind, folder, "roundtrip", roundtrips)["latencies"]
        finally:
            stop(worker)
    return {
        "enqueue_per_s": tasks / enqueue,
        "drain_per_s": drain,
        "rtt_p50_ms": percentile(latencies, 50) * 1000,
        "rtt_p99_ms": percentile(latencies, 99) * 1000,
        "worker_rss_mib": rss,
    }


def main() -> None:
    run_main(
        "sqlite_pools.py",
        __doc__,
        SYSTEMS,
        measure,
        client,
        tasks=2000,
        roundtrips=300,
        where="",
    )


if __name__ == "__main__":
    main()
