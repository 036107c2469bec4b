"""Fair prefetch: a long task never holds short ones hostage while another worker idles."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("attempt", range(3))
def test_long_task_does_not_hold_short_ones(project: Project, tasks: Any, attempt: int) -> None:
    project.start_worker("-P", "prefork", "-c", "1", name="a")
    project.start_worker("-P", "prefork", "-c", "1", name="b")
    long = tasks.sleepy.delay(4)
    deadline = time.monotonic() + 10
    while "received" not in project.log("a") + project.log("b") and time.monotonic() < deadline:
        time.sleep(0.02)
    shorts = [tasks.add.delay(i, 1) for i in range(12)]
    assert [r.get(timeout=5) for r in shorts] == [i + 1 for i in range(12)]
    # Every short task finished while the long one was still running on the other worker.
    assert not long.ready()
    assert long.get(timeout=20) == "finished"


def test_default_scheduling_prefetches_more(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1", "-O", "default", name="a")
    tasks.sleepy.delay(2)
    waiting = [tasks.add.delay(i, 1) for i in range(3)]
    deadline = time.monotonic() + 10
    while project.log("a").count("received") < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    # With -O default the busy worker has taken the short tasks too (Celery's old behaviour).
    assert project.log("a").count("received") == 4
    assert [r.get(timeout=20) for r in waiting] == [1, 2, 3]
