"""Remote control, events and the dashboard against real Celeriac workers on Redis.

The same checks as ``test_control_cli``, ``test_events_cli`` and the dashboard's API tests,
run on the Redis transport (kombu's Pub/Sub broadcast and event channels) instead of the
embedded SQLite broker. Each test has database ``MONITORING_DB`` of the machine's Redis under a
key prefix of its own (``RedisProject``), deleted when it ends.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import states
from celeriac.exceptions import TaskRevokedError
from tests.support import redis_support
from tests.support.polling import eventually
from tests.support.redis_project import RedisProject, open_project

pytestmark = pytest.mark.integration

MONITORING_DB = 15
NODE = f"w1@{socket.gethostname()}"


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisProject]:
    redis_support.require_redis()
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{MONITORING_DB}"
    with open_project(tmp_path, monkeypatch, url, MONITORING_DB) as project:
        yield project


@pytest.fixture(name="rtasks")
def rtasks_fixture(project: RedisProject) -> Any:
    import rtasks as module  # type: ignore[import-not-found]

    return module


def ask(project: RedisProject, *args: str) -> Any:
    """Run ``celeriac -A rtasks <args> -d NODE --json`` and return the node's reply."""
    done = project.celeriac(*args, "-d", NODE, "--json", "-t", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[NODE]


def test_status_inspect_and_revoke_terminate(project: RedisProject, rtasks: Any) -> None:
    project.celeriac_worker("-P", "prefork", "-c", "1")
    status = project.celeriac("status", "-d", NODE, "-t", "5")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"-> {NODE}: OK"
    assert status.stdout.rstrip().endswith("1 node online.")
    assert ask(project, "inspect", "ping") == {"ok": "pong"}
    assert {"interop.add", "interop.record"} <= set(ask(project, "inspect", "registered"))
    running = rtasks.record.delay(60)
    [active] = eventually(lambda: ask(project, "inspect", "active"))
    assert (active["id"], active["name"], active["args"]) == (running.id, "interop.record", [60])
    stats = ask(project, "inspect", "stats")
    assert stats["pool"]["implementation"] == "celeriac.worker.prefork:PreforkPool"
    child = active["worker_pid"]
    assert child in stats["pool"]["processes"]
    replies = rtasks.app.control.revoke(
        running.id, terminate=True, signal="SIGKILL", reply=True, timeout=5, destination=[NODE]
    )
    assert replies == [{NODE: {"ok": f"terminate: {running.id}"}}]
    # The client stores REVOKED "revoked" at once; the worker "terminated" once the child died.
    eventually(lambda: str(rtasks.app.AsyncResult(running.id).result) == "terminated")
    assert rtasks.app.AsyncResult(running.id).state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=5)
    assert running.id in ask(project, "inspect", "revoked")
    # A new child took the slot of the one that was killed, and it runs tasks.
    assert rtasks.add.delay(1, 2).get(timeout=20) == 3
    assert child not in ask(project, "inspect", "stats")["pool"]["processes"]


def test_a_revoke_made_while_no_worker_runs_is_honoured_later(
    project: RedisProject, rtasks: Any
) -> None:
    doomed = rtasks.record.delay()
    doomed.revoke()  # no worker hears the broadcast: the revocation log carries it
    assert doomed.state == states.REVOKED
    project.celeriac_worker("-P", "threads", "-c", "2")
    fine = rtasks.record.delay()
    assert fine.get(timeout=20) == fine.id
    assert [task_id for task_id, _ in project.runs()] == [fine.id]
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=5)


def test_rate_limit_then_shutdown(project: RedisProject, rtasks: Any) -> None:
    worker = project.celeriac_worker("-P", "prefork", "-c", "1", "--prefetch-multiplier", "2")
    reply = ask(project, "control", "rate_limit", "interop.record", "1/h")
    assert reply == {"ok": "new rate limit set successfully"}
    first, second = rtasks.record.delay(), rtasks.record.delay()
    assert first.get(timeout=20) == first.id
    [waiting] = eventually(lambda: ask(project, "inspect", "reserved"))
    assert waiting["id"] == second.id
    assert [task_id for task_id, _ in project.runs()] == [first.id]
    assert ask(project, "control", "rate_limit", "interop.record", "") == {
        "ok": "rate limit disabled successfully"
    }
    assert second.get(timeout=20) == second.id
    assert ask(project, "control", "shutdown") == {"ok": "shutting down"}
    assert worker.wait(timeout=20) == 0
    assert "Got shutdown from remote" in project.log("w1")


