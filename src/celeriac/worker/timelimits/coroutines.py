"""Time limits of ``async def`` tasks in the asyncio pool: the coroutine is cancelled.

Past its soft limit the coroutine is cancelled (it can clean up in ``finally`` or ``except
asyncio.CancelledError``) and the task fails with ``SoftTimeLimitExceeded``; past its hard
limit (when it has no soft one), with ``TimeLimitExceeded``. The cancellation arrives at the
coroutine's next ``await``. Sync tasks in that pool run on threads, under ``threads``' limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

__all__ = ["run_limited"]


async def run_limited(
    awaitable: Awaitable[Any],
    soft: float | None,
    hard: float | None,
    started: Callable[[asyncio.Future[Any]], None] = lambda task: None,
) -> Any:
    """Await ``awaitable`` under its limits, turning a cancellation into the limit's error."""
    task = asyncio.ensure_future(awaitable)
    started(task)
    limit = soft or hard
    if not limit:
        return await task
    done, _ = await asyncio.wait({task}, timeout=limit)
    if done:
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:  # the coroutine swallowed the cancellation and finished anyway
        return task.result()
    raise SoftTimeLimitExceeded() if soft and limit == soft else TimeLimitExceeded(hard)
