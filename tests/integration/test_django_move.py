"""A Django project moving from django-celery-results and django-celery-beat (with Celery
5.7) to ``celeriac.contrib.django`` on PostgreSQL: ``migrate celeriac --fake-initial``
adopts their tables, Celeriac reads the results and schedules they wrote, and what
Celeriac stores there reads back through django-celery-results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import sql_support

pytestmark = [pytest.mark.integration, pytest.mark.compat]

SETTINGS = """
SECRET_KEY = "x"
USE_TZ = True
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "{name}",
                          "USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432"}}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", {apps}]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CELERY_RESULT_BACKEND = "django-db"
"""

OLD_SIDE = """
import json, django
django.setup()
import celery
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

app = celery.Celery("old", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.backend.store_result("from-celery", {"answer": 42}, "SUCCESS")
app.backend.store_result("failed-in-celery", KeyError("gone"), "FAILURE")
members = [app.AsyncResult("from-celery")]
app.GroupResult("celery-group", members).save()
PeriodicTask.objects.create(
    name="every-minute", task="proj.ping", args='[1, "a"]', queue="fast",
    interval=IntervalSchedule.objects.create(every=1, period="minutes"))
PeriodicTask.objects.create(
    name="nightly", task="proj.report", kwargs='{"full": true}',
    crontab=CrontabSchedule.objects.create(minute="30", hour="2", timezone="Europe/Paris"))
print(json.dumps("ok"))
"""

NEW_SIDE = """
import json, django
django.setup()
from celeriac import Celery
from celeriac.result import GroupResult
from celeriac.contrib.django.schedulers import DjangoScheduleStore

app = Celery("new", broker="memory://", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
failed = app.AsyncResult("failed-in-celery")
group = GroupResult.restore("celery-group", app=app)
entries = DjangoScheduleStore().entries()
app.results.store("from-celeriac", "SUCCESS", [1, 2])
print(json.dumps({
    "value": app.AsyncResult("from-celery").get(timeout=5),
    "failed": [failed.state, type(failed.result).__name__],
    "group": [r.id for r in group.results],
    "schedules": {name: state.definition for name, state in sorted(entries.items())},
}))
"""

OLD_READS_NEW = """
import json, django
django.setup()
import celery
app = celery.Celery("old", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
print(json.dumps(app.AsyncResult("from-celeriac").get(timeout=5)))
"""


class Project:
    def __init__(self, root: Path, db: sql_support.Database) -> None:
        self.root, self.db = root, db
        root.mkdir()

    def settings(self, module: str, apps: str) -> None:
        text = SETTINGS.format(name=self.db.name, apps=apps)
        (self.root / f"{module}.py").write_text(textwrap.dedent(text))

    def run(self, module: str, *args: str) -> Any:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": str(self.root)}
        done = subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, f"{args[:2]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def script(self, module: str, code: str) -> Any:
        return json.loads(self.run(module, "-c", code).strip().splitlines()[-1])


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with sql_support.database("postgresql") as db:
        proj = Project(tmp_path / "proj", db)
        proj.settings("old_settings", '"django_celery_results", "django_celery_beat"')
        proj.settings("new_settings", '"celeriac.contrib.django"')
        yield proj


def test_a_project_moves_from_django_celery_results_and_beat_without_a_data_migration(
    project: Project,
) -> None:
    project.run("old_settings", "-m", "django", "migrate", "-v", "0")
    assert project.script("old_settings", OLD_SIDE) == "ok"

    project.run("new_settings", "-m", "django", "migrate", "celeriac", "--fake-initial", "-v", "0")

    seen = project.script("new_settings", NEW_SIDE)
    assert seen["value"] == {"answer": 42}
    assert seen["failed"] == ["FAILURE", "KeyError"]
    assert seen["group"] == ["from-celery"]
    assert seen["schedules"] == {
        "every-minute": {
            "task": "proj.ping",
            "schedule": {"type": "interval", "every": 60.0},
            "args": [1, "a"],
            "kwargs": {},
            "options": {"queue": "fast"},
        },
        "nightly": {
            "task": "proj.report",
            "schedule": {
                "type": "crontab",
                "minute": "30",
                "hour": "2",
                "day_of_week": "*",
                "day_of_month": "*",
                "month_of_year": "*",
                "tz": "Europe/Paris",
            },
            "args": [],
            "kwargs": {"full": True},
            "options": {},
        },
    }
    # And back: what Celeriac stored reads through django-celery-results.
    assert project.script("old_settings", OLD_READS_NEW) == [1, 2]
