"""Side by side, in process: the worker's ``conf`` reply (``inspect().conf()``) as Celery 5.7's.

It carries the keys Celery's integration suite reads, ``deprecated_settings`` among them
(Celery's Settings keep that attribute among the values, so its reply always has it).
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Iterator
from typing import Any

import celery
import pytest
from celery.worker.control import conf as celery_conf

import celeriac
from celeriac.worker.remote.commands import conf as celeriac_conf

pytestmark = pytest.mark.compat


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery("conf", broker="memory://", backend="cache+memory://", set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    url = f"memory://conf-{uuid.uuid4().hex}"
    with celeriac.Celery("conf", broker=url, backend=url, set_as_current=False) as app:
        yield app


def test_the_conf_reply_has_the_keys_celerys_suite_reads(
    theirs: Any, ours: celeriac.Celery
) -> None:
    wanted = {
        "worker_hijack_root_logger": False,
        "worker_log_color": False,
        "accept_content": ["json"],
        "enable_utc": True,
        "timezone": "UTC",
        "broker_heartbeat": 0,
        "include": ["tasks"],
    }
    replies = []
    for app, conf in ((theirs, celery_conf), (ours, celeriac_conf)):
        app.conf.update(wanted)
        replies.append(conf(types.SimpleNamespace(app=app)))
    for reply in replies:
        assert {"broker_url", "result_backend", "deprecated_settings", *wanted} <= set(reply)
    assert replies[1]["deprecated_settings"] is replies[0]["deprecated_settings"] is None
    same = [k for k in wanted if k != "include"]
    assert {k: replies[1][k] for k in same} == {k: replies[0][k] for k in same}
    # include: the configured modules, widened (as Celery's worker widens it at start) by the
    # modules of the app's own tasks; shared tasks other test modules made may be among them
    task_modules = {task.__module__ for task in ours.tasks.values()}
    assert replies[0]["include"] == ["tasks"]
    assert set(replies[1]["include"]) - {"tasks"} <= task_modules
    assert "tasks" in replies[1]["include"]


def test_deprecated_settings_names_the_old_names_given() -> None:
    """Celeriac's value names the old (Celery 3) names used; Celery's table says None."""
    with celeriac.Celery("report", broker="memory://", set_as_current=False) as app:
        app.conf.update(CELERY_TIMEZONE="Europe/Paris", BROKER_HEARTBEAT=5)
        app.conf.CELERY_ENABLE_UTC = True
        assert app.conf.deprecated_settings == [
            "BROKER_HEARTBEAT",
            "CELERY_ENABLE_UTC",
            "CELERY_TIMEZONE",
        ]
        assert app.conf.copy().deprecated_settings == app.conf.deprecated_settings
