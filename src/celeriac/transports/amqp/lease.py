"""Long tasks and RabbitMQ's consumer_timeout: deliveries held too long move to a lease queue.

RabbitMQ closes a channel that keeps a delivery unacknowledged longer than its
``consumer_timeout`` (30 minutes by default; 3.10 has no per-queue setting) and requeues what
the channel held, so an ``acks_late`` task running longer than that would run twice. So a
delivery its worker still holds after half of ``consumer_timeout`` (the transport option, in
seconds, as configured on the broker) is handed over to a lease: a copy waits in a lease queue
of the consumer's own, one per queue it consumes, and the original is acknowledged::

    celeriac.lease.<owner>.<instance>.<queue>    classic, durable
        x-message-ttl              lease_timeout (60 s): a copy not renewed by then ...
        x-dead-letter-exchange     ""             ... goes back to <queue>, where any worker
        x-dead-letter-routing-key  <queue>            takes it
        x-expires                  10 x lease_timeout: left by a dead worker, the queue goes
                                   long after its copies went back

``<instance>`` is random per consumer, so no two consumers (two workers given the same name,
a worker and its successor) ever share a lease queue. A copy is the message as delivered
(body, properties, headers) plus bookkeeping headers: its lease id (x-celeriac-lease), its
queue, exchange and routing key, and its delivery counted as a failed one (a copy that comes
back means its worker died), so a task that kills every worker it runs on is still set aside
after ``max_deliveries``. A per-message ``expiration`` waits in x-celeriac-expiration, since it
would end the lease early.

Steps, all on the consumer's I/O thread, each publish confirmed before the step goes on:

    hand over  publish the copy, then acknowledge the original (a crash in between: both the
               copy and the requeued original run, at least once)
    renew      every lease_timeout / 3: take every copy from the lease queue (basic.get, not
               acknowledged), publish a fresh copy of each lease still held, then acknowledge
               what was taken (the copies of finished leases are dropped with it)
    finish     ack, reject, defer or dead-letter of a leased delivery: its outcome first (a
               requeued, delayed or dead-lettered copy), then at once a renewal that leaves
               its lease out (tried again each turn until it succeeds), so no copy of a
               finished task comes back unless the renewal fails for lease_timeout
    lapse      an outcome that could not be published (or whose command timed out): the
               lease is no longer renewed and its copy, requeued by renewals (which keeps its
               expiry), goes back to its queue within lease_timeout: delivered again
    give back  the consumer closing with leases still held: each copy goes to its queue at
               once (not counted: a give-back is no failed delivery), then the lease queues are
               deleted
    crash      a worker killed (or cut off longer than lease_timeout): its copies expire and
               RabbitMQ dead-letters them to their queues, where another worker runs them

A lease is not tied to a channel, so it outlives a reconnection: the task's ack still
finds it. Times here are real (``time.monotonic``), not the injected clock: the broker's
consumer_timeout and TTLs run on real time.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac._amqp.driver import amqp
from celeriac._amqp.pool import Session
from celeriac.exceptions import TransportError
from celeriac.transports import positive_option
from celeriac.transports.amqp.buffer import Received
from celeriac.transports.amqp.topology import (
    DELIVERIES,
    EXCHANGE,
    EXPIRATION,
    LEASE,
    QUEUE,
    RETURNED,
    ROUTING_KEY,
    to_amqp,
)

__all__ = ["LeaseKeeper", "LeasePolicy"]

logger = logging.getLogger("celeriac.amqp")

_PREFIX = "celeriac.lease."
_NAME_LIMIT = 255  # bytes: AMQP's longest queue name
_EXPIRES = 10  # an unused lease queue lives this many lease_timeouts


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """When held deliveries are handed over, and how long their copies wait unrenewed."""

    consumer_timeout: float | None  # the broker's, in seconds; None: off, nothing handed over
    lease_timeout: float

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LeasePolicy:
        """From ``consumer_timeout`` (1800 s; None or False: the broker's is off) and
        ``lease_timeout`` (60 s)."""
        consumer_timeout: float | None = None
        value = options.get("consumer_timeout", 1800.0)
        if value is not None and value is not False:
            consumer_timeout = positive_option(options, "consumer_timeout", 1800.0)
        return cls(consumer_timeout, positive_option(options, "lease_timeout", 60.0))

    @property
    def hand_over_after(self) -> float | None:
        """Seconds a delivery is held before it is handed over: half of consumer_timeout."""
        return None if self.consumer_timeout is None else self.consumer_timeout / 2

    @property
    def renew_interval(self) -> float | None:
        """How often the worker should call ``renew``, so every delivery is handed over
        before two thirds of consumer_timeout."""
        return None if self.consumer_timeout is None else self.consumer_timeout / 6


class LeaseKeeper:
    """The leases of one consumer (module docstring). Only its I/O thread calls the methods
    that take a ``Session``, and ``lapse``."""

    def __init__(self, policy: LeasePolicy, owner: str) -> None:
        self.policy = policy
        owner = owner.encode()[:100].decode(errors="ignore")
        self._prefix = f"{_PREFIX}{owner}.{secrets.token_hex(4)}."
        self._ids = itertools.count(1)
        self._live: dict[str, dict[str, Received]] = {}  # lease queue -> lease id -> delivery
        self._origins: dict[str, str] = {}  # lease queue -> its queue, while it may hold copies
        self._lapsed: dict[str, float] = {}  # lease id -> when (monotonic) it stopped renewing
        self._renew_at = math.inf  # time.monotonic()

    def due(self, received: Received, now: float) -> bool:
        """Whether ``received``, held since it arrived, should be handed over at ``now``."""
        after = self.policy.hand_over_after
        return after is not None and received.lease is None and now - received.arrived >= after

    def lease_queue(self, queue: str) -> str:
        name = self._prefix + queue
        if len(name.encode()) > _NAME_LIMIT:
            name = self._prefix + hashlib.sha256(queue.encode()).hexdigest()
        return name

    def hand_over(self, session: Session, held: list[Received]) -> None:
        """Publish a copy of each of ``held`` to its lease queue and mark it leased; the
        caller then acknowledges the originals."""
        leases = [(self._declare(session, r.delivery.queue), str(next(self._ids)), r) for r in held]
        self._publish(session, [(_copy(r, lease), "", name) for name, lease, r in leases])
        for name, lease, received in leases:
            received.lease = lease
            self._live.setdefault(name, {})[lease] = received
            logger.info(
                "Handed message %s over to lease queue %s after %.0f s (consumer_timeout: %g s).",
                _task_id(received),
                name,
                time.monotonic() - received.arrived,
                self.policy.consumer_timeout,
            )
        self._renew_at = min(self._renew_at, time.monotonic() + self.policy.lease_timeout / 3)

    def finish(self, session: Session, received: Received) -> None:
        """Drop the lease of ``received``, whose outcome is settled, and with it its copy: the
        lease queues are renewed now (and on the next turns until that succeeds)."""
        self._take(received)
        self._renew_at = -math.inf
        self.renew_if_due(session, time.monotonic())

    def lapse(self, received: Received) -> None:
        """Stop renewing the lease of ``received``, whose outcome could not be settled: its
        copy goes back to its queue when its TTL runs out. Idempotent."""
        if self._take(received):
            self._lapsed[str(received.lease)] = time.monotonic()
            logger.warning(
                "Message %s goes back to queue %s within lease_timeout (%g s).",
                _task_id(received),
                received.delivery.queue,
                self.policy.lease_timeout,
            )

    def renew_if_due(self, session: Session, now: float) -> None:
        if now < self._renew_at:
            return
        forgotten = now - 2 * self.policy.lease_timeout  # their copies expired long since
        self._lapsed = {lease: at for lease, at in self._lapsed.items() if at > forgotten}
        for name in list(self._origins):
            self._renew_queue(session, name)
        live = any(self._live.values())
        self._renew_at = time.monotonic() + self.policy.lease_timeout / 3 if live else math.inf

    def give_back(self, session: Session) -> None:
        """Put the copy of every lease still held in its queue, then delete the lease queues
        (those holding a lapsed copy are left to expire)."""
        batch = [
            (_copy(received, lease, given_back=True), "", self._origins[name])
            for name, live in self._live.items()
            for lease, received in live.items()
        ]
        if batch:
            session.publish(batch)  # (a queue gone meanwhile has nothing to run them)
        self._live.clear()
        for name in list(self._origins):
            if self._lapsed:
                self._renew_queue(session, name)  # drops the copies given back
            else:
                session.channel.queue_delete(name)
        self._origins.clear()
        self._renew_at = math.inf

    def _take(self, received: Received) -> bool:
        """Stop renewing ``received``'s lease; False when it was not being renewed."""
        live = self._live.get(self.lease_queue(received.delivery.queue), {})
        return live.pop(str(received.lease), None) is not None

    def _declare(self, session: Session, queue: str) -> str:
        """Declare the lease queue of ``queue`` (again: it may have expired or been deleted)."""
        name = self.lease_queue(queue)
        ttl = max(1, round(self.policy.lease_timeout * 1000))
        arguments = {
            "x-message-ttl": ttl,
            "x-expires": ttl * _EXPIRES,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }
        session.channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
        self._origins[name] = queue
        return name

    def _renew_queue(self, session: Session, name: str) -> None:
        """Take every copy in lease queue ``name``, publish a fresh one for each lease still
        live, then acknowledge what was taken, but lapsed copies: those are requeued, which
        keeps their expiry."""
        self._declare(session, self._origins[name])
        channel = session.channel
        taken: list[amqp.Message] = []
        while (message := channel.basic_get(name, no_ack=False)) is not None:
            taken.append(message)  # not acknowledged: not handed out again
        live = self._live.get(name, {})
        if live:
            self._publish(session, [(_copy(r, lease), "", name) for lease, r in live.items()])
        for message in taken:
            tag = message.delivery_info["delivery_tag"]
            if _lease_id(message) in self._lapsed:
                channel.basic_reject(tag, requeue=True)
            else:
                channel.basic_ack(tag)
        found = {_lease_id(message) for message in taken}
        for lease, received in live.items():
            if lease not in found:
                logger.warning(
                    "The lease of message %s lapsed before it was renewed (this worker or its "
                    "connection stalled for lease_timeout): it went back to queue %s and may "
                    "run twice.",
                    _task_id(received),
                    received.delivery.queue,
                )
        if not live:
            self._live.pop(name, None)
            self._origins.pop(name, None)  # nothing more to renew here

    def _publish(self, session: Session, batch: list[tuple[amqp.Message, str, str]]) -> None:
        if any(session.publish(batch)):
            raise TransportError("RabbitMQ returned a lease copy: its lease queue was deleted")


def _copy(received: Received, lease: str, *, given_back: bool = False) -> amqp.Message:
    """The message as delivered, with a lease copy's bookkeeping (module docstring); a copy
    ``given_back`` at close is not counted as a failed delivery."""
    delivery = received.delivery
    book: dict[str, Any] = {
        EXCHANGE: delivery.exchange,
        ROUTING_KEY: delivery.routing_key,
        # counted as failed, should the copy come back (unless given back at close)
        DELIVERIES: delivery.delivery_count - 1 if given_back else delivery.delivery_count,
        QUEUE: delivery.queue,
        LEASE: lease,
    }
    if given_back:
        book[RETURNED] = 1
    expiration = delivery.message.properties.get("expiration")
    if expiration is not None:
        book[EXPIRATION] = expiration
    return to_amqp(delivery.message, book)


def _lease_id(message: amqp.Message) -> str:
    value = (message.properties.get("application_headers") or {}).get(LEASE)
    return value.decode() if isinstance(value, bytes) else str(value)


def _task_id(received: Received) -> str:
    message = received.delivery.message
    return str(message.headers.get("id") or message.properties.get("correlation_id") or "?")
