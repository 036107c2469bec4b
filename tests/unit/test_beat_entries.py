"""Entries: reading beat_schedule (new and old names), add_periodic_task, stored definitions."""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.beat.entries import (
    ScheduleEntry,
    add_periodic_task,
    entry_from_definition,
    parse_beat_schedule,
)
from celeriac.beat.schedules import crontab, schedule, solar
from celeriac.beat.service import prepare_app
from celeriac.exceptions import ImproperlyConfigured, UnknownSettingWarning


@pytest.fixture
def app() -> Celery:
    return Celery("proj", broker="memory://", clock=ManualClock(), set_as_current=False)


def test_classic_beat_schedule_entries(app: Celery) -> None:
    app.conf.beat_schedule = {
        "add-every-30s": {"task": "proj.tasks.add", "schedule": 30.0, "args": (16, 16)},
        "every-5s": {"task": "proj.tasks.ping", "schedule": dt.timedelta(seconds=5)},
        "monday-morning": {
            "task": "proj.tasks.report",
            "schedule": crontab(hour=7, minute=30, day_of_week=1),
            "kwargs": {"full": True},
            "options": {"queue": "reports", "priority": 7, "expires": 60},
        },
        "dusk": {"task": "proj.tasks.lights", "schedule": solar("dusk_civil", 48.85, 2.35)},
        "hourly": {"task": "proj.tasks.tidy", "schedule": 3600, "relative": True},
    }
    entries = parse_beat_schedule(app.conf.beat_schedule, app)
    assert entries["add-every-30s"].schedule == schedule(30)
    assert entries["add-every-30s"].args == (16, 16)
    assert entries["every-5s"].schedule == schedule(dt.timedelta(seconds=5))
    report = entries["monday-morning"]
    assert report.kwargs == {"full": True}
    assert report.options == {"queue": "reports", "priority": 7, "expires": 60}
    assert report.schedule.app is app  # reads the app's clock and timezone
    assert isinstance(entries["dusk"].schedule, solar)
    hourly = entries["hourly"].schedule
    assert isinstance(hourly, schedule) and hourly.relative
    assert all(entry.missed == "run_once" for entry in entries.values())


