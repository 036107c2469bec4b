"""The SQLite project of the integration tier: ``tasks.py`` (``TASKS``) on a file of its own.

Its tasks record their runs ("<task id or label> <pid>" lines) in ``runs.log``; with
``TEST_SIGNALS`` set they record the worker and task signals too. The ``project`` and
``tasks`` fixtures (tests/integration/conftest.py) make one per test.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.workers import WorkerProject

TASKS = """
import os
import time

from celeriac import Celery

app = Celery("tasks", broker=os.environ["TEST_BROKER"])
app.conf.broker_transport_options = {"lease_timeout": 30}

from celeriac import signals  # noqa: E402


@signals.task_prerun.connect
def _prerun(sender=None, task_id=None, **kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record(f"signal:prerun:{sender.name}:{task_id}")


@signals.task_success.connect
def _success(sender=None, result=None, **kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record(f"signal:success:{sender.name}:{result}")


@signals.task_failure.connect
def _failure(sender=None, task_id=None, exception=None, **kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record(f"signal:failure:{sender.name}:{type(exception).__name__}")


@signals.worker_process_init.connect
def _child_init(**kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record(f"signal:worker_process_init:{os.getpid()}")


@signals.worker_ready.connect
def _ready(**kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record("signal:worker_ready")


@signals.worker_shutdown.connect
def _shutdown(**kwargs):
    if os.environ.get("TEST_SIGNALS"):
        _record("signal:worker_shutdown")


@app.task
def add(x, y):
    return x + y


def _record(name):
    with open(os.environ["TEST_RUNLOG"], "a") as log:
        log.write(f"{name} {os.getpid()}\\n")


@app.task(bind=True)
def tracked(self, seconds=0.0):
    _record(self.request.id)
    time.sleep(seconds)
    return self.request.id


@app.task(bind=True, acks_late=True)
def tracked_late(self, seconds=0.0):
    _record(self.request.id)
    time.sleep(seconds)
    return self.request.id


@app.task
def fail():
    raise KeyError("missing")


def _busy(seconds):
    # Short sleeps, so a time-limit exception raised into a thread arrives promptly.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


@app.task(soft_time_limit=0.5)
def soft_limited(seconds):
    from celeriac.exceptions import SoftTimeLimitExceeded

    try:
        _busy(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(time_limit=0.5)
def hard_limited(seconds):
    _busy(seconds)
    return "finished"


@app.task(bind=True, rate_limit="5/s")
def limited(self):
    _record(f"limited@{time.monotonic():.3f}")
    return self.request.id


@app.task
def hog(megabytes):
    data = bytearray(megabytes * 1024 * 1024)
    data[::4096] = b"x" * len(data[::4096])  # touch every page so it is resident
    return os.getpid()


@app.task
def whoami():
    return os.getpid()


@app.task
def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


@app.task(bind=True)
async def fetch(self, seconds):
    import asyncio
    import threading

    await asyncio.sleep(seconds)
    return [self.request.id, threading.current_thread().name]


@app.task(soft_time_limit=0.3)
async def slow_async(seconds):
    import asyncio

    try:
        await asyncio.sleep(seconds)
    finally:
        _record("slow_async cleaned up")
    return "finished"


@app.task(bind=True, max_retries=2, default_retry_delay=0.2)
def flaky(self, fail_times):
    _record(f"flaky:{self.request.retries}")
    if self.request.retries < fail_times:
        raise self.retry(exc=ValueError(f"attempt {self.request.retries}"))
    return self.request.retries


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=0.1, retry_jitter=False,
          retry_kwargs={"max_retries": 3})
def auto(self):
    _record(f"auto:{self.request.retries}")
    if self.request.retries < 2:
        raise ConnectionError("try again")
    return "ok"


@app.task
def count(values):
    return len(values)


@app.task
def sleepy(seconds):
    _busy(seconds)
    return "finished"
"""


class Project(WorkerProject):
    """A folder with a ``tasks.py``, a SQLite file, and the workers started on it."""

    def __init__(self, root: Path) -> None:
        self.db = root / "celeriac.sqlite"
        runlog = root / "runs.log"
        env = {"TEST_BROKER": f"sqlite:///{self.db}", "TEST_RUNLOG": str(runlog)}
        super().__init__(root, TASKS, env, runlog=runlog, ready_timeout=20.0)
        self.env.pop("CELERIAC_TEST_WORKER")  # these tasks run the same in both processes

    def runs(self) -> list[str]:
        """The first field (a task id or a label) of every run so far, in order."""
        return [fields[0] for fields in self.run_lines()]
