"""Retries, revocation, expiry, signals and logging with a real worker process."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from celeriac.exceptions import TaskRevokedError

from .conftest import Project

pytestmark = pytest.mark.integration


def test_retry_until_success_shows_retry_state(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads")
    result = tasks.flaky.delay(2)
    seen = set()
    deadline = time.monotonic() + 20
    while not result.ready() and time.monotonic() < deadline:
        seen.add(result.state)
        time.sleep(0.01)
    assert result.get(timeout=20) == 2
    assert "RETRY" in seen
    assert [r for r in project.runs() if r.startswith("flaky")] == [
        "flaky:0",
        "flaky:1",
        "flaky:2",
    ]
    project.wait_for_log("w1", f"Task tasks.flaky[{result.id}] retry:")


def test_retries_exhausted_raise_the_original_error(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1")
    result = tasks.flaky.delay(5)  # max_retries=2
    with pytest.raises(ValueError, match="attempt 2"):
        result.get(timeout=20)
    assert result.state == "FAILURE"


def test_autoretry_with_backoff(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads")
    assert tasks.auto.delay().get(timeout=20) == "ok"
    assert [r for r in project.runs() if r.startswith("auto")] == ["auto:0", "auto:1", "auto:2"]


def test_revoked_and_expired_tasks_never_run(project: Project, tasks: Any) -> None:
    revoked = tasks.tracked.delay()
    revoked.revoke()  # before any worker runs: survives the worker's start
    expired = tasks.tracked.apply_async(expires=0.01)
    time.sleep(0.05)
    project.start_worker("-P", "threads")
    fine = tasks.tracked.delay()
    assert fine.get(timeout=20) == fine.id
    for result in (revoked, expired):
        with pytest.raises(TaskRevokedError):
            result.get(timeout=20)
    assert project.runs() == [fine.id]
    log = project.log("w1")
    assert f"Discarding revoked task: tasks.tracked[{revoked.id}]" in log
    assert f"Discarding expired task: tasks.tracked[{expired.id}]" in log


def test_revoked_ids_survive_a_worker_restart(project: Project, tasks: Any) -> None:
    worker = project.start_worker("-P", "threads", name="first")
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    later = tasks.tracked.apply_async(countdown=1)
    later.revoke()
    project.start_worker("-P", "threads", name="second")
    with pytest.raises(TaskRevokedError):
        later.get(timeout=20)
    assert later.id not in project.runs()


def test_signals_fire_in_the_worker(project: Project, tasks: Any) -> None:
    project.env["TEST_SIGNALS"] = "1"
    worker = project.start_worker("-P", "prefork", "-c", "1")
    ok = tasks.add.delay(2, 3)
    bad = tasks.fail.delay()
    assert ok.get(timeout=20) == 5
    with pytest.raises(KeyError):
        bad.get(timeout=20)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    runs = project.runs()
    assert f"signal:prerun:tasks.add:{ok.id}" in runs
    assert "signal:success:tasks.add:5" in runs
    assert "signal:failure:tasks.fail:KeyError" in runs
    assert any(r.startswith("signal:worker_process_init:") for r in runs)
    assert runs.index("signal:worker_ready") < runs.index(f"signal:prerun:tasks.add:{ok.id}")
    assert runs[-1] == "signal:worker_shutdown"


def test_task_logger_and_print_go_to_the_worker_log(project: Project, tasks: Any) -> None:
    with open(project.root / "tasks.py", "a") as module:
        module.write(
            "\nfrom celeriac.utils.log import get_task_logger\n"
            "logger = get_task_logger(__name__)\n\n"
            "@app.task\ndef chatty():\n"
            "    logger.warning('hello from the task')\n"
            "    print('printed by the task')\n"
            "    return 1\n"
        )
    project.start_worker("-P", "prefork", "-c", "1", "-l", "info")
    result = tasks.app.send_task("tasks.chatty")
    assert result.get(timeout=20) == 1
    log = project.log("w1")
    assert f"tasks.chatty[{result.id}]: hello from the task" in log  # task id and name
    assert "WARNING/ForkPoolWorker-1] printed by the task" in log  # stdout redirected
