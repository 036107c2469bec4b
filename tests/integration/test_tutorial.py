"""The README's first steps, command for command, against a real worker process."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from celeriac.result import AsyncResult

from .conftest import Project

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_first_steps(project: Project, tasks: Any, pool: str) -> None:
    worker = project.start_worker("-P", pool, "-c", "2")
    result = tasks.add.delay(4, 4)
    assert result.get(timeout=20) == 8
    again = AsyncResult(result.id, app=tasks.app)
    assert (again.state, again.result, again.successful()) == ("SUCCESS", 8, True)
    # The line is written just after the result is stored: wait for it.
    project.wait_for_log("w1", f"Task tasks.add[{result.id}] succeeded in")
    log = project.log("w1")
    assert f"Task tasks.add[{result.id}] received" in log
    assert ": 8" in log
    assert "tasks.add" in log.split("[tasks]")[1]  # the banner lists registered tasks
    assert str(project.db) in log  # the banner shows the SQLite file
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


def test_call_and_result_commands(project: Project) -> None:
    project.start_worker("-P", "threads")
    sent = project.celeriac("-A", "tasks", "call", "tasks.add", "--args", "[2, 3]")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    shown = project.celeriac("-A", "tasks", "result", task_id, "--wait", "--timeout", "20")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "SUCCESS: 5"


def test_failure_is_stored_with_its_type_and_traceback(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1")
    result = tasks.fail.delay()
    with pytest.raises(KeyError, match="missing"):
        result.get(timeout=20)
    assert result.state == "FAILURE"
    assert result.traceback is not None and 'raise KeyError("missing")' in result.traceback
    shown = project.celeriac("-A", "tasks", "result", result.id)
    assert shown.stdout.startswith("FAILURE: KeyError('missing')")


def test_countdown_waits_in_the_broker(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads")
    result = tasks.add.apply_async((1, 1), countdown=1.5)
    assert result.state == "PENDING"
    assert result.get(timeout=20) == 2
    assert result.date_done is not None


def test_python_dash_m_and_version(project: Project) -> None:
    from celeriac import __version__

    shown = project.celeriac("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == __version__
    helped = project.celeriac("worker", "--help")
    assert "--concurrency" in helped.stdout and "--queues" in helped.stdout
