"""Chords between real worker processes on the embedded SQLite default: the body runs once,
with every header result, even when a worker is killed with SIGKILL in the middle."""

from __future__ import annotations

import collections
import sys
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration

CANVAS_TASKS = """

@app.task(bind=True, acks_late=True)
def member(self, index, seconds):
    _record(f"member-{index}")
    time.sleep(seconds)
    return index


@app.task(bind=True, acks_late=True)
def collect(self, values):
    _record(f"body-{self.request.id}")
    return values


@app.task(acks_late=True)
def double(value):
    return value * 2
"""


def canvas_tasks(project: Project) -> Any:
    """The project's tasks module, with the chord's tasks added."""
    with open(project.root / "tasks.py", "a") as module:
        module.write(CANVAS_TASKS)
    sys.modules.pop("tasks", None)
    import tasks  # type: ignore[import-not-found]

    return tasks


@pytest.mark.parametrize("kill_after", [3, 9])
def test_a_chord_completes_once_when_a_worker_is_killed(project: Project, kill_after: int) -> None:
    tasks = canvas_tasks(project)
    from celeriac import chord

    victim = project.start_worker("-P", "prefork", "-c", "4", name="victim")
    header = [tasks.member.s(index, 0.3) for index in range(12)]
    result = chord(header, tasks.collect.s()).apply_async()
    project.wait_for_runs(kill_after, prefix="member-")
    project.kill9(victim)  # members running, others leased or waiting
    project.start_worker("-P", "prefork", "-c", "4", name="rescuer")
    assert result.get(timeout=90) == list(range(12))
    runs = collections.Counter(project.runs())
    assert runs[f"body-{result.id}"] == 1
    assert sum(runs[f"member-{index}"] >= 1 for index in range(12)) == 12
    assert [run for run in runs if run.startswith("body-")] == [f"body-{result.id}"]


def test_a_workflow_across_two_workers(project: Project) -> None:
    tasks = canvas_tasks(project)
    from celeriac import chain, chord, group

    project.start_worker("-P", "threads", "-c", "4", name="w1")
    project.start_worker("-P", "prefork", "-c", "2", name="w2")
    members = group(tasks.member.s(index, 0.01) for index in range(8))
    flow = chain(members | tasks.collect.s(), tasks.double.s())
    assert flow.apply_async().get(timeout=60) == list(range(8)) * 2
    nested = chord([tasks.add.s(1, 1) | tasks.double.s(), tasks.add.s(2, 2)], tasks.collect.s())
    assert nested.apply_async().get(timeout=60) == [4, 4]
