"""``worker -B``: beat embedded in a worker, for development."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration


def test_worker_with_embedded_beat_runs_periodic_tasks(project: Project, tasks: Any) -> None:
    with open(project.root / "tasks.py", "a") as module:
        module.write(
            "\nfrom datetime import timedelta\n"
            "app.conf.beat_schedule = {'tick': {'task': 'tasks.tick', "
            "'schedule': timedelta(seconds=0.5)}}\n\n"
            "@app.task\ndef tick():\n    _record('tick')\n"
        )
    project.start_worker("-P", "threads", "-B", name="a")
    deadline = time.monotonic() + 20
    while project.runs().count("tick") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert project.runs().count("tick") >= 3
