"""Sending and receiving events over a real in-memory broker (no worker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.protocol.message import Message
from celeriac.transports.base import Broadcast, Subscription
from tests.support.apps import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "events", set_as_current=False, clock=ManualClock(1_800_000_000.0))


@pytest.fixture
def raw(app: Celery) -> Iterator[Subscription]:
    sub = app.transport.subscribe("celeryev", ["#"])
    yield sub
    sub.close()


def received(sub: Subscription) -> list[Broadcast]:
    return sub.receive(0.05)


def test_an_event_is_broadcast_in_celerys_format(app: Celery, raw: Subscription) -> None:
    dispatcher = app.events.Dispatcher(hostname="w1@h")
    dispatcher.send("worker-heartbeat", freq=2.0, active=0)
    dispatcher.send("worker-heartbeat", freq=2.0, active=1)
    first, second = received(raw)
    assert first.exchange == "celeryev" and first.routing_key == "worker.heartbeat"
    assert first.message.headers == {"hostname": "w1@h"}
    assert first.message.properties["delivery_mode"] == 1
    assert first.message.content_type == "application/json"
    body = json.loads(first.message.body)
    assert body["type"] == "worker-heartbeat" and body["hostname"] == "w1@h"
    assert body["timestamp"] == 1_800_000_000.0  # the app's clock
    assert {"utcoffset", "pid", "clock", "freq", "active"} <= set(body)
    assert json.loads(second.message.body)["clock"] > body["clock"]


def test_buffered_events_go_out_as_one_multi_list(app: Celery, raw: Subscription) -> None:
    dispatcher = app.events.Dispatcher(hostname="w1@h", buffer_group={"task"}, buffer_limit=3)
    dispatcher.send("task-started", uuid="a")
    dispatcher.send("task-succeeded", uuid="a", result="1", runtime=0.1)
    assert received(raw) == [] and dispatcher.buffered() == 2
    dispatcher.flush()
    [batch] = received(raw)
    assert batch.routing_key == "task.multi"
    body = json.loads(batch.message.body)
    assert [e["type"] for e in body] == ["task-started", "task-succeeded"]
    for n in range(3):  # the limit flushes without being asked
        dispatcher.send("task-started", uuid=str(n))
    [full] = received(raw)
    assert len(json.loads(full.message.body)) == 3 and dispatcher.buffered() == 0


def test_groups_filter_and_disabled_dispatchers_send_nothing(
    app: Celery, raw: Subscription
) -> None:
    only_workers = app.events.Dispatcher(hostname="w1@h", groups=["worker"])
    only_workers.send("task-started", uuid="a")
    only_workers.send("worker-online", freq=2.0)
    app.events.Dispatcher(enabled=False).send("worker-online")
    assert [b.routing_key for b in received(raw)] == ["worker.online"]


def test_the_receiver_calls_handlers_by_type_and_unpacks_lists(app: Celery) -> None:
    got: dict[str, list[dict[str, Any]]] = {"succeeded": [], "other": []}
    receiver = app.events.Receiver(
        handlers={"task-succeeded": got["succeeded"].append, "*": got["other"].append}
    )
    receiver.subscribe()
    buffered = app.events.Dispatcher(hostname="w1@h", buffer_group={"task"})
    buffered.send("task-received", uuid="a", name="tasks.add")
    buffered.send("task-succeeded", uuid="a", result="2", runtime=0.01)
    buffered.flush()
    app.events.Dispatcher(hostname="w1@h").send("worker-online", freq=2.0)
    receiver.capture(limit=3, wakeup=False)
    receiver.close()
    assert [e["uuid"] for e in got["succeeded"]] == ["a"]
    assert [e["type"] for e in got["other"]] == ["task-received", "worker-online"]
    assert all("local_received" in e for e in got["other"])


def test_the_receiver_syncs_the_clock_and_orders_task_sent_first(app: Celery) -> None:
    events: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"*": events.append})
    receiver.subscribe()
    event = {
        "type": "worker-heartbeat",
        "hostname": "far@h",
        "clock": 500,
        "timestamp": 1_800_000_000.0,
        "utcoffset": 0,
    }
    body = json.dumps(event).encode()

    message = Message(body, "application/json", "utf-8")
    app.transport.broadcast("celeryev", "worker.heartbeat", message)
    receiver.capture(limit=1, wakeup=False)
    assert app.lamport_clock.value > 500
    before = app.lamport_clock.value
    _, sent = receiver.event_from_message({"type": "task-sent", "clock": 9999, "uuid": "x"})
    assert sent["clock"] == before - 1  # a client's clock is not trusted: just before ours
    receiver.close()


def test_capture_stops_when_asked(app: Celery) -> None:
    receiver = app.events.Receiver(handlers={})
    receiver.should_stop = True
    receiver.capture(wakeup=False)  # returns at once
    receiver.capture(timeout=0.05, wakeup=False)
    receiver.close()


def test_task_send_sent_event_publishes_task_sent(app: Celery, raw: Subscription) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 2)
    assert received(raw) == []  # off by default
    app.conf.task_send_sent_event = True
    result = add.apply_async((2, 3), countdown=10)
    [sent] = received(raw)
    assert sent.routing_key == "task.sent"
    event = json.loads(sent.message.body)
    assert event["type"] == "task-sent" and event["uuid"] == result.id
    assert (event["name"], event["args"], event["kwargs"]) == (add.name, "(2, 3)", "{}")
    assert (event["queue"], event["exchange"], event["routing_key"]) == ("celery", "", "celery")
    assert event["eta"] is not None and event["retries"] == 0 and event["root_id"] == result.id
