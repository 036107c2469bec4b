"""Choosing where a task goes: ``task_routes``, ``queue=``, and the default queue.

``task_routes`` may be a dict (exact names, glob patterns like ``'feed.tasks.*'``, or compiled
regexes as keys), a list of such dicts and router callables (or their ``'module.function'``
paths), or one callable. A router callable is ``(name, args, kwargs, options, task=None,
**kw)`` and returns a dict of options (``{'queue': 'images'}``), a queue name, or None to
pass; an object with a ``route_for_task(name, args, kwargs)`` method works too (Celery 3).

Without ``task_queues`` the default queue (``task_default_queue``, on
``task_default_exchange`` with ``task_default_routing_key``) is always defined; other
queues are created on first use unless ``task_create_missing_queues`` is off.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from celeriac._imports import symbol_by_name
from celeriac.exceptions import ImproperlyConfigured, QueueNotFound
from celeriac.routing import Exchange, ExchangeType, Queue

__all__ = ["Destination", "Router"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one message is published."""

    queue: Queue
    exchange: str
    routing_key: str


RouteMap = Mapping[Any, Any]


def _route_from_map(routes: RouteMap, name: str) -> dict[str, Any] | None:
    if name in routes:
        return _as_options(routes[name])
    for key, value in routes.items():
        if isinstance(key, re.Pattern):
            if key.match(name):
                return _as_options(value)
        elif (
            isinstance(key, str) and any(c in key for c in "*?[") and fnmatch.fnmatchcase(name, key)
        ):
            return _as_options(value)
    return None


def _as_options(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"queue": value}
    if isinstance(value, Queue):
        return {"queue": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ImproperlyConfigured(
        f"A task route must be a dict of options or a queue name, got {value!r}"
    )


class Router:
    """Resolves a task call to route options, then to a ``Destination``."""

    def __init__(
        self,
        routes: Any,
        queues: Sequence[Queue] | None,
        *,
        default_queue: str,
        create_missing: bool,
        default_exchange: str | None = None,
        default_exchange_type: str = "direct",
        default_routing_key: str | None = None,
    ) -> None:
        self._routes = self._normalize(routes)
        self._queues = {q.name: q for q in (queues or ())}
        self.default_queue = default_queue
        self.create_missing = create_missing
        if not self._queues:
            kind = cast(ExchangeType, default_exchange_type)
            exchange = Exchange(default_exchange or default_queue, kind)
            key = default_routing_key or default_queue
            self._queues[default_queue] = Queue(default_queue, exchange, routing_key=key)

    @staticmethod
    def _normalize(routes: Any) -> list[RouteMap | Callable[..., Any]]:
        if routes is None:
            return []
        if isinstance(routes, (Mapping, str)) or callable(routes):
            routes = [routes]
        if not isinstance(routes, (list, tuple)):
            raise ImproperlyConfigured(
                f"task_routes must be a dict, a list or a callable, got {type(routes).__name__}"
            )
        return [symbol_by_name(r) if isinstance(r, str) else r for r in routes]

    def route(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
        task: Any = None,
    ) -> dict[str, Any]:
        """Options from the first route that matches ``name`` ({} when none does)."""
        for route in self._routes:
            if isinstance(route, Mapping):
                found = _route_from_map(route, name)
            elif hasattr(route, "route_for_task"):
                found = _as_options(route.route_for_task(name, args, kwargs))
            else:
                found = _as_options(route(name, args, kwargs, options, task=task))
            if found:
                return found
        return {}

    def queue(self, spec: str | Queue | None) -> Queue:
        """The Queue object for a name (or Queue); missing ones created when allowed."""
        if isinstance(spec, Queue):
            return spec
        name = spec or self.default_queue
        if name in self._queues:
            return self._queues[name]
        if not self.create_missing:
            raise QueueNotFound(
                f"Queue {name!r} is not defined in task_queues and task_create_missing_queues "
                "is off"
            )
        queue = Queue(name, Exchange(name, "direct"), routing_key=name)
        self._queues[name] = queue
        return queue

    def destination(
        self, queue_spec: str | Queue | None, exchange: str | None, routing_key: str | None
    ) -> Destination:
        """Where to publish: direct queues go through the default exchange, as Celery does."""
        queue = self.queue(queue_spec)
        exch = queue.bound_exchange
        if exchange is not None or routing_key is not None:
            return Destination(
                queue, exchange if exchange is not None else exch.name,
                routing_key if routing_key is not None else queue.binding_key,
            )  # fmt: skip
        if exch.type == "direct":
            return Destination(queue, "", queue.name)
        return Destination(queue, exch.name, queue.binding_key)
