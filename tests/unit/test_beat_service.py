"""Running beat: where its store lives, the run loop, the service and beat inside a worker."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, signals
from celeriac._time import ManualClock
from celeriac.beat.lease import MemoryLease
from celeriac.beat.scheduler import Scheduler
from celeriac.beat.service import Beat, EmbeddedBeat, describe_entries, store_location
from celeriac.beat.store import MemoryScheduleStore
from tests.support.apps import AppFactory
from tests.support.polling import eventually


@pytest.fixture
def memory_app(make_app: AppFactory) -> Celery:
    app = make_app("memory", "proj", results=False, set_as_current=False)
    app.conf.beat_schedule = {
        "often": {"task": "proj.tasks.often", "schedule": dt.timedelta(seconds=0.05)}
    }
    return app


def test_where_the_schedule_store_lives(tmp_path: Path) -> None:
    sqlite = Celery("p", broker=f"sqlite:///{tmp_path}/broker.sqlite", set_as_current=False)
    assert store_location(sqlite) == str(tmp_path / "broker.sqlite")
    assert store_location(sqlite, "/elsewhere/beat.db") == "/elsewhere/beat.db"
    sqlite.conf.beat_schedule_filename = str(tmp_path / "mine")
    assert store_location(sqlite) == str(tmp_path / "mine")
    assert store_location(Celery("p", broker="memory://", set_as_current=False)) is None
    other = Celery("p", broker="amqp://guest@localhost//", set_as_current=False)
    assert store_location(other) == "celerybeat-schedule"


def test_beat_service_runs_until_stopped_and_hands_the_lease_back(memory_app: Celery) -> None:
    service = Beat(memory_app, lease_ttl=1.0, poll_interval=0.02, import_modules=False)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        eventually(lambda: memory_app.transport.queue_length("celery") >= 2)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    state = service.lease.current()
    assert state is not None and state.holder is None  # released: a standby may lead at once


def test_embedded_beat_for_worker_minus_b(memory_app: Celery) -> None:
    embedded = EmbeddedBeat(memory_app, lease_ttl=1.0, poll_interval=0.02)
    embedded.start()
    try:
        eventually(lambda: memory_app.transport.queue_length("celery") >= 2)
        assert embedded.alive
    finally:
        embedded.stop()
    assert not embedded.alive


def test_run_loop_on_a_manual_clock_and_edits_wake_it(memory_app: Celery) -> None:
    clock = ManualClock()
    app = Celery("proj", broker=memory_app.broker_url, clock=clock, set_as_current=False)
    app.conf.beat_schedule = {"tick": {"task": "proj.tasks.tick", "schedule": 10}}
    store, lease = MemoryScheduleStore(), MemoryLease(clock=clock)
    scheduler = Scheduler(app, store=store, lease=lease)
    stop = threading.Event()
    published: list[float] = []

    def count(sender: Any = None, **kwargs: Any) -> None:
        published.append(clock.time())
        if len(published) == 3:
            stop.set()

    signals.after_task_publish.connect(count)
    try:
        scheduler.run(stop)
    finally:
        signals.after_task_publish.disconnect(count)
    assert len(published) == 3
    assert published[2] - published[0] == pytest.approx(20, abs=1.5)
    state = lease.current()
    assert state is not None and state.holder is None


def test_describe_entries_shows_configured_and_added_together(tmp_path: Path) -> None:
    clock = ManualClock()
    app = Celery("proj", broker="memory://", clock=clock, set_as_current=False)
    app.conf.beat_schedule = {"conf": {"task": "proj.tasks.a", "schedule": 60}}
    store = MemoryScheduleStore()
    definition = {"task": "proj.tasks.b", "schedule": {"type": "interval", "every": 30.0}}
    store.add("added", definition, fingerprint="f", now=clock.time())
    views = {view.name: view for view in describe_entries(app, store)}
    assert views["conf"].source == "config" and views["conf"].last_run_at is None
    assert views["added"].source == "store" and views["added"].schedule == "<freq: 30.00 seconds>"
    assert views["added"].next_run_at == app.now() + dt.timedelta(seconds=30)
