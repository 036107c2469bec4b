"""The dashboard's history store: folding events, pages, retention, restarts, a million rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.dashboard.adapter import decode_events
from celeriac.dashboard.fold import RUNTIME_BUCKETS
from celeriac.dashboard.queries import TaskFilter
from celeriac.dashboard.store import DashboardStore, default_path
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.transports.base import Broadcast

T0 = 1_700_000_000.0


def event(kind: str, uuid: str | None = None, at: float = T0, **fields: Any) -> dict[str, Any]:
    """An event as Celery's workers send it (wire.md §4.4)."""
    body: dict[str, Any] = {
        "type": kind,
        "hostname": fields.pop("hostname", "w1@host"),
        "utcoffset": 0,
        "pid": 42,
        "clock": 1,
        "timestamp": at,
    }
    if uuid is not None:
        body["uuid"] = uuid
    body.update(fields)
    return body


def received(uuid: str, at: float = T0, name: str = "proj.add", **fields: Any) -> dict[str, Any]:
    return event("task-received", uuid, at, name=name, args="(2, 2)", kwargs="{}", **fields)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + 10)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Any:
    opened = DashboardStore(str(tmp_path / "dash.sqlite"), clock=clock)
    yield opened
    opened.close()


def test_a_task_goes_through_its_events(store: DashboardStore) -> None:
    store.apply([received("t1"), event("task-started", "t1", T0 + 1)])
    store.apply([event("task-succeeded", "t1", T0 + 3, result="4", runtime=2.0)])
    task = store.task("t1")
    assert task is not None
    assert (task["state"], task["name"], task["worker"]) == ("SUCCESS", "proj.add", "w1@host")
    assert (task["args"], task["result"], task["runtime"]) == ("(2, 2)", "4", 2.0)
    assert (task["received_at"], task["started_at"], task["finished_at"]) == (T0, T0 + 1, T0 + 3)
    assert task["seen_at"] == T0


def test_late_weaker_events_fill_fields_but_do_not_move_the_state(store: DashboardStore) -> None:
    store.apply([event("task-succeeded", "t1", T0 + 2, result="4", runtime=0.5)])
    store.apply([event("task-started", "t1", T0 + 1), received("t1", T0)])
    task = store.task("t1")
    assert task is not None
    assert task["state"] == "SUCCESS"
    assert (task["name"], task["started_at"], task["result"]) == ("proj.add", T0 + 1, "4")


def test_a_retried_task_goes_round_again(store: DashboardStore) -> None:
    store.apply([received("t1"), event("task-started", "t1", T0 + 1)])
    store.apply([event("task-retried", "t1", T0 + 2, exception="ValueError('x')", traceback="tb")])
    assert store.task("t1")["state"] == "RETRY"  # type: ignore[index]
    store.apply([received("t1", T0 + 3, retries=1), event("task-started", "t1", T0 + 4)])
    task = store.task("t1")
    assert task is not None
    assert (task["state"], task["retries"], task["exception"]) == ("STARTED", 1, "ValueError('x')")


def test_task_multi_bodies_hold_several_events() -> None:
    app = Celery("t", broker="memory://dash-multi")
    body = json.dumps([received("t1"), event("task-started", "t1")]).encode()
    message = Message(body, "application/json", "utf-8", {"hostname": "w1@host"})
    events = decode_events(app, Broadcast("celeryev", "task.multi", message))
    assert [e["type"] for e in events] == ["task-received", "task-started"]
    garbage = Message(b"{not json", "application/json", "utf-8")
    assert decode_events(app, Broadcast("celeryev", "task.started", garbage)) == []


