"""Time limits in every pool: soft raises inside the task, hard ends it with TimeLimitExceeded."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.exceptions import TimeLimitExceeded

from .conftest import Project

pytestmark = pytest.mark.integration

POOLS = ["prefork", "threads", "solo"]


@pytest.mark.parametrize("pool", POOLS)
def test_time_limits(project: Project, tasks: Any, pool: str) -> None:
    project.start_worker("-P", pool, "-c", "2")
    soft = tasks.soft_limited.delay(5)
    hard = tasks.hard_limited.delay(5)
    quick = tasks.hard_limited.delay(0.05)
    assert soft.get(timeout=20) == "cleaned up"  # the task caught it and cleaned up
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=20)
    assert quick.get(timeout=20) == "finished"
    # The worker goes on after a hard limit (in prefork the child was replaced).
    assert tasks.add.delay(1, 1).get(timeout=20) == 2


def test_per_call_and_worker_wide_limits(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "2", "--time-limit", "0.5")
    with pytest.raises(TimeLimitExceeded):
        tasks.sleepy.delay(5).get(timeout=20)  # worker-wide --time-limit
    overridden = tasks.sleepy.apply_async((1.0,), time_limit=3)  # per call wins
    assert overridden.get(timeout=20) == "finished"
    log = project.log("w1")
    assert "Hard time limit (0.5s) exceeded" in log
