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
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import redis_support

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

CELERY_WORKER_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


class RedisProject:
    """A folder with both apps, the workers started on it, and its key prefix."""

    def __init__(self, root: Path, url: str, db: int, port: int = redis_support.PORT) -> None:
        self.root = root
        self.url = url
        self.db = db
        self.port = port
        self.prefix = redis_support.unique_prefix()
        self.runlog = root / "runs.log"
        (root / "rtasks.py").write_text(textwrap.dedent(RTASKS))
        (root / "celtasks.py").write_text(textwrap.dedent(CELTASKS))
        self.env = {
            **os.environ,
            "TEST_REDIS_URL": url,
            "TEST_PREFIX": self.prefix,
            "TEST_RUNLOG": str(self.runlog),
            "PYTHONPATH": str(root),
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, argv: list[str], name: str, ready: str, **env: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv, cwd=self.root, env={**self.env, **env}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.workers.append(proc)
        self.wait_for_log(name, ready, proc)
        return proc

    def celeriac_worker(
        self, *args: str, name: str = "w1", mingle: bool = False, **env: str
    ) -> subprocess.Popen[bytes]:
        """A Celeriac worker; without startup mingle (a 1 s wait) unless asked."""
        argv = [sys.executable, "-m", "celeriac", "-A", "rtasks", "worker", "-l", "info"]
        quiet = [] if mingle else ["--without-mingle"]
        return self._start([*argv, "-n", f"{name}@%h", *quiet, *args], name, "ready.", **env)

    def celery_worker(
        self, *args: str, name: str = "c1", mingle: bool = False, pool: str = "prefork"
    ) -> subprocess.Popen[bytes]:
        """A Celery 5.7 worker (2 processes unless ``pool`` says otherwise), without gossip
        and heartbeats, and without mingle unless asked."""
        flags = [f for f in CELERY_WORKER_FLAGS if not (mingle and f == "--without-mingle")]
        argv = [sys.executable, "-m", "celery", "-A", "celtasks", "worker", "-l", "info"]
        argv += ["-P", pool, *(["-c", "2"] if pool == "prefork" else []), *flags]
        return self._start([*argv, "-n", f"{name}@%h", *args], name, "ready.")

    def run_script(self, code: str, timeout: float = 60) -> Any:
        """Run ``code`` in a fresh interpreter in the project; its stdout parsed as JSON."""
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def celeriac(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "celeriac", "-A", "rtasks", *args], cwd=self.root,
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(
        self, name: str, text: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name):
                return
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{self.log(name)[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log of {name}:\n{self.log(name)[-3000:]}")

    def runs(self) -> list[tuple[str, str]]:
        """(task id, kind) of every run so far, in order."""
        if not self.runlog.exists():
            return []
        lines = self.runlog.read_text().splitlines()
        return [(parts[0], parts[1]) for parts in (line.split() for line in lines) if parts]

    def wait_for_runs(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.runs()) < count:
            assert time.monotonic() < deadline, f"only {len(self.runs())} of {count} runs"
            time.sleep(0.02)

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children (its whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9(proc)
        for proc in self.workers:  # no pool child may outlive its test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


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
