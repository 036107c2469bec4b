"""Chaos on Redis: workers killed with ``kill -9`` mid-flight, and the broker restarted
(cleanly and with ``kill -9``) under running workers. Small sizes; ``bench/chaos.py`` runs
the long version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import harness
from tests.support import redis_support

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def _check(report: harness.Report, soak: harness.Soak) -> None:
    print(harness.table([report]))
    assert report.ok, "\n".join(report.details) + "\n" + soak.logs()
    assert report.executed == report.sent


def test_worker_kills_lose_nothing(tmp_path: Path) -> None:
    redis_support.require_redis()
    db = redis_support.TRANSPORT_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with harness.soak_in(tmp_path, harness.redis_broker(url, db)) as soak:
        report = harness.worker_kills(soak, 1000, timeout=90)
        assert report.kills >= 1
        _check(report, soak)


def test_broker_restarts_lose_nothing(tmp_path: Path) -> None:
    redis_support.require_redis()
    with redis_support.RedisServer(tmp_path, appendonly=True) as server:
        root = tmp_path / "project"
        root.mkdir()
        broker = harness.redis_broker(server.url, 0, server.port, lease_timeout=10)
        with harness.soak_in(root, broker) as soak:
            report = harness.broker_restarts(
                soak, harness.redis_restartable(server), 300, duration=12, timeout=90
            )
            assert report.outages == 2
            _check(report, soak)


def test_broker_and_result_store_restarts_lose_nothing(tmp_path: Path) -> None:
    """The same with the results on the restarted server too: each (short) outage is a
    result-store outage as well, which must not turn a success into a failure or a missing
    result. (Outages longer than the store's retries are defect 3 of issue 11: bench only.)"""
    redis_support.require_redis()
    with redis_support.RedisServer(tmp_path, appendonly=True) as server:
        root = tmp_path / "project"
        root.mkdir()
        broker = harness.redis_broker(
            server.url, 0, server.port, same_results=True, lease_timeout=10
        )
        with harness.soak_in(root, broker) as soak:
            report = harness.broker_restarts(
                soak, harness.redis_restartable(server), 300, duration=12, timeout=90
            )
            _check(report, soak)
