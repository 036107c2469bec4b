"""The async client API: ``await task.adelay()``, ``await result.aget()``, ``async for``
over a ``GroupResult``, ``await app.control.ainspect().stats()``.

The methods live on the classes themselves (``celeriac.aio.mixins``); ``celeriac.aio.client``
says how each broker and result store is driven from the event loop. ``await
celeriac.aio.close()`` closes the idle Redis connections of the running loop (they are also
closed when the loop shuts down). Nothing here imports asyncio until it is used, so sync
programs do not pay for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncInspect", "close", "run_blocking", "send_task"]


def __getattr__(name: str) -> Any:
    if name == "close":
        # lazy: asyncio and its clients only when the async API is used
        from celeriac.aio._resp import close_pools

        return close_pools
    if name in ("run_blocking", "send_task"):
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio import client

        return getattr(client, name)
    if name == "AsyncInspect":
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio.mixins import AsyncInspect

        return AsyncInspect
    raise AttributeError(f"module 'celeriac.aio' has no attribute {name!r}")
