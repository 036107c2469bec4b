"""The queues a worker consumes, changeable while it runs (``add_consumer``/``cancel_consumer``).

A transport consumer reads a fixed set of queues, and closing it gives back every delivery it
holds, which would hand running tasks' messages to other workers. So a change of queues
makes a *new* transport consumer for the new set and keeps the old one only to settle the
deliveries it handed out (ack, reject, defer, dead-letter, renew): each delivery is settled
by the consumer that fetched it, and an old consumer is closed once it holds none. Fetching
always uses the newest consumer; with no queues left, ``fetch`` just waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from celeriac.transports.base import Consumer, Delivery, Transport

__all__ = ["QueueSwitch"]


class QueueSwitch(Consumer):
    """A ``Consumer`` whose queues can be replaced at run time (see the module docstring)."""

    def __init__(self, transport: Transport, queues: Sequence[str], *, owner: str) -> None:
        self._transport = transport
        self._owner = owner
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self.queues = list(dict.fromkeys(queues))
        self._current: Consumer | None = self._open(self.queues)
        # id(delivery) -> (delivery, the consumer that fetched it); the delivery is kept so
        # its id is not reused while it is held.
        self._owners: dict[int, tuple[Delivery, Consumer]] = {}
        self._old: list[Consumer] = []
        self._fetching: Consumer | None = None  # not to be closed under a running fetch

    def _open(self, queues: list[str]) -> Consumer | None:
        return self._transport.consumer(queues, owner=self._owner) if queues else None

    def set_queues(self, queues: Sequence[str]) -> None:
        """Consume ``queues`` from now on."""
        wanted = list(dict.fromkeys(queues))
        fresh = self._open(wanted)
        with self._lock:
            old, self._current = self._current, fresh
            self.queues = wanted
            if old is not None:
                self._old.append(old)
        self._changed.set()
        self._close_drained()

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        with self._lock:
            current = self._fetching = self._current
            self._changed.clear()
        if current is None:
            self._changed.wait(timeout)
            return []
        deliveries: list[Delivery] = []
        try:
            deliveries = current.fetch(max_count, timeout)
        finally:
            with self._lock:
                self._fetching = None
                wanted = set(self.queues)
                unwanted = [d for d in deliveries if d.queue not in wanted]
                deliveries = [d for d in deliveries if d.queue in wanted]
                for delivery in deliveries:
                    self._owners[id(delivery)] = (delivery, current)
        for delivery in unwanted:  # taken from a queue cancelled while this fetch waited
            current.reject(delivery, requeue=True)
        if self._old:
            self._close_drained()
        return deliveries

    def _settle(self, delivery: Delivery, action: Callable[[Consumer], None]) -> None:
        with self._lock:
            entry = self._owners.pop(id(delivery), None)
            consumer = entry[1] if entry is not None else self._current
        if consumer is not None:
            action(consumer)
        if self._old:
            self._close_drained()

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda consumer: consumer.ack(delivery))

    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        self._settle(
            delivery, lambda consumer: consumer.reject(delivery, requeue=requeue, failed=failed)
        )

    def defer(self, delivery: Delivery, until: float) -> None:
        self._settle(delivery, lambda consumer: consumer.defer(delivery, until))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._settle(delivery, lambda consumer: consumer.dead_letter(delivery, reason))

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        groups: dict[int, tuple[Consumer, list[Delivery]]] = {}
        with self._lock:
            for delivery in deliveries:
                entry = self._owners.get(id(delivery))
                consumer = entry[1] if entry is not None else self._current
                if consumer is not None:
                    groups.setdefault(id(consumer), (consumer, []))[1].append(delivery)
        for consumer, held in groups.values():
            consumer.renew(held)

    def _close_drained(self) -> None:
        with self._lock:
            busy = {id(consumer) for _, consumer in self._owners.values()}
            if self._fetching is not None:
                busy.add(id(self._fetching))
            drained = [c for c in self._old if id(c) not in busy]
            self._old = [c for c in self._old if id(c) in busy]
        for consumer in drained:
            consumer.close()

    def close(self) -> None:
        with self._lock:
            consumers = [*self._old, *([self._current] if self._current else [])]
            self._old, self._current = [], None
            self._owners.clear()
        self._changed.set()
        for consumer in consumers:
            consumer.close()