def test_pool_grow_then_shutdown(project: RedisProject, rtasks: Any) -> None:
    worker = project.celeriac_worker("-P", "prefork", "-c", "1")
    assert ask(project, "control", "pool_grow", "2") == {"ok": "pool will grow"}
    assert len(ask(project, "inspect", "stats")["pool"]["processes"]) == 3
    assert rtasks.add.delay(1, 2).get(timeout=20) == 3
    assert ask(project, "control", "shutdown") == {"ok": "shutting down"}
    # Children forked by pool_grow must not close the parent's connections when they exit.
    assert worker.wait(timeout=20) == 0
    assert "Got shutdown from remote" in project.log("w1")


def test_events_dump_json(project: RedisProject, rtasks: Any) -> None:
    worker = project.celeriac_worker("-P", "prefork", "-c", "1", "-E")
    out_path = project.root / "events.log"
    argv = [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "rtasks",
        "events",
        "--dump",
        "--json",
        "--limit",
        "6",
        "--duration",
        "20",
    ]
    watcher = project.start(argv, "events", ready=None, new_session=False)
    try:
        eventually(lambda: "-> events: starting capture..." in out_path.read_text())
        assert rtasks.add.delay(2, 2).get(timeout=20) == 4
        rtasks.app.control.heartbeat()
        assert watcher.wait(timeout=25) == 0  # stopped by --limit (or, failing, --duration)
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(timeout=10)
    lines = [line for line in out_path.read_text().splitlines() if line.startswith("{")]
    found = [json.loads(line) for line in lines]
    by_type = {event["type"]: event for event in found}
    assert {"task-received", "task-started", "task-succeeded", "worker-heartbeat"} <= set(
        by_type
    ), [event["type"] for event in found]
    for event in found:
        assert {"hostname", "utcoffset", "pid", "clock", "timestamp", "type"} <= set(event)
        assert event["hostname"] == NODE and event["pid"] == worker.pid
    received, succeeded = by_type["task-received"], by_type["task-succeeded"]
    assert received["name"] == "interop.add" and received["args"] == "(2, 2)"
    assert {"uuid", "kwargs", "root_id", "parent_id", "retries", "eta", "expires"} <= set(received)
    assert by_type["task-started"]["uuid"] == received["uuid"]
    assert succeeded["uuid"] == received["uuid"] and succeeded["result"] == "4"
    assert succeeded["runtime"] >= 0
    heartbeat = by_type["worker-heartbeat"]
    assert {"freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"} <= set(
        heartbeat
    )


def _start_dashboard(project: RedisProject) -> tuple[subprocess.Popen[bytes], str]:
    port = redis_support.free_port()
    log_path = project.root / "dashboard.log"
    argv = [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "rtasks",
        "dashboard",
        "--port",
        str(port),
        "--db",
        str(project.root / "dash.sqlite"),
    ]
    proc = project.start(argv, "dashboard", ready=None)  # stopped with the workers
    eventually(lambda: proc.poll() is not None or redis_support.port_open(port))
    assert proc.poll() is None, log_path.read_text()
    return proc, f"http://127.0.0.1:{port}"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def test_dashboard_api_fed_by_a_redis_worker(project: RedisProject, rtasks: Any) -> None:
    _, base = _start_dashboard(project)
    project.celeriac_worker("-P", "threads", "-c", "2", "-E")
    result = rtasks.add.delay(20, 22)
    assert result.get(timeout=20) == 42

    def succeeded() -> bool:
        tasks = json.loads(_get(f"{base}/api/tasks?limit=50"))["tasks"]
        return any(t["uuid"] == result.id and t["state"] == "SUCCESS" for t in tasks)

    eventually(succeeded)
    task = json.loads(_get(f"{base}/api/tasks/{result.id}"))
    assert task["name"] == "interop.add" and task["state"] == "SUCCESS"

    def worker_online() -> list[Any]:
        workers = json.loads(_get(f"{base}/api/workers"))["workers"]
        return [w for w in workers if w["hostname"] == NODE and w["online"]]

    eventually(worker_online)
    assert "interop.add" in _get(f"{base}/metrics").decode()