def test_counts_feed_charts_and_metrics(store: DashboardStore, clock: ManualClock) -> None:
    store.apply([received(f"ok{i}", T0) for i in range(3)] + [received("bad", T0)])
    store.apply(
        [event("task-succeeded", f"ok{i}", T0 + 1, runtime=0.02 * (i + 1)) for i in range(3)]
        + [event("task-failed", "bad", T0 + 65, exception="KeyError()", traceback="tb")]
    )
    clock.advance(120)
    points = store.timeseries(T0 - 60, step=60)
    by_minute = {p["t"]: p for p in points}
    minute = int(T0 // 60) * 60
    assert by_minute[minute]["SUCCESS"] == 3 and "FAILURE" not in by_minute[minute]
    assert by_minute[minute + 60]["FAILURE"] == 1
    assert ("proj.add", "SUCCESS", 3) in store.totals()
    assert ("proj.add", "RECEIVED", 4) in store.totals()
    [(name, count, total, cumulative)] = store.runtimes()
    assert (name, count) == ("proj.add", 3)
    assert total == pytest.approx(0.12)
    assert len(cumulative) == len(RUNTIME_BUCKETS) + 1
    assert cumulative[RUNTIME_BUCKETS.index(0.025)] == 1 and cumulative[-1] == 3
    assert store.task_names() == ["proj.add"]


def test_pages_walk_every_matching_task_once(store: DashboardStore) -> None:
    events = []
    for i in range(25):
        events.append(received(f"t{i:02}", T0 + i // 2, name="a" if i % 2 else "b"))
        if i % 3 == 0:
            events.append(event("task-failed", f"t{i:02}", T0 + 30, exception="E()"))
    store.apply(events)
    seen: list[str] = []
    cursor = None
    while True:
        page = store.tasks(TaskFilter(), after=cursor, limit=4)
        seen += [t["uuid"] for t in page.tasks]
        cursor = page.next
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"t{i:02}" for i in range(25)) and len(seen) == 25
    assert seen[0] == "t24"  # newest first
    failed = store.tasks(TaskFilter(state="FAILURE"), limit=100).tasks
    assert {t["uuid"] for t in failed} == {f"t{i:02}" for i in range(0, 25, 3)}
    named = store.tasks(TaskFilter(name="a", since=T0 + 2, until=T0 + 4), limit=100).tasks
    assert {t["uuid"] for t in named} == {"t05", "t07"}
    assert store.tasks(TaskFilter(worker="w9@host")).tasks == []


def test_history_survives_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    path = str(tmp_path / "dash.sqlite")
    first = DashboardStore(path, clock=clock)
    first.apply([received("t1"), event("worker-heartbeat", hostname="w1@host", at=T0 + 9)])
    first.close()
    second = DashboardStore(path, clock=clock)
    try:
        assert second.task("t1")["state"] == "RECEIVED"  # type: ignore[index]
        assert [w["hostname"] for w in second.workers()] == ["w1@host"]
        assert ("proj.add", "RECEIVED", 1) in second.totals()
    finally:
        second.close()


def test_workers_go_offline_without_heartbeats(store: DashboardStore, clock: ManualClock) -> None:
    store.apply([event("worker-online", hostname="w1@host", at=T0 + 10, freq=2.0, active=0)])
    store.apply(
        [
            event(
                "worker-heartbeat",
                hostname="w2@host",
                at=T0 + 10,
                processed=7,
                loadavg=[0.5, 0.25, 0.1],
                active=1,
            )
        ]
    )
    workers = {w["hostname"]: w for w in store.workers()}
    assert workers["w1@host"]["online"] and workers["w2@host"]["online"]
    assert (workers["w2@host"]["processed"], workers["w2@host"]["loadavg"]) == (7, [0.5, 0.25, 0.1])
    store.apply([event("worker-offline", hostname="w1@host", at=T0 + 11)])
    clock.advance(2)
    workers = {w["hostname"]: w for w in store.workers()}
    assert not workers["w1@host"]["online"] and workers["w2@host"]["online"]
    clock.advance(10)  # w2 missed its heartbeats
    assert not any(w["online"] for w in store.workers())
    store.set_worker_info("w2@host", pool={"implementation": "prefork"}, queues=["celery"])
    w2 = {w["hostname"]: w for w in store.workers()}["w2@host"]
    assert (w2["pool"], w2["queues"]) == ({"implementation": "prefork"}, ["celery"])
    assert w2["processed"] == 7


def test_result_store_metas_give_progress_and_missed_outcomes(store: DashboardStore) -> None:
    store.apply([received("p"), event("task-started", "p"), received("done"), received("new")])
    assert set(store.in_flight()) == {"p", "done", "new"}
    changes = store.apply_metas(
        {
            "p": {"status": "PROGRESS", "result": {"current": 3, "total": 10}},
            "done": {"status": "SUCCESS", "result": 7},
            "new": {"status": "PENDING", "result": None},
        }
    )
    assert {t["uuid"] for t in changes.tasks} == {"p", "done"}
    assert store.task("p")["progress"] == {"current": 3.0, "total": 10.0}  # type: ignore[index]
    assert store.task("p")["state"] == "STARTED"  # type: ignore[index]
    done = store.task("done")
    assert done is not None and (done["state"], done["result"]) == ("SUCCESS", "7")
    assert set(store.in_flight()) == {"p", "new"}


def test_retention_drops_old_and_surplus_tasks(tmp_path: Path, clock: ManualClock) -> None:
    store = DashboardStore(str(tmp_path / "d.sqlite"), clock=clock, retention_days=1, max_tasks=5)
    try:
        store.apply([received(f"old{i}", T0 - 2 * 86400) for i in range(3)])
        store.apply([received(f"new{i}", T0 + i) for i in range(7)])
        assert store.trim() == 5
        left = {t["uuid"] for t in store.tasks(TaskFilter(), limit=100).tasks}
        assert left == {f"new{i}" for i in range(2, 7)}
        assert ("proj.add", "RECEIVED", 10) in store.totals()  # counters outlive retention
    finally:
        store.close()


def test_unusable_files_are_reported_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="does not exist"):
        DashboardStore(str(tmp_path / "missing" / "d.sqlite"))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ImproperlyConfigured, match=r"not a dashboard store|healthy SQLite"):
        DashboardStore(str(junk))


