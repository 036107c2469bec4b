"""Redis, early acknowledgement: a task longer than its lease runs once.

The acknowledgement of a task that has started reaches Redis within a bounded time even
when every pool slot is busy and the worker does not fetch, so no other worker's recovery
hands the message out again while it runs.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

from tests.support.redis_project import RedisProject, redis_project_fixture, rtasks_fixture  # noqa: F401

pytestmark = pytest.mark.integration


def test_early_ack_reaches_redis_while_every_slot_is_busy(
    redis_project: RedisProject, rtasks: Any
) -> None:
    env = {"TEST_LEASE": "1"}
    redis_project.celeriac_worker("-P", "threads", "-c", "1", name="w1", **env)
    redis_project.celeriac_worker("-P", "threads", "-c", "1", name="w2", **env)
    long_task = rtasks.record.delay(4.0)  # four lease periods; its worker never fetches
    assert long_task.get(timeout=30) == long_task.id
    assert collections.Counter(task_id for task_id, _ in redis_project.runs()) == {long_task.id: 1}
