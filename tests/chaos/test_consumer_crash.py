"""A worker whose consumer loop dies of an error stops with a non-zero exit status, so a
supervisor that restarts failed services (systemd ``Restart=on-failure``) starts it again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.workers import WorkerProject

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

TASKS = """
from celeriac import Celery
from celeriac.worker import consumer

app = Celery("tasks", broker="sqlite:///{folder}/broker.sqlite")


def broken_step(self, timeout):
    raise RuntimeError("a bug in the consumer loop")


consumer.TaskConsumer.step = broken_step  # only in this project's worker processes
"""


def test_a_crashed_consumer_loop_exits_non_zero(tmp_path: Path) -> None:
    project = WorkerProject(tmp_path, TASKS.format(folder=tmp_path))
    try:
        worker = project.start_worker("-P", "solo")
        assert worker.wait(timeout=30) == 1
        assert "Consumer loop crashed" in project.log("w1")
    finally:
        project.stop_all()
