"""RabbitMQ: Celeriac against Celery 5.7 on the same broker, in one run, 2 prefork processes each.

For each system, in a fresh vhost of the machine's RabbitMQ (made and deleted with
``rabbitmqctl``, which this script must be allowed to run):

* enqueue: a client process sends ``--tasks`` no-op tasks, one ``delay()`` each, no worker
  running (tasks/s). Celeriac waits for RabbitMQ's publisher confirm of each message (its
  default; the ``no confirms`` row turns them off); Celery's producer does not ask for them.
* drain: a worker (``-P prefork -c 2``; Celery with ``--without-gossip --without-mingle
  --without-heartbeat``) starts on the full queue; the time from the first message leaving
  the queue until none is waiting (tasks/s; at most a prefetch window is still running then).
  Celeriac's default ``-O fair`` takes a message only for an idle process; ``-O default``
  prefetches 4 per process, as Celery does by default.
* worker RSS: the summed resident memory of the worker's processes after the drain.
* round trip: a client process runs ``--roundtrips`` sequential ``echo.delay(i).get()``
  with the ``rpc://`` result backend on both sides (after 20 unmeasured ones): p50, p99.

No-op tasks ignore their results. Both bench apps are plain: ``backend='rpc://'`` and the
broker URL, nothing else but publisher confirms as ``--confirm`` says.

    .venv/bin/python bench/amqp_bench.py --tasks 5000 --roundtrips 500 \
        --out bench/results/amqp-<date>.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# This file is named like py-amqp: keep its folder behind the installed packages on the path.
while str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent))

import amqp  # type: ignore[import-untyped]  # noqa: E402
from _harness import PYTHON, percentile, run_main, start, stop, tree_rss_mib, write_module  # noqa: E402

CELERIAC_TASKS = """
from celeriac import Celery

app = Celery("benchtasks", broker="{url}", backend="rpc://")
app.conf.broker_transport_options = {{"confirm_publish": {confirm}}}


@app.task(ignore_result=True)
def noop():
    return None


@app.task
def echo(x):
    return x
"""

CELERY_TASKS = """
from celery import Celery

app = Celery("benchtasks", broker="{url}", backend="rpc://")


@app.task(ignore_result=True)
def noop():
    return None


@app.task
def echo(x):
    return x
"""

SYSTEMS = {  # name: (kind, publisher confirms, extra worker options)
    "celeriac prefork": ("celeriac", True, []),
    "celeriac prefork -O default": ("celeriac", True, ["-O", "default"]),
    "celeriac prefork, no confirms": ("celeriac", False, []),
    "celery prefork": ("celery", False, []),
}
WORKER_ARGS = {
    "celeriac": ["-P", "prefork", "-c", "2"],
    "celery": [
        "-P",
        "prefork",
        "-c",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ],
}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def client(kind: str, folder: str, mode: str, count: int) -> dict[str, Any]:
    """Runs in a subprocess: enqueue ``count`` tasks, or make ``count`` round trips."""
    sys.path.insert(0, folder)
    import benchtasks  # type: ignore[import-not-found]

    if mode == "enqueue":
        started = time.perf_counter()
        for _ in range(count):
            benchtasks.noop.delay()
        return {"seconds": time.perf_counter() - started}
    for i in range(20):  # warm up connections
        benchtasks.echo.delay(i).get(timeout=30)
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        assert benchtasks.echo.delay(i).get(timeout=30) == i
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


def waiting(vhost: str) -> int:
    """Messages waiting (not delivered) in the queue ``celery``."""
    connection = amqp.Connection("127.0.0.1:5672", virtual_host=vhost)
    connection.connect()
    try:
        return int(connection.channel().queue_declare("celery", passive=True)[1])
    finally:
        connection.close()


def drain_rate(vhost: str, tasks: int) -> float:
    """Tasks/s from the first message leaving the queue until none is waiting."""
    connection = amqp.Connection("127.0.0.1:5672", virtual_host=vhost)
    connection.connect()
    channel = connection.channel()
    first = last = None
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            count = int(channel.queue_declare("celery", passive=True)[1])
            now = time.perf_counter()
            if first is None and count < tasks:
                first = now
            if count == 0:
                last = now
                break
            time.sleep(0.002)
    finally:
        connection.close()
    if first is None or last is None:
        raise RuntimeError("the worker did not drain the queue in 10 minutes")
    return tasks / max(last - first, 1e-9)


def measure(name: str, tasks: int, roundtrips: int) -> dict[str, float]:
    kind, confirm, extra = SYSTEMS[name]
    vhost = f"celeriac-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            folder = Path(tmp)
            url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
            source = CELERIAC_TASKS if kind == "celeriac" else CELERY_TASKS
            write_module(folder, "benchtasks", source.format(url=url, confirm=confirm))
            enqueue = run_client(kind, folder, "enqueue", tasks)["seconds"]
            assert waiting(vhost) == tasks, "not every task reached the queue"
            env = {**os.environ, "PYTHONPATH": str(folder), "BENCH_WORKER": "1"}
            argv = [
                PYTHON,
                "-m",
                kind,
                "-A",
                "benchtasks",
                "worker",
                "-l",
                "warning",
                *WORKER_ARGS[kind],
                *extra,
            ]
            worker = start(argv, folder, env, folder / "worker.log")
            try:
                drain = drain_rate(vhost, tasks)
                time.sleep(0.5)  # the last window finishes
                rss = tree_rss_mib(worker.pid)
                latencies = run_client(kind, folder, "roundtrip", roundtrips)["latencies"]
            finally:
                stop(worker)
    finally:
        rabbitmqctl("delete_vhost", vhost)
    return {
        "enqueue_per_s": tasks / enqueue,
        "drain_per_s": drain,
        "rtt_p50_ms": percentile(latencies, 50) * 1000,
        "rtt_p99_ms": percentile(latencies, 99) * 1000,
        "worker_rss_mib": rss,
    }


def main() -> None:
    run_main(
        "amqp_bench.py",
        __doc__,
        SYSTEMS,
        measure,
        client,
        tasks=5000,
        roundtrips=500,
        where=", RabbitMQ on 127.0.0.1",
    )


if __name__ == "__main__":
    main()
