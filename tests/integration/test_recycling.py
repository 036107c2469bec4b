"""Recycling and scaling prefork children: max tasks, max memory, a dying child, autoscale."""

from __future__ import annotations

import time
from typing import Any

import pytest

from celeriac.exceptions import WorkerLostError

from .conftest import Project

pytestmark = pytest.mark.integration


def test_max_tasks_per_child_recycles(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1", "--max-tasks-per-child", "2")
    pids = [tasks.whoami.delay().get(timeout=20) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_max_memory_per_child_recycles(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1", "--max-memory-per-child", "150000")
    first = tasks.whoami.delay().get(timeout=20)
    hog_pid = tasks.hog.delay(200).get(timeout=20)  # 200 MiB > 150,000 KiB
    after = tasks.whoami.delay().get(timeout=20)
    assert first == hog_pid  # the same child ran both ...
    assert after != hog_pid  # ... and was replaced after going over the limit
    assert "exits and a new one takes its place" in project.log("w1")


def test_a_child_that_dies_is_replaced_and_the_task_fails(project: Project, tasks: Any) -> None:
    (project.root / "dying.py").write_text(
        "import os\nfrom tasks import app\n\n@app.task\ndef die():\n    os._exit(3)\n"
    )
    with open(project.root / "tasks.py", "a") as module:
        module.write("\nimport dying  # noqa\n")
    project.start_worker("-P", "prefork", "-c", "1")
    result = tasks.app.send_task("dying.die")
    with pytest.raises(WorkerLostError, match="exited prematurely"):
        result.get(timeout=20)
    assert tasks.add.delay(2, 2).get(timeout=20) == 4  # a new child took the slot
    assert "exited prematurely: exitcode 3" in project.log("w1")


def test_autoscale_grows_under_load_and_shrinks_when_idle(
    project: Project, tasks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.env["CELERIAC_AUTOSCALE_KEEPALIVE"] = "1"
    project.start_worker("-P", "prefork", "--autoscale", "4,1", name="a")
    busy = [tasks.nap.delay(1.0) for _ in range(4)]
    pids = [r.get(timeout=20) for r in busy]
    assert len(set(pids)) == 4  # four children ran them side by side
    assert "Autoscale: grew to" in project.log("a")
    deadline = time.monotonic() + 20
    while "shrank to 1" not in project.log("a") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Autoscale: shrank to 1 children" in project.log("a")
    assert tasks.add.delay(1, 2).get(timeout=20) == 3
