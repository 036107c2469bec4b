"""Receiving monitoring events: ``app.events.Receiver(handlers={...}).capture()``.

A receiver subscribes to the event exchange (``celeryev``) with a topic pattern (``#`` for
everything, ``worker.#`` for worker events only) and calls, for each event, the handler of
its type or the ``"*"`` handler. A message holding a list (``task.multi``) is several events.
Each event gets ``local_received`` (when it arrived here) and its ``timestamp`` moved by the
difference between the sender's and our UTC offsets, as Celery does; the app's Lamport clock
moves past the event's ``clock``.

Nothing is stored for a receiver that is not listening: events sent before ``capture`` (or
``itercapture``) starts are not seen. With ``wakeup`` (the default) the receiver asks every
worker for a heartbeat as it starts, so it learns of them at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from celeriac import _state
from celeriac.events.dispatcher import utcoffset
from celeriac.exceptions import CeleryError, ImproperlyConfigured
from celeriac.protocol.serializers import loads
from celeriac.transports.base import Subscription

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["EventReceiver"]

logger = logging.getLogger("celeriac.events")

Handler = Callable[[dict[str, Any]], Any]

#: task-sent comes from clients, whose clocks never sync: order it just before what we know.
CLIENT_CLOCK_SKEW = -1


class EventReceiver:
    """Captures events and hands each to its handler."""

    def __init__(
        self,
        channel: Any = None,
        handlers: Mapping[str, Handler] | None = None,
        routing_key: str = "#",
        node_id: str | None = None,
        app: AppLike | None = None,
        accept: Any = None,
        **_celery_options: Any,
    ) -> None:
        if app is None:
            app = _state.current_app()
        self.app = app
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.routing_key = routing_key
        self.node_id = node_id or str(uuid.uuid4())
        self.exchange = str(app.conf.event_exchange or "celeryev")
        self.accept = set(accept or {str(app.conf.event_serializer or "json"), "json"})
        self.clock = app.lamport_clock
        self.should_stop = False
        self._subscription: Subscription | None = None

    def __enter__(self) -> EventReceiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def subscribe(self) -> None:
        """Start listening now (``capture`` does it when not done yet)."""
        if self._subscription is None:
            transport = self.app.transport
            if not transport.capabilities.broadcast:
                raise ImproperlyConfigured(
                    f"Events need a broker with a broadcast channel; {type(transport).__name__} "
                    "has none yet. Use sqlite:// or memory:// (or a transport that lists "
                    "broadcast in its capabilities)."
                )
            self._subscription = transport.subscribe(self.exchange, [self.routing_key])

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def process(self, type: str, event: dict[str, Any]) -> None:
        """Hand ``event`` to the handler of ``type``, else to ``"*"``."""
        handler = self.handlers.get(type) or self.handlers.get("*")
        if handler is not None:
            handler(event)

    def event_from_message(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(type, event)`` with the clock synced, the timestamp localized, arrival noted."""
        type = str(body.get("type", ""))
        if type == "task-sent":
            body["clock"] = (self.clock.value or 1) + CLIENT_CLOCK_SKEW
            self.clock.adjust(body["clock"])
        elif "clock" in body and body["clock"] is not None:
            self.clock.adjust(body["clock"])
        else:
            body["clock"] = self.clock.forward()
        offset, timestamp = body.get("utcoffset"), body.get("timestamp")
        if isinstance(offset, (int, float)) and isinstance(timestamp, (int, float)):
            body["timestamp"] = timestamp - (offset - utcoffset()) * 3600
        body["local_received"] = self.app.clock.time()
        return type, body

    def itercapture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Yield events as they come; stop after ``limit`` events, after ``timeout`` seconds
        without any, or when ``should_stop`` is set."""
        self.subscribe()
        assert self._subscription is not None
        if wakeup:
            self.wakeup_workers()
        count = 0
        idle_since = time.monotonic()
        while not self.should_stop and (limit is None or count < limit):
            wait = 0.5 if timeout is None else min(0.5, timeout)
            for broadcast in self._subscription.receive(wait):
                for event in self._decode(broadcast.message):
                    type, event = self.event_from_message(event)
                    self.process(type, event)
                    count += 1
                    idle_since = time.monotonic()
                    yield event
                    if limit is not None and count >= limit:
                        return
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                return

    def capture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True
    ) -> None:
        """Process events until ``limit``, ``timeout`` (idle seconds) or ``should_stop``."""
        for _ in self.itercapture(limit=limit, timeout=timeout, wakeup=wakeup):
            pass

    def wakeup_workers(self) -> None:
        """Ask every worker for a heartbeat now."""
        try:
            self.app.control.broadcast("heartbeat")
        except CeleryError as exc:
            logger.warning("Could not ask the workers for a heartbeat: %s", exc)

    def _decode(self, message: Any) -> list[dict[str, Any]]:
        try:
            body = loads(
                message.body,
                message.content_type,
                message.content_encoding,
                accept=self.accept,
                accept_setting="event_serializer (events are accepted in it and in json)",
            )
        except CeleryError as exc:
            logger.warning("Skipping an event message that does not decode: %s", exc)
            return []
        items = body if isinstance(body, list) else [body]
        return [item for item in items if isinstance(item, dict) and "type" in item]
