"""Monitoring events: what workers (and, optionally, clients) tell the world as work happens.

``app.events`` is an ``Events``: ``app.events.Receiver(handlers={...}).capture()`` listens,
``app.events.State()`` folds what it hears into the cluster's state, and
``app.events.Dispatcher()`` sends events of your own. Workers send ``worker-online``,
``worker-heartbeat`` (every 2 s) and ``worker-offline`` always, and ``task-*`` events with
``-E`` (``worker_send_task_events``); a client sends ``task-sent`` with
``task_send_sent_event``. Formats are Celery's (wire.md §4.4), so Celery's own tools
read them and Celeriac's ``State`` reads Celery's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celeriac.events.dispatcher import Event, EventDispatcher, group_from
from celeriac.events.receiver import EventReceiver
from celeriac.events.state import State
from celeriac.protocol.v2 import saferepr

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.protocol.message import TaskMessage

__all__ = ["Event", "EventDispatcher", "EventReceiver", "Events", "State", "group_from"]


class Events:
    """``app.events``: the event classes bound to one app."""

    def __init__(self, app: AppLike) -> None:
        self.app = app
        self._client: EventDispatcher | None = None

    def Receiver(self, channel: Any = None, handlers: Any = None, **options: Any) -> EventReceiver:
        """A receiver calling ``handlers[type]`` (or ``handlers['*']``) for each event."""
        return EventReceiver(channel, handlers, app=self.app, **options)

    def Dispatcher(
        self,
        connection: Any = None,
        hostname: str | None = None,
        enabled: bool = True,
        **options: Any,
    ) -> EventDispatcher:
        """A dispatcher sending events as ``hostname`` (default: this client's name)."""
        return EventDispatcher(connection, hostname, enabled, app=self.app, **options)

    def State(self, **options: Any) -> State:
        """An empty cluster state, ready for ``state.event(e)``."""
        return State(**options)

    @contextmanager
    def default_dispatcher(
        self, hostname: str | None = None, enabled: bool = True, **options: Any
    ) -> Iterator[EventDispatcher]:
        with self.Dispatcher(None, hostname, enabled, **options) as dispatcher:
            yield dispatcher

    def task_sent(
        self, message: TaskMessage, *, queue: str | None, exchange: str, routing_key: str
    ) -> None:
        """Send ``task-sent`` for a task just published (``task_send_sent_event``)."""
        if self._client is None:
            self._client = EventDispatcher(app=self.app)
        self._client.send(
            "task-sent",
            uuid=message.id,
            root_id=message.root_id,
            parent_id=message.parent_id,
            name=message.task,
            args=_repr(message.argsrepr, message.args),
            kwargs=_repr(message.kwargsrepr, message.kwargs),
            retries=message.retries,
            eta=message.eta.isoformat() if message.eta else None,
            expires=message.expires.isoformat() if message.expires else None,
            queue=queue,
            exchange=exchange,
            routing_key=routing_key,
        )


def _repr(given: str | None, value: Any) -> str:
    return given if given is not None else saferepr(value)
