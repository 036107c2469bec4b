"""examples/django (Celery's "First steps with Django" layout, imports changed to celeriac)
run end to end on a database of its own: a prefork worker and ``celeriac beat`` as
subprocesses, orders placed through a view and a management command
(``delay_on_commit``), a report with progress, periodic tasks created as the admin creates
them and picked up by the running beat, results in the admin; and the fixup's connection
handling on MariaDB."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import sql_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django"

PREAMBLE = """
import json, os, sys, time
import django
django.setup()
from django.test import Client
from orders.models import Order
from celeriac.contrib.django.models import (
    ClockedSchedule, IntervalSchedule, PeriodicTask, TaskResult)


def wait(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")
"""


class Site:
    """A copy of the example project on one database, and the processes started on it."""

    def __init__(self, root: Path, db: sql_support.Database) -> None:
        self.root = root
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite*"))
        env = {
            "DATABASE_URL": f"{db.kind}://{db.user}@{sql_support.HOST}:{db.port}/{db.name}",
            "CELERY_BROKER_URL": f"sqlite:///{root / 'broker.sqlite'}",
            "DJANGO_SETTINGS_MODULE": "proj.settings",
        }
        self.processes = WorkerProject(root, None, env, app="proj")
        self.env = self.processes.env  # the same dict: a change reaches later processes

    def run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def script(self, code: str, timeout: float = 60) -> Any:
        """Run ``code`` in the project (Django set up); its last printed line, as JSON."""
        out = self.run("-c", PREAMBLE + textwrap.dedent(code), timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def start(self, name: str, *args: str, ready: str) -> subprocess.Popen[bytes]:
        """``celeriac -A proj <args>``, returned once its log says ``ready``."""
        argv = [sys.executable, "-m", "celeriac", "-A", "proj", *args]
        return self.processes.start(argv, name, ready)

    def log(self, name: str) -> str:
        return self.processes.log(name)

    def stop(self) -> None:
        self.processes.stop_all()


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    kind = getattr(request, "param", "postgresql")
    with sql_support.database(kind) as db:
        project = Site(tmp_path / "site", db)
        project.run("manage.py", "migrate", "-v", "0")
        try:
            yield project
        finally:
            project.stop()


def test_the_django_guide_project_runs_end_to_end_on_postgresql(site: Site) -> None:
    site.start(
        "worker",
        "worker",
        "-P",
        "prefork",
        "-c",
        "2",
        "-l",
        "info",
        "--without-mingle",
        ready="ready.",
    )
    site.start("beat", "beat", "-S", "django", "-l", "info", ready="now leading")
    # A view and a management command place orders; each is processed once committed.
    placed = site.script("""
        client = Client()
        response = client.post("/orders/", json.dumps({"item": "widget", "quantity": 2}),
                               content_type="application/json")
        assert response.status_code == 201, response.content
        print(json.dumps(response.json()["order"]))
    """)
    by_command = int(site.run("manage.py", "place_order", "gadget", "--quantity", "3").strip())
    assert site.run("manage.py", "place_order", "never", "--rollback").strip() == "rolled back"
    orders = site.script("""
        wait(lambda: Order.objects.filter(status="processed").count() == 2, "two processed")
        print(json.dumps(sorted(Order.objects.values_list("pk", flat=True))))
    """)
    assert orders == sorted([placed, by_command])  # the rolled-back order never existed
    # The report reports progress while it runs, then its result; all in the Django database.
    report = site.script("""
        client = Client()
        task_id = client.post("/reports/?pause=1").json()["task_id"]
        seen = []
        def finished():
            state = client.get(f"/reports/{task_id}/").json()
            seen.append(state)
            return state["state"] == "SUCCESS"
        wait(finished, "the report")
        row = TaskResult.objects.get(task_id=task_id)
        print(json.dumps({"seen": seen, "row": [row.status, row.task_name],
                          "processed": TaskResult.objects.filter(
                              task_name="orders.tasks.process_order", status="SUCCESS").count()}))
    """)
    assert {"state": "PROGRESS", "info": {"done": 1, "of": 2}} in report["seen"]
    assert report["seen"][-1] == {"state": "SUCCESS", "info": {"orders": 2, "items": 5}}
    assert report["row"] == ["SUCCESS", "orders.tasks.sales_report"]
    assert report["processed"] == 2  # nothing was sent for the rolled-back order
    # Periodic tasks added in the admin while beat runs: it picks them up.
    periodic = site.script("""
        from django.contrib.auth.models import User
        client = Client()
        client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        every_second = IntervalSchedule.objects.create(every=1, period="seconds")
        added = client.post("/admin/celeriac/periodictask/add/", {
            "name": "cleanup", "task": "orders.tasks.cleanup_orders", "enabled": "on",
            "interval": every_second.pk, "args": "[]", "kwargs": '{"days": 0}',
            "headers": "{}"})
        assert added.status_code == 302, added.text
        from django.utils import timezone
        PeriodicTask.objects.create(
            name="once", task="orders.tasks.connection_id", one_off=True,
            clocked=ClockedSchedule.objects.create(clocked_time=timezone.now()))
        wait(lambda: not Order.objects.exists(), "the cleanup to run")
        wait(lambda: not PeriodicTask.objects.get(name="once").enabled, "the one-off to run")
        cleanup = PeriodicTask.objects.get(name="cleanup")
        wait(lambda: TaskResult.objects.filter(task_name="orders.tasks.connection_id").exists(),
             "the one-off's result")
        print(json.dumps({"runs": PeriodicTask.objects.get(name="cleanup").total_run_count,
                          "last": cleanup.last_run_at is not None,
                          "once": TaskResult.objects.filter(
                              task_name="orders.tasks.connection_id").count()}))
    """)
    assert periodic["runs"] >= 1 and periodic["last"]
    assert periodic["once"] == 1
    # The admin lists, filters and deletes results, and lists the periodic tasks.
    admin = site.script("""
        from django.contrib.auth.models import User
        client = Client()
        client.force_login(User.objects.get(username="admin"))
        listed = client.get("/admin/celeriac/taskresult/?status__exact=SUCCESS")
        one = TaskResult.objects.filter(task_name="orders.tasks.sales_report").get()
        deleted = client.post("/admin/celeriac/taskresult/", {
            "action": "delete_selected", "_selected_action": [one.pk], "post": "yes"})
        tasks = client.get("/admin/celeriac/periodictask/")
        print(json.dumps({
            "listed": [listed.status_code, "orders.tasks.process_order" in listed.text],
            "deleted": [deleted.status_code, TaskResult.objects.filter(pk=one.pk).exists()],
            "tasks": [tasks.status_code, "cleanup" in tasks.text],
        }))
    """)
    assert admin == {"listed": [200, True], "deleted": [302, False], "tasks": [200, True]}
    assert "Traceback" not in site.log("worker")


@pytest.mark.parametrize("site", ["mysql"], indirect=True)
def test_the_fixup_gives_each_task_a_usable_connection_on_mariadb(site: Site) -> None:
    """With persistent connections (CONN_MAX_AGE), a worker whose connection the server
    killed between tasks ("MySQL server has gone away") runs the next task on a new one."""
    site.env["DJANGO_CONN_MAX_AGE"] = "600"
    site.start(
        "worker",
        "worker",
        "-P",
        "prefork",
        "-c",
        "1",
        "-l",
        "info",
        "--without-mingle",
        ready="ready.",
    )
    out = site.script("""
        import pymysql
        from orders.tasks import connection_id
        first_pid, first = connection_id.delay().get(timeout=30)
        admin = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"KILL {first}")  # alive: kept for CONN_MAX_AGE
        second_pid, second = connection_id.delay().get(timeout=30)
        from django.core.management import call_command
        call_command("place_order", "bolt", "--quantity", "4")
        wait(lambda: Order.objects.filter(status="processed").exists(), "the order")
        from celeriac import chord, group
        from orders.tasks import sales_report, total_items
        reports = group(sales_report.s() for _ in range(3))
        grouped = [r["items"] for r in reports.apply_async().get(timeout=30)]
        chorded = chord(reports)(total_items.s()).get(timeout=30)
        print(json.dumps({"pids": [first_pid, second_pid], "sessions": [first, second],
                          "canvas": [grouped, chorded],
                          "status": TaskResult.objects.filter(
                              task_name="orders.tasks.process_order").get().status}))
    """)
    assert out["pids"][0] == out["pids"][1]  # the same pool child ran both
    assert out["sessions"][0] != out["sessions"][1]
    assert out["status"] == "SUCCESS"
    assert out["canvas"] == [[4, 4, 4], 12]  # a group and a chord on django-db (MariaDB)
    assert "Traceback" not in site.log("worker")


def test_two_beats_on_the_django_schedule_never_send_one_run_twice(site: Site) -> None:
    """Two schedulers on the Django store and lease, on one manual clock, ticking in turn:
    one leads and sends each run of an admin-made entry once; when it stops, the other
    takes over after the lease expires and goes on without repeating a run."""
    out = site.script("""
        from celeriac import Celery
        from celeriac._time import ManualClock
        from celeriac.beat.scheduler import Scheduler
        from celeriac.contrib.django.schedulers import DatabaseScheduler

        clock = ManualClock(time.time())
        app = Celery("ha", broker="memory://ha", clock=clock, set_as_current=False)
        app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
        every_10s = IntervalSchedule.objects.create(every=10, period="seconds")
        PeriodicTask.objects.create(name="tick", task="ha.tick", interval=every_10s)
        sent = []

        def beat(holder):
            store, lease = DatabaseScheduler().open(app, lease_ttl=6)
            scheduler = Scheduler(app, store=store, lease=lease, holder=holder)
            scheduler.send = lambda entry, task_id: sent.append((holder, clock.time(), task_id))
            return scheduler

        first, second = beat("first"), beat("second")
        for step in range(60):  # 60 s, both ticking
            first.tick(); second.tick(); clock.advance(1)
        for step in range(60):  # the first is gone: the second takes over
            second.tick(); clock.advance(1)
        state = PeriodicTask.objects.get(name="tick")
        print(json.dumps({"holders": [h for h, _, _ in sent], "ids": len({i for *_, i in sent}),
                          "sent": len(sent), "count": state.total_run_count}))
    """)
    holders = out["holders"]
    assert out["ids"] == out["sent"] == out["count"]  # each run sent once, each counted
    assert holders[0] == "first" and holders[-1] == "second"
    assert holders == sorted(holders)  # never both: "first" until it stopped, then "second"
    assert 10 <= out["sent"] <= 12  # every 10 s over 120 s, less the takeover gap
