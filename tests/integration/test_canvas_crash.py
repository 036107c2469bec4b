"""A worker that dies between claiming a chord's body and sending it: the body is not lost.

The window is narrow (after the last header member's report claimed the body, before the
body's message is published), so these tests do not aim a ``kill -9`` at it: the project's
task module connects Celery's ``before_task_publish`` (or ``after_task_publish``) signal
and, when the body is about to go out (or has just gone out), ends the worker's process with
``os._exit``, once (a flag file says whether it still has to). The worker runs the threads
pool, so that ends the whole worker, as SIGKILL would: no ack, no cleanup. The member is
``acks_late``, so the broker hands it to a second worker, which runs it again, finds the
header complete and the body claimed by this very member but not yet sent, and sends it.
Run on the embedded SQLite default and on Redis (broker and results, Celery's chord keys).
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import chord
from tests.support import redis_support
from tests.support.polling import eventually
from tests.support.redis_project import RTASKS, RedisProject, open_project

from .conftest import Project

pytestmark = pytest.mark.integration

SIZE = 4
CRASH_EXIT = 70

CRASH_TASKS = """

from celeriac import signals as _signals  # noqa: E402


@app.task(name="crash.member", bind=True, acks_late=True)
def crash_member(self, index):
    _crash_record(f"member-{index}")
    return index * 10


@app.task(name="crash.body", bind=True, acks_late=True)
def crash_body(self, values):
    _crash_record(f"body-{self.request.id}")
    return values


def _crash_record(name):
    with open(os.environ["TEST_RUNLOG"], "a") as log:
        log.write(f"{name} {os.getpid()}\\n")


def _crash_once(sender, when):
    # Only where the test left the flag file, and only once: the worker dies here as kill -9
    # would (os._exit: no ack, no cleanup), with the body claimed and sent (when == "after")
    # or not (when == "before").
    flag = os.environ["TEST_RUNLOG"] + ".crash-" + when
    if sender == "crash.body" and os.path.exists(flag):
        os.remove(flag)
        _crash_record(f"crash-{when}")
        os._exit(70)


@_signals.before_task_publish.connect
def _crash_before_the_body(sender=None, **kwargs):
    _crash_once(sender, "before")


@_signals.after_task_publish.connect
def _crash_after_the_body(sender=None, **kwargs):
    _crash_once(sender, "after")
"""


def _arm(runlog: Path, when: str) -> None:
    """The next worker to send a chord's body dies at ``when``."""
    Path(f"{runlog}.crash-{when}").touch()


def _check_runs(runs: list[str], body_id: str, when: str, body_runs: int) -> None:
    counted = collections.Counter(runs)
    assert counted[f"crash-{when}"] == 1
    # Each member ran once, except the one whose report claimed the body: twice.
    member_runs = sorted(counted[f"member-{index}"] for index in range(SIZE))
    assert member_runs == [1] * (SIZE - 1) + [2]
    assert [run for run in counted if run.startswith("body-")] == [f"body-{body_id}"]
    assert counted[f"body-{body_id}"] == body_runs


# -- the embedded SQLite default ---------------------------------------------------------------


def _sqlite_tasks(project: Project) -> Any:
    with open(project.root / "tasks.py", "a") as module:
        module.write(CRASH_TASKS)
    sys.modules.pop("tasks", None)
    import tasks  # type: ignore[import-not-found]

    return tasks


@pytest.mark.parametrize(("when", "body_runs"), [("before", 1), ("after", 2)])
def test_sqlite_a_crash_after_the_claim_does_not_lose_the_body(
    project: Project, when: str, body_runs: int
) -> None:
    tasks = _sqlite_tasks(project)
    victim = project.start_worker("-P", "threads", "-c", "1", name="victim")
    _arm(project.runlog, when)
    header = [tasks.crash_member.s(index) for index in range(SIZE)]
    result = chord(header, tasks.crash_body.s()).apply_async()
    eventually(lambda: victim.poll() is not None, "the worker to crash at the body's send")
    assert victim.returncode == CRASH_EXIT
    project.start_worker("-P", "threads", "-c", "2", name="rescuer")
    assert result.get(timeout=60) == [index * 10 for index in range(SIZE)]
    # "before": the body had not gone out; the member's second run sent it, once. "after":
    # it had, and the member's second run sends it again, with the same task id (the one
    # duplicate this window allows: the body's send happened, its record did not).
    eventually(
        lambda: project.runs().count(f"body-{result.id}"),
        f"{body_runs} runs of the body",
        until=lambda n: n >= body_runs,
    )
    _check_runs(project.runs(), result.id, when, body_runs)


# -- Redis: broker and results, the chord joined in Celery 5.7's keys --------------------------


@pytest.fixture(name="redis_project")
def redis_project_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisProject]:
    redis_support.require_redis()
    db = redis_support.INTEROP_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with open_project(tmp_path, monkeypatch, url, db) as project:
        (tmp_path / "rtasks.py").write_text(RTASKS + CRASH_TASKS)
        yield project


def test_redis_a_crash_after_the_claim_does_not_lose_the_body(redis_project: RedisProject) -> None:
    sys.modules.pop("rtasks", None)
    import rtasks  # type: ignore[import-not-found]

    victim = redis_project.celeriac_worker(
        "-P", "threads", "-c", "1", name="victim", TEST_LEASE="1"
    )
    _arm(redis_project.runlog, "before")
    header = [rtasks.crash_member.s(index) for index in range(SIZE)]
    result = chord(header, rtasks.crash_body.s()).apply_async()
    eventually(lambda: victim.poll() is not None, "the worker to crash at the body's send")
    assert victim.returncode == CRASH_EXIT
    redis_project.celeriac_worker("-P", "threads", "-c", "2", name="rescuer", TEST_LEASE="1")
    assert result.get(timeout=60) == [index * 10 for index in range(SIZE)]

    def runs() -> list[str]:
        return [tid for tid, _ in redis_project.runs()]

    eventually(
        lambda: runs().count(f"body-{result.id}"), "1 run of the body", until=lambda n: n >= 1
    )
    _check_runs(runs(), result.id, "before", 1)
    # The body's send was recorded: Celery 5.7's done marker, nothing else left of the join.
    conn = redis_support.client(redis_project.db)
    try:
        base = f"{redis_project.prefix}celery-taskset-meta-{result.parent.id}"
        assert conn.get(base + ".c") == b"done"
        assert not conn.exists(*(base + suffix for suffix in (".j", ".s", ".d", ".t")))
    finally:
        conn.close()
