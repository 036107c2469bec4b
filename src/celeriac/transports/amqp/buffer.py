"""What an AMQP consumer holds: deliveries received but not yet taken, and taken but not settled.

The consumer's I/O thread adds what RabbitMQ delivers; the threads that fetch take from it and
the threads that settle (ack, reject, defer, dead-letter) release. Every method runs under the
buffer's condition, which also wakes a waiting fetch::

    ready   {queue: deque[Received]}               in arrival order; taken with the queues in
                                                   rotation, each queue's best priority first
    early   heap of (not_before, n, Received)      moved to ready once the injected clock
                                                   reaches not_before
    held    {delivery tag: Received}               taken, not yet settled (those handed
                                                   over to a lease, ``lease``, outlive
                                                   a reconnection)

A waiting fetch re-reads an injected clock (not the system clock) every 50 ms, since moving a
``ManualClock`` wakes nobody.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from celeriac._time import Clock, SystemClock
from celeriac.transports.base import Delivery

__all__ = ["DeliveryBuffer", "Received"]

_CLOCK_RECHECK = 0.05


@dataclass(slots=True)
class Received:
    """A delivery with what settling it on the broker needs."""

    delivery: Delivery
    amqp_tag: int  # the channel's delivery tag
    consumer_tag: str
    generation: int  # of the connection that delivered it
    bookkeeping: dict[str, Any]  # the x-celeriac-* headers it came with
    arrived: float = 0.0  # time.monotonic() when it became ready
    lease: str | None = None  # set once handed over (the original acknowledged); I/O thread


def _pop_best(ready: deque[Received]) -> Received:
    """Remove and return the first of the highest-priority deliveries."""
    best = 0
    for index in range(1, len(ready)):
        if ready[index].delivery.message.priority > ready[best].delivery.message.priority:
            best = index
    received = ready[best]
    del ready[best]
    return received


class DeliveryBuffer:
    """Deliveries of one consumer between RabbitMQ and the worker (module docstring)."""

    def __init__(self, queues: list[str], clock: Clock) -> None:
        self._queues = queues
        self._clock = clock
        self._recheck = None if isinstance(clock, SystemClock) else _CLOCK_RECHECK
        self._changed = threading.Condition()
        self._ready: dict[str, deque[Received]] = {queue: deque() for queue in queues}
        self._early: list[tuple[float, int, Received]] = []
        self._held: dict[str, Received] = {}
        self._order = itertools.count()
        self._rotation = 0
        self.closed = False

    def add(self, received: Received, not_before: float | None, arrived: float) -> None:
        """Buffer a delivery: ready now, or once the clock reaches ``not_before``."""
        received.arrived = arrived
        with self._changed:
            if not_before is None:
                self._ready[received.delivery.queue].append(received)
            else:
                heapq.heappush(self._early, (not_before, next(self._order), received))
            self._changed.notify_all()

    def _promote_due(self) -> None:
        now = self._clock.time()
        while self._early and self._early[0][0] <= now:
            _, _, received = heapq.heappop(self._early)
            self._ready[received.delivery.queue].append(received)

    def take(self, max_count: int) -> list[Delivery]:
        """Up to ``max_count`` ready deliveries, now held."""
        with self._changed:
            self._promote_due()
            self._rotation = (self._rotation + 1) % len(self._queues) if self._queues else 0
            queues = self._queues[self._rotation :] + self._queues[: self._rotation]
            taken: list[Received] = []
            while len(taken) < max_count:
                before = len(taken)
                for queue in queues:
                    if self._ready[queue] and len(taken) < max_count:
                        taken.append(_pop_best(self._ready[queue]))
                if len(taken) == before:
                    break
            for received in taken:
                self._held[received.delivery.delivery_tag] = received
            return [received.delivery for received in taken]

    def release(self, delivery: Delivery) -> Received | None:
        """The held delivery with ``delivery``'s tag, no longer held; None if it was not."""
        with self._changed:
            return self._held.pop(delivery.delivery_tag, None)

    def peek(self, delivery: Delivery) -> Received | None:
        """The held delivery with ``delivery``'s tag, still held; None if it is not."""
        with self._changed:
            return self._held.get(delivery.delivery_tag)

    def holds(self, received: Received) -> bool:
        with self._changed:
            return self._held.get(received.delivery.delivery_tag) is received

    def ready_count(self) -> int:
        with self._changed:
            self._promote_due()
            return sum(len(ready) for ready in self._ready.values())

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a delivery to be ready (or the buffer to close)."""
        with self._changed:
            self._promote_due()
            if any(self._ready.values()) or self.closed:
                return
            if self._early:
                timeout = min(timeout, max(self._early[0][0] - self._clock.time(), 0.0))
                timeout = min(timeout, self._recheck or timeout)
            self._changed.wait(timeout)

    def untaken_since(self, before: float) -> dict[str, list[Received]]:
        """Remove and return, per queue, the ready deliveries of queues whose oldest one
        arrived before ``before`` (time.monotonic())."""
        with self._changed:
            stale = [q for q, ready in self._ready.items() if ready and ready[0].arrived < before]
            found = {queue: list(self._ready[queue]) for queue in stale}
            for queue in stale:
                self._ready[queue].clear()
            return found

    def clear(self) -> None:
        """Forget everything the connection that is gone delivered, but held deliveries
        handed over to a lease (no longer on that connection)."""
        with self._changed:
            for ready in self._ready.values():
                ready.clear()
            self._early.clear()
            self._held = {tag: r for tag, r in self._held.items() if r.lease is not None}

    def drain(self) -> tuple[list[Received], list[Received]]:
        """Remove and return every delivery: those held (but those handed over to a lease),
        and those waiting to be taken."""
        with self._changed:
            held = [r for r in self._held.values() if r.lease is None]
            self._held = {tag: r for tag, r in self._held.items() if r.lease is not None}
            waiting = [r for ready in self._ready.values() for r in ready]
            waiting += [r for _, _, r in sorted(self._early)]
            for ready in self._ready.values():
                ready.clear()
            self._early.clear()
            return held, waiting

    def close(self) -> bool:
        """Wake every waiter for good; False when it was closed already."""
        with self._changed:
            if self.closed:
                return False
            self.closed = True
            self._changed.notify_all()
            return True
