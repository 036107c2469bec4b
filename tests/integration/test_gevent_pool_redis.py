"""The gevent pool on Redis (broker and results): a patched worker speaking to a real server."""

from __future__ import annotations

import signal
import socket
from typing import Any

import pytest

from celeriac import states
from celeriac.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from tests.support.redis_project import RedisProject, redis_project_fixture  # noqa: F401

from .test_gevent_pool import GREEN_TASKS, require_gevent

pytestmark = pytest.mark.integration

# Beside GREEN_TASKS (which need the app, os, time and _record of rtasks.py).
LIMITED_TASKS = """

@app.task(soft_time_limit=0.5)
def soft_limited():
    from celeriac.exceptions import SoftTimeLimitExceeded

    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(soft_time_limit=0.5)
def soft_uncaught():
    time.sleep(10)
"""


@pytest.fixture
def gtasks(redis_project: RedisProject) -> Any:
    require_gevent()
    path = redis_project.root / "rtasks.py"
    path.write_text(path.read_text() + GREEN_TASKS + LIMITED_TASKS)
    import rtasks as module

    return module


def test_fifty_sleeping_tasks_run_side_by_side(redis_project: RedisProject, gtasks: Any) -> None:
    results = [gtasks.overlapping.delay(1.0) for _ in range(50)]  # waiting before the worker
    proc = redis_project.celeriac_worker("-P", "gevent", "-c", "50")
    done = [result.get(timeout=30) for result in results]
    assert {pid for _, pid in done} == {proc.pid}
    assert max(seen for seen, _ in done) >= 40  # one after another, each would see 1
    assert all(result.state == states.SUCCESS for result in results)  # stored in Redis


def test_limits_and_terminate(redis_project: RedisProject, gtasks: Any) -> None:
    redis_project.celeriac_worker("-P", "gevent", "-c", "8")
    assert gtasks.patched.delay().get(timeout=20) == [True, True, True]
    soft = gtasks.soft_limited.delay()
    uncaught = gtasks.soft_uncaught.delay()
    stubborn = gtasks.stubborn.delay(5)
    running = gtasks.record.delay(30)
    assert soft.get(timeout=20) == "cleaned up"
    with pytest.raises(SoftTimeLimitExceeded):
        uncaught.get(timeout=20)
    with pytest.raises(TimeLimitExceeded):
        stubborn.get(timeout=20)
    redis_project.wait_for_runs(1)
    node = f"w1@{socket.gethostname()}"
    replies = gtasks.app.control.revoke(
        running.id, terminate=True, reply=True, timeout=10, destination=[node]
    )
    assert replies == [{node: {"ok": f"terminate: {running.id}"}}]
    with pytest.raises(TaskRevokedError):
        running.get(timeout=20)
    assert gtasks.add.delay(2, 3).get(timeout=20) == 5


def test_warm_shutdown_waits_for_running_greenlets(
    redis_project: RedisProject, gtasks: Any
) -> None:
    proc = redis_project.celeriac_worker("-P", "gevent", "-c", "10")
    running = [gtasks.record.delay(1.0) for _ in range(5)]
    redis_project.wait_for_runs(5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert [result.get(timeout=10) for result in running] == [r.id for r in running]
