"""The events a worker sends (in this process, ``memory://``), and switching them remotely."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import states
from celeriac.events.state import State
from celeriac.transports.base import Subscription
from tests.support.control_support import NODE, Project
from tests.support.polling import eventually


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project()
    yield project
    project.close()


class Tap:
    """Every event broadcast from now on, as (routing key, event) pairs."""

    def __init__(self, project: Project) -> None:
        self.sub: Subscription = project.app.transport.subscribe("celeryev", ["#"])
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def read(self) -> list[tuple[str, dict[str, Any]]]:
        for broadcast in self.sub.receive(0.05):
            body = json.loads(broadcast.message.body)
            for event in body if isinstance(body, list) else [body]:
                self.seen.append((broadcast.routing_key, event))
        return self.seen

    def types(self) -> list[str]:
        return [event["type"] for _, event in self.read()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for _, event in self.read() if event["type"] == kind]


@pytest.fixture
def tap(project: Project) -> Iterator[Tap]:
    tap = Tap(project)
    yield tap
    tap.sub.close()


def test_task_events_in_celerys_format(project: Project, tap: Tap) -> None:
    add, fail = project.tasks["add"], project.tasks["fail"]
    with project.worker(task_events=True):
        result = add.delay(2, 2)
        assert result.get(timeout=10) == 4
        failed = fail.delay()
        failed.get(timeout=10, propagate=False)
        eventually(lambda: tap.of("task-failed"))
    types = tap.types()
    assert types[0] == "worker-online" and types[-1] == "worker-offline"
    [received] = [e for e in tap.of("task-received") if e["uuid"] == result.id]
    assert received["name"] == "t.add" and received["args"] == "(2, 2)"
    assert received["kwargs"] == "{}" and received["retries"] == 0
    assert received["root_id"] == result.id and received["parent_id"] is None
    assert {"eta", "expires", "hostname", "utcoffset", "pid", "clock", "timestamp"} <= set(received)
    [succeeded] = [e for e in tap.of("task-succeeded") if e["uuid"] == result.id]
    assert (
        succeeded["result"] == "4" and succeeded["runtime"] >= 0 and succeeded["hostname"] == NODE
    )
    [started] = [e for e in tap.of("task-started") if e["uuid"] == result.id]
    assert received["clock"] < started["clock"] < succeeded["clock"]
    [failure] = tap.of("task-failed")
    assert failure["exception"] == "KeyError('missing')" and "Traceback" in failure["traceback"]
    routing = {key for key, event in tap.read() if event["type"].startswith("task-")}
    assert routing == {"task.multi"}  # task events travel batched
    assert {key for key, e in tap.read() if e["type"] == "worker-online"} == {"worker.online"}


def test_without_task_events_only_worker_events_go_out(project: Project, tap: Tap) -> None:
    with project.worker():
        assert project.tasks["add"].delay(1, 1).get(timeout=10) == 2
    assert tap.types() == ["worker-online", "worker-offline"]
    online, offline = tap.of("worker-online")[0], tap.of("worker-offline")[0]
    assert online["freq"] == 2.0 and online["sw_ident"] == "py-celeriac"
    assert len(online["loadavg"]) == 3 and offline["processed"] == 1


def test_enable_and_disable_events_remotely(project: Project, tap: Tap) -> None:
    add = project.tasks["add"]
    with project.worker():
        assert project.ask("enable_events") == {"ok": "task events enabled"}
        assert project.ask("enable_events") == {"ok": "task events already enabled"}
        on = add.delay(1, 2)
        on.get(timeout=10)
        eventually(lambda: tap.of("task-succeeded"))
        assert project.ask("disable_events") == {"ok": "task events disabled"}
        add.delay(3, 4).get(timeout=10)
    assert [e["uuid"] for e in tap.of("task-succeeded")] == [on.id]


def test_heartbeat_on_request_and_without_heartbeat(project: Project, tap: Tap) -> None:
    with project.worker():
        project.ask("heartbeat")
        [beat] = eventually(lambda: tap.of("worker-heartbeat"))
    assert (beat["active"], beat["processed"], beat["freq"]) == (0, 0, 2.0)
    eventually(lambda: tap.of("worker-offline"))
    tap.seen.clear()
    with project.worker(heartbeat=False, task_events=True):
        project.tasks["add"].delay(1, 1).get(timeout=10)
        eventually(lambda: tap.of("task-succeeded"))
    assert not [t for t in tap.types() if t.startswith("worker-")]


def test_revoked_and_terminated_tasks_send_task_revoked(project: Project, tap: Tap) -> None:
    hold = project.tasks["hold"]
    with project.worker(task_events=True):
        running = hold.delay("x")
        eventually(lambda: project.ran == ["x"])
        project.app.control.revoke(running.id, terminate=True, destination=[NODE], reply=True)
        [revoked] = eventually(lambda: tap.of("task-revoked"))
    assert revoked["uuid"] == running.id and revoked["terminated"] is True
    assert revoked["signum"] == 15 and revoked["expired"] is False


def test_a_state_folds_a_workers_events(project: Project, tap: Tap) -> None:
    state = State()
    with project.worker(task_events=True):
        result = project.tasks["add"].delay(5, 5)
        result.get(timeout=10)
        eventually(lambda: tap.of("task-succeeded"))
        for _, event in tap.read():
            state.event(dict(event))
        assert [w.hostname for w in state.alive_workers()] == [NODE]
    task = state.tasks[result.id]
    assert (task.state, task.name, task.result, task.args) == (
        states.SUCCESS,
        "t.add",
        "10",
        "(5, 5)",
    )
    assert task.worker is not None and task.worker.hostname == NODE
    assert task.received and task.started and task.succeeded and task.runtime is not None
