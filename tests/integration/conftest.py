"""Real worker subprocesses started through the CLI, on a SQLite file of the test's own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


class Project:
    """A folder with a ``tasks.py``, a SQLite file, and the workers started on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "celeriac.sqlite"
        self.runlog = root / "runs.log"
        (root / "tasks.py").write_text(textwrap.dedent(TASKS))
        self.env = {
            **os.environ,
            "TEST_BROKER": f"sqlite:///{self.db}",
            "TEST_RUNLOG": str(self.runlog),
            "PYTHONPATH": str(root),
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def celeriac(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "celeriac", *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start_worker(
        self, *args: str, name: str = "w1", mingle: bool = False
    ) -> subprocess.Popen[bytes]:
        """A CLI worker; without startup mingle (a 1 s wait for neighbours) unless asked."""
        quiet = () if mingle else ("--without-mingle",)
        with open(self.root / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, "-m", "celeriac", "-A", "tasks", "worker", "-l", "info",
                 "-n", f"{name}@%h", *quiet, *args],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.workers.append(proc)
        self.wait_for_log(name, "ready.", proc)
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(
        self, name: str, text: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name):
                return
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{self.log(name)}")
            time.sleep(0.05)
        raise AssertionError(
            f"{text!r} not in the log of {name} after {timeout}s:\n{self.log(name)}"
        )

    def runs(self) -> list[str]:
        if not self.runlog.exists():
            return []
        return [line.split()[0] for line in self.runlog.read_text().splitlines() if line]

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children (its whole process group)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in self.workers:  # no pool child may outlive its test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    proj = Project(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TEST_BROKER", proj.env["TEST_BROKER"])
    monkeypatch.setenv("TEST_RUNLOG", proj.env["TEST_RUNLOG"])
    sys.modules.pop("tasks", None)
    try:
        yield proj
    finally:
        proj.stop_all()
        mod = sys.modules.pop("tasks", None)
        if mod is not None:
            mod.app.close()


@pytest.fixture
def tasks(project: Project):  # type: ignore[no-untyped-def]
    import tasks as module

    return module
