"""The pytest plugin of a Celery-suite run (``-p tests.celery_suite.plugin``), for both targets.

It keeps the suite on its own Redis database and key prefix, and records each test's outcome
for the runner:

* ``t.integration.tasks.get_redis_connection`` (the suite's helper for its own bookkeeping
  keys, which opens database 0) opens ``CELERY_SUITE_REDIS_DB`` instead;
* the app's broker and result keys go under ``CELERY_SUITE_KEY_PREFIX``
  (``global_keyprefix`` added to the suite's ``celery_config``);
* ``get_active_redis_channels`` (``PUBSUB CHANNELS``, which is server-wide) lists only the
  channels under this run's key prefix, with the prefix taken off, so other programs on the
  machine neither add to the counts nor are counted;
* every test's outcome (passed, failed, error, skipped) goes to ``CELERY_SUITE_OUTCOMES`` as
  JSON lines, and the not-applicable reason of a test (``not_applicable.NOT_APPLICABLE``)
  is shown in its report. Not-applicable tests still run; the runner classifies them.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import pytest

from tests.celery_suite.not_applicable import reason_for

REDIS_HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("CELERY_SUITE_REDIS_DB", "14"))
KEY_PREFIX = os.environ.get("CELERY_SUITE_KEY_PREFIX", "")


def _redis() -> Any:
    from redis import StrictRedis

    # The suite's helpers issue blocking reads longer than redis-py's default socket timeout.
    return StrictRedis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=None)


def _active_channels() -> list[bytes]:
    prefix = KEY_PREFIX.encode()
    channels = _redis().execute_command("PUBSUB CHANNELS", prefix + b"*")
    return [channel[len(prefix) :] for channel in channels]


tasks = importlib.import_module("t.integration.tasks")
tasks.get_redis_connection = _redis


def pytest_plugin_registered(plugin: object) -> None:
    if getattr(plugin, "__name__", None) == "t.integration.conftest":
        plugin.get_active_redis_channels = _active_channels  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Any:
    """The app's keys and channels (broker and results) go under the run's key prefix."""
    value = yield
    if fixturedef.argname == "celery_config" and KEY_PREFIX and isinstance(value, dict):
        options = {"global_keyprefix": KEY_PREFIX}
        value.setdefault("broker_transport_options", {}).update(options)
        value.setdefault("result_backend_transport_options", {}).update(options)
    return value


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    cap = os.environ.get("CELERY_SUITE_TIMEOUT")
    for item in items:
        if cap:  # the suite marks some tests timeout=300; one stuck test must not cost that
            item.add_marker(pytest.mark.timeout(int(cap)))
        reason = reason_for(item.nodeid)
        if reason is not None:
            item.user_properties.append(("not_applicable", reason))


class _Outcomes:
    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: dict[str, str] = {}

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(
                {
                    "nodeid": report.nodeid,
                    "outcome": "error",
                    "when": "collect",
                    "message": str(report.longrepr)[-2000:],
                }
            )

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        previous = self.seen.get(report.nodeid)
        if report.when == "call":
            outcome = "passed" if report.passed else "skipped" if report.skipped else "failed"
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            return
        if previous in ("failed", "error", "skipped"):
            return  # a teardown error after a failure does not change the verdict
        if previous == "passed" and outcome != "error":
            return
        self.seen[report.nodeid] = outcome
        message = "" if report.passed else str(report.longrepr)[-2000:]
        self._write(
            {
                "nodeid": report.nodeid,
                "outcome": outcome,
                "when": report.when,
                "duration": round(report.duration, 2),
                "message": message,
            }
        )


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("CELERY_SUITE_OUTCOMES")
    if path:
        config.pluginmanager.register(_Outcomes(path), "celery_suite_outcomes")
