"""``app.control.inspect()`` against a worker running in this process on ``memory://``."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator

import pytest

from celeriac import states
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import encode_task
from celeriac.transports.base import Outgoing
from tests.support.control_support import NODE, Project
from tests.support.polling import eventually


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project()
    yield project
    project.close()


def test_ping_reaches_the_named_or_matching_nodes_only(project: Project) -> None:
    control = project.app.control
    with project.worker():
        assert control.ping(destination=[NODE], timeout=5) == [{NODE: {"ok": "pong"}}]
        assert control.inspect(destination=NODE, timeout=5).ping() == {"ok": "pong"}
        assert control.ping(destination=["other@test"], timeout=0.2) == []
        glob = control.inspect(timeout=0.5, pattern="w1@*", limit=1).ping()
        assert glob == {NODE: {"ok": "pong"}}
        assert control.inspect(timeout=0.2, pattern="^w2", matcher="pcre").ping() is None
        assert control.inspect(timeout=0.5, pattern="^w1", matcher="pcre", limit=1).ping()


def test_stats_describe_the_worker(project: Project) -> None:
    with project.worker(concurrency=2) as worker:
        assert project.tasks["add"].delay(1, 1).get(timeout=10) == 2
        stats = project.app.control.inspect(destination=[NODE], timeout=5).stats()[NODE]
    assert stats["total"] == {"t.add": 1}
    assert stats["pid"] == os.getpid() and int(stats["clock"]) > 0 and stats["uptime"] >= 0
    assert stats["pool"]["max-concurrency"] == 2 and len(stats["pool"]["processes"]) == 2
    assert stats["pool"]["implementation"] == "celeriac.worker.pools:ThreadPool"
    assert stats["broker"]["transport"] == "memory"
    assert stats["prefetch_count"] == worker.prefetch_limit
    assert {"utime", "stime", "maxrss"} <= set(stats["rusage"])


def test_active_reserved_and_query_task(project: Project) -> None:
    hold = project.tasks["hold"]
    with project.worker(fair=False):  # deep prefetch: the second waits in the pool's queue
        running, waiting = hold.delay("a"), hold.delay("b")
        eventually(lambda: project.ran == ["a"])
        inspect = project.app.control.inspect(destination=NODE, timeout=5)
        [active] = inspect.active()
        assert (active["id"], active["name"], active["args"]) == (running.id, "t.hold", ["a"])
        assert active["acknowledged"] is True and active["worker_pid"] == os.getpid()
        assert active["hostname"] == NODE and active["time_start"] is not None
        assert active["delivery_info"]["routing_key"] == "celery"
        assert inspect.active(safe=True)[0]["args"] == "('a',)"
        [reserved] = inspect.reserved()
        assert reserved["id"] == waiting.id and reserved["time_start"] is None
        found = inspect.query_task(running.id, waiting.id, "unknown")
        assert {k: v[0] for k, v in found.items()} == {running.id: "active", waiting.id: "reserved"}
        project.gate("a").set()
        project.gate("b").set()
        assert waiting.get(timeout=10) == "b"
        assert inspect.active() == [] and inspect.reserved() == []


def send_early(project: Project, seconds: float) -> str:
    """Publish an ETA task the broker delivers at once (as a broker without delayed delivery
    does), so the worker holds it in its timer."""
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    message = TaskMessage(task="t.add", id=str(uuid.uuid4()), args=(1, 2), eta=eta)
    project.app.transport.publish([Outgoing(encode_task(message), "", "celery")])
    return message.id


def test_scheduled_lists_eta_tasks_the_worker_holds(project: Project) -> None:
    with project.worker() as worker:
        assert worker.consumer is not None
        worker.consumer.consumer_defers = False  # as on a broker without delayed delivery
        task_id = send_early(project, 60)
        inspect = project.app.control.inspect(destination=NODE, timeout=5)
        [entry] = eventually(inspect.scheduled)
        assert entry["request"]["id"] == task_id and entry["eta"].startswith("20")
        assert inspect.query_task(task_id)[task_id][0] == "scheduled"
        project.app.control.revoke(task_id)
        eventually(lambda: inspect.scheduled() == [])
        assert project.app.AsyncResult(task_id).state == states.REVOKED
        assert task_id in inspect.revoked()


def test_registered_conf_report_clock_and_queues(project: Project) -> None:
    with project.worker():
        inspect = project.app.control.inspect(destination=NODE, timeout=5)
        names = inspect.registered()
        assert "t.add" in names and "t.limited [rate_limit=1/h]" in names
        assert "t.limited [rate_limit=1/h serializer=json]" in inspect.registered(
            "rate_limit", "serializer"
        )
        assert inspect.conf()["broker_url"].startswith("memory://")
        assert "task_serializer" in inspect.conf(with_defaults=True)
        assert inspect.conf()["deprecated_settings"] is None  # Celery's reply has the key
        # include: every module the tasks come from (Celery's worker widens it at start),
        # reported without being written into the app's settings
        task_module = project.app.tasks["t.add"].__module__
        assert task_module in inspect.conf()["include"]
        assert task_module not in (project.app.conf.include or ())
        assert inspect.report() == {"ok": project.app.bugreport()}
        assert inspect.clock()["clock"] > 0
        [queue] = inspect.active_queues()
        assert queue["name"] == "celery" and queue["exchange"]["type"] == "direct"


def test_unknown_and_malformed_requests_do_not_stop_the_worker(project: Project) -> None:
    from celeriac.protocol.message import Message

    with project.worker():
        assert project.ask("no_such_command") == {"error": "unknown command 'no_such_command'"}
        junk = Message(b"not json", "application/json", "utf-8", {"clock": 1})
        project.app.transport.broadcast("celery.pidbox", "", junk)
        assert project.ask("ping") == {"ok": "pong"}


def test_scheduled_lists_eta_tasks_the_broker_holds(project: Project) -> None:
    with project.worker() as worker:
        assert worker.consumer is not None and worker.consumer.consumer_defers
        task_id = send_early(project, 60)  # the worker takes it and gives it back
        inspect = project.app.control.inspect(destination=NODE, timeout=5)
        [entry] = eventually(inspect.scheduled)
        assert entry["request"]["id"] == task_id and entry["priority"] == 6
        assert [m.id for _, m in _held(project)] == [task_id]  # in the broker, not the worker
        assert inspect.query_task(task_id)[task_id][0] == "scheduled"
        project.app.control.revoke(task_id)
        assert project.app.AsyncResult(task_id).state == states.REVOKED  # at once
        eventually(lambda: inspect.scheduled() == [])


def _held(project: Project) -> list[tuple[float, TaskMessage]]:
    from celeriac.protocol.v2 import decode_task

    held = project.app.transport.delayed_messages("celery")
    return [(at, decode_task(message, accept=["json"])) for at, message in held]
