"""``create_pool``: the pool that ``-P`` names, each loaded only when named.

The pool classes import their base (:mod:`celeriac.worker.pools`); keeping the factory here
means that base imports no pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.pools import OnDone, OnStart, Pool, SoloPool, ThreadPool

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["POOLS", "create_pool"]

POOLS = ("prefork", "threads", "solo", "asyncio", "gevent")


def create_pool(
    name: str,
    app: Celery,
    concurrency: int,
    on_start: OnStart,
    on_done: OnDone,
    *,
    max_tasks_per_child: int | None = None,
    max_memory_per_child: int | None = None,
    hostname: str = "",
    min_concurrency: int | None = None,
    keepalive: float = 30.0,
    time_limits: tuple[float | None, float | None] = (None, None),
) -> Pool:
    """The pool named ``name`` (``-P``); the keywords are the prefork pool's."""
    if name == "solo":
        return SoloPool(app, 1, on_start, on_done)
    if name == "threads":
        return ThreadPool(app, concurrency, on_start, on_done)
    if name == "asyncio":
        # lazy: the asyncio pool loads only when -P asyncio names it
        from celeriac.worker.asyncio_pool import AsyncioPool

        return AsyncioPool(app, concurrency, on_start, on_done)
    if name == "gevent":
        # lazy: gevent is optional; only -P gevent loads it
        from celeriac.worker.gevent_pool import GeventPool

        return GeventPool(app, concurrency, on_start, on_done)
    if name == "prefork":
        # lazy: the prefork pool loads only when -P prefork names it
        from celeriac.worker.prefork import PreforkPool

        return PreforkPool(
            app,
            concurrency,
            on_start,
            on_done,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            hostname=hostname,
            min_concurrency=min_concurrency,
            keepalive=keepalive,
            time_limits=time_limits,
        )

    raise ImproperlyConfigured(f"Unknown pool {name!r}: choose one of {', '.join(POOLS)}")
