"""Folding events into the cluster state: pure, with a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import states
from celeriac._lamport import LamportClock
from celeriac._time import ManualClock
from celeriac.events.state import State, Task, Worker

T0 = 1_700_000_000.0


def worker_event(kind: str, host: str = "w1@h", at: float = T0, **fields: Any) -> dict[str, Any]:
    return {
        "type": f"worker-{kind}",
        "hostname": host,
        "timestamp": at,
        "local_received": at,
        "utcoffset": 0,
        "pid": 42,
        "clock": 1,
        "freq": 2.0,
        "active": 0,
        "processed": 0,
        "loadavg": [0.1, 0.2, 0.3],
        "sw_ident": "py-celeriac",
        "sw_ver": "0.1.0",
        "sw_sys": "Linux",
        **fields,
    }


def task_event(
    kind: str, uuid: str, host: str = "w1@h", at: float = T0, **fields: Any
) -> dict[str, Any]:
    return {
        "type": f"task-{kind}",
        "uuid": uuid,
        "hostname": host,
        "timestamp": at,
        "local_received": at,
        "utcoffset": 0,
        "pid": 42,
        "clock": 1,
        **fields,
    }


def received(uuid: str, name: str = "tasks.add", **fields: Any) -> dict[str, Any]:
    defaults = {"root_id": uuid, "parent_id": None, "retries": 0, "eta": None, "expires": None}
    return task_event(
        "received", uuid, name=name, args="(2, 2)", kwargs="{}", **{**defaults, **fields}
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def state(clock: ManualClock) -> State:
    return State(clock=clock)


def test_a_worker_is_alive_until_two_heartbeat_intervals_pass(
    state: State, clock: ManualClock
) -> None:
    (worker, created), subject = state.event(worker_event("online"))  # type: ignore[misc]
    assert created and subject == "online"
    assert isinstance(worker, Worker) and worker.alive and worker.status_string == "ONLINE"
    assert (worker.pid, worker.freq, worker.sw_ident) == (42, 2.0, "py-celeriac")
    clock.advance(3.9)
    assert worker.alive
    clock.advance(0.2)  # 4.1 s after the last heartbeat with freq 2.0
    assert not worker.alive
    state.event(worker_event("heartbeat", at=clock.time(), active=3, processed=7))
    assert worker.alive and (worker.active, worker.processed) == (3, 7)
    assert state.alive_workers() == [worker]
    state.event(worker_event("offline", at=clock.time()))
    assert not worker.alive and state.alive_workers() == []
    assert state.workers["w1@h"] is worker  # an offline worker is still known


def test_an_event_without_local_received_is_stamped_by_the_clock(
    state: State, clock: ManualClock
) -> None:
    event = worker_event("heartbeat")
    del event["local_received"]
    state.event(event)
    assert state.workers["w1@h"].heartbeats == [clock.time()]


def test_a_task_folds_received_started_succeeded(state: State) -> None:
    state.event(received("t1"))
    state.event(task_event("started", "t1", at=T0 + 1))
    (task, created), subject = state.event(  # type: ignore[misc]
        task_event("succeeded", "t1", at=T0 + 2, result="4", runtime=0.5)
    )
    assert not created and subject == "succeeded"
    assert isinstance(task, Task)
    assert (task.state, task.name, task.args, task.result, task.runtime) == (
        states.SUCCESS,
        "tasks.add",
        "(2, 2)",
        "4",
        0.5,
    )
    assert (task.received, task.started, task.succeeded) == (T0, T0 + 1, T0 + 2)
    assert task.worker is state.workers["w1@h"] and task.ready
    assert task.info()["result"] == "4"
    assert state.task_count == 1 and state.event_count == 3


def test_an_event_arriving_late_only_fills_in_its_fields(state: State) -> None:
    state.event(task_event("succeeded", "t1", at=T0 + 2, result="4", runtime=0.1))
    state.event(received("t1"))  # happened before SUCCESS: merged, the state stays
    task = state.tasks["t1"]
    assert task.state == states.SUCCESS and task.name == "tasks.add" and task.result == "4"


def test_failure_retry_and_revocation(state: State) -> None:
    state.event(received("t1"))
    state.event(task_event("retried", "t1", exception="ValueError('x')", traceback="tb"))
    assert state.tasks["t1"].state == states.RETRY
    state.event(task_event("failed", "t1", exception="KeyError('k')", traceback="tb2"))
    assert (state.tasks["t1"].state, state.tasks["t1"].exception) == (
        states.FAILURE,
        "KeyError('k')",
    )
    state.event(received("t2"))
    state.event(task_event("revoked", "t2", terminated=True, signum=15, expired=False))
    assert state.tasks["t2"].state == states.REVOKED
    assert getattr(state.tasks["t2"], "terminated") is True  # noqa: B009 - an event field


def test_task_sent_names_the_client_not_a_worker(state: State) -> None:
    state.event(task_event("sent", "t1", host="gen1@client", name="tasks.add", queue="celery"))
    task = state.tasks["t1"]
    assert task.state == states.PENDING and task.client == "gen1@client" and task.worker is None
    assert "gen1@client" not in state.workers


def test_indexes_by_type_worker_and_time(state: State) -> None:
    state.event(received("a", "tasks.add"))
    state.event(task_event("received", "b", host="w2@h", at=T0 + 1, name="tasks.mul"))
    state.event(task_event("received", "c", at=T0 + 2, name="tasks.add"))
    assert [t.uuid for t in state.tasks_by_type["tasks.add"]] == ["a", "c"]
    assert [uuid for uuid, _ in state.tasks_by_type("tasks.add")] == ["c", "a"]
    assert [t.uuid for t in state.tasks_by_worker["w2@h"]] == ["b"]
    assert [uuid for uuid, _ in state.tasks_by_time()] == ["c", "b", "a"]
    assert [uuid for uuid, _ in state.tasks_by_time(limit=1, reverse=False)] == ["a"]
    assert state.task_types() == ["tasks.add", "tasks.mul"]


def test_the_oldest_tasks_are_forgotten_past_the_limit(clock: ManualClock) -> None:
    state = State(max_tasks_in_memory=3, clock=clock)
    for n in range(5):
        state.event(task_event("received", f"t{n}", at=T0 + n, name="tasks.add"))
    assert list(state.tasks) == ["t2", "t3", "t4"]
    assert [t.uuid for t in state.tasks_by_type["tasks.add"]] == ["t2", "t3", "t4"]
    assert len(state.tasks_by_worker["w1@h"]) == 3


def test_children_link_to_their_parent(state: State) -> None:
    state.event(received("parent"))
    state.event(received("child", parent_id="parent", root_id="parent"))
    parent, child = state.tasks["parent"], state.tasks["child"]
    assert parent.children == [child] and child.parent is parent and child.root is parent
    assert parent.as_dict()["children"] == ["child"]


def test_callbacks_and_clearing(clock: ManualClock) -> None:
    joined: list[str] = []
    left: list[str] = []
    seen: list[str] = []
    state = State(
        callback=lambda _state, event: seen.append(event["type"]),
        on_node_join=lambda w: joined.append(str(w.hostname)),
        on_node_leave=lambda w: left.append(str(w.hostname)),
        clock=clock,
    )
    state.event(worker_event("online"))
    state.event(received("t1"))
    state.event(received("t2"))
    state.event(task_event("succeeded", "t2", result="1"))
    state.event(worker_event("offline"))
    assert joined == ["w1@h"] and left == ["w1@h"] and len(seen) == 5
    state.clear_tasks(ready=True)  # keeps what has not finished
    assert list(state.tasks) == ["t1"]
    state.clear()
    assert (state.event_count, len(state.workers)) == (0, 0)
    assert state.freeze_while(lambda: len(state.tasks)) == 1


def test_unknown_events_are_counted_and_ignored(state: State) -> None:
    assert state.event({"type": "custom-thing", "hostname": "x"}) is None
    assert state.event_count == 1 and not state.tasks and not state.workers


def test_lamport_clock_moves_past_what_it_receives() -> None:
    clock = LamportClock()
    assert clock.forward() == 1
    assert clock.adjust(10) == 11
    assert clock.adjust(3) == 12
    assert clock.adjust("junk") == 12
    assert str(clock) == "12"
