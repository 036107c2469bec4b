"""The asyncio pool: async def tasks on one event loop, sync tasks on threads beside them."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.exceptions import SoftTimeLimitExceeded

from .conftest import Project

pytestmark = pytest.mark.integration


def test_async_tasks_share_one_loop_and_sync_tasks_run_beside(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "asyncio", "-c", "50")
    many = [tasks.fetch.delay(0.5) for _ in range(40)]
    sync = tasks.add.delay(1, 2)
    results = [r.get(timeout=30) for r in many]
    assert [task_id for task_id, _ in results] == [r.id for r in many]
    assert {thread for _, thread in results} == {"AsyncioPoolLoop"}  # all on the loop
    assert sync.get(timeout=30) == 3


def test_async_task_past_its_soft_limit_is_cancelled(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "asyncio")
    result = tasks.slow_async.delay(10)
    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=20)
    assert "slow_async" in " ".join(project.runs())  # its finally block ran


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_async_tasks_run_in_other_pools_too(project: Project, tasks: Any, pool: str) -> None:
    project.start_worker("-P", pool, "-c", "2")
    task_id, _ = tasks.fetch.delay(0.01).get(timeout=20)
    assert task_id
