"""A prefork worker storing results in PostgreSQL / MariaDB: tasks, groups and chords (the
chord join in SQL), and the pool children's own connections."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import chord, group
from tests.support import sql_support

from .conftest import Project

pytestmark = pytest.mark.integration

SQL_TASKS = """
import os

from celeriac import Celery

app = Celery("tasks", broker=os.environ["TEST_BROKER"], backend=os.environ["TEST_BACKEND"])


@app.task
def add(x, y):
    return x + y


@app.task
def total(values):
    return sum(values)


@app.task
def pid():
    return os.getpid()
"""


@pytest.fixture(params=sql_support.KINDS)
def sql_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Project, Any]]:
    with sql_support.database(request.param) as db:
        proj = Project(tmp_path)
        (tmp_path / "tasks.py").write_text(textwrap.dedent(SQL_TASKS))  # replaces the Project's
        backend = f"db+{db.url()}"
        proj.env["TEST_BACKEND"] = backend
        monkeypatch.setenv("TEST_BACKEND", backend)
        monkeypatch.setenv("TEST_BROKER", proj.env["TEST_BROKER"])
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("tasks", None)
        import tasks

        try:
            yield proj, tasks
        finally:
            proj.stop_all()
            tasks.app.close()
            sys.modules.pop("tasks", None)


def test_prefork_worker_results_groups_and_chords_in_sql(sql_project: tuple[Project, Any]) -> None:
    proj, tasks = sql_project
    proc = proj.start_worker("-P", "prefork", "-c", "2")
    assert tasks.add.delay(2, 3).get(timeout=30) == 5
    header = group(tasks.add.s(i, i) for i in range(6))
    assert header.apply_async().get(timeout=30) == [0, 2, 4, 6, 8, 10]
    assert chord(header)(tasks.total.s()).get(timeout=30) == 30
    # Each pool child stored through a connection of its own (one engine per process).
    pids = {tasks.pid.delay().get(timeout=30) for _ in range(8)}
    assert proc.pid not in pids
    assert "ERROR" not in proj.log("w1")
