"""Chaos on the embedded SQLite broker: workers killed with ``kill -9`` mid-flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import harness

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_worker_kills_lose_nothing(tmp_path: Path) -> None:
    with harness.soak_in(tmp_path, harness.sqlite_broker(tmp_path)) as soak:
        report = harness.worker_kills(soak, 1000, timeout=90)
        print(harness.table([report]))
        assert report.kills >= 1
        assert report.ok, "\n".join(report.details) + "\n" + soak.logs()
        assert report.executed == report.sent
