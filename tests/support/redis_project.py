"""A project folder for the Redis integration tests: Celeriac and Celery apps sharing one Redis.

``rtasks.py`` is a Celeriac app, ``celtasks.py`` a Celery 5.7 app; both register the same task
names on the same Redis, under a key prefix of the test's own (broker and results), so Celery
and Celeriac clients and workers can be mixed freely. Every run of ``record`` and
``record_late`` appends "<task id> <celeriac|celery> <pid>" to a run log. Workers are real
subprocesses, stopped (and their process groups killed) when the test ends; the test's keys are
deleted then.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_support
from tests.support.workers import READY, WorkerProject

# The task bodies, shared by both apps; KIND says which system runs them.
_TASK_BODIES = """
def _record(task_id):
    with open(os.environ["TEST_RUNLOG"], "a") as log:
        log.write(f"{task_id} {KIND} {os.getpid()}\\n")


@app.task(name="interop.add")
def add(x, y):
    return x + y


@app.task(name="interop.record", bind=True)
def record(self, seconds=0.0):
    _record(self.request.id)
    time.sleep(seconds)
    return self.request.id


@app.task(name="interop.record_late", bind=True, acks_late=True)
def record_late(self, seconds=0.0):
    _record(self.request.id)
    time.sleep(seconds)
    return self.request.id


@app.task(name="interop.crash", bind=True, acks_late=True)
def crash(self):
    _record(self.request.id)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="interop.fail")
def fail(message):
    raise KeyError(message)


@app.task(name="interop.retry_once", bind=True, max_retries=1, default_retry_delay=0.1)
def retry_once(self, value):
    if self.request.retries == 0:
        raise self.retry(exc=ValueError("first attempt"))
    return value
"""

RTASKS = (
    """
import os
import signal
import time

from celeriac import Celery

KIND = "celeriac"
URL = os.environ["TEST_REDIS_URL"]
PREFIX = os.environ["TEST_PREFIX"]
app = Celery("rtasks", broker=URL, backend=URL)
app.conf.broker_transport_options = {
    "global_keyprefix": PREFIX,
    "lease_timeout": float(os.environ.get("TEST_LEASE", "30")),
    "max_deliveries": int(os.environ.get("TEST_MAX_DELIVERIES", "10")),
    "recover_interval": 0.2,
}
app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
"""
    + _TASK_BODIES
)

CELTASKS = (
    """
import os
import signal
import time

from celery import Celery

KIND = "celery"
URL = os.environ["TEST_REDIS_URL"]
PREFIX = os.environ["TEST_PREFIX"]
app = Celery("celtasks", broker=URL, backend=URL)
app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
"""
    + _TASK_BODIES
)


class RedisProject(WorkerProject):
    """A folder with both apps, the workers started on it, and its key prefix."""

    def __init__(self, root: Path, url: str, db: int, port: int = redis_support.PORT) -> None:
        self.url = url
        self.db = db
        self.port = port
        self.prefix = redis_support.unique_prefix()
        runlog = root / "runs.log"
        env = {"TEST_REDIS_URL": url, "TEST_PREFIX": self.prefix, "TEST_RUNLOG": str(runlog)}
        super().__init__(
            root,
            {"rtasks": RTASKS, "celtasks": CELTASKS},
            env,
            app="rtasks",
            cli_app="rtasks",
            append_logs=True,
            runlog=runlog,
            stop_timeout=15.0,
        )
        self.env.pop("CELERIAC_TEST_WORKER")  # these tasks run the same in both processes

    def celeriac_worker(
        self,
        *args: str,
        name: str = "w1",
        mingle: bool = False,
        ready: str | None = READY,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        """A Celeriac worker; without startup mingle (a 1 s wait) unless asked."""
        return self.start_worker(*args, name=name, mingle=mingle, ready=ready, env=env)

    def celery_worker(
        self, *args: str, name: str = "c1", mingle: bool = False, pool: str = "prefork"
    ) -> subprocess.Popen[bytes]:
        """A Celery 5.7 worker (2 processes unless ``pool`` says otherwise), without gossip
        and heartbeats, and without mingle unless asked."""
        concurrency = 2 if pool == "prefork" else None
        return self.start_celery_worker(
            *args,
            name=name,
            app="celtasks",
            pool=pool,
            concurrency=concurrency,
            mingle=mingle,
            quick_stop=False,
        )

    def runs(self) -> list[tuple[str, str]]:
        """(task id, kind) of every run so far, in order."""
        return [(fields[0], fields[1]) for fields in self.run_lines()]


@contextlib.contextmanager
def open_project(
    root: Path, monkeypatch: pytest.MonkeyPatch, url: str, db: int, port: int = redis_support.PORT
) -> Iterator[RedisProject]:
    """A project on ``url`` whose ``rtasks`` module this process can import too."""
    project = RedisProject(root, url, db, port)
    monkeypatch.syspath_prepend(str(root))
    for name in ("TEST_REDIS_URL", "TEST_PREFIX", "TEST_RUNLOG"):
        monkeypatch.setenv(name, project.env[name])
    sys.modules.pop("rtasks", None)
    try:
        yield project
    finally:
        project.stop_all()
        module = sys.modules.pop("rtasks", None)
        if module is not None:
            module.app.close()
        redis_support.delete_prefix(db, project.prefix, port)


@pytest.fixture(name="redis_project")
def redis_project_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisProject]:
    """A project on the machine's Redis, database ``INTEROP_DB``."""
    redis_support.require_redis()
    db = redis_support.INTEROP_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with open_project(tmp_path, monkeypatch, url, db) as project:
        yield project


@pytest.fixture(name="rtasks")
def rtasks_fixture(redis_project: RedisProject) -> Any:
    import rtasks as module

    return module
