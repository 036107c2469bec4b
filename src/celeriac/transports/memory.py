"""The in-process transport, for tests and eager use: ``memory://`` or ``memory://<name>``.

Transports created with the same name in one process share one broker, so a client app and a
worker running in a thread of the same process talk to each other. ``MemoryTransport.reset``
empties a named broker between tests. Nothing leaves the process and nothing survives it.

One broker's state, guarded by its ``threading.Condition``::

    queues    {queue name: {message id: _Entry}}     dict order is publish order (FIFO)
    bindings  {exchange name: {(exchange type, binding key, queue name)}}
    dead      [DeadLetter, ...]                       oldest first, ids "<n>"; bounded by
                                                      dead_letter_max_entries / _max_age

    _Entry    id, message, queue, exchange, routing_key, available_at,
              delivery_count, consumer (lease holder or None), lease_expires

Every operation is one critical section under the condition's lock, so each is atomic.
Publishing and giving messages back notify the condition, which wakes blocked fetches; a
fetch also wakes when the next ``not_before`` or lease expiry is due by the injected clock.
A delivery's tag is ``"<id>.<delivery_count>"``, unique per claim, so acting on a stale
claim (its lease expired and another consumer took the message) does nothing.
"""

from __future__ import annotations

import copy
import heapq
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from celeriac._time import Clock, SystemClock, system_clock
from celeriac.exceptions import ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.routing import Queue, matches
from celeriac.transports import positive_option
from celeriac.transports._broadcast import MemoryHub
from celeriac.transports._dead_letters import DeadLetterLimits, RejectLog, log_dropped
from celeriac.transports.base import (
    Capabilities,
    Consumer,
    DeadLetter,
    Delivery,
    Outgoing,
    Subscription,
    Transport,
)

__all__ = ["MemoryConsumer", "MemoryTransport"]

# How often a blocked fetch re-reads a clock that is not the system clock (a ManualClock moved
# by a test from another thread gives no notification).
_INJECTED_CLOCK_RECHECK = 0.05


@dataclass(slots=True)
class _Entry:
    id: int
    message: Message
    queue: str
    exchange: str
    routing_key: str
    available_at: float
    delivery_count: int = 0  # claims so far (part of the tag)
    returns: int = 0  # claims given back (requeue, defer, close): not counted as failed
    consumer: str | None = None
    lease_expires: float = 0.0

    def due_at(self) -> float:
        """When the entry may be claimed: when available and, if leased, its lease expired."""
        if self.consumer is None:
            return self.available_at
        return max(self.available_at, self.lease_expires)

    def order(self) -> tuple[int, int]:
        return (-self.message.priority, self.id)


@dataclass
class _Broker:
    condition: threading.Condition = field(default_factory=threading.Condition)
    queues: dict[str, dict[int, _Entry]] = field(default_factory=dict)
    bindings: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    last_id: int = 0
    hub: MemoryHub = field(default_factory=MemoryHub)


_brokers: dict[str, _Broker] = {}
_brokers_lock = threading.Lock()


def _broker_named(name: str) -> _Broker:
    with _brokers_lock:
        if name not in _brokers:
            _brokers[name] = _Broker()
        return _brokers[name]


def _fresh(message: Message) -> Message:
    """A copy whose headers and properties the receiver may change without affecting ours."""
    return replace(
        message,
        headers=copy.deepcopy(message.headers),
        properties=copy.deepcopy(message.properties),
    )


