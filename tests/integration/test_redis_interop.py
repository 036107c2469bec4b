"""Celery 5.7 and Celeriac on one Redis: clients, workers and results, in both directions."""

from __future__ import annotations

import collections
import subprocess
import sys
from typing import Any

import pytest

from celeriac import Celery
from tests.support import redis_support
from tests.support.redis_project import RedisProject, redis_project_fixture, rtasks_fixture  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.compat]

# Run by a Celery 5.7 client in a subprocess: sends tasks, reads results, prints JSON.
CELERY_CLIENT = """
import json, time
from celtasks import add, record

out = {"sum": add.delay(2, 3).get(timeout=20)}
started = time.monotonic()
out["eta"] = add.apply_async((20, 22), countdown=1).get(timeout=20)
out["eta_waited"] = time.monotonic() - started
ids = [record.apply_async(priority=9).id for _ in range(3)]
ids += [record.apply_async(priority=0).id for _ in range(3)]
out["ids"] = ids
out["results"] = [record.AsyncResult(i).get(timeout=20) for i in ids]
out["theirs"] = add.delay(40, 2).id
print(json.dumps(out))
"""


def test_celery_client_to_celeriac_worker(redis_project: RedisProject, rtasks: Any) -> None:
    redis_project.celeriac_worker("-P", "prefork", "-c", "2", "--prefetch-multiplier", "1")
    out = redis_project.run_script(CELERY_CLIENT)
    assert out["sum"] == 5
    assert out["eta"] == 42
    assert out["eta_waited"] >= 0.9  # the countdown was honoured (by a broker-side delay)
    assert out["results"] == out["ids"]
    # Results the Celeriac worker stored, read by a Celeriac client too.
    assert rtasks.app.AsyncResult(out["theirs"]).get(timeout=10) == 42
    assert {kind for _, kind in redis_project.runs()} == {"celeriac"}
    # Celery's remote control reaches the Celeriac worker (kombu's Pub/Sub channels).
    ping = _cli(redis_project, "celery", "-A", "celtasks", "inspect", "ping", "-t", "1")
    assert "w1@" in ping and "pong" in ping


def test_redis_priority_order_is_kombus(redis_project: RedisProject) -> None:
    """Queued before any worker runs: priority 0 first, 9 last, FIFO within a step."""
    sent = redis_project.run_script("""
        import json
        from celtasks import record
        sent = [(p, record.apply_async(priority=p).id) for p in (9, 5, 0, 9, 1, 0)]
        print(json.dumps(sent))
    """)
    redis_project.celeriac_worker("-P", "solo", "--prefetch-multiplier", "1")
    redis_project.wait_for_runs(6)
    by_id = {task_id: priority for priority, task_id in sent}
    ran = [by_id[task_id] for task_id, _ in redis_project.runs()]
    assert ran == [0, 1, 0, 5, 9, 9]  # steps [0, 3, 6, 9]: 0-2 share a list, in send order


def test_celeriac_client_to_celery_worker(redis_project: RedisProject, rtasks: Any) -> None:
    redis_project.celery_worker()
    assert rtasks.add.delay(2, 3).get(timeout=20) == 5
    high = rtasks.record.apply_async(priority=9)
    assert high.get(timeout=20) == high.id
    # With only Celery workers on a queue, ETA messages go on the list as Celery's do.
    options = {"global_keyprefix": redis_project.prefix, "delayed_delivery": False}
    client = Celery("eta-client", broker=redis_project.url, backend=redis_project.url)
    client.conf.broker_transport_options = options
    client.conf.result_backend_transport_options = {"global_keyprefix": redis_project.prefix}
    try:
        eta = client.send_task("interop.add", (20, 22), countdown=1)
        assert eta.get(timeout=20) == 42
    finally:
        client.close()
    # The Celery client reads what the Celery worker stored for a Celeriac client, and the
    # other way round.
    theirs = redis_project.run_script(f"""
        import json
        from celtasks import add
        print(json.dumps([add.AsyncResult({high.id!r}).get(timeout=10), add.delay(1, 1).id]))
    """)
    assert theirs[0] == high.id
    assert rtasks.app.AsyncResult(theirs[1]).get(timeout=10) == 2
    assert {kind for _, kind in redis_project.runs()} == {"celery"}
    # Celeriac's remote control reaches the Celery worker.
    ping = _cli(redis_project, "celeriac", "-A", "rtasks", "inspect", "ping", "-t", "1")
    assert "c1@" in ping and "pong" in ping


def _cli(project: RedisProject, program: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", program, *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_celeriac_publishes_to_kombus_keys(redis_project: RedisProject, rtasks: Any) -> None:
    rtasks.record.apply_async(priority=9)
    rtasks.record.apply_async(priority=0)
    conn = redis_support.client(redis_project.db)
    try:
        prefix = redis_project.prefix
        assert conn.llen(f"{prefix}celery") == 1
        assert conn.llen(f"{prefix}celery\x06\x169") == 1
        members = conn.smembers(f"{prefix}_kombu.binding.celery")
        assert members == {b"celery\x06\x16\x06\x16celery"}
    finally:
        conn.close()


MIXED_CELERY_CLIENT = """
import json
from celtasks import record, record_late
ids = [record.delay().id for _ in range(150)]
ids += [record_late.apply_async(countdown=1).id for _ in range(10)]
ids += [record_late.delay().id for _ in range(90)]
print(json.dumps(ids))
"""


def test_mixed_fleet_runs_every_task_exactly_once(redis_project: RedisProject, rtasks: Any) -> None:
    redis_project.celery_worker(name="c1")
    redis_project.celeriac_worker("-P", "prefork", "-c", "2", name="w1")
    ids = [rtasks.record.delay().id for _ in range(150)]
    ids += [rtasks.record_late.apply_async(countdown=1).id for _ in range(10)]
    ids += [rtasks.record_late.delay().id for _ in range(90)]
    ids += redis_project.run_script(MIXED_CELERY_CLIENT)
    found = rtasks.app.results.backend.wait_for(
        ids, rtasks.app.results.is_ready_payload, timeout=90
    )
    metas = [rtasks.app.results.decode(payload) for payload in found.values()]
    assert {meta["status"] for meta in metas} == {"SUCCESS"}
    runs = redis_project.runs()
    counts = collections.Counter(task_id for task_id, _ in runs)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, [tid for tid, n in counts.items() if n > 1][:5]
    assert {kind for _, kind in runs} == {"celery", "celeriac"}
