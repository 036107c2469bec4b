"""Progress on the command line: a bar on a terminal, nothing extra when piped."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from celeriac.contrib.testing import start_worker

pytestmark = pytest.mark.integration

TASKS = """
import os
import time

from celeriac import Celery

app = Celery("progress", broker=os.environ["TEST_BROKER"], backend=os.environ["TEST_BROKER"])


@app.task(bind=True, name="progress.steps")
def steps(self, gate):
    self.update_state(state="PROGRESS", meta={"current": 1, "total": 4})
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    self.update_state(state="PROGRESS", meta={"current": 3, "total": 4})
    return "done"


@app.task(name="progress.add")
def add(x, y):
    return x + y
"""


class Project:
    def __init__(self, root: Path, module: ModuleType) -> None:
        self.root = root
        self.module = module
        self.env = {**os.environ, "PYTHONPATH": str(root), "TERM": "xterm"}
        self.env.pop("CELERIAC_PROGRESS", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celeriac", "-A", "tasks", *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS))
    broker = f"sqlite:///{tmp_path / 'progress.sqlite'}"
    monkeypatch.setenv("TEST_BROKER", broker)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tasks", None)
    import tasks

    project = Project(tmp_path, tasks)
    project.env["TEST_BROKER"] = broker
    try:
        with start_worker(tasks.app, pool="threads", concurrency=2, perform_ping_check=False):
            yield project
    finally:
        sys.modules.pop("tasks", None)
        tasks.app.close()


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in "".join(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} never shown; the terminal got {''.join(seen)!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                assert wanted in "".join(seen), f"{wanted!r} never shown: {''.join(seen)!r}"
                return
            seen.append(chunk.decode(errors="replace"))


def test_result_wait_draws_a_progress_bar_on_a_terminal(project: Project, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    sent = project.module.steps.delay(str(gate))
    main, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            project.argv("result", sent.id, "--wait", "--timeout", "30"),
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        seen: list[str] = []
        _read_until(main, "1/4", seen)  # the bar, while the task waits at its first step
        gate.touch()
        out, _ = proc.communicate(timeout=30)
        _read_until(main, "\x1b[2K", seen)
    finally:
        os.close(main)
    drawn = "".join(seen)
    assert "PROGRESS" in drawn and "] 1/4  25%" in drawn
    assert out == "SUCCESS: 'done'\n"  # stdout holds the answer only
    assert proc.returncode == 0


def test_result_wait_piped_prints_the_answer_only(project: Project, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    sent = project.module.steps.delay(str(gate))
    done = project.run("result", sent.id, "--wait", "--timeout", "30")
    assert (done.returncode, done.stdout, done.stderr) == (0, "SUCCESS: 'done'\n", "")


def test_call_wait_prints_the_id_then_the_result(project: Project) -> None:
    done = project.run("call", "progress.add", "--args", "[2, 2]", "--wait", "--timeout", "30")
    task_id, answer = done.stdout.splitlines()
    assert len(task_id) == 36 and answer == "SUCCESS: 4"
    assert done.stderr == ""
    forced = project.run(
        "call", "progress.add", "--args", "[1, 2]", "--wait", CELERIAC_PROGRESS="1"
    )
    assert forced.stdout.splitlines()[1] == "SUCCESS: 3"  # stdout as clean as when piped
    assert forced.returncode == 0


def test_purge_and_inspect_show_a_spinner_only_when_asked(project: Project) -> None:
    project.module.app.tasks["progress.add"].apply_async((1, 1), queue="idle")
    piped = project.run("purge", "-f", "-Q", "idle")
    assert (piped.stdout, piped.stderr) == ("Purged 1 message(s) from 1 queue(s).\n", "")
    forced = project.run("purge", "-f", "-Q", "idle", CELERIAC_PROGRESS="1")
    assert forced.stdout == "Purged 0 message(s) from 1 queue(s).\n"
    assert "\x1b[2K" in forced.stderr  # the spinner's line, erased at the end
    asked = project.run(
        "inspect", "ping", "--timeout", "1", "-d", "nobody@nowhere", CELERIAC_PROGRESS="1"
    )
    assert "waiting 1s for replies" in asked.stderr
    quiet = project.run("inspect", "ping", "--timeout", "0.3", "-d", "nobody@nowhere")
    assert "waiting" not in quiet.stderr and "\x1b" not in quiet.stderr + quiet.stdout


def test_multi_stop_shows_a_spinner_when_asked(tmp_path: Path) -> None:
    import threading

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reaper = threading.Thread(target=sleeper.wait)  # so the stopped process does not linger
    reaper.start()
    (tmp_path / "w1.pid").write_text(str(sleeper.pid))
    env = {**os.environ, "CELERIAC_PROGRESS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "multi", "stop", "w1", f"--pidfile={tmp_path}/%n.pid"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    reaper.join(10)
    assert done.stdout == "> w1: stopped\n"
    assert "\x1b[2K" in done.stderr


def test_the_bar_and_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from celeriac.cli.progress import bar, enabled

    assert bar(3, 8) == "[#########...............] 3/8  38%"
    assert bar(8, 8).startswith("[" + "#" * 24 + "]")

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("CELERIAC_PROGRESS", "0")
    assert enabled(Terminal()) is False  # type: ignore[arg-type]
    monkeypatch.delenv("CELERIAC_PROGRESS")
    monkeypatch.setenv("TERM", "xterm")
    assert enabled(Terminal()) is True  # type: ignore[arg-type]
    monkeypatch.setenv("TERM", "dumb")
    assert enabled(Terminal()) is False  # type: ignore[arg-type]