class MemoryTransport(Transport):
    """A broker living in this process's memory (see the module docstring)."""

    capabilities = Capabilities(delayed_delivery=True, leases=True, priorities=True, broadcast=True)

    def __init__(
        self,
        url: str = "memory://",
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        scheme, separator, rest = url.partition("://")
        if scheme != "memory" or not separator:
            raise ImproperlyConfigured(f"{url!r} is not a memory:// URL (memory://[name]).")
        self.name = rest.strip("/")
        self.lease_timeout = positive_option(options, "lease_timeout", 30.0)
        self.max_deliveries = int(positive_option(options, "max_deliveries", 10, integer=True))
        self.dead_letter_limits = DeadLetterLimits.from_options(options)
        self.rejects = RejectLog(clock=clock)  # letters set aside here, which no worker logs
        self._broker = _broker_named(self.name)
        self._clock = clock
        self._consumers: set[MemoryConsumer] = set()
        self._closed = False

    @classmethod
    def reset(cls, name: str = "") -> None:
        """Empty the broker called ``name``: messages, bindings and dead letters."""
        broker = _broker_named(name)
        with broker.condition:
            broker.queues.clear()
            broker.bindings.clear()
            broker.dead.clear()
            broker.condition.notify_all()

    @property
    def lease_renew_interval(self) -> float:
        return self.lease_timeout / 3

    def declare(self, queue: Queue) -> None:
        self._check_open()
        exchange = queue.bound_exchange
        if not exchange.name:
            return  # the default exchange routes by queue name; nothing to bind
        with self._broker.condition:
            bindings = self._broker.bindings.setdefault(exchange.name, set())
            bindings.add((exchange.type, queue.binding_key, queue.name))

    def publish(self, items: Sequence[Outgoing]) -> list[int]:
        self._check_open()
        broker = self._broker
        counts: list[int] = []
        with broker.condition:
            now = self._clock.time()
            for item in items:
                targets = self._route(item.exchange, item.routing_key)
                for queue in targets:
                    broker.last_id += 1
                    entry = _Entry(
                        id=broker.last_id,
                        message=_fresh(item.message),
                        queue=queue,
                        exchange=item.exchange,
                        routing_key=item.routing_key,
                        available_at=now if item.not_before is None else item.not_before,
                    )
                    broker.queues.setdefault(queue, {})[entry.id] = entry
                counts.append(len(targets))
            broker.condition.notify_all()
        return counts

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if not exchange:
            return [routing_key]
        bindings = self._broker.bindings.get(exchange, set())
        return sorted({q for kind, key, q in bindings if matches(kind, key, routing_key)})

    def consumer(self, queues: Sequence[str], *, owner: str) -> MemoryConsumer:
        self._check_open()
        consumer = MemoryConsumer(self, list(dict.fromkeys(queues)), owner)
        self._consumers.add(consumer)
        return consumer

    def queue_length(self, queue: str) -> int:
        self._check_open()
        with self._broker.condition:
            now = self._clock.time()
            entries = self._broker.queues.get(queue, {}).values()
            return sum(1 for e in entries if e.consumer is None or e.lease_expires <= now)

    def purge(self, queue: str) -> int:
        self._check_open()
        with self._broker.condition:
            now = self._clock.time()
            entries = self._broker.queues.get(queue, {})
            waiting = [
                i for i, e in entries.items() if e.consumer is None or e.lease_expires <= now
            ]
            for entry_id in waiting:
                del entries[entry_id]
            return len(waiting)

    def delayed_messages(self, queue: str, limit: int = 1000) -> list[tuple[float, Message]]:
        self._check_open()
        with self._broker.condition:
            now = self._clock.time()
            entries = self._broker.queues.get(queue, {}).values()
            held = sorted(
                (e.available_at, e.id, e.message)
                for e in entries
                if e.consumer is None and e.available_at > now
            )
        return [(at, message) for at, _, message in held[:limit]]

    def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        self._check_open()
        with self._broker.condition:
            self._trim_dead_letters()
            return [
                replace(d, message=_fresh(d.message))
                for d in self._broker.dead
                if queue is None or d.queue == queue
            ]

    def requeue_dead_letter(self, letter_id: str) -> DeadLetter | None:
        self._check_open()
        broker = self._broker
        with broker.condition:
            found = next((d for d in broker.dead if d.id == letter_id), None)
            if found is None:
                return None
            if not found.is_message:
                raise ValueError(f"dead letter {letter_id} is not a message; nothing to requeue")
            broker.dead.remove(found)
            broker.last_id += 1
            entry = _Entry(
                id=broker.last_id,
                message=_fresh(found.message),
                queue=found.queue,
                exchange="",
                routing_key=found.queue,
                available_at=self._clock.time(),
            )
            broker.queues.setdefault(found.queue, {})[entry.id] = entry
            broker.condition.notify_all()
            return replace(found, message=_fresh(found.message))

    def purge_dead_letters(self, queue: str | None = None) -> int:
        self._check_open()
        with self._broker.condition:
            dead = self._broker.dead
            kept = [d for d in dead if queue is not None and d.queue != queue]
            purged = len(dead) - len(kept)
            dead[:] = kept
            return purged

    def bury(self, entry_message: Message, queue: str, reason: str) -> None:
        """Keep ``entry_message`` aside with ``reason`` (under the broker's condition)."""
        broker = self._broker
        broker.last_id += 1
        broker.dead.append(
            DeadLetter(entry_message, queue, reason, self._clock.time(), id=str(broker.last_id))
        )
        self._trim_dead_letters()

    def _trim_dead_letters(self) -> None:
        """Drop the oldest letters past the limits (under the broker's condition)."""
        limits, dead = self.dead_letter_limits, self._broker.dead
        oldest = limits.oldest_kept(self._clock.time())
        kept = dead if oldest is None else [d for d in dead if d.dead_lettered_at >= oldest]
        if limits.max_entries is not None:
            kept = kept[-limits.max_entries :]
        if len(kept) != len(dead):
            dropped = len(dead) - len(kept)
            dead[:] = kept
            log_dropped(f"memory broker {self.name!r}", dropped, limits)

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        self._check_open()
        self._broker.hub.broadcast(exchange, routing_key, _fresh(message))

    def subscribe(self, exchange: str, patterns: Sequence[str] = ("#",)) -> Subscription:
        self._check_open()
        return self._broker.hub.subscribe(exchange, patterns)

    def close(self) -> None:
        for consumer in list(self._consumers):
            consumer.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"The memory transport {self.name!r} is closed; create another.")