def test_default_path_is_beside_the_sqlite_broker(tmp_path: Path) -> None:
    assert default_path(f"sqlite:///{tmp_path}/b/broker.sqlite") == str(
        tmp_path / "b" / "celeriac-dashboard.sqlite"
    )
    assert default_path("redis://localhost:6379/0").endswith("/celeriac-dashboard.sqlite")


_FILTERS = [
    (TaskFilter(), "celeriac_dashboard_tasks_seen"),
    (TaskFilter(state="FAILURE"), "celeriac_dashboard_tasks_state"),
    (TaskFilter(name="proj.b", since=T0 + 100, until=T0 + 5000), "celeriac_dashboard_tasks_name"),
    (TaskFilter(worker="w1@host"), "celeriac_dashboard_tasks_worker"),
]


def test_a_million_tasks_page_by_index(tmp_path: Path) -> None:
    store = DashboardStore(str(tmp_path / "big.sqlite"), clock=ManualClock(T0 + 20_000))
    names, states = ["proj.a", "proj.b", "proj.c"], ["SUCCESS", "FAILURE", "STARTED", "RECEIVED"]
    conn = sqlite3.connect(store.path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(
                "INSERT INTO celeriac_dashboard_tasks "
                "(uuid, name, state, worker, seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        f"{i:08x}",
                        names[i % 3],
                        states[i % 4],
                        f"w{i % 5}@host",
                        T0 + i / 50,
                        T0 + i / 50,
                    )
                    for i in range(1_000_000)
                ),
            )
    finally:
        conn.close()
    try:
        for filt, index in _FILTERS:
            first = store.tasks(filt, limit=50)
            assert len(first.tasks) == 50 and first.next is not None
            plan = " ".join(store.query_plan(filt, after=first.next))
            assert f"USING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
            second = store.tasks(filt, after=first.next, limit=50).tasks
            assert second[0]["seen_at"] <= first.tasks[-1]["seen_at"]
            assert not {t["uuid"] for t in second} & {t["uuid"] for t in first.tasks}
    finally:
        store.close()
