"""Mingle between real worker processes: a starting worker learns the revoked ids and the
logical clock of the running ones, on the embedded SQLite broker and, with Celery 5.7 workers
on either side, on Redis.

A revoke broadcast reaches only the workers running when it is sent; what a later worker
knows of it in memory (``inspect revoked``) it can only have learnt by mingling. The revoking
client first pushes its Lamport clock past 10,000, so the running worker's clock is past it
too, and a newcomer's clock is past it only when it synced.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest

from tests.support.redis_project import RedisProject, redis_project_fixture, rtasks_fixture  # noqa: F401

from .conftest import Project

pytestmark = pytest.mark.integration

HOST = socket.gethostname()
CLOCK = 10_000


def node(name: str) -> str:
    return f"{name}@{HOST}"


def ask(run: Any, name: str, *args: str) -> Any:
    """``<app> inspect ... -d name@host --json`` run by ``run``; the node's reply."""
    done = run(*args, "-d", node(name), "--json", "-t", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[node(name)]


def revoke_on(app: Any, name: str) -> str:
    """Revoke a fresh task id on the running worker ``name``, with a clock past ``CLOCK``."""
    task_id = str(uuid.uuid4())
    app.lamport_clock.adjust(CLOCK)
    [reply] = app.control.revoke(task_id, destination=[node(name)], reply=True, timeout=5)
    assert "ok" in reply[node(name)], reply
    return task_id


def test_a_starting_worker_learns_what_the_running_one_revoked(
    project: Project, tasks: Any
) -> None:
    project.start_worker("-P", "threads", "-c", "1", name="w1")
    task_id = revoke_on(tasks.app, "w1")

    def inspect(name: str, what: str) -> Any:
        return ask(lambda *a: project.celeriac("-A", "tasks", *a), name, "inspect", what)

    assert inspect("w1", "revoked") == [task_id]
    project.start_worker("-P", "threads", "-c", "1", name="w2", mingle=True)
    log = project.log("w2")
    assert "mingle: searching for neighbors" in log and "mingle: sync with 1 nodes" in log
    assert f"sync with {node('w2')}" in project.log("w1")
    assert inspect("w2", "revoked") == [task_id]
    assert inspect("w2", "clock")["clock"] > CLOCK
    # Without mingle, the newcomer knows nothing of it (and says nothing about mingling).
    project.start_worker("-P", "threads", "-c", "1", name="w3")  # --without-mingle
    assert "mingle" not in project.log("w3")
    assert inspect("w3", "revoked") == []
    assert inspect("w3", "clock")["clock"] < CLOCK


def _celeriac_cli(project: RedisProject) -> Any:
    return lambda *args: project.celeriac(*args)


@pytest.mark.compat
def test_a_celeriac_worker_mingles_with_a_running_celery_worker(
    redis_project: RedisProject, rtasks: Any
) -> None:
    redis_project.celery_worker(name="c1")
    task_id = revoke_on(rtasks.app, "c1")
    redis_project.celeriac_worker("-P", "threads", "-c", "1", name="w1", mingle=True)
    assert "mingle: sync with 1 nodes" in redis_project.log("w1")
    assert f"sync with {node('w1')}" in redis_project.log("c1")  # Celery's hello handler
    assert ask(_celeriac_cli(redis_project), "w1", "inspect", "revoked") == [task_id]
    assert ask(_celeriac_cli(redis_project), "w1", "inspect", "clock")["clock"] > CLOCK


@pytest.mark.compat
def test_a_starting_celery_worker_mingles_with_a_celeriac_worker(
    redis_project: RedisProject, rtasks: Any
) -> None:
    redis_project.celeriac_worker("-P", "threads", "-c", "1", name="w1")
    task_id = revoke_on(rtasks.app, "w1")
    redis_project.celery_worker(name="c1", mingle=True, pool="solo")  # Celery 5.7, mingling
    log = redis_project.log("c1")
    assert "mingle: searching for neighbors" in log and "mingle: sync with 1 nodes" in log
    assert f"sync with {node('c1')}" in redis_project.log("w1")  # Celeriac's hello handler
    assert task_id in ask(_celeriac_cli(redis_project), "c1", "inspect", "revoked")
    clock = ask(_celeriac_cli(redis_project), "c1", "inspect", "clock")["clock"]
    assert int(clock) > CLOCK