class MemoryConsumer(Consumer):
    """Takes deliveries from a memory broker's queues; its methods are thread-safe."""

    def __init__(self, transport: MemoryTransport, queues: list[str], owner: str) -> None:
        self._transport = transport
        self._broker = transport._broker
        self._clock = transport._clock
        self._queues = queues
        self._id = f"{owner}/{uuid.uuid4().hex}"
        self._rotation = 0
        self._closed = False
        self._recheck = None if isinstance(self._clock, SystemClock) else _INJECTED_CLOCK_RECHECK

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        deadline = time.monotonic() + max(timeout, 0.0)
        condition = self._broker.condition
        with condition:
            while not self._closed:
                now = self._clock.time()
                deliveries = self._claim(max_count, now)
                remaining = deadline - time.monotonic()
                if deliveries or remaining <= 0:
                    return deliveries
                wait = remaining
                next_due = self._next_due(now)
                if next_due is not None:
                    wait = min(wait, next_due - now, self._recheck or wait)
                condition.wait(wait)  # releases the lock while waiting
        return []

    def _claim(self, max_count: int, now: float) -> list[Delivery]:
        """Lease the best due entries: highest priority, then oldest, queues in rotation."""
        self._rotation = (self._rotation + 1) % len(self._queues) if self._queues else 0
        queues = self._queues[self._rotation :] + self._queues[: self._rotation]
        deliveries: list[Delivery] = []
        while len(deliveries) < max_count:
            wanted = max_count - len(deliveries)
            ranked: list[tuple[int, int, _Entry]] = []
            for turn, queue in enumerate(queues):
                due = (e for e in self._broker.queues.get(queue, {}).values() if e.due_at() <= now)
                best = heapq.nsmallest(wanted, due, key=_Entry.order)
                ranked.extend((rank, turn, entry) for rank, entry in enumerate(best))
            ranked.sort(key=lambda r: (r[0], r[1]))
            poisoned = False
            for _, _, entry in ranked[:wanted]:
                failed = entry.delivery_count - entry.returns
                if failed >= self._transport.max_deliveries:
                    self._bury(entry, _poison_reason(failed))
                    self._transport.rejects.note(entry.queue, _poison_reason(failed))
                    poisoned = True
                else:
                    deliveries.append(self._lease(entry, now))
            if not poisoned:
                break
        return deliveries

    def _lease(self, entry: _Entry, now: float) -> Delivery:
        entry.delivery_count += 1
        entry.consumer = self._id
        entry.lease_expires = now + self._transport.lease_timeout
        return Delivery(
            message=_fresh(entry.message),
            delivery_tag=f"{entry.id}.{entry.delivery_count}",
            queue=entry.queue,
            exchange=entry.exchange,
            routing_key=entry.routing_key,
            redelivered=entry.delivery_count > 1,
            delivery_count=entry.delivery_count - entry.returns,
        )

    def _next_due(self, now: float) -> float | None:
        times = [
            e.due_at()
            for q in self._queues
            for e in self._broker.queues.get(q, {}).values()
            if e.due_at() > now
        ]
        return min(times, default=None)

    def _held(self, delivery: Delivery) -> _Entry | None:
        entry_id, _, count = delivery.delivery_tag.partition(".")
        if not (entry_id.isdigit() and count.isdigit()):
            return None
        entry = self._broker.queues.get(delivery.queue, {}).get(int(entry_id))
        if entry is None or entry.consumer != self._id or entry.delivery_count != int(count):
            return None
        return entry

    def _bury(self, entry: _Entry, reason: str) -> None:
        del self._broker.queues[entry.queue][entry.id]
        self._transport.bury(entry.message, entry.queue, reason)

    def _release(
        self, entry: _Entry, available_at: float | None = None, *, counted: bool = False
    ) -> None:
        """Give ``entry`` back; unless ``counted`` (its worker died), not a failed delivery."""
        entry.consumer = None
        if not counted:
            entry.returns += 1
        if available_at is not None:
            entry.available_at = available_at
        self._broker.condition.notify_all()

    def ack(self, delivery: Delivery) -> None:
        with self._broker.condition:
            entry = self._held(delivery)
            if entry is not None:
                del self._broker.queues[entry.queue][entry.id]

    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        if not requeue:
            self.dead_letter(delivery, "rejected")
            return
        with self._broker.condition:
            entry = self._held(delivery)
            if entry is not None:
                self._release(entry, counted=failed)

    def defer(self, delivery: Delivery, until: float) -> None:
        with self._broker.condition:
            entry = self._held(delivery)
            if entry is not None:
                self._release(entry, available_at=until)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._broker.condition:
            entry = self._held(delivery)
            if entry is not None:
                self._bury(entry, reason)

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        with self._broker.condition:
            expires = self._clock.time() + self._transport.lease_timeout
            for delivery in deliveries:
                entry = self._held(delivery)
                if entry is not None:
                    entry.lease_expires = expires

    def close(self) -> None:
        with self._broker.condition:
            self._closed = True
            for queue in self._queues:
                for entry in self._broker.queues.get(queue, {}).values():
                    if entry.consumer == self._id:
                        self._release(entry)
            self._broker.condition.notify_all()
        self._transport._consumers.discard(self)


def _poison_reason(count: int) -> str:
    return (
        f"delivered {count} times without being acknowledged (its worker probably died each time)"
    )
