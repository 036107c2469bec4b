"""A test suite written for Celery's pytest plugin, kept as files that pytester lays out.

``FILES`` is a small project (a tasks module, a conftest enabling the plugin, test modules
using the plugin's fixtures and ``celery.contrib.testing``) exactly as a Celery user writes
it. ``for_celeriac`` changes only its imports, which is all a migration should need.
"""

from __future__ import annotations

import re

TASKS = """
from celery import shared_task


@shared_task
def add(x, y):
    return x + y


@shared_task(bind=True)
def hostname(self):
    return self.request.hostname


@shared_task(bind=True, max_retries=3)
def flaky(self, fails):
    if self.request.retries < fails:
        raise self.retry(countdown=0.1)
    return self.request.retries
"""

CONFTEST = """
import pytest

pytest_plugins = ("celery.contrib.pytest",)


@pytest.fixture(scope="session")
def celery_config():
    return {
        "broker_url": "memory://",
        "result_backend": "cache+memory://",
        "broker_transport_options": {"polling_interval": 0.05},
    }


@pytest.fixture(scope="session")
def celery_includes():
    return ["proj_tasks"]


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "threads"
"""

TEST_FIXTURES = """
import pytest
from celery import chain, current_app, group
from celery.contrib.testing.mocks import TaskMessage, task_message_from_sig
from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult

from proj_tasks import add, flaky, hostname


def test_create_task(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16
    assert isinstance(mul.delay(1, 1), AsyncResult)


def test_session_worker_runs_shared_tasks(celery_session_app, celery_session_worker):
    assert add.delay(2, 3).get(timeout=10) == 5
    assert hostname.delay().get(timeout=10)


def test_canvas_on_the_session_worker(celery_session_worker):
    assert group(add.s(i, i) for i in range(4)).apply_async().get(timeout=10) == [0, 2, 4, 6]
    assert chain(add.s(1, 2), add.s(3), add.s(4)).apply_async().get(timeout=10) == 10


def test_retry_on_the_session_worker(celery_session_worker):
    assert flaky.delay(2).get(timeout=10) == 2


@pytest.mark.celery(result_extended=True, task_default_queue="marked")
def test_marker_overrides_config(celery_app):
    assert celery_app.conf.result_extended is True
    assert celery_app.conf.task_default_queue == "marked"


def test_config_fixture_reaches_the_app(celery_app, celery_config):
    assert celery_config["broker_url"] == "memory://"
    assert "proj_tasks.add" in celery_app.tasks


def test_depends_on_current_app(celery_app, depends_on_current_app):
    assert current_app.tasks is celery_app.tasks


def test_start_worker_with_celerys_keywords(celery_app):
    with start_worker(
        celery_app, pool="solo", perform_ping_check=True, ping_task_timeout=5.0,
        shutdown_timeout=5.0, loglevel="WARNING",
    ) as worker:
        assert celery_app.tasks["proj_tasks.add"].delay(5, 10).get(timeout=10) == 15
        assert worker.hostname


def test_task_messages(celery_app):
    message = TaskMessage("proj_tasks.add", args=(2, 2), kwargs={"z": 1})
    assert message.headers["task"] == "proj_tasks.add"
    assert message.headers["id"]
    assert message.payload[0] == (2, 2)
    assert message.payload[1] == {"z": 1}
    assert message.content_type == "application/json"

    sig = celery_app.signature("proj_tasks.add", (1, 2), countdown=30)
    built = task_message_from_sig(celery_app, sig)
    assert built.headers["task"] == "proj_tasks.add"
    assert built.headers["id"] == sig.id
    assert built.headers["eta"]
"""

TEST_TRAP = """
import pytest
from celery import current_app


@pytest.fixture(scope="session")
def use_celery_app_trap():
    return True


def test_current_app_is_trapped(celery_app):
    with pytest.raises(RuntimeError, match="Test depends on current_app"):
        current_app.tasks


def test_depends_on_current_app_lifts_the_trap(celery_app, depends_on_current_app):
    assert current_app.tasks is celery_app.tasks
"""

PYTEST_INI = """
[pytest]
filterwarnings =
    error
    ignore::DeprecationWarning
    ignore::pytest.PytestDeprecationWarning
"""

FILES = {
    "proj_tasks": TASKS,
    "conftest": CONFTEST,
    "test_fixtures": TEST_FIXTURES,
    "test_trap": TEST_TRAP,
}

_IMPORT = re.compile(r"^(\s*)(from|import) celery\b", re.MULTILINE)


def for_celeriac(source: str) -> str:
    """The same source with only its imports (and the plugin's name) moved to Celeriac."""
    source = _IMPORT.sub(r"\1\2 celeriac", source)
    return source.replace('"celery.contrib.pytest"', '"celeriac.contrib.pytest"')
