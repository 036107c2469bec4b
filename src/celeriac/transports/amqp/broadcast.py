"""Broadcast over RabbitMQ (remote control and events), with Celery's exchanges.

An exchange is declared as Celery declares it before the first broadcast or subscription:
names ending in ``.pidbox`` (remote control, ``celery.pidbox``) are fanout and not durable,
others (events, ``celeryev``) topic and durable. ``broadcast`` publishes on a pooled
connection. Each subscription has a queue of its own::

    <exchange>.celeriac.<uuid4 hex>   exclusive, auto-delete; x-expires 60 s; x-message-ttl
                                      5 s for events, 300 s for remote control (Celery's)
    bound with each topic pattern (topic exchanges) or "" (fanout, patterns then filter here)

All subscriptions of a transport share one connection, owned by an I/O thread
(``celeriac._amqp.io``); their messages arrive without acks (a broadcast is for whoever
listens now).
After a reconnection every queue is declared and bound again; what was broadcast meanwhile
is lost, as with Celery.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from celeriac._amqp.connection import Connector
from celeriac._amqp.driver import amqp
from celeriac._amqp.io import IOConnection
from celeriac._amqp.pool import ConnectionPool, Session
from celeriac.protocol.message import Message
from celeriac.routing import matches
from celeriac.transports.amqp.topology import from_amqp, to_amqp
from celeriac.transports.base import Broadcast, Subscription

__all__ = ["Broadcaster"]

_QUEUE_EXPIRES_MS = 60_000


def _exchange_kind(exchange: str) -> tuple[str, bool]:
    """(type, durable) as Celery declares it."""
    return ("fanout", False) if exchange.endswith(".pidbox") else ("topic", True)


class _AmqpSubscription(Subscription):
    def __init__(self, owner: Broadcaster, exchange: str, patterns: Sequence[str]) -> None:
        self._owner = owner
        self.exchange = exchange
        self.patterns = tuple(patterns) or ("#",)
        self.queue = f"{exchange}.celeriac.{uuid.uuid4().hex}"
        self.channel: Any = None  # the I/O thread's
        self._inbox: deque[Broadcast] = deque()
        self._arrived = threading.Condition()
        self.closed = False

    def deliver(self, raw: amqp.Message) -> None:
        """Called in the I/O thread for each message of this subscription's queue."""
        info = raw.delivery_info
        if not any(matches("topic", p, info["routing_key"]) for p in self.patterns):
            return  # a fanout exchange sends everything: filter here
        message, _ = from_amqp(raw)
        with self._arrived:
            if self.closed:
                return  # closed, its queue not deleted yet
            self._inbox.append(Broadcast(info["exchange"], info["routing_key"], message))
            self._arrived.notify_all()

    def receive(self, timeout: float) -> list[Broadcast]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._arrived:
            while not self._inbox and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._arrived.wait(remaining)
            items = list(self._inbox)
            self._inbox.clear()
            return items

    def close(self) -> None:
        with self._arrived:
            if self.closed:
                return
            self.closed = True
            self._inbox.clear()
            self._arrived.notify_all()
        self._owner.forget(self)


class Broadcaster:
    """The broadcast side of one AMQP transport."""

    def __init__(self, connector: Connector, pool: ConnectionPool) -> None:
        self._connector = connector
        self._pool = pool
        self._lock = threading.Lock()
        self._declared: set[str] = set()
        self._subscriptions: set[_AmqpSubscription] = set()
        self._io: IOConnection | None = None

    def _declare(self, channel: amqp.Channel, exchange: str) -> None:
        kind, durable = _exchange_kind(exchange)
        channel.exchange_declare(exchange, kind, durable=durable, auto_delete=False)

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        def operation(session: Session) -> None:
            if exchange not in self._declared:
                self._declare(session.channel, exchange)
                with self._lock:
                    self._declared.add(exchange)
            session.publish([(to_amqp(message), exchange, routing_key)])

        self._pool.run(f"broadcast on exchange {exchange!r}", operation)

    def subscribe(self, exchange: str, patterns: Sequence[str]) -> Subscription:
        subscription = _AmqpSubscription(self, exchange, patterns)
        with self._lock:
            if self._io is None:
                self._io = IOConnection(
                    self._connector,
                    name="celeriac subscriptions",
                    on_connect=self._resubscribe,
                    on_disconnect=lambda: None,
                )
                self._io.start()
            io = self._io
            self._subscriptions.add(subscription)
        # Bound before returning, so it receives whatever is broadcast from now on.
        io.call(
            lambda connection: self._start(subscription, connection),
            self._connector.confirm_timeout,
        )
        return subscription

    def _resubscribe(self, connection: amqp.Connection, generation: int) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            self._start(subscription, connection)

    def _start(self, subscription: _AmqpSubscription, connection: amqp.Connection) -> None:
        """Declare, bind and consume the subscription's queue (in the I/O thread)."""
        if subscription.closed:
            return
        channel = connection.channel()
        channel.auto_decode = False
        self._declare(channel, subscription.exchange)
        ttl = 300_000 if subscription.exchange.endswith(".pidbox") else 5_000
        channel.queue_declare(
            subscription.queue,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments={"x-expires": _QUEUE_EXPIRES_MS, "x-message-ttl": ttl},
        )
        kind, _ = _exchange_kind(subscription.exchange)
        for pattern in subscription.patterns if kind == "topic" else ("",):
            channel.queue_bind(subscription.queue, subscription.exchange, pattern)
        channel.basic_consume(subscription.queue, callback=subscription.deliver, no_ack=True)
        subscription.channel = channel

    def forget(self, subscription: _AmqpSubscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)
            io = self._io
        if io is not None:
            io.submit(lambda connection: _stop(subscription))

    def close(self) -> None:
        with self._lock:
            io, self._io = self._io, None
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        if io is not None:
            io.stop()


def _stop(subscription: _AmqpSubscription) -> None:
    if subscription.channel is not None:
        subscription.channel.close()  # the exclusive, auto-delete queue goes with it
        subscription.channel = None
