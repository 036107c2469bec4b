"""Two workers on one SQLite file: every task once, every result stored; kill -9 loses none."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration


def _wait_all(app: Any, ids: list[str], timeout: float) -> dict[str, Any]:
    """Every id's decoded meta once all are ready (one wait on the result store)."""
    found = app.results.backend.wait_for(
        ids, app.results.is_ready_payload, timeout=timeout, interval=0.2
    )
    return {tid: app.results.decode(payload) for tid, payload in found.items()}


def test_two_workers_run_2000_tasks_exactly_once(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "2", name="w1")
    project.start_worker("-P", "prefork", "-c", "2", name="w2")
    ids = [tasks.tracked.delay().id for _ in range(2000)]
    metas = _wait_all(tasks.app, ids, timeout=240)
    assert {meta["status"] for meta in metas.values()} == {"SUCCESS"}
    assert all(metas[tid]["result"] == tid for tid in ids)
    counts = collections.Counter(project.runs())
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, [tid for tid, n in counts.items() if n > 1][:5]
    # Both workers took part.
    assert "received" in project.log("w1") and "received" in project.log("w2")


@pytest.mark.parametrize("attempt", range(3))
def test_kill9_with_acks_late_loses_nothing(project: Project, tasks: Any, attempt: int) -> None:
    victim = project.start_worker("-P", "prefork", "-c", "2", name="victim")
    ids = [tasks.tracked_late.delay(0.05).id for _ in range(60)]
    deadline = time.monotonic() + 20
    while len(project.runs()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    project.kill9(victim)  # mid-run: tasks running, more prefetched and leased
    project.start_worker("-P", "prefork", "-c", "2", name="rescuer")
    metas = _wait_all(tasks.app, ids, timeout=120)
    assert {meta["status"] for meta in metas.values()} == {"SUCCESS"}
    assert set(project.runs()) == set(ids)


def test_kill9_with_early_acks_loses_only_what_was_running(project: Project, tasks: Any) -> None:
    victim = project.start_worker("-P", "solo", "--prefetch-multiplier", "8", name="victim")
    ids = [tasks.tracked.delay(0.3).id for _ in range(10)]
    deadline = time.monotonic() + 20
    while len(project.runs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    project.kill9(victim)
    started_before_kill = set(project.runs())
    project.start_worker("-P", "threads", "-c", "4", name="rescuer")
    waiting = [tid for tid in ids if tid not in started_before_kill]
    metas = _wait_all(tasks.app, waiting, timeout=60)
    assert {meta["status"] for meta in metas.values()} == {"SUCCESS"}
    # At most the one task that was running (acknowledged when it started) is lost.
    assert len(started_before_kill) <= 3
