"""The virtual clock moves a real in-process worker's time: ETA, retries, rate limits, beat."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator

import pytest

from celeriac import Celery
from celeriac.contrib.testing import VirtualClock, start_worker
from celeriac.contrib.testing.app import TestApp
from celeriac.exceptions import TimeoutError as ResultTimeout
from tests.support.polling import eventually, poll

DAY = 86_400.0


@pytest.fixture
def app() -> Iterator[Celery]:
    with TestApp() as test_app:
        yield test_app


def clock_of(app: Celery) -> VirtualClock:
    assert isinstance(app.clock, VirtualClock)
    return app.clock


def test_clock_jumps_forward_only_and_keeps_flowing() -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    clock = VirtualClock(start)
    assert clock.time() >= start.timestamp()
    before = clock.monotonic()
    clock.advance(3600)
    assert clock.monotonic() - before >= 3600
    assert clock.now() >= start + dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="in the past"):
        clock.move_to(start)
    with pytest.raises(ValueError, match="naive"):
        clock.move_to(dt.datetime(2031, 1, 1))


def test_a_jump_wakes_a_sleeper() -> None:
    clock = VirtualClock()
    woke = threading.Event()
    sleeper = threading.Thread(target=lambda: (clock.sleep(DAY), woke.set()))
    sleeper.start()
    clock.advance(DAY)
    sleeper.join(10)
    assert woke.is_set()


def test_countdown_and_eta_tasks_run_when_the_clock_reaches_them(app: Celery) -> None:
    @app.task
    def stamp() -> float:
        return app.clock.time()

    clock = clock_of(app)
    with start_worker(app, pool="threads", concurrency=2):
        later = stamp.apply_async(countdown=DAY)
        at = stamp.apply_async(eta=clock.now() + dt.timedelta(days=2))
        with pytest.raises(ResultTimeout):
            later.get(timeout=0.3)  # a day away: held, not run
        clock.advance(DAY)
        assert later.get(timeout=10) >= clock.time() - 60
        assert not at.ready()
        clock.advance(DAY)
        assert at.get(timeout=10) > later.get()


def test_retries_back_off_in_virtual_time(app: Celery) -> None:
    attempts: list[float] = []

    @app.task(autoretry_for=(ValueError,), retry_backoff=60, retry_jitter=False, max_retries=3)
    def flaky() -> int:
        attempts.append(app.clock.time())
        if len(attempts) < 4:
            raise ValueError("not yet")
        return len(attempts)

    clock = clock_of(app)
    with start_worker(app, pool="threads"):
        result = flaky.delay()
        for seen in range(1, 4):
            eventually(lambda seen=seen: len(attempts) >= seen, "a new attempt")
            clock.advance(600)  # past the longest countdown (240 s)
        assert result.get(timeout=10) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert [gap >= wanted for gap, wanted in zip(gaps, (60, 120, 240), strict=True)] == [True] * 3


def test_rate_limit_refills_with_the_clock(app: Celery) -> None:
    @app.task(rate_limit="1/h")
    def limited(n: int) -> int:
        return n

    clock = clock_of(app)
    with start_worker(app, pool="threads", concurrency=3):
        results = [limited.delay(n) for n in range(3)]
        assert results[0].get(timeout=10) == 0
        with pytest.raises(ResultTimeout):
            results[1].get(timeout=0.3)  # one an hour
        clock.advance(3600)
        assert results[1].get(timeout=10) == 1
        clock.advance(3600)
        assert results[2].get(timeout=10) == 2


def test_beat_sends_each_time_the_clock_passes_the_schedule(app: Celery) -> None:
    ticks: list[float] = []

    @app.task(name="clocked.tick")
    def tick() -> None:
        ticks.append(app.clock.time())

    app.conf.beat_schedule = {"tick": {"task": "clocked.tick", "schedule": 3600.0}}
    clock = clock_of(app)
    with start_worker(app, pool="threads", beat=True):
        # The first run is due one interval after beat first reads the entry, which may be
        # just after the first jump: jump again until three runs came.
        for _ in range(6):
            seen = len(ticks)
            clock.advance(3600)
            if poll(lambda seen=seen: len(ticks) > seen, 3.0)[0] and len(ticks) == 3:
                break
    assert len(ticks) == 3
    assert all(b - a >= 3600 for a, b in itertools.pairwise(ticks))
