"""``celeriac status``, ``inspect`` and ``control`` against real worker processes (SQLite)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from celeriac import states
from celeriac.exceptions import TaskRevokedError
from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration

NODE = f"w1@{socket.gethostname()}"


def ask(project: Project, *args: str) -> Any:
    """Run ``celeriac -A tasks <args> -d NODE --json`` and return the node's reply."""
    done = project.celeriac("-A", "tasks", *args, "-d", NODE, "--json", "-t", "10")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[NODE]


def test_status_and_inspect(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1")
    status = project.celeriac("-A", "tasks", "status", "-d", NODE)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"-> {NODE}: OK"
    assert status.stdout.rstrip().endswith("1 node online.")
    assert ask(project, "inspect", "ping") == {"ok": "pong"}
    assert "tasks.add" in ask(project, "inspect", "registered")
    running = tasks.sleepy.delay(30)
    [active] = eventually(lambda: ask(project, "inspect", "active"))
    assert (active["id"], active["name"], active["args"]) == (running.id, "tasks.sleepy", [30])
    stats = ask(project, "inspect", "stats")
    assert stats["pool"]["implementation"] == "celeriac.worker.prefork:PreforkPool"
    assert active["worker_pid"] in stats["pool"]["processes"]
    shown = project.celeriac("-A", "tasks", "inspect", "active", "-d", NODE)
    assert f"* tasks.sleepy[{running.id}] args=[30]" in shown.stdout
    replies = tasks.app.control.revoke(
        running.id, terminate=True, reply=True, timeout=10, destination=[NODE]
    )
    assert replies == [{NODE: {"ok": f"terminate: {running.id}"}}]


def test_rate_limit_then_a_rate_limited_run(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads", "-c", "2")
    reply = ask(project, "control", "rate_limit", "tasks.tracked", "1/h")
    assert reply == {"ok": "new rate limit set successfully"}
    first, second = tasks.tracked.delay(), tasks.tracked.delay()
    assert first.get(timeout=20) == first.id
    [waiting] = eventually(lambda: ask(project, "inspect", "reserved"))
    assert waiting["id"] == second.id and project.runs() == [first.id]
    assert ask(project, "control", "rate_limit", "tasks.tracked", "") == {
        "ok": "rate limit disabled successfully"
    }
    assert second.get(timeout=20) == second.id


def test_revoke_terminate_kills_the_prefork_child(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "1")
    running = tasks.sleepy.delay(60)
    [active] = eventually(lambda: ask(project, "inspect", "active"))
    child = active["worker_pid"]
    done = project.celeriac(
        "-A",
        "tasks",
        "control",
        "revoke",
        running.id,
        "--terminate",
        "--signal",
        "SIGKILL",
        "-d",
        NODE,
    )
    assert done.returncode == 0 and f"terminate: {running.id}" in done.stdout, done.stderr
    eventually(lambda: str(tasks.app.AsyncResult(running.id).result) == "terminated")
    assert tasks.app.AsyncResult(running.id).state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="terminated"):
        tasks.app.AsyncResult(running.id).get(timeout=5)
    assert tasks.whoami.delay().get(timeout=20) != child  # a new child took the slot
    assert running.id in ask(project, "inspect", "revoked")


def test_pool_grow_and_shutdown(project: Project, tasks: Any) -> None:
    worker = project.start_worker("-P", "prefork", "-c", "1")
    assert ask(project, "control", "pool_grow", "2") == {"ok": "pool will grow"}
    assert len(ask(project, "inspect", "stats")["pool"]["processes"]) == 3
    assert tasks.add.delay(1, 2).get(timeout=20) == 3
    assert ask(project, "control", "shutdown") == {"ok": "shutting down"}
    assert worker.wait(timeout=20) == 0
    assert "Got shutdown from remote" in project.log("w1")


def test_no_worker_means_no_replies(project: Project) -> None:
    done = project.celeriac("-A", "tasks", "status", "-t", "0.3")
    assert done.returncode == 69
    assert "No nodes replied within time constraint" in done.stderr
    listing = project.celeriac("-A", "tasks", "control", "--list")
    assert "rate_limit <task_name> <rate_limit" in listing.stdout
    bad = project.celeriac("-A", "tasks", "inspect", "frobnicate")
    assert bad.returncode == 2 and "Unknown inspect command 'frobnicate'" in bad.stderr
