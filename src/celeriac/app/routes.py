"""Choosing where a task goes: ``task_routes``, ``queue=``, and the default queue.

``task_routes`` may be a dict (exact names, glob patterns like ``'feed.tasks.*'``, or compiled
regexes as keys), a list of such dicts and router callables (or their ``'module.function'``
paths), or one callable. A router callable is ``(name, args, kwargs, options, task=None,
**kw)`` and returns a dict of options (``{'queue': 'images'}``), a queue name, or None to
pass; an object with a ``route_for_task(name, args, kwargs)`` method works too (Celery 3).

Without ``task_queues`` the default queue (``task_default_queue``, on
``task_default_exchange`` with ``task_default_routing_key``; a quorum queue with
``task_default_queue_type='quorum'``) is always defined; other queues are created on first
use unless ``task_create_missing_queues`` is off, as classic queues on a direct exchange of
their name (``task_create_missing_queue_type``, ``task_create_missing_queue_exchange_type``
choose otherwise). ``task_queue_max_priority`` is the ``x-max-priority`` of every classic
queue, defined or created, that sets none (quorum queues have no priorities in RabbitMQ 3).
``Router.defined`` lists the queues defined by the settings: what a worker consumes by default.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
_QUEUE_TYPES = ("classic", "quorum")


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
        max_priority: int | None = None,
        default_queue_type: str = "classic",
        missing_queue_type: str = "classic",
        missing_exchange_type: str | None = None,
    ) -> None:
        self._routes = self._normalize(routes)
        self.max_priority = max_priority
        self.missing_arguments = _type_arguments(
            "task_create_missing_queue_type", missing_queue_type
        )
        self.missing_exchange_type = cast(ExchangeType, missing_exchange_type or "direct")
        self._queues = {q.name: self._prepared(q) for q in (queues or ())}
        self.default_queue = default_queue
        self.create_missing = create_missing
        if not self._queues:
            kind = cast(ExchangeType, default_exchange_type)
            exchange = Exchange(default_exchange or default_queue, kind)
            key = default_routing_key or default_queue
            arguments = _type_arguments("task_default_queue_type", default_queue_type)
            queue = Queue(default_queue, exchange, routing_key=key, queue_arguments=arguments)
            self._queues[default_queue] = self._prepared(queue)
        #: The queues the settings define (``task_queues``, else the default queue).
        self.defined: tuple[Queue, ...] = tuple(self._queues.values())

    def _prepared(self, queue: Queue) -> Queue:
        """``queue`` with ``x-max-priority`` = ``max_priority`` unless it sets one (or is a
        quorum queue)."""
        arguments = queue.queue_arguments or {}
        if (
            self.max_priority is None
            or queue.max_priority is not None
            or "x-max-priority" in arguments
            or arguments.get("x-queue-type") == "quorum"
        ):
            return queue
        return replace(queue, max_priority=self.max_priority)

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
        queue = Queue(
            name,
            Exchange(name, self.missing_exchange_type),
            routing_key=name,
            queue_arguments=self.missing_arguments,
        )
        queue = self._queues[name] = self._prepared(queue)
        return queue

    def destination(
        self, queue_spec: str | Queue | None, exchange: str | None, routing_key: str | None
    ) -> Destination:
        """Where to publish: direct queues go through the default exchange, as Celery does."""
        queue = self.queue(queue_spec)
        exch = queue.bound_exchange
        if exchange is not None or routing_key is not None:
            return Destination(
                queue,
                exchange if exchange is not None else exch.name,
                routing_key if routing_key is not None else queue.binding_key,
            )
        if exch.type == "direct":
            return Destination(queue, "", queue.name)
        return Destination(queue, exch.name, queue.binding_key)


def _type_arguments(setting: str, queue_type: str | None) -> dict[str, Any] | None:
    """The queue arguments of a queue type setting ('classic' or 'quorum')."""
    kind = queue_type or "classic"
    if kind not in _QUEUE_TYPES:
        raise ImproperlyConfigured(
            f"Setting {setting} = {queue_type!r} is not valid; expected 'classic' or 'quorum'."
        )
    return {"x-queue-type": "quorum"} if kind == "quorum" else None
