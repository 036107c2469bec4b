"""The beat loop on a manual clock: sending on time, restarts, missed runs, leaders, edits."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, signals
from celeriac._time import ManualClock
from celeriac.beat.lease import MemoryLease, SQLiteLease
from celeriac.beat.scheduler import Scheduler
from celeriac.beat.schedules import crontab
from celeriac.beat.store import MemoryScheduleStore, SQLiteScheduleStore
from celeriac.exceptions import TransportError
from tests.support.apps import AppFactory

START = dt.datetime(2024, 3, 8, 12, 0, tzinfo=dt.UTC).timestamp()


@dataclass
class Sent:
    """Every task published during a test, with the clock's time of the publish."""

    clock: ManualClock
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        self.records.append((self.clock.time(), dict(headers or {})))

    def ids(self, task: str | None = None) -> list[str]:
        return [h["id"] for _, h in self.records if task is None or h["task"] == task]

    def times(self, task: str) -> list[float]:
        return [t - START for t, h in self.records if h["task"] == task]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(clock: ManualClock, make_app: AppFactory) -> Celery:
    return make_app("memory", "proj", results=False, clock=clock, set_as_current=False)


@pytest.fixture
def sent(clock: ManualClock) -> Iterator[Sent]:
    recorder = Sent(clock)
    signals.after_task_publish.connect(recorder)
    try:
        yield recorder
    finally:
        signals.after_task_publish.disconnect(recorder)


def drive(clock: ManualClock, seconds: float, *schedulers: Scheduler) -> None:
    """Tick every scheduler, then move the clock to the soonest next tick, for ``seconds``."""
    end = clock.time() + seconds
    while True:
        waits = [scheduler.tick() for scheduler in schedulers]
        if clock.time() >= end:
            return
        clock.advance(min(max(min(waits), 0.001), end - clock.time()))


def every(seconds: float, task: str = "proj.tasks.tick", **extra: Any) -> dict[str, Any]:
    return {"task": task, "schedule": dt.timedelta(seconds=seconds), **extra}


def make(app: Celery, store: Any = None, lease: Any = None, **options: Any) -> Scheduler:
    return Scheduler(
        app,
        store=store or MemoryScheduleStore(),
        lease=lease or MemoryLease(clock=app.clock),
        **options,
    )


def test_sends_on_schedule_as_celery_beat_does(app: Celery, clock: ManualClock) -> None:
    app.conf.beat_schedule = {
        "add": every(10, "proj.tasks.add", args=(2, 3), options={"queue": "math", "priority": 7})
    }
    drive(clock, 61, make(app))
    consumer = app.transport.consumer(["math"], owner="test")
    deliveries = consumer.fetch(100, 0)
    assert len(deliveries) == 6  # at 10, 20, ... 60 s
    message = deliveries[0].message
    assert message.headers["task"] == "proj.tasks.add"
    assert message.headers["celery_beat_task"] is True
    assert message.properties["priority"] == 7
    assert message.body.startswith(b"[[2, 3], {}")
    consumer.close()


