"""Pieces of the Django integration that need no database: choosing beat's scheduler, the
crontab timezone and clocked schedules the admin's entries use, and the fixup choosing the
default task class, and the django-cache result backend (the last two in subprocesses:
Django's settings and the fixup are process-wide)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.beat.clocked import clocked
from celeriac.beat.entries import schedule_from_dict
from celeriac.beat.schedules import crontab
from celeriac.beat.service import database_scheduler
from celeriac.exceptions import ImproperlyConfigured

START = dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC)


def _app(**settings: object) -> Celery:
    app = Celery(
        "sched", broker="memory://", clock=ManualClock(START.timestamp()), set_as_current=False
    )
    app.conf.update(settings)
    return app


def test_an_unknown_beat_scheduler_is_refused_naming_the_supported_ones() -> None:
    app = _app(beat_scheduler="myproject.schedulers:Fancy")
    with pytest.raises(ImproperlyConfigured) as caught:
        database_scheduler(app)
    message = str(caught.value)
    assert "myproject.schedulers:Fancy" in message
    assert "'django'" in message and "django_celery_beat.schedulers:DatabaseScheduler" in message
    assert "celery.beat:PersistentScheduler" in message


@pytest.mark.parametrize(
    "name",
    [
        "django",
        "django_celery_beat.schedulers:DatabaseScheduler",
        "celeriac.contrib.django.schedulers:DatabaseScheduler",
    ],
)
def test_the_django_scheduler_and_its_aliases_are_recognised(name: str) -> None:
    assert database_scheduler(_app(beat_scheduler=name)) is not None
    assert database_scheduler(_app()) is None  # Celery's default: beat's own store


def test_a_crontab_with_its_own_timezone_matches_there() -> None:
    app = _app(timezone="UTC")
    tokyo = crontab(minute="0", hour="9", tz="Asia/Tokyo", app=app)
    assert tokyo.next_run(START) == dt.datetime(2026, 3, 9, 0, 0, tzinfo=dt.UTC)  # 09:00 JST
    again = schedule_from_dict(tokyo.to_dict(), app)
    assert isinstance(again, crontab) and str(again.tz) == "Asia/Tokyo"
    with pytest.raises(ValueError, match="Mars/Olympus"):
        crontab(tz="Mars/Olympus")


def test_a_clocked_schedule_is_due_from_its_time_on() -> None:
    app = _app()
    at = START + dt.timedelta(minutes=5)
    once = schedule_from_dict(clocked(at, app=app).to_dict(), app)
    assert isinstance(once, clocked)
    assert once.is_due(START) == (False, 300.0)
    app.clock.advance(301)  # type: ignore[attr-defined]
    assert once.is_due(START).is_due


FIXUP_PROBE = """
from celeriac import Celery, shared_task

app = Celery("probe", broker="memory://")

@shared_task
def shared(x):
    return x

@app.task
def own(x):
    return x

print(type(shared).__name__, type(own).__name__,
      hasattr(shared, "delay_on_commit"))
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DJANGO_SETTINGS_MODULE": "probe_settings"}, "DjangoTask DjangoTask True"),
        ({}, "Task Task False"),
    ],
)
def test_the_fixup_makes_djangotask_the_default_only_in_django_projects(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    (tmp_path / "probe_settings.py").write_text("SECRET_KEY = 'x'\nINSTALLED_APPS = []\n")
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), **env}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FIXUP_PROBE)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


CACHE_PROBE = """
import json
import django
django.setup()
from celeriac import Celery, states

app = Celery("cache", broker="memory://", backend="django-cache", set_as_current=False)
app.results.store("t1", states.SUCCESS, {"n": 1})
backend = app.results.backend
counts = [backend.incr("chord-x", ttl=60) for _ in range(3)]
app.results.save_group("g1", ["g1", [[["t1", None], None]]])
out = {"value": app.AsyncResult("t1").get(timeout=1), "counts": counts,
       "group": app.results.restore_group("g1") is not None}
app.AsyncResult("t1").forget()
out["after_forget"] = app.AsyncResult("t1").state
print(json.dumps(out))
"""


def test_results_in_the_django_cache(tmp_path: Path) -> None:
    (tmp_path / "cache_settings.py").write_text(
        "SECRET_KEY = 'x'\nINSTALLED_APPS = []\nCACHES = {'default': "
        "{'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}\n"
    )
    environ = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "cache_settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CACHE_PROBE)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "value": {"n": 1},
        "counts": [1, 2, 3],
        "group": True,
        "after_forget": "PENDING",
    }
