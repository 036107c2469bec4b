"""Celery 5.7's monitoring code reads what a Celeriac worker says (no network service).

Celery's ``EventReceiver`` and ``State`` fold the events a Celeriac worker emits; Celery's
``Inspect`` and CLI formatting accept Celeriac's control replies; kombu's pidbox ``Node``
dispatches Celeriac's control requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import celery
import pytest
from celery.app.control import Inspect as CeleryInspect
from kombu import Queue as KombuQueue
from kombu.pidbox import Mailbox, Node

from celeriac.transports.base import Subscription
from tests.support.control_support import NODE, Project
from tests.support.polling import eventually

pytestmark = pytest.mark.compat


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project()
    yield project
    project.close()


@pytest.fixture
def celery_app() -> Iterator[celery.Celery]:
    app = celery.Celery("peer", broker="memory://", backend="cache+memory://", set_as_current=False)
    yield app
    app.close()


def bodies(sub: Subscription, until: str, timeout: float = 10) -> list[Any]:
    """Decoded message bodies off ``sub`` until one holds an event of type ``until``."""
    found: list[Any] = []

    def more() -> bool:
        for broadcast in sub.receive(0.05):
            found.append(json.loads(broadcast.message.body))
        flat = [e for b in found for e in (b if isinstance(b, list) else [b])]
        return any(event["type"] == until for event in flat)

    eventually(more, timeout=timeout)
    return found


def test_celerys_state_folds_celeriac_events(project: Project, celery_app: celery.Celery) -> None:
    sub = project.app.transport.subscribe("celeryev", ["#"])
    try:
        with project.worker(task_events=True):
            ok = project.tasks["add"].delay(2, 2)
            ok.get(timeout=10)
            failed = project.tasks["fail"].delay()
            failed.get(timeout=10, propagate=False)
            project.ask("heartbeat")
            captured = bodies(sub, "task-failed")
        captured += bodies(sub, "worker-offline")
    finally:
        sub.close()
    state = celery_app.events.State()
    alive: list[bool] = []
    receiver = celery_app.events.Receiver(None, handlers={"*": state.event})
    for body in captured:  # what Celery's receiver does with each message's body
        receiver._receive(body, None)
        alive.append(NODE in {w.hostname for w in state.alive_workers()})
    task = state.tasks[ok.id]
    assert (task.state, task.name, task.args, task.result) == ("SUCCESS", "t.add", "(2, 2)", "4")
    assert task.worker.hostname == NODE and task.runtime >= 0 and task.received and task.started
    assert state.tasks[failed.id].state == "FAILURE"
    assert state.tasks[failed.id].exception == "KeyError('missing')"
    assert list(state.tasks_by_type["t.add"]) == [task]
    worker = state.workers[NODE]
    assert worker.sw_ident == "py-celeriac" and worker.freq == 2.0 and worker.processed == 2
    assert alive[0] and not alive[-1]  # online, then offline


def test_celerys_inspect_accepts_celeriac_replies(
    project: Project, celery_app: celery.Celery
) -> None:
    hold = project.tasks["hold"]
    with project.worker():
        running = hold.delay("k")
        eventually(lambda: project.ran == ["k"])
        control = project.app.control

        def replies(command: str, **arguments: Any) -> Any:
            got = control.broadcast(
                command, arguments=arguments, reply=True, timeout=5, destination=[NODE]
            )
            return CeleryInspect(app=celery_app)._prepare(got)[NODE]

        assert replies("ping") == {"ok": "pong"}
        [active] = replies("active")
        # the keys of Celery's Request.info()
        assert {
            "id",
            "name",
            "args",
            "kwargs",
            "type",
            "hostname",
            "time_start",
            "acknowledged",
            "delivery_info",
            "worker_pid",
        } == set(active)
        assert replies("query_task", ids=[running.id])[running.id][0] == "active"
        stats = replies("stats")
        assert {
            "total",
            "pid",
            "clock",
            "uptime",
            "pool",
            "broker",
            "prefetch_count",
            "rusage",
        } <= set(stats)
        assert isinstance(stats["pool"]["max-concurrency"], int)
        [queue] = replies("active_queues")
        kombu_queue = KombuQueue("celery").as_dict(recurse=True)
        assert set(queue) == set(kombu_queue)
        assert set(queue["exchange"]) == set(kombu_queue["exchange"])
        assert all(isinstance(name, str) for name in replies("registered"))
        project.gate("k").set()


def test_celerys_cli_formats_celeriac_replies() -> None:
    from celery.bin.base import CLIContext

    context = CLIContext(app=None, no_color=True, workdir=None)
    assert context.pretty({"ok": "pong"}) == ("OK", "    pong")
    assert context.pretty({"error": "unknown task"})[0] == "ERROR"


def test_kombus_pidbox_node_dispatches_celeriac_requests(project: Project) -> None:
    sub = project.app.transport.subscribe("celery.pidbox", ["#"])
    try:
        project.app.control.rate_limit("t.add", "5/s", destination=[NODE])
        project.app.control.broadcast("ping", pattern="w1@*", matcher="glob")
        messages = [b.message for b in sub.receive(1.0)]
    finally:
        sub.close()
    calls: list[tuple[str, dict[str, Any]]] = []
    node = Node(
        NODE,
        mailbox=Mailbox("celery", type="fanout"),
        handlers={
            "rate_limit": lambda state, **kw: calls.append(("rate_limit", kw)),
            "ping": lambda state, **kw: calls.append(("ping", kw)),
        },
    )
    for message in messages:
        assert set(message.headers) == {"clock", "expires"}
        node.handle_message(json.loads(message.body), None)
    assert calls == [("rate_limit", {"task_name": "t.add", "rate_limit": "5/s"}), ("ping", {})]
