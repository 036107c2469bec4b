"""The gevent pool (``-P gevent``) in real worker subprocesses, on the SQLite broker.

Tasks run as greenlets of one process: sleeps overlap, limits and ``revoke(terminate=True)``
reach the task's greenlet, a warm stop waits for running greenlets. gevent is a dev
dependency: a missing gevent skips these tests locally and fails them in CI.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from celeriac import states
from celeriac.exceptions import TaskRevokedError, TimeLimitExceeded
from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration

# Appended to the project's tasks.py: tasks that show they ran side by side in one process.
GREEN_TASKS = '''

_running = 0


@app.task
def overlapping(seconds):
    """Sleep; return how many of these ran in this process when this one started."""
    global _running
    _running += 1
    try:
        seen = _running
        time.sleep(seconds)
    finally:
        _running -= 1
    return [seen, os.getpid()]


@app.task(time_limit=0.5)
def stubborn(seconds):
    """Swallows every Exception; the hard limit still ends it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except Exception:
            _record("stubborn swallowed an Exception")
    return "finished"


@app.task
def patched():
    from gevent import monkey

    return [monkey.is_module_patched(name) for name in ("socket", "threading", "time")]
'''


def require_gevent() -> None:
    """Skip (locally) or fail (in CI, where the dev extra installs it) without gevent."""
    try:
        import gevent  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail('gevent is required in CI (pip install -e ".[dev]")')
        pytest.skip('gevent is not installed (pip install "celeriac[gevent]")')


@pytest.fixture
def gtasks(project: Project) -> Any:
    require_gevent()
    path = project.root / "tasks.py"
    path.write_text(path.read_text() + GREEN_TASKS)
    import tasks as module

    return module


def test_fifty_sleeping_tasks_run_side_by_side(project: Project, gtasks: Any) -> None:
    results = [gtasks.overlapping.delay(1.0) for _ in range(50)]  # waiting before the worker
    proc = project.start_worker("-P", "gevent", "-c", "50")
    done = [result.get(timeout=30) for result in results]
    assert {pid for _, pid in done} == {proc.pid}  # one process: greenlets, not children
    # Run one after another, every task would see only itself running.
    assert max(seen for seen, _ in done) >= 40
    assert all(result.state == states.SUCCESS for result in results)
    assert "concurrency: 50 (gevent)" in project.log("w1")


@pytest.mark.parametrize("prefetch", ["fair", "default"])  # default: jobs queue in the pool
def test_concurrency_caps_the_greenlets(project: Project, gtasks: Any, prefetch: str) -> None:
    results = [gtasks.overlapping.delay(0.5) for _ in range(12)]
    project.start_worker("-P", "gevent", "-c", "3", "-O", prefetch)
    assert max(result.get(timeout=30)[0] for result in results) == 3


def test_time_limits(project: Project, gtasks: Any) -> None:
    project.start_worker("-P", "gevent", "-c", "4")
    soft = gtasks.soft_limited.delay(5)
    hard = gtasks.hard_limited.delay(5)
    stubborn = gtasks.stubborn.delay(5)
    beside = gtasks.overlapping.delay(1.5)  # another greenlet, untouched by the limits
    quick = gtasks.hard_limited.delay(0.05)
    assert soft.get(timeout=20) == "cleaned up"  # the task caught it and cleaned up
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=20)
    with pytest.raises(TimeLimitExceeded):
        stubborn.get(timeout=20)  # except Exception does not catch the hard limit
    assert "stubborn swallowed an Exception" not in " ".join(project.runs())
    assert quick.get(timeout=20) == "finished"
    assert beside.get(timeout=20)[1] > 0
    assert gtasks.add.delay(1, 1).get(timeout=20) == 2  # the worker goes on
    assert "Hard time limit (0.5s) exceeded" in project.log("w1")


def test_revoke_terminate_kills_the_greenlet(project: Project, gtasks: Any) -> None:
    project.start_worker("-P", "gevent", "-c", "4")
    running = gtasks.tracked.delay(30)
    beside = gtasks.overlapping.delay(1)
    eventually(lambda: running.id in project.runs(), "the task to start")
    node = f"w1@{socket.gethostname()}"
    replies = gtasks.app.control.revoke(
        running.id, terminate=True, reply=True, timeout=10, destination=[node]
    )
    assert replies == [{node: {"ok": f"terminate: {running.id}"}}]
    with pytest.raises(TaskRevokedError):
        running.get(timeout=20)
    assert running.state == states.REVOKED
    assert beside.get(timeout=20)[1] > 0
    assert gtasks.add.delay(2, 2).get(timeout=20) == 4


def test_warm_shutdown_waits_for_running_greenlets(project: Project, gtasks: Any) -> None:
    proc = project.start_worker("-P", "gevent", "-c", "10")
    running = [gtasks.tracked.delay(1.0) for _ in range(5)]
    eventually(lambda: len(project.runs()) == 5, "five tasks to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert [result.get(timeout=10) for result in running] == [r.id for r in running]


def test_the_process_is_patched_before_the_tasks_load(project: Project, gtasks: Any) -> None:
    project.start_worker("--pool=gevent", "-c", "2")
    assert gtasks.patched.delay().get(timeout=20) == [True, True, True]


def test_the_console_script_patches_too(project: Project, gtasks: Any) -> None:
    # The console script calls celeriac.cli.main:main, not celeriac.__main__.
    script = "import sys; from celeriac.cli.main import main; sys.argv[0] = 'celeriac'; main()"
    argv = [
        sys.executable,
        "-c",
        script,
        "-A",
        "tasks",
        "worker",
        "-Pgevent",
        "-n",
        "w1@%h",
        "-l",
        "info",
        "--without-mingle",
    ]
    project.start(argv, "w1")  # returns once its log says "ready."
    assert gtasks.patched.delay().get(timeout=20) == [True, True, True]


def test_worker_pool_setting_alone_is_refused_naming_the_flag(
    project: Project, gtasks: Any
) -> None:
    (project.root / "gsettings.py").write_text(
        "from tasks import app\n\napp.conf.worker_pool = 'gevent'\n"
    )
    done = project.celeriac("-A", "gsettings", "worker", "--without-mingle")
    assert done.returncode != 0
    assert "start the worker with -P gevent" in done.stderr


def test_missing_gevent_names_the_extra(project: Project, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "gevent").mkdir(parents=True)
    (hidden / "gevent" / "__init__.py").write_text("raise ImportError('no gevent here')\n")
    project.env["PYTHONPATH"] = f"{hidden}{os.pathsep}{project.env['PYTHONPATH']}"
    done = project.celeriac("-A", "tasks", "worker", "-P", "gevent")
    assert done.returncode != 0
    assert 'pip install "celeriac[gevent]"' in done.stderr
