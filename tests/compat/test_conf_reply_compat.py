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
    assert {k: replies[1][k] for k in wanted} == {k: replies[0][k] for k in wanted}


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
