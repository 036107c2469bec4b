"""ETA and countdown tasks on one Redis (and RabbitMQ), Celery 5.7 and Celeriac side by side.

A Celeriac client publishes an ETA task as Celery's does (on the queue's list, the ``eta``
header saying when), so a Celery worker runs it; a Celeriac worker that takes an early task
gives it back into the broker's delayed set, so it waits in Redis (not in worker memory) and
survives ``kill -9`` of that worker (on RabbitMQ the delay levels play that part).
``inspect().scheduled()`` lists such a task with Celery's shape and ``revoke()`` stores
REVOKED at once, for both systems.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import amqp_support, redis_support
from tests.support.redis_project import RedisProject, redis_project_fixture, rtasks_fixture  # noqa: F401
from tests.support.workers import WorkerProject

from .test_amqp_interop import CELERIAC_WORKER, celery_client, close_celery

pytestmark = [pytest.mark.integration, pytest.mark.compat]


def _delayed(project: RedisProject) -> int:
    conn = redis_support.client(project.db)
    try:
        return int(conn.zcard(f"{project.prefix}_celeriac.delayed.celery"))
    finally:
        conn.close()


def test_a_celeriac_countdown_task_runs_on_a_celery_worker(
    redis_project: RedisProject, rtasks: Any
) -> None:
    redis_project.celery_worker()
    started = time.monotonic()
    result = rtasks.record.apply_async(countdown=2)
    assert result.get(timeout=30) == result.id
    assert time.monotonic() - started >= 1.9  # held until its ETA by the Celery worker
    assert redis_project.runs() == [(result.id, "celery")]


def test_a_celery_countdown_task_waits_in_redis_for_a_celeriac_worker(
    redis_project: RedisProject,
) -> None:
    redis_project.celeriac_worker("-P", "solo")
    out = redis_project.run_script("""
        import json, time
        from celtasks import record
        started = time.monotonic()
        result = record.apply_async(countdown=3)
        print(json.dumps([result.id, result.get(timeout=30), time.monotonic() - started]))
    """)
    task_id, value, waited = out
    assert value == task_id
    assert waited >= 2.9
    assert redis_project.runs() == [(task_id, "celeriac")]


def test_kill9_of_a_celeriac_worker_holding_a_far_eta_task_loses_nothing(
    redis_project: RedisProject, rtasks: Any
) -> None:
    first = redis_project.celeriac_worker("-P", "solo", name="w1")
    result = rtasks.record_late.apply_async(countdown=4)
    deadline = time.monotonic() + 20
    while _delayed(redis_project) == 0:  # w1 took it and gave it back to the delayed set
        assert time.monotonic() < deadline, redis_project.log("w1")[-2000:]
        time.sleep(0.05)
    redis_project.kill9(first)
    redis_project.celeriac_worker("-P", "solo", name="w2")
    assert result.get(timeout=30) == result.id
    assert redis_project.runs() == [(result.id, "celeriac")]


# Run by a client of either system (``{module}``: celtasks or rtasks) against a worker of the
# same system: a countdown task is listed by inspect().scheduled(), then revoked.
SCHEDULED_THEN_REVOKED = """
import json, time
from {module} import app, record

result = record.apply_async((0.0,), countdown=60, priority=3)
entry, deadline = None, time.monotonic() + 20
while entry is None and time.monotonic() < deadline:
    replies = app.control.inspect(timeout=1).scheduled() or {{}}
    found = [e for es in replies.values() for e in es if e["request"]["id"] == result.id]
    entry = found[0] if found else None
app.control.revoke(result.id)
try:
    result.get(timeout=20)
    outcome = "ran"
except Exception as exc:
    outcome = type(exc).__name__
request = entry and entry["request"]
print(json.dumps({{
    "keys": sorted(entry) if entry else None,
    "eta_is_iso": bool(entry) and entry["eta"][:4].isdigit() and "T" in entry["eta"],
    "priority": entry and entry["priority"],
    "request": request and [
        request["name"], request["args"], request["kwargs"], request["delivery_info"]["priority"]
    ],
    "outcome": outcome,
    "state": result.state,
}}))
"""


@pytest.mark.parametrize("kind", ["celery", "celeriac"])
def test_scheduled_lists_a_countdown_task_and_revoke_is_at_once(
    redis_project: RedisProject, kind: str
) -> None:
    if kind == "celery":
        redis_project.celery_worker(pool="solo")
    else:
        redis_project.celeriac_worker("-P", "solo")
    module = "celtasks" if kind == "celery" else "rtasks"
    out = redis_project.run_script(SCHEDULED_THEN_REVOKED.format(module=module))
    assert out == {
        "keys": ["eta", "priority", "request"],
        "eta_is_iso": True,
        "priority": 6,  # Celery's: its timer's priority for ETA entries
        "request": ["interop.record", [0.0], {}, 3],
        "outcome": "TaskRevokedError",  # within get()'s 20 s, long before the 60 s ETA
        "state": "REVOKED",
    }
    assert redis_project.runs() == []


def test_amqp_kill9_of_a_celeriac_worker_holding_a_celery_eta_task_loses_nothing(
    tmp_path: Path,
) -> None:
    """RabbitMQ: a Celery client's countdown task, taken early by a Celeriac worker, waits in
    the delay levels (not in the worker), so killing that worker loses nothing."""
    amqp_support.require_rabbitmq()
    with amqp_support.vhost() as vhost:
        project = WorkerProject(tmp_path, CELERIAC_WORKER.format(broker=amqp_support.url(vhost)))
        client = celery_client(vhost)
        try:
            first = project.start_worker("-P", "solo", name="w1")
            later = client.send_task("plain.add", args=[20, 22], countdown=8)
            deadline = time.monotonic() + 20
            while not _in_delay_levels(vhost):  # w1 took it and gave it back to the broker
                assert time.monotonic() < deadline, project.log("w1")[-2000:]
                time.sleep(0.2)
            project.kill9(first)
            project.start_worker("-P", "solo", name="w2")
            assert later.get(timeout=40) == 42
            assert "plain.add" in project.log("w2")
        finally:
            close_celery(client)
            project.stop_all()


def _in_delay_levels(vhost: str) -> bool:
    rows = amqp_support.list_queues(vhost, "name", "messages")
    return any(name.startswith("celery_delayed_") and int(count) > 0 for name, count in rows)
