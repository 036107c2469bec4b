"""Schedules: interval, crontab (parsing, next run, daylight saving) and solar events."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.beat.schedules import crontab, maybe_schedule, schedstate, schedule, solar

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")


def make_app(timezone: str | None = None, start: dt.datetime | None = None) -> Celery:
    clock = ManualClock((start or dt.datetime(2024, 5, 17, 10, 7, 30, tzinfo=UTC)).timestamp())
    app = Celery("sched", broker="memory://", clock=clock, set_as_current=False)
    if timezone:
        app.conf.timezone = timezone
    return app


def at(*parts: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=tz)  # type: ignore[misc]


# -- schedule (intervals) ----------------------------------------------------------------


def test_interval_not_due_says_how_long_to_wait() -> None:
    app = make_app()
    every = schedule(dt.timedelta(seconds=30), app=app)
    last = app.now() - dt.timedelta(seconds=10)
    assert every.is_due(last) == schedstate(False, pytest.approx(20.0))
    assert every.remaining_estimate(last) == dt.timedelta(seconds=20)


def test_interval_due_checks_again_after_one_interval() -> None:
    app = make_app()
    every = schedule(30, app=app)
    assert every.is_due(app.now() - dt.timedelta(seconds=31)) == (True, 30.0)
    assert every.seconds == 30.0
    assert repr(every) == "<freq: 30.00 seconds>"


def test_interval_relative_rounds_to_the_unit_in_the_app_timezone() -> None:
    app = make_app("Asia/Kolkata")  # +05:30: hour boundaries are local ones
    hourly = schedule(dt.timedelta(hours=1), relative=True, app=app)
    last = at(2024, 5, 17, 4, 50, tz=UTC)  # 10:20 local
    assert hourly.next_run(last).astimezone(ZoneInfo("Asia/Kolkata")).time() == dt.time(11, 0)
    daily = schedule(dt.timedelta(days=1), relative=True, app=app)
    nxt = daily.next_run(last).astimezone(ZoneInfo("Asia/Kolkata"))
    assert (nxt.date(), nxt.time()) == (dt.date(2024, 5, 18), dt.time(0, 0))


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        schedule(0)


def test_maybe_schedule_turns_numbers_into_intervals() -> None:
    app = make_app()
    assert maybe_schedule(10, app=app) == schedule(dt.timedelta(seconds=10))
    cron = crontab()
    assert maybe_schedule(cron, app=app) is cron and cron.app is app
    with pytest.raises(TypeError, match="schedule"):
        maybe_schedule("10")  # type: ignore[arg-type]


def test_nowfun_is_used_instead_of_the_app_clock() -> None:
    now = at(2024, 1, 1, 12, 0)
    every = schedule(60, nowfun=lambda: now.replace(tzinfo=None), app=make_app())
    assert every.remaining_estimate(now - dt.timedelta(seconds=15)) == dt.timedelta(seconds=45)


# -- crontab: parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "spec", "expected"),
    [
        ("minute", "*/15", {0, 15, 30, 45}),
        ("minute", "1,13,30-45,50-59/2", {1, 13, *range(30, 46), *range(50, 60, 2)}),
        ("hour", "0,8-17/2", {0, 8, 10, 12, 14, 16}),
        ("hour", "22-2", {22, 23, 0, 1, 2}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "fri-mon", {5, 6, 0, 1}),
        ("day_of_week", "sunday,7", {0}),
        ("day_of_month", "*/3", {1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31}),
        ("month_of_year", "2-12/2", {2, 4, 6, 8, 10, 12}),
        ("month_of_year", "jan,jul", {1, 7}),
        ("minute", 7, {7}),
        ("hour", [1, 2, 3], {1, 2, 3}),
    ],
)
def test_crontab_fields_expand(field: str, spec: object, expected: set[int]) -> None:
    assert getattr(crontab(**{field: spec}), field) == expected  # type: ignore[arg-type]


@pytest.mark.compat
@pytest.mark.parametrize(
    "spec",
    ["*", "*/7", "5", "0-59/10", "10-20", "3,9,27", "1-4,30-40/5"],
)
def test_crontab_minute_parsing_matches_celery(spec: str) -> None:
    from celery.schedules import crontab_parser

    assert crontab(minute=spec).minute == crontab_parser(60).parse(spec)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"minute": "61"}, "minute"),
        ({"hour": "24"}, "hour"),
        ({"hour": "*/0"}, "hour"),
        ({"day_of_week": "funday"}, "day_of_week"),
        ({"day_of_month": "0"}, "day_of_month"),
        ({"month_of_year": "13"}, "month_of_year"),
        ({"minute": "5/15"}, "minute"),
        ({"minute": "1,,2"}, "minute"),
        ({"minute": ""}, "minute"),
        ({"day_of_month": "30", "month_of_year": "2"}, "day_of_month"),
    ],
)
def test_bad_crontab_field_raises_valueerror_naming_it(kwargs: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        crontab(**kwargs)


def test_from_string_reads_the_five_fields_in_cron_order() -> None:
    cron = crontab.from_string("*/5 9-17 1,15 * mon-fri")
    assert cron.minute == set(range(0, 60, 5))
    assert cron.hour == set(range(9, 18))
    assert cron.day_of_month == {1, 15}
    assert cron.day_of_week == {1, 2, 3, 4, 5}
    assert crontab.from_string("@daily") == crontab(minute=0, hour=0)
    assert repr(cron) == "<crontab: */5 9-17 1,15 * mon-fri (m/h/dM/MY/d)>"
    with pytest.raises(ValueError, match="expected 5"):
        crontab.from_string("* * *")


# -- crontab: when it runs ----------------------------------------------------------------


@pytest.mark.compat
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri"},
        {"minute": 0, "hour": 0},
        {"minute": 30, "hour": 7, "day_of_week": "sat,sun"},
        {"minute": 0, "hour": 12, "day_of_month": "1,15"},
        {"minute": 0, "hour": 3, "day_of_month": 31},
        {"minute": 0, "hour": 0, "day_of_month": 29, "month_of_year": 2},
        {"minute": "5", "hour": "*/4", "month_of_year": "3-5"},
    ],
)
def test_crontab_next_run_matches_celery_in_utc(fields: dict[str, object]) -> None:
    from celery import Celery as CeleryApp
    from celery.schedules import crontab as celery_crontab

    celery_app = CeleryApp(set_as_current=False)
    celery_app.conf.timezone = "UTC"
    app = make_app()
    for last in (at(2024, 5, 17, 10, 0, 5), at(2024, 2, 28, 23, 59), at(2023, 12, 31, 23, 45)):
        now = last + dt.timedelta(seconds=1)
        theirs = celery_crontab(**fields, nowfun=lambda now=now: now, app=celery_app)
        ours = crontab(**fields, nowfun=lambda now=now: now, app=app)  # type: ignore[arg-type]
        assert ours.next_run(last) == now + theirs.remaining_estimate(last), (fields, last)


def test_crontab_is_due_when_a_matching_minute_has_passed() -> None:
    app = make_app()  # now: 2024-05-17 10:07:30 UTC
    quarter = crontab(minute="*/15", app=app)
    assert quarter.is_due(at(2024, 5, 17, 9, 50)) == schedstate(True, 7.5 * 60)
    due, wait = quarter.is_due(at(2024, 5, 17, 10, 0, 5))
    assert (due, wait) == (False, 7.5 * 60)


def test_crontab_reads_hours_in_the_app_timezone() -> None:
    app = make_app("America/New_York")
    nine = crontab(minute=0, hour=9, app=app)
    winter = nine.next_run(at(2024, 1, 10, 12, 0, tz=UTC))
    summer = nine.next_run(at(2024, 7, 10, 12, 0, tz=UTC))
    assert winter.astimezone(UTC) == at(2024, 1, 10, 14, 0)  # 09:00 EST
    assert summer.astimezone(UTC) == at(2024, 7, 10, 13, 0)  # 09:00 EDT


def runs(cron: crontab, start: dt.datetime, count: int) -> list[dt.datetime]:
    found, last = [], start
    for _ in range(count):
        last = cron.next_run(last)
        found.append(last.astimezone(NEW_YORK))
    return found


def test_dst_spring_forward_runs_a_skipped_time_once_by_the_old_offset() -> None:
    app = make_app("America/New_York")
    daily = crontab(minute=30, hour=2, app=app)  # 02:30 does not exist on 2024-03-10
    times = runs(daily, at(2024, 3, 9, 12, 0, tz=NEW_YORK), 3)
    assert [t.astimezone(UTC) for t in times] == [
        at(2024, 3, 10, 7, 30),  # 02:30 EST = 03:30 EDT
        at(2024, 3, 11, 6, 30),  # 02:30 EDT
        at(2024, 3, 12, 6, 30),
    ]


def test_dst_spring_forward_hourly_job_loses_the_missing_hour_only() -> None:
    app = make_app("America/New_York")
    hourly = crontab(minute=30, app=app)
    times = runs(hourly, at(2024, 3, 10, 0, 0, tz=NEW_YORK), 3)
    utc = [t.astimezone(UTC) for t in times]
    assert utc == [at(2024, 3, 10, 5, 30), at(2024, 3, 10, 6, 30), at(2024, 3, 10, 7, 30)]
    assert [t.hour for t in times] == [0, 1, 3]  # 02:30 never shows on the clock


def test_dst_fall_back_fixed_time_runs_once() -> None:
    app = make_app("America/New_York")
    daily = crontab(minute=30, hour=1, app=app)  # 01:30 happens twice on 2024-11-03
    times = runs(daily, at(2024, 11, 2, 12, 0, tz=NEW_YORK), 2)
    assert [t.hour for t in times] == [1, 1]
    assert [t.astimezone(UTC) for t in times] == [at(2024, 11, 3, 5, 30), at(2024, 11, 4, 6, 30)]


def test_dst_fall_back_hourly_job_runs_in_both_repeated_hours() -> None:
    app = make_app("America/New_York")
    hourly = crontab(minute=30, app=app)
    times = runs(hourly, at(2024, 11, 3, 0, 0, tz=NEW_YORK), 4)
    utc = [t.astimezone(UTC) for t in times]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(utc)}
    assert gaps == {3600.0}  # 00:30 EDT, 01:30 EDT, 01:30 EST, 02:30 EST: an hour apart


def test_deadline_skips_a_stale_crontab_run() -> None:
    app = make_app()  # now: 10:07:30
    app.conf.beat_cron_starting_deadline = 60
    hourly = crontab(minute=0, app=app)
    assert hourly.is_due(at(2024, 5, 17, 9, 0, 30)).is_due is False  # the 10:00 run is stale
    app.conf.beat_cron_starting_deadline = 600
    assert hourly.is_due(at(2024, 5, 17, 9, 0, 30)).is_due is True


# -- solar -------------------------------------------------------------------------------

# The first event after `start`, computed with PyEphem 4.2.1 set up as Celery's solar is.
EPHEM = [
    ("dawn_civil", 51.5074, -0.1278, "2024-06-21T06:00:00", "2024-06-22T02:55:41"),
    ("dawn_astronomical", 51.5074, -0.1278, "2024-03-20T12:00:00", "2024-03-21T04:06:10"),
    ("dusk_nautical", 51.5074, -0.1278, "2024-06-21T06:00:00", "2024-06-21T22:24:01"),
    ("sunset", 51.5074, -0.1278, "2024-12-21T03:00:00", "2024-12-21T15:53:39"),
    ("sunrise", 40.7128, -74.006, "2024-01-15T00:00:00", "2024-01-15T12:18:05"),
    ("solar_noon", 40.7128, -74.006, "2024-01-15T00:00:00", "2024-01-15T17:05:19"),
    ("dusk_nautical", 40.7128, -74.006, "2031-07-04T09:30:00", "2031-07-05T01:45:34"),
    ("dusk_civil", -33.8688, 151.2093, "2024-01-15T00:00:00", "2024-01-15T09:37:25"),
    ("sunset", -33.8688, 151.2093, "2024-06-21T06:00:00", "2024-06-21T06:53:53"),
    ("sunrise", -33.8688, 151.2093, "2024-01-15T00:00:00", "2024-01-15T18:59:56"),
    ("solar_noon", 35.6762, 139.6503, "2024-03-20T12:00:00", "2024-03-21T02:48:31"),
    ("dawn_civil", 35.6762, 139.6503, "2024-01-15T00:00:00", "2024-01-15T21:22:44"),
    ("dawn_astronomical", 0.0, 0.0, "2024-09-22T18:00:00", "2024-09-23T04:40:17"),
    ("dusk_astronomical", 0.0, 0.0, "2024-06-21T06:00:00", "2024-06-21T19:20:42"),
    ("sunset", 64.1466, -21.9426, "2024-01-15T00:00:00", "2024-01-15T16:18:35"),
    ("sunrise", 64.1466, -21.9426, "2024-01-15T00:00:00", "2024-01-15T10:56:02"),
    ("dusk_nautical", 69.6492, 18.9553, "2031-07-04T09:30:00", "2031-09-01T22:06:57"),
    ("dawn_astronomical", 69.6492, 18.9553, "2024-12-21T03:00:00", "2024-12-21T05:28:35"),
    ("sunrise", -54.8, -68.3, "2024-01-15T00:00:00", "2024-01-15T08:21:29"),
    ("dawn_astronomical", -54.8, -68.3, "2024-12-21T03:00:00", "2025-02-01T05:10:13"),
    ("dusk_nautical", 19.43, -99.13, "2024-06-21T06:00:00", "2024-06-22T02:11:09"),
    ("dawn_astronomical", 60.17, 24.94, "2024-06-21T06:00:00", "2024-08-21T22:44:59"),
    ("dusk_astronomical", -45.0, 170.0, "2024-06-21T06:00:00", "2024-06-21T06:51:40"),
    ("dusk_nautical", 35.0, -179.5, "2031-07-04T09:30:00", "2031-07-05T08:21:24"),
]


@pytest.mark.parametrize(("event", "lat", "lon", "start", "expected"), EPHEM)
def test_solar_events_agree_with_ephem_within_a_minute(
    event: str, lat: float, lon: float, start: str, expected: str
) -> None:
    after = dt.datetime.fromisoformat(start).replace(tzinfo=UTC)
    found = solar(event, lat, lon, app=make_app()).next_run(after)
    assert found is not None
    want = dt.datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert abs((found - want).total_seconds()) < 60


def test_solar_is_due_after_the_event_and_then_waits_for_the_next() -> None:
    app = make_app(start=dt.datetime(2024, 6, 21, 20, 0, tzinfo=UTC))
    sunset = solar("sunset", 51.5074, -0.1278, app=app)  # London: 20:21 UTC that day
    due, wait = sunset.is_due(at(2024, 6, 21, 12, 0))
    assert not due and 20 * 60 < wait < 22 * 60
    app.clock.advance(30 * 60)  # type: ignore[attr-defined]
    due, wait = sunset.is_due(at(2024, 6, 21, 12, 0))
    assert due and 23 * 3600 < wait < 25 * 3600  # tomorrow's sunset


def test_solar_without_the_event_is_never_due() -> None:
    app = make_app(start=dt.datetime(2024, 12, 21, 12, 0, tzinfo=UTC))
    polar_night = solar("solar_noon", 89.0, 0.0, app=app)
    assert polar_night.is_due(app.now()).is_due is False  # noon always happens
    no_dawn = solar("dawn_astronomical", 89.9, 0.0, app=app)
    assert no_dawn.next_run(app.now()) is not None  # happens once a year at the pole
    assert no_dawn.is_due(app.now()).is_due is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("noon", 0, 0), "unknown event"),
        (("sunset", 91, 0), "latitude"),
        (("sunset", 0, 181), "longitude"),
    ],
)
def test_solar_rejects_bad_arguments(args: tuple[str, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        solar(*args)


def test_celery_style_import_path() -> None:
    import celeriac.schedules as compat

    assert compat.crontab is crontab and compat.schedule is schedule and compat.solar is solar
    factory: Callable[..., object] = compat.crontab.from_string
    assert factory("0 0 * * *") == crontab(minute=0, hour=0)


def test_remaining_time_is_real_elapsed_time_across_a_dst_change() -> None:
    app = make_app("America/New_York")
    now = dt.datetime(2024, 11, 3, 1, 45, tzinfo=NEW_YORK)  # EDT, fold 0
    hourly = crontab(minute=30, nowfun=lambda: now, app=app)
    last = dt.datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)
    assert hourly.remaining_estimate(last) == dt.timedelta(minutes=45)  # 01:30 EST comes next
