"""Sending monitoring events, in Celery's format (wire.md §4.4).

An event is a flat dict: ``type`` (``task-succeeded``, ``worker-heartbeat``, ...),
``hostname``, ``utcoffset`` (hours, as Celery computes it), ``pid``, ``clock`` (the app's
Lamport clock), ``timestamp`` (Unix time), then the type's own fields. It is broadcast on
exchange ``event_exchange`` (``celeryev``) with routing key = the type with ``-`` turned into
``.`` (``task.succeeded``), header ``{"hostname": ...}``, delivery mode 1, body serialized
with ``event_serializer`` (JSON).

Events of a *buffered* group (a worker buffers ``task``) are kept in memory and sent as one
JSON list under routing key ``<group>.multi`` (``task.multi``) by ``flush``: the worker's
event thread flushes every fraction of a second, and at once when ``buffer_limit`` (24)
events wait, so sending events costs a task almost nothing. Other events go out one by one
when sent. A broker error is logged and the events are dropped: monitoring never stops work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from celeriac import _state
from celeriac.exceptions import CeleryError
from celeriac.protocol.message import Message
from celeriac.protocol.serializers import dumps

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["Event", "EventDispatcher", "group_from", "routing_key_for", "utcoffset"]

logger = logging.getLogger("celeriac.events")


def utcoffset() -> float:
    """This machine's offset from UTC in hours, west positive (Celery's convention)."""
    if time.localtime().tm_isdst:
        return time.altzone / 3600
    return time.timezone / 3600


def group_from(type: str) -> str:
    """The group of an event type: ``task`` for ``task-sent``."""
    return type.split("-", 1)[0]


def routing_key_for(type: str) -> str:
    """``task-succeeded`` -> ``task.succeeded``."""
    return type.replace("-", ".")


def Event(type: str, _fields: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An event dict of ``type``; ``timestamp`` is now unless given."""
    event = dict(_fields or {}, **fields)
    event.setdefault("timestamp", time.time())
    event["type"] = type
    return event


class EventDispatcher:
    """Sends events for one node (a worker's name, or ``gen<pid>@<host>`` for a client)."""

    def __init__(
        self,
        connection: Any = None,
        hostname: str | None = None,
        enabled: bool = True,
        *,
        app: AppLike | None = None,
        groups: Iterable[str] | None = None,
        buffer_group: Iterable[str] = (),
        buffer_limit: int = 24,
        on_buffer_full: Callable[[], None] | None = None,
        serializer: str | None = None,
        **_celery_options: Any,
    ) -> None:
        if app is None:
            app = _state.current_app()
        self.app = app
        self.hostname = hostname or f"gen{os.getpid()}@{socket.gethostname()}"
        self.groups = set(groups or ())  # empty: every group
        self.buffer_group = frozenset(buffer_group)
        self.buffer_limit = buffer_limit
        self.on_buffer_full = on_buffer_full
        self.serializer = serializer or str(app.conf.event_serializer or "json")
        self.exchange = str(app.conf.event_exchange or "celeryev")
        self.headers = {"hostname": self.hostname}
        self.pid = os.getpid()
        self.clock = app.lamport_clock
        self._buffer: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._failing = False
        self.enabled = enabled and app.transport.capabilities.broadcast
        if enabled and not self.enabled:
            logger.info(
                "Events are off: the %s broker has no broadcast channel",
                type(app.transport).__name__,
            )

    def __enter__(self) -> EventDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def enable(self) -> None:
        self.enabled = self.app.transport.capabilities.broadcast

    def disable(self) -> None:
        self.flush()
        self.enabled = False

    def _prepare(self, type: str, fields: dict[str, Any], blind: bool) -> dict[str, Any]:
        clock = None if blind else self.clock.forward()
        fields.setdefault("timestamp", self.app.clock.time())
        return Event(
            type,
            hostname=self.hostname,
            utcoffset=utcoffset(),
            pid=self.pid,
            clock=clock,
            **fields,
        )

    def send(self, type: str, blind: bool = False, **fields: Any) -> None:
        """Send (or buffer) an event of ``type``; a no-op when disabled or filtered out."""
        if not self.enabled:
            return
        group = group_from(type)
        if self.groups and group not in self.groups:
            return
        event = self._prepare(type, fields, blind)
        if group not in self.buffer_group:
            self._publish(event, routing_key_for(type))
            return
        with self._lock:
            pending = self._buffer.setdefault(group, [])
            pending.append(event)
            full = len(pending) >= self.buffer_limit
        if full:
            if self.on_buffer_full is not None:
                self.on_buffer_full()
            else:
                self.flush()

    def publish(self, type: str, fields: dict[str, Any], blind: bool = False) -> None:
        """Send one event now, whatever its group (Celery's ``publish``)."""
        self._publish(self._prepare(type, dict(fields), blind), routing_key_for(type))

    def flush(self) -> None:
        """Send the buffered events, one ``<group>.multi`` list per group."""
        with self._lock:
            batches = [(group, events) for group, events in self._buffer.items() if events]
            self._buffer = {}
        for group, events in batches:
            self._publish(events, f"{group}.multi")

    def buffered(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._buffer.values())

    def _publish(self, body: dict[str, Any] | list[dict[str, Any]], routing_key: str) -> None:
        try:
            data, content_type, encoding = dumps(body, self.serializer)
            message = Message(
                data, content_type, encoding, dict(self.headers), {"delivery_mode": 1}
            )
            self.app.transport.broadcast(self.exchange, routing_key, message)
        except (CeleryError, NotImplementedError) as exc:
            if not self._failing:
                logger.warning("Could not send events (%s); dropping them until it works", exc)
            self._failing = True
            return
        self._failing = False

    def close(self) -> None:
        """Send what is buffered and stop sending."""
        if self.enabled:
            self.flush()
        self.enabled = False
