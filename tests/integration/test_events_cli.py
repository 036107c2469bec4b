"""``celeriac events`` watching real worker processes (SQLite)."""

from __future__ import annotations

import json
import signal
import socket
import sys
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration

NODE = f"w1@{socket.gethostname()}"


class Watcher:
    """``celeriac events <args>`` in the background, its output in ``events.log``."""

    def __init__(self, project: Project, *args: str) -> None:
        self.project = project
        argv = [sys.executable, "-m", "celeriac", "-A", "tasks", "events", *args]
        self.proc = project.start(argv, "events", ready=None, new_session=False)

    def text(self) -> str:
        return self.project.log("events")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=10)


def events_of(watcher: Watcher) -> list[dict[str, Any]]:
    lines = [line for line in watcher.text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_dump_shows_worker_and_task_events(project: Project, tasks: Any) -> None:
    watcher = Watcher(project, "--dump", "--json")
    try:
        project.wait_for_log(
            "events", "-> events: starting capture...", watcher.proc, timeout=20
        )  # (on stderr with --json)
        worker = project.start_worker("-P", "prefork", "-c", "1", "-E")
        assert tasks.add.delay(2, 2).get(timeout=20) == 4
        tasks.app.control.heartbeat()
        project.wait_for_log("events", '"worker-heartbeat"', watcher.proc, timeout=20)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        project.wait_for_log("events", '"worker-offline"', watcher.proc, timeout=20)
    finally:
        assert watcher.stop() == 0
    found = events_of(watcher)
    by_type = {event["type"]: event for event in found}
    assert {
        "worker-online",
        "task-received",
        "task-started",
        "task-succeeded",
        "worker-heartbeat",
        "worker-offline",
    } <= set(by_type)
    received, succeeded = by_type["task-received"], by_type["task-succeeded"]
    for event in found:
        assert {"hostname", "utcoffset", "pid", "clock", "timestamp", "type"} <= set(event)
        assert event["hostname"] == NODE and event["pid"] == worker.pid
    assert received["name"] == "tasks.add" and received["args"] == "(2, 2)"
    assert {"uuid", "kwargs", "root_id", "parent_id", "retries", "eta", "expires"} <= set(received)
    assert succeeded["uuid"] == received["uuid"] and succeeded["result"] == "4"
    assert succeeded["runtime"] >= 0
    heartbeat = by_type["worker-heartbeat"]
    assert {"freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"} <= set(
        heartbeat
    )
    assert by_type["worker-offline"]["processed"] == 1


def test_text_dump_and_live_view(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads", "-E")
    watcher = Watcher(project, "--dump")
    try:
        project.wait_for_log("events", "-> events: starting capture...", watcher.proc, timeout=20)
        result = tasks.add.delay(20, 22)
        project.wait_for_log("events", "task-succeeded", watcher.proc, timeout=20)
    finally:
        watcher.stop()
    line = next(line for line in watcher.text().splitlines() if "task-succeeded" in line)
    assert line.startswith(f"{NODE} [") and "result=42" in line and f"uuid={result.id}" in line
    live = project.celeriac("-A", "tasks", "events", "--duration", "2", "-F", "0.5")
    assert live.returncode == 0, live.stderr
    frame = live.stdout.split("celeriac events:")[-1]
    assert NODE in frame and "ONLINE" in frame  # the receiver asked for a heartbeat
