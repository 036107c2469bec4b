"""Reliability on RabbitMQ with real workers: a worker killed with SIGKILL loses no task, and
nothing a worker runs or waits for sits unacknowledged where consumer_timeout could strike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

TASKS = """
import os
import time
from celeriac import Celery

app = Celery("tasks", broker="{broker}", backend="sqlite:///{folder}/results.sqlite")


def _record(task_id):
    with open("{folder}/runs.log", "a") as log:
        log.write(f"{{task_id}} {{os.getpid()}}\\n")


@app.task(bind=True, acks_late=True)
def tracked_late(self, seconds):
    _record(self.request.id)
    time.sleep(seconds)
    return self.request.id


@app.task
def nap(seconds):
    time.sleep(seconds)
    return seconds
"""


@pytest.fixture
def project(vhost: str, tmp_path: Path) -> Iterator[WorkerProject]:
    source = TASKS.format(broker=amqp_support.url(vhost), folder=tmp_path)
    project = WorkerProject(tmp_path, source)
    yield project
    project.stop_all()


def runs(folder: Path) -> list[str]:
    path = folder / "runs.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_tasks_of_a_killed_worker_run_to_completion_elsewhere(
    project: WorkerProject, tmp_path: Path
) -> None:
    tasks = project.load_tasks()
    first = project.start_worker("-c", "2", name="w1")
    results = [tasks.tracked_late.delay(1.0) for _ in range(6)]
    deadline = time.monotonic() + 20
    while len(runs(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    started_on_first = set(runs(tmp_path))
    assert len(started_on_first) == 2
    project.kill9(first)  # mid-task: RabbitMQ requeues everything it had not acknowledged
    project.start_worker("-c", "2", name="w2")
    assert sorted(r.get(timeout=30) for r in results) == sorted(r.id for r in results)
    again = runs(tmp_path)
    assert all(again.count(task_id) == 2 for task_id in started_on_first)  # ran again on w2


def test_running_and_waiting_tasks_hold_no_unacknowledged_message(
    project: WorkerProject, vhost: str
) -> None:
    """consumer_timeout (30 min by default) closes a channel that keeps a delivery unacked
    that long. A task is acknowledged when it starts (unless acks_late) and an ETA waits in
    the broker's delay queues, so neither a long task nor a far ETA holds one."""
    tasks = project.load_tasks()
    project.start_worker("-P", "solo")
    running = tasks.nap.delay(3)
    waiting = tasks.nap.apply_async((0,), countdown=3)
    project.wait_for_log("w1", f"nap[{running.id}] received")
    time.sleep(0.3)  # the task has started (and been acknowledged)
    rows = amqp_support.list_queues(vhost, "name", "messages_ready", "messages_unacknowledged")
    assert ["celery", "0", "0"] in rows  # nothing waiting, nothing held unacknowledged
    levels = [f"celery_delayed_{level}" for level in range(28)]
    assert sum(tasks.app.transport.queue_length(level) for level in levels) == 1  # the ETA
    assert (running.get(timeout=20), waiting.get(timeout=20)) == (3, 0)