def test_a_registered_task_is_sent_through_apply_async(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    @app.task(name="proj.tasks.routed", queue="special")
    def routed() -> None: ...

    app.conf.beat_schedule = {"r": every(5, "proj.tasks.routed")}
    drive(clock, 6, make(app))
    assert app.transport.queue_length("special") == 1  # the task's own queue option applies


def test_tick_sleeps_until_the_next_run_or_max_interval(app: Celery, clock: ManualClock) -> None:
    app.conf.beat_schedule = {"slow": every(1000)}
    scheduler = make(app, lease=MemoryLease(ttl=3600, clock=clock), max_interval=30)
    assert scheduler.tick() == 30  # nothing due for 1000 s; wake at max_interval
    app.conf.beat_schedule = {"soon": every(5)}
    scheduler = make(app, lease=MemoryLease(ttl=3600, clock=clock), max_interval=30)
    assert scheduler.tick() == pytest.approx(5)


def sqlite_scheduler(app: Celery, path: Path) -> Scheduler:
    return make(app, SQLiteScheduleStore(str(path)), SQLiteLease(str(path), clock=app.clock))


def close(scheduler: Scheduler) -> None:
    scheduler.close()
    scheduler.store.close()
    scheduler.lease.close()


def test_a_restart_neither_repeats_nor_forgets_a_run(
    app: Celery, clock: ManualClock, sent: Sent, tmp_path: Path
) -> None:
    app.conf.beat_schedule = {"tick": every(10)}
    first = sqlite_scheduler(app, tmp_path / "beat.sqlite")
    drive(clock, 35, first)
    close(first)
    assert len(sent.ids()) == 3
    second = sqlite_scheduler(app, tmp_path / "beat.sqlite")
    drive(clock, 4, second)  # until 39 s: the 40 s run is not due yet
    assert len(sent.ids()) == 3
    drive(clock, 2, second)
    assert len(sent.ids()) == 4
    assert second.store.entries()["tick"].total_run_count == 4
    close(second)


@pytest.mark.parametrize(("policy", "sent_on_return"), [("run_once", 1), ("skip", 0)])
def test_runs_missed_while_down_follow_the_entry_policy(
    app: Celery, clock: ManualClock, sent: Sent, tmp_path: Path, policy: str, sent_on_return: int
) -> None:
    app.conf.beat_schedule = {"tick": every(10, missed=policy)}
    first = sqlite_scheduler(app, tmp_path / "beat.sqlite")
    drive(clock, 15, first)
    close(first)
    assert len(sent.ids()) == 1
    clock.advance(3600)  # no beat for an hour: 360 runs missed
    second = sqlite_scheduler(app, tmp_path / "beat.sqlite")
    drive(clock, 1, second)
    assert len(sent.ids()) == 1 + sent_on_return
    drive(clock, 10, second)  # then back on schedule
    assert len(sent.ids()) == 2 + sent_on_return
    close(second)


def test_three_beats_send_each_run_once_and_a_standby_takes_over(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.beat_schedule = {"fast": every(2), "slow": every(7, "proj.tasks.slow")}
    store, lease = MemoryScheduleStore(), MemoryLease(ttl=6, clock=clock)
    beats = [make(app, store, lease, holder=f"beat-{i}") for i in range(3)]
    drive(clock, 60, *beats)
    leaders = [b for b in beats if b.is_leader]
    assert len(leaders) == 1
    survivors = [b for b in beats if b is not leaders[0]]
    killed_at = clock.time() - START
    drive(clock, 60, *survivors)  # the leader dies without releasing its lease
    assert sum(b.is_leader for b in survivors) == 1
    times = sent.times("proj.tasks.tick")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 2 - 1e-6  # never two sends for one run
    assert max(gaps) <= 2 + 6 + 1.01  # the standby took over within the lease ttl
    assert any(t > killed_at + 7 for t in times)
    assert len(set(sent.ids())) == len(sent.ids())
    counts = {name: state.total_run_count for name, state in store.entries().items()}
    assert counts == {"fast": len(times), "slow": len(sent.times("proj.tasks.slow"))}


class Recording(Scheduler):
    """A scheduler that notes which beat published each run."""

    published: list[str] = []

    def send(self, entry: Any, task_id: str) -> None:
        self.published.append(self.holder)
        super().send(entry, task_id)


def test_a_deposed_leader_cannot_send(app: Celery, clock: ManualClock, sent: Sent) -> None:
    app.conf.beat_schedule = {"tick": every(10)}
    store = MemoryScheduleStore()
    stale_lease, new_lease = MemoryLease(clock=clock), MemoryLease(clock=clock)
    new_lease.release("old", new_lease.acquire("old") or 0)  # so its next term is token 2
    published: list[str] = []
    Recording.published = published
    stale = Recording(app, store=store, lease=stale_lease, holder="stale")  # token 1
    current = Recording(app, store=store, lease=new_lease, holder="current")  # token 2
    current.tick()  # the new leader writes to the store first
    stale.tick()
    assert stale.is_leader and current.is_leader  # a split brain: both think they lead
    drive(clock, 31, stale, current)  # the stale one always tries first
    assert published == ["current"] * 3  # the store refused every claim of the stale one
    assert len(sent.ids()) == 3


def test_run_now_sends_once_besides_the_schedule(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.beat_schedule = {"tick": every(100)}
    scheduler = make(app)
    drive(clock, 1, scheduler)
    before = scheduler.store.entries()["tick"].last_run_at
    scheduler.store.request_run("tick")
    drive(clock, 1, scheduler)
    state = scheduler.store.entries()["tick"]
    assert len(sent.ids()) == 1 and state.total_run_count == 1
    assert state.last_run_at == before and not state.run_requested


def test_disabled_entries_wait_and_resume_without_a_burst(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.beat_schedule = {"tick": every(10)}
    scheduler = make(app)
    drive(clock, 11, scheduler)
    scheduler.store.set_enabled("tick", False, now=clock.time())
    drive(clock, 100, scheduler)
    assert len(sent.ids()) == 1
    scheduler.store.set_enabled("tick", True, now=clock.time())
    drive(clock, 9, scheduler)
    assert len(sent.ids()) == 1  # one period after enabling, not at once
    drive(clock, 2, scheduler)
    assert len(sent.ids()) == 2


def test_entries_added_at_run_time_run_until_removed(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    scheduler = make(app)
    definition = {
        "task": "proj.tasks.added",
        "schedule": {
            "type": "crontab",
            "minute": "*",
            "hour": "*",
            "day_of_week": "*",
            "day_of_month": "*",
            "month_of_year": "*",
        },
        "args": [1],
        "kwargs": {},
        "options": {},
    }
    from celeriac.beat.entries import entry_from_definition

    entry = entry_from_definition("added", definition, app)
    scheduler.store.add("added", entry.definition(), fingerprint=entry.fingerprint, now=START)
    drive(clock, 181, scheduler)
    assert len(sent.ids("proj.tasks.added")) == 3  # each minute
    scheduler.store.remove("added")
    drive(clock, 180, scheduler)
    assert len(sent.ids("proj.tasks.added")) == 3


def test_a_send_its_beat_never_confirmed_is_sent_again_with_its_id(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.beat_schedule = {"tick": every(100)}
    store, lease = MemoryScheduleStore(), MemoryLease(ttl=10, clock=clock)
    dead = lease.acquire("dead")  # a beat that claimed a run and died before sending it
    assert dead is not None
    entry = make(app, store, lease).config_entries["tick"]
    store.start_entry("tick", entry.fingerprint, START, token=dead)
    store.claim_run("tick", token=dead, last_run_at=START, run_at=START + 1, task_id="lost")
    scheduler = make(app, store, lease)
    drive(clock, 10.5, scheduler)  # its lease ends at 10 s; the claim is not 10 s old yet
    assert sent.ids() == []
    drive(clock, 2, scheduler)
    assert sent.ids() == ["lost"]
    assert store.entries()["tick"].pending_task_id is None


class FlakyBroker(Scheduler):
    """A scheduler whose first publish fails as an unreachable broker would."""

    failures = 1

    def send(self, entry: Any, task_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise TransportError("broker unreachable")
        super().send(entry, task_id)


def test_a_send_the_broker_refused_is_retried_with_the_same_id(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.beat_schedule = {"tick": every(5)}
    scheduler = FlakyBroker(app, store=MemoryScheduleStore(), lease=MemoryLease(clock=clock))
    drive(clock, 6, scheduler)
    state = scheduler.store.entries()["tick"]
    assert sent.ids() == [] and state.pending_task_id is not None
    drive(clock, 20, scheduler)
    assert sent.ids()[0] == state.pending_task_id  # the same run, sent late
    assert len(sent.ids()) == len(set(sent.ids())) >= 2


def test_crontab_entry_keeps_local_time_across_dst(
    app: Celery, clock: ManualClock, sent: Sent
) -> None:
    app.conf.timezone = "America/New_York"
    app.conf.beat_schedule = {"nine": {"task": "proj.tasks.nine", "schedule": crontab(0, 9)}}
    scheduler = make(app, lease=MemoryLease(ttl=10 * 86400, clock=clock), max_interval=86400)
    drive(clock, 4 * 86400, scheduler)  # 2024-03-08 .. 03-12, DST starts on the 10th
    hours = [
        dt.datetime.fromtimestamp(t + START, dt.UTC).hour for t in sent.times("proj.tasks.nine")
    ]
    assert hours == [14, 14, 13, 13]  # 09:00 EST on the 8th and 9th, then 09:00 EDT


def test_a_run_that_can_never_be_sent_is_logged_not_retried(
    app: Celery, clock: ManualClock, sent: Sent, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="proj.tasks.typed")
    def typed(x: int) -> int:
        return x

    app.conf.beat_schedule = {"typed": every(5, "proj.tasks.typed", args=(1, 2, 3))}
    scheduler = make(app)
    with caplog.at_level("ERROR", logger="celeriac.beat"):
        drive(clock, 11, scheduler)
    assert sent.ids() == []
    assert "couldn't apply scheduled task typed" in caplog.text
    state = scheduler.store.entries()["typed"]
    assert state.total_run_count == 2 and state.pending_task_id is None  # on schedule still


@pytest.mark.parametrize(
    ("back_after", "sent_on_return"), [(3600 * 2 + 10, 1), (3600 * 2 + 300, 0)]
)
def test_skip_policy_still_sends_a_crontab_run_that_is_on_time(
    app: Celery, clock: ManualClock, sent: Sent, back_after: float, sent_on_return: int
) -> None:
    app.conf.beat_schedule = {
        "hourly": {"task": "proj.tasks.hourly", "schedule": crontab(minute=0), "missed": "skip"}
    }
    store = MemoryScheduleStore()
    first = make(app, store, MemoryLease(clock=clock))
    drive(clock, 1, first)  # started at 12:00:00, then down until 14:00:10 or 14:05
    first.close()
    clock.advance(back_after - 1)
    second = make(app, store, MemoryLease(clock=clock))
    drive(clock, 1, second)  # 13:00 is stale either way; 14:00 is on time only 10 s late
    assert len(sent.ids()) == sent_on_return
