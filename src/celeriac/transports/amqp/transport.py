"""The RabbitMQ broker over AMQP 0-9-1 (py-amqp), sharing a vhost with Celery 5.x.

URLs: ``amqp://user:password@host:port/vhost``, ``pyamqp://`` (the same), ``amqps://`` (TLS,
``broker_use_ssl``); connection settings are in ``celeriac._amqp.connection``. Transport options:
``max_deliveries`` (10: a message delivered that often without being acknowledged is
dead-lettered), ``delayed_delivery`` (True: ETAs wait in RabbitMQ, not in workers),
``delayed_delivery_queue_type`` (quorum, as Celery's
``broker_native_delayed_delivery_queue_type``), ``max_priority`` (None; as Celery's
``task_queue_max_priority``: the ``x-max-priority`` of queues declared without one, which also
turns ``capabilities.priorities`` on), ``prefetch_timeout`` (60 s: prefetched messages no fetch
took in that time go back to their queue), ``confirm_publish`` (True), ``confirm_timeout``
(10 s), ``consumer_timeout`` (1800 s: the broker's; a delivery held for half of it is handed
over to a lease queue, None turns that off) and ``lease_timeout`` (60 s: how long a lease
copy waits unrenewed before it goes back to its queue).

On the broker (``topology`` draws the delay levels)::

    <exchange> --binding key--> <queue>     as declared by Queue/Exchange, flags as kombu's
    ""  (default exchange)  --queue name--> <queue>     direct queues are published here
    celery_delayed_27 .. 0 (topic) + queues --> celery_delayed_delivery --> celeriac.delayed
                          (headers: x-celeriac-queue) --> <queue>      ETA / defer
    celeriac.dead_letters (fanout) --> queue celeriac.dead_letters     reason in headers;
                                       x-max-length, x-message-ttl (dead_letters)
    celeriac.lease.<owner>.<instance>.<queue>  --TTL, dead-lettered--> <queue>   (lease)

Steps and their guarantees:

    publish      one confirmed batch on a pooled connection, ``mandatory`` so a message that
                 reaches no queue is known (its count is 0); a publish that returns is on the
                 broker. Counts above 1 come from the bindings this transport declared. A
                 publish to ``""`` creates the routing key's queue when missing (AMQP would
                 drop the message); one to an exchange that does not exist reaches nothing.
    not_before   to ``""``: into the delay levels addressed to the queue (whole seconds,
                 rounded down: the consumer holds the last fraction); to a named exchange:
                 published now, and the consumer sends it through the delay levels (its
                 queue is only known there)
    consume      ``consumer``: prefetch per queue matched to the fetch window,
                 deliveries counted, poison messages dead-lettered
    defer, dead_letter, counted redelivery   a confirmed copy, then the original acked
    renew        a delivery held for half of consumer_timeout: a confirmed copy to a lease
                 queue, then the original acked; the copy is renewed while the task runs,
                 dropped when it is settled, dead-lettered back if the worker dies
    dead_letters (``dead_letters``) read the dead-letter queue with ``basic.get`` and
                 close the channel, which puts every message back in order (so concurrent
                 readers may see fewer); requeue and purge ack what they remove first
    broadcast    ``broadcast``: Celery's pidbox (fanout) and event (topic) exchanges,
                 a queue per subscription

Threads: py-amqp connections are not thread-safe, so no connection is ever used by two
threads. Publishing and declaring borrow a connection from a pool (``celeriac._amqp.pool``),
one thread at a time; each consumer, and the broadcast subscriptions, have a connection owned
by an I/O thread (``celeriac._amqp.io``) that reads frames, answers heartbeats even while the
worker is busy, and runs the acks and other commands that other threads queue for it, in
order (AMQP delivery tags belong to the channel that received them, so acks must go out on
that channel).

RabbitMQ returns the unacknowledged messages of a connection that closes (a worker killed
with SIGKILL, a network cut); only deliveries held near ``consumer_timeout`` become leases
that expire (``capabilities.leases`` stays off: no delivery lapses on the injected clock).
``queue_length`` and ``purge`` see the messages waiting in a queue, not those still in the
delay levels or in lease queues.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac._amqp.connection import Connector
from celeriac._amqp.driver import amqp, amqp_errors
from celeriac._amqp.pool import ConnectionPool, Session
from celeriac._time import Clock, system_clock
from celeriac.exceptions import EncodeError, ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.routing import Queue, matches
from celeriac.transports import positive_option
from celeriac.transports._dead_letters import DeadLetterLimits, RejectLog
from celeriac.transports.amqp import dead_letters as dead_store
from celeriac.transports.amqp.broadcast import Broadcaster
from celeriac.transports.amqp.consumer import AmqpConsumer
from celeriac.transports.amqp.dead_letters import declare_bounded
from celeriac.transports.amqp.lease import LeasePolicy
from celeriac.transports.amqp.topology import (
    DELAY_ENTRY,
    EXCHANGE,
    EXPIRATION,
    NOT_BEFORE,
    QUEUE,
    ROUTING_KEY,
    Bookkeeping,
    bind_delay_target,
    declare_delay_levels,
    declare_queue,
    delay_routing_key,
    ensure_queue,
    queue_exists,
    to_amqp,
)
from celeriac.transports.base import (
    Capabilities,
    DeadLetter,
    Outgoing,
    Subscription,
    Transport,
)

__all__ = ["AmqpTransport"]


class AmqpTransport(Transport):
    """RabbitMQ as the broker (module docstring)."""

    capabilities = Capabilities(
        delayed_delivery=True, cross_process=True, persistent=True, broadcast=True
    )

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        opts = dict(options or {})
        self.connector = Connector(url, opts)
        self.clock = clock
        self.max_deliveries = int(positive_option(opts, "max_deliveries", 10, integer=True))
        self.prefetch_timeout = positive_option(opts, "prefetch_timeout", 60.0)
        self.lease_policy = LeasePolicy.from_options(opts)
        self.delayed_delivery = opts.get("delayed_delivery", True) is not False
        self.delay_queue_type = str(opts.get("delayed_delivery_queue_type", "quorum"))
        if self.delay_queue_type not in ("quorum", "classic"):
            raise ImproperlyConfigured(
                "broker_transport_options['delayed_delivery_queue_type'] must be 'quorum' or "
                f"'classic', not {self.delay_queue_type!r}."
            )
        max_priority = opts.get("max_priority")
        self.max_priority = (
            None
            if max_priority is None
            else int(positive_option(opts, "max_priority", 1, integer=True))
        )
        self.capabilities = Capabilities(
            delayed_delivery=self.delayed_delivery,
            priorities=self.max_priority is not None,
            cross_process=True,
            persistent=True,
            broadcast=True,
        )
        self._pool = ConnectionPool(self.connector)
        self._broadcaster = Broadcaster(self.connector, self._pool)
        self._lock = threading.Lock()
        self._declared: dict[str, Queue] = {}
        self._bindings: dict[str, set[tuple[str, str, str]]] = {}
        self._exchanges: set[str] = {""}
        self._queues: set[str] = set()
        self._delay_targets: set[str] = set()
        self._delay_levels = False
        self._dead_letters = False
        self.dead_letter_limits = DeadLetterLimits.from_options(opts)
        self.rejects = RejectLog(clock=clock)  # letters set aside here, which no worker logs
        self._consumers: set[AmqpConsumer] = set()

    @property
    def lease_renew_interval(self) -> float | None:
        """How often a worker calls ``renew``, which hands long-held deliveries over."""
        return self.lease_policy.renew_interval

    # -- declaring --------------------------------------------------------------------------

    def declare(self, queue: Queue) -> None:
        self._pool.run(
            f"declare queue {queue.name!r}",
            lambda session: declare_queue(session.channel, queue, self.max_priority),
        )
        exchange = queue.bound_exchange
        with self._lock:
            self._declared[queue.name] = queue
            self._queues.add(queue.name)
            self._exchanges.add(exchange.name)
            if exchange.name:
                binding = (exchange.type, queue.binding_key, queue.name)
                self._bindings.setdefault(exchange.name, set()).add(binding)

    def ensure_queue(self, connection: amqp.Connection, name: str, *, check: bool = False) -> None:
        """Make sure queue ``name`` exists: declared again as it was declared here, else
        created as a missing queue. Without ``check``, queues known to exist are skipped."""
        with self._lock:
            known = name in self._queues
            declared = self._declared.get(name)
        if known and not check:
            return
        if declared is not None:
            channel = connection.channel()
            try:
                declare_queue(channel, declared, self.max_priority)
            finally:
                channel.close()
        else:
            ensure_queue(connection, name, self.max_priority)
        with self._lock:
            self._queues.add(name)

    def ensure_dead_letters(self, connection: amqp.Connection) -> None:
        with self._lock:
            if self._dead_letters:
                return
        declare_bounded(connection, self.dead_letter_limits)
        with self._lock:
            self._dead_letters = True

    def _exchange_exists(self, connection: amqp.Connection, name: str) -> bool:
        with self._lock:
            if name in self._exchanges or name.startswith("amq."):
                return True
        channel = connection.channel()
        try:
            channel.exchange_declare(name, "direct", passive=True)
        except amqp_errors.NotFound:
            return False
        channel.close()
        with self._lock:
            self._exchanges.add(name)
        return True

    def _ensure_delay_target(self, connection: amqp.Connection, queue: str) -> None:
        with self._lock:
            ready = self._delay_levels and queue in self._delay_targets
        if ready:
            return
        self.ensure_queue(connection, queue)
        channel = connection.channel()
        try:
            if not self._delay_levels:
                declare_delay_levels(channel, self.delay_queue_type)
            bind_delay_target(channel, queue)
        finally:
            channel.close()
        with self._lock:
            self._delay_levels = True
            self._delay_targets.add(queue)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, items: Sequence[Outgoing]) -> list[int]:
        def operation(session: Session) -> list[int]:
            counts = self._publish_once(session, items)
            # A queue known to exist may have been deleted since (auto-delete, an admin): a
            # message for it came back, so create it again and send that message once more.
            again = [
                i for i, item in enumerate(items) if not counts[i] and self._forget_queue(item)
            ]
            if again:
                for index, count in zip(
                    again, self._publish_once(session, [items[i] for i in again]), strict=True
                ):
                    counts[index] = count
            return counts

        return self._pool.run("publish messages", operation)

    def _publish_once(self, session: Session, items: Sequence[Outgoing]) -> list[int]:
        routed = [self._route(session.connection, item) for item in items]
        returned = iter(session.publish([r for r in routed if r is not None]))
        return [
            0 if route is None or next(returned) else self._estimate(item)
            for item, route in zip(items, routed, strict=True)
        ]

    def _forget_queue(self, item: Outgoing) -> bool:
        """Forget that ``item``'s queue exists, if it went to one by name; say whether it did."""
        if item.exchange:
            return False
        with self._lock:
            known = item.routing_key in self._queues
            self._queues.discard(item.routing_key)
            self._delay_targets.discard(item.routing_key)
        return known

    def _route(
        self, connection: amqp.Connection, item: Outgoing
    ) -> tuple[amqp.Message, str, str] | None:
        """What to send where for ``item``; None when its exchange does not exist."""
        book: Bookkeeping = {}
        if item.not_before is not None and item.not_before > self.clock.time():
            if not item.exchange:
                route = self.delayed(
                    connection,
                    item.message,
                    item.routing_key,
                    item.not_before,
                    {EXCHANGE: "", ROUTING_KEY: item.routing_key},
                )
                _check_encodable(route[0])
                return route
            book[NOT_BEFORE] = item.not_before
        if not item.exchange:
            self.ensure_queue(connection, item.routing_key)
        elif not self._exchange_exists(connection, item.exchange):
            return None
        message = to_amqp(item.message, book)
        _check_encodable(message)
        return message, item.exchange, item.routing_key

    def delayed(
        self,
        connection: amqp.Connection,
        message: Message,
        queue: str,
        not_before: float,
        book: Bookkeeping,
    ) -> tuple[amqp.Message, str, str]:
        """Route ``message`` into the delay levels, back to ``queue`` at ``not_before``.

        RabbitMQ's TTLs run on real time, so the wait is counted from ``time.time()``; the
        consumer then holds the message until the injected clock agrees it is due.
        """
        book = {**book, NOT_BEFORE: not_before}
        seconds = int(not_before - time.time())
        if seconds < 1 or not self.delayed_delivery:
            self.ensure_queue(connection, queue)
            return to_amqp(message, book), "", queue
        self._ensure_delay_target(connection, queue)
        book[QUEUE] = queue
        if "expiration" in message.properties:
            book[EXPIRATION] = message.properties["expiration"]
        return to_amqp(message, book), DELAY_ENTRY, delay_routing_key(seconds)

    def _estimate(self, item: Outgoing) -> int:
        """How many queues a routed message reached, as far as this transport's bindings say."""
        if not item.exchange:
            return 1
        with self._lock:
            bindings = list(self._bindings.get(item.exchange, ()))
        found = {q for kind, key, q in bindings if matches(kind, key, item.routing_key)}
        return max(1, len(found))

    # -- consuming and inspecting -----------------------------------------------------------

    def consumer(self, queues: Sequence[str], *, owner: str) -> AmqpConsumer:
        consumer = AmqpConsumer(self, list(dict.fromkeys(queues)), owner)
        with self._lock:
            self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: AmqpConsumer) -> None:
        with self._lock:
            self._consumers.discard(consumer)

    def queue_length(self, queue: str) -> int:
        return self._pool.run(
            f"count the messages of queue {queue!r}",
            lambda session: queue_exists(session.connection, queue) or 0,
        )

    def purge(self, queue: str) -> int:
        def operation(session: Session) -> int:
            if queue_exists(session.connection, queue) is None:
                return 0
            return int(session.channel.queue_purge(queue) or 0)

        return self._pool.run(f"purge queue {queue!r}", operation)

    def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        found = self._pool.run(
            "read the dead letters",
            lambda session: dead_store.read(session.connection, self.dead_letter_limits),
        )
        return [dead for dead in found if queue is None or dead.queue == queue]

    def requeue_dead_letter(self, letter_id: str) -> DeadLetter | None:
        limits, priority = self.dead_letter_limits, self.max_priority
        return self._pool.run(
            f"requeue dead letter {letter_id}",
            lambda session: dead_store.requeue(session.connection, limits, letter_id, priority),
            attempts=1,  # not again: a second attempt after a lost reply would send it twice
        )

    def purge_dead_letters(self, queue: str | None = None) -> int:
        return self._pool.run(
            "purge the dead letters",
            lambda session: dead_store.take_out(
                session.connection,
                self.dead_letter_limits,
                lambda letter: queue is None or letter.queue == queue,
            ),
        )

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        self._broadcaster.broadcast(exchange, routing_key, message)

    def subscribe(self, exchange: str, patterns: Sequence[str] = ("#",)) -> Subscription:
        return self._broadcaster.subscribe(exchange, patterns)

    def close(self) -> None:
        with self._lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            consumer.close()
        self._broadcaster.close()
        self._pool.close()


def _check_encodable(message: amqp.Message) -> None:
    try:
        message._serialize_properties()
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(
            "AMQP message headers and properties may hold only strings, bytes, numbers, "
            "booleans, None, datetimes, Decimals, lists and dicts (properties: priority and "
            f"delivery_mode 0-255, the others strings): {exc!r} in "
            f"{message.properties.get('application_headers')!r}"
        ) from exc
