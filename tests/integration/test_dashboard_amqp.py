"""The dashboard fed by a Celeriac worker on RabbitMQ: events over Celery's ``celeryev``
exchange, results in Redis, and the worker listed online through the pidbox broadcast."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import amqp_support, redis_support
from tests.support.polling import eventually
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

NODE = f"w1@{socket.gethostname()}"
TASKS = """
from celeriac import Celery

app = Celery("tasks", broker="{broker}", backend="{backend}")
app.conf.result_backend_transport_options = {{"global_keyprefix": "{prefix}"}}


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise ValueError("no")
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[WorkerProject]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix(tmp_path)
    db = redis_support.BACKEND_DB
    backend = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with amqp_support.vhost() as vhost:
        source = TASKS.format(broker=amqp_support.url(vhost), backend=backend, prefix=prefix)
        project = WorkerProject(tmp_path, source)
        try:
            yield project
        finally:
            project.stop_all()
            redis_support.delete_prefix(db, prefix)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def start_dashboard(project: WorkerProject) -> str:
    port = redis_support.free_port()
    argv = [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "tasks",
        "dashboard",
        "--port",
        str(port),
        "--db",
        str(project.root / "dash.sqlite"),
    ]
    proc = project.start(argv, "dashboard", ready=None)  # stopped with the workers
    eventually(lambda: proc.poll() is not None or redis_support.port_open(port))
    assert proc.poll() is None, (project.root / "dashboard.log").read_text()
    return f"http://127.0.0.1:{port}"


def test_dashboard_shows_tasks_and_workers_of_a_rabbitmq_worker(
    project: WorkerProject,
) -> None:
    tasks = project.load_tasks()
    base = start_dashboard(project)
    project.start_worker("-P", "threads", "-c", "2", "-E")
    ok, bad = tasks.add.delay(20, 22), tasks.fail.delay()
    assert ok.get(timeout=20) == 42
    with pytest.raises(ValueError, match="no"):
        bad.get(timeout=20)

    def states() -> dict[str, str]:
        listed = get(f"{base}/api/tasks?limit=50")["tasks"]
        return {t["uuid"]: t["state"] for t in listed if t["uuid"] in (ok.id, bad.id)}

    eventually(lambda: states() == {ok.id: "SUCCESS", bad.id: "FAILURE"})
    detail = get(f"{base}/api/tasks/{ok.id}")
    assert (detail["name"], detail["state"]) == ("tasks.add", "SUCCESS")

    def online() -> list[Any]:
        workers = get(f"{base}/api/workers")["workers"]
        return [w for w in workers if w["hostname"] == NODE and w["online"]]

    eventually(online)
