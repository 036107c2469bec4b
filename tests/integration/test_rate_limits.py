"""Rate limits per task type per worker, without blocking other task types."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration


def test_rate_limit_spaces_one_type_and_lets_others_through(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "threads", "-c", "4")
    limited = [tasks.limited.delay() for _ in range(10)]
    others = [tasks.add.delay(i, i) for i in range(20)]
    # The unlimited tasks finish while most limited ones still wait their turn.
    assert [r.get(timeout=20) for r in others] == [i + i for i in range(20)]
    done_early = sum(r.ready() for r in limited)
    assert done_early < 10
    for result in limited:
        result.get(timeout=30)
    stamps = sorted(
        float(run.split("@")[1]) for run in project.runs() if run.startswith("limited@")
    )
    assert len(stamps) == 10
    # 5/s with a bucket of one: ten runs span at least ~1.8 s (9 gaps of 0.2 s).
    assert stamps[-1] - stamps[0] >= 1.6
