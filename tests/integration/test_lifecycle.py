"""Worker lifecycle: warm shutdown, --purge, --detach with --pidfile, and `celeriac multi`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration


def test_warm_shutdown_finishes_running_and_returns_prefetched(
    project: Project, tasks: Any
) -> None:
    worker = project.start_worker("-P", "prefork", "-c", "1", "-O", "default", name="a")
    running = tasks.sleepy.delay(1.5)
    queued = [tasks.add.delay(i, i) for i in range(3)]
    eventually(lambda: project.log("a").count("received") >= 4)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert running.get(timeout=5) == "finished"  # the running task completed
    assert not any(r.ready() for r in queued)  # prefetched ones were not run ...
    project.start_worker("-P", "threads", name="b")  # ... but given back at once
    assert [r.get(timeout=20) for r in queued] == [0, 2, 4]


def test_purge_on_start(project: Project, tasks: Any) -> None:
    stale = [tasks.add.delay(1, 1) for _ in range(5)]
    project.start_worker("-P", "threads", "--purge", name="a")
    assert "Purged 5 message(s)" in project.log("a")
    fresh = tasks.add.delay(2, 2)
    assert fresh.get(timeout=20) == 4
    assert all(r.state == "PENDING" for r in stale)


def test_detach_with_pidfile(project: Project, tasks: Any) -> None:
    pidfile = project.root / "w.pid"
    started = project.celeriac(
        "-A",
        "tasks",
        "worker",
        "--detach",
        "-n",
        "d1@%h",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(project.root / "d1.log"),
        "-P",
        "threads",
        "-l",
        "info",
    )
    assert started.returncode == 0, started.stderr
    eventually(pidfile.exists)
    pid = int(pidfile.read_text())
    try:
        assert tasks.add.delay(3, 4).get(timeout=20) == 7
        again = project.celeriac(
            "-A", "tasks", "worker", "--pidfile", str(pidfile), "-P", "threads"
        )
        assert again.returncode != 0 and "running process" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    eventually(lambda: not pidfile.exists())
    assert "ready." in (project.root / "d1.log").read_text()


def test_multi_start_show_stop(project: Project, tasks: Any) -> None:
    shown = project.celeriac("multi", "show", "2", "-A", "tasks", "-P", "threads")
    assert shown.returncode == 0
    assert "celeriac1@%h" in shown.stdout and "celeriac2@%h" in shown.stdout
    started = project.celeriac("multi", "start", "n1", "n2", "-A", "tasks", "-P", "threads")
    assert started.returncode == 0, started.stdout + started.stderr
    pids = [Path(project.root / f"{n}.pid") for n in ("n1", "n2")]
    try:
        eventually(lambda: all(p.exists() for p in pids))
        assert [tasks.add.delay(i, 0).get(timeout=20) for i in range(4)] == [0, 1, 2, 3]
    finally:
        stopped = project.celeriac("multi", "stop", "n1", "n2", timeout=90)
    assert stopped.stdout.count("stopped") == 2, stopped.stdout
    assert not any(p.exists() for p in pids)


def test_second_signal_stops_at_once(project: Project, tasks: Any) -> None:
    worker = project.start_worker("-P", "prefork", "-c", "1", name="a")
    running = tasks.sleepy.delay(30)
    eventually(lambda: "received" in project.log("a"))
    worker.send_signal(signal.SIGTERM)  # warm: would wait 30 s for the task
    eventually(lambda: "Warm shutdown" in project.log("a"))
    worker.send_signal(signal.SIGTERM)  # cold: now
    assert worker.wait(timeout=10) != 0
    assert "Cold shutdown" in project.log("a")
    assert not running.ready()


def test_disable_prefetch_overrides_default_scheduling(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1", "-O", "default", "--disable-prefetch")
    tasks.sleepy.delay(1.5)
    waiting = [tasks.add.delay(i, 1) for i in range(3)]
    time.sleep(0.5)
    assert project.log("w1").count("received") == 1  # only what the one slot runs
    assert [r.get(timeout=20) for r in waiting] == [1, 2, 3]