def test_old_setting_name_from_a_config_object(app: Celery) -> None:
    config = types.SimpleNamespace(
        CELERYBEAT_SCHEDULE={"tick": {"task": "proj.tasks.tick", "schedule": 10}},
        CELERYBEAT_MAX_LOOP_INTERVAL=7,
    )
    app.config_from_object(config)
    assert list(parse_beat_schedule(app.conf.beat_schedule, app)) == ["tick"]
    assert app.conf.beat_max_loop_interval == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": 10}, "needs 'task'"),
        ({"task": "t"}, "needs 'schedule'"),
        ({"task": "t", "schedule": "10"}, "schedule"),
        ({"task": "t", "schedule": 10, "arguments": [1]}, "unknown key"),
        ({"task": "t", "schedule": 10, "args": "12"}, "args"),
        ({"task": "t", "schedule": 10, "missed": "later"}, "missed"),
        ({"task": "t", "schedule": 10, "missed_grace": -1}, "missed_grace"),
    ],
)
def test_bad_entries_name_the_entry_and_problem(
    app: Celery, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        parse_beat_schedule({"broken": spec}, app)
    assert "broken" in str(caught.value)


def test_unknown_sending_option_warns_and_is_dropped(app: Celery) -> None:
    with pytest.warns(UnknownSettingWarning, match="queu"):
        entry = parse_beat_schedule(
            {"e": {"task": "t", "schedule": 5, "options": {"queu": "x", "priority": 1}}}, app
        )["e"]
    assert entry.options == {"priority": 1}


def test_add_periodic_task_with_a_task(app: Celery) -> None:
    @app.task
    def tick(word: str) -> str:
        return word

    key = add_periodic_task(app, 10.0, tick, args=("hi",), name="say hi", queue="q")
    assert key == "say hi"
    assert app.conf.beat_schedule["say hi"] == {
        "task": tick.name,
        "schedule": 10.0,
        "args": ("hi",),
        "kwargs": {},
        "options": {"queue": "q"},
    }


def test_add_periodic_task_with_signature_like_objects(app: Celery) -> None:
    class Sig:
        task = "proj.tasks.add"
        args = (2,)
        kwargs = {"y": 3}
        options = {"priority": 4}

    key = add_periodic_task(app, crontab(minute=0), Sig(), args=(1,), missed="skip")
    assert key == "proj.tasks.add(1, 2, y=3)"
    entry = parse_beat_schedule(app.conf.beat_schedule, app)[key]
    assert (entry.args, entry.kwargs, entry.options) == ((1, 2), {"y": 3}, {"priority": 4})
    assert entry.missed == "skip"
    add_periodic_task(app, 5, {"task": "proj.tasks.ping", "kwargs": {"n": 1}}, name="ping")
    assert app.conf.beat_schedule["ping"]["kwargs"] == {"n": 1}
    with pytest.raises(TypeError, match="add_periodic_task"):
        add_periodic_task(app, 5, object())


def test_add_periodic_task_refuses_a_bad_schedule_at_once(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match="schedule"):
        add_periodic_task(app, "often", "proj.tasks.ping")
    assert app.conf.beat_schedule == {}


def test_on_after_configure_handler_adds_entries(app: Celery) -> None:
    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        add_periodic_task(sender, 10.0, "proj.tasks.test", args=("hello",), name="add every 10")

    prepare_app(app, import_modules=False)  # beat fires it when nothing has yet
    assert "add every 10" in app.conf.beat_schedule
    app.conf.beat_schedule = {}
    prepare_app(app, import_modules=False)  # but only once per app
    assert app.conf.beat_schedule == {}


def test_stored_definition_round_trips_with_the_same_fingerprint(app: Celery) -> None:
    for when in (schedule(30), crontab("*/5", "9-17", "mon-fri"), solar("sunset", 1.5, 2.5)):
        entry = ScheduleEntry("e", "t", when, (1,), {"k": 2}, {"queue": "q"}, "skip", 5.0)
        back = entry_from_definition("e", entry.definition(), app)
        assert back.schedule == when and back.fingerprint == entry.fingerprint
        assert (back.args, back.kwargs, back.options, back.missed, back.missed_grace) == (
            (1,),
            {"k": 2},
            {"queue": "q"},
            "skip",
            5.0,
        )
        assert back.source == "store"


def test_fingerprint_changes_with_the_schedule_or_arguments(app: Celery) -> None:
    base = ScheduleEntry("e", "t", schedule(30))
    assert base.fingerprint == ScheduleEntry("e", "t", schedule(30)).fingerprint
    assert base.fingerprint != ScheduleEntry("e", "t", schedule(31)).fingerprint
    assert base.fingerprint != ScheduleEntry("e", "t", schedule(30), (1,)).fingerprint


def test_bad_stored_definition_is_reported(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match="stored entry 'x'"):
        entry_from_definition("x", {"task": "t", "schedule": {"type": "lunar"}}, app)


def test_classic_on_after_configure_with_config_from_object(app: Celery) -> None:
    @app.task
    def test(arg: str) -> str:
        return arg

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, test, args=("hello",), name="add every 10")
        sender.add_periodic_task(crontab(minute="*/15"), test, args=("world",))

    app.config_from_object(types.SimpleNamespace(timezone="Europe/Paris"))
    entries = parse_beat_schedule(app.conf.beat_schedule, app)
    assert sorted(entries) == ["add every 10", f"{test.name}('world')"]
    app.conf.beat_schedule = {}
    prepare_app(app, import_modules=False)  # already sent by config_from_object: not again
    assert app.conf.beat_schedule == {}
