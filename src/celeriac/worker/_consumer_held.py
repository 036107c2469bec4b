"""What the consumer holds: deliveries taken and not yet settled, and the timer they wait in.

Every delivery the consumer takes from the broker is held under a key until it is settled:
acknowledged (at most once), or given back or dead-lettered (``release``). Held deliveries
have their leases renewed (``renew``), so none is redelivered while the worker has it. A
held message waits in the timer when its ETA is early and the broker cannot hold it back,
or when its task type is over its rate limit (``RateLimits``: one token bucket per task
name, rebuilt when the task's ``rate_limit`` changes). Timer entries are ``(due, key,
delivery, message)``, ``due`` in clock seconds (``clock.time()``), soonest first.

``HeldDeliveries`` shares the consumer's condition (an ``RLock`` underneath): each method
takes it, and the consumer takes it around several calls that must change together with
its own counters. The broker is called outside the lock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import Any

from celeriac._time import Clock
from celeriac.protocol.message import TaskMessage
from celeriac.transports.base import Consumer, Delivery
from celeriac.worker.ratelimit import TokenBucket, parse_rate

__all__ = ["HeldDeliveries", "RateLimits", "waits_for_eta"]


class HeldDeliveries:
    """The deliveries a consumer holds, by key, and the timer some of them wait in."""

    def __init__(self, consumer: Consumer, lock: threading.Condition) -> None:
        self.consumer = consumer
        self._lock = lock
        self._held: dict[int, Delivery] = {}  # not yet acknowledged
        self._acked: set[int] = set()
        self._keys = itertools.count(1)
        self._timer: list[tuple[float, int, Delivery, TaskMessage]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def __contains__(self, key: int) -> bool:
        with self._lock:
            return key in self._held

    def add(self, delivery: Delivery) -> int:
        """Hold ``delivery``; returns its key."""
        with self._lock:
            key = next(self._keys)
            self._held[key] = delivery
            return key

    def pop(self, key: int) -> Delivery | None:
        """Stop holding ``key`` without settling it (the caller settles it)."""
        with self._lock:
            return self._held.pop(key, None)

    # -- settling -------------------------------------------------------------------------------

    def ack(self, key: int) -> None:
        with self._lock:
            delivery = self._held.get(key)
            if delivery is None or key in self._acked:
                return
            self._acked.add(key)
        self.consumer.ack(delivery)
        with self._lock:
            self._held.pop(key, None)
            self._acked.discard(key)
            self._lock.notify_all()

    def release(self, key: int, *, requeue: bool, failed: bool = False) -> None:
        """Give back (``requeue``) or dead-letter; ``failed``: its worker process died."""
        delivery = self.pop(key)
        if delivery is not None:
            self.consumer.reject(delivery, requeue=requeue, failed=failed)

    def renew(self) -> None:
        with self._lock:
            held = list(self._held.values())
        if held:
            self.consumer.renew(held)

    # -- the timer ------------------------------------------------------------------------------

    def hold_until(self, due: float, delivery: Delivery, message: TaskMessage) -> None:
        """Hold the message in the timer until ``due`` (clock seconds)."""
        with self._lock:
            key = next(self._keys)
            self._held[key] = delivery
            heapq.heappush(self._timer, (due, key, delivery, message))

    def waiting(self) -> int:
        """How many held messages wait in the timer."""
        with self._lock:
            return len(self._timer)

    def next_due(self) -> float | None:
        """When the soonest timer entry is due; None when the timer is empty."""
        with self._lock:
            return self._timer[0][0] if self._timer else None

    def pop_due(self, now: float) -> list[tuple[Delivery, TaskMessage]]:
        """Take the messages due by ``now`` out of the timer (no longer held), soonest first."""
        due: list[tuple[Delivery, TaskMessage]] = []
        with self._lock:
            while self._timer and self._timer[0][0] <= now:
                _, key, delivery, message = heapq.heappop(self._timer)
                self._held.pop(key, None)
                due.append((delivery, message))
        return due

    def withdraw(self, task_ids: set[str]) -> list[tuple[Delivery, TaskMessage]]:
        """Take the messages of ``task_ids`` out of the timer (no longer held)."""
        with self._lock:
            waiting = [entry for entry in self._timer if entry[3].id in task_ids]
            if waiting:
                self._timer = [entry for entry in self._timer if entry[3].id not in task_ids]
                heapq.heapify(self._timer)
                for _, key, _, _ in waiting:
                    self._held.pop(key, None)
        return [(delivery, message) for _, _, delivery, message in waiting]

    def retry_rate_limited(self, task_name: str, now: float) -> None:
        """What of ``task_name`` waits for a rate-limit token is due ``now`` (messages
        waiting for their ETA keep waiting)."""
        with self._lock:
            self._timer = [
                (now, key, delivery, message)
                if message.task == task_name and not waits_for_eta(message, due)
                else (due, key, delivery, message)
                for due, key, delivery, message in self._timer
            ]
            heapq.heapify(self._timer)

    def timer(self) -> list[tuple[float, TaskMessage, Delivery]]:
        """``[(due, message, delivery)]``: the messages waiting in the timer, soonest first."""
        with self._lock:
            entries = sorted(self._timer)
        return [(due, message, delivery) for due, _, delivery, message in entries]


class RateLimits:
    """A token bucket per task name, for the task's ``rate_limit`` option."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, TokenBucket]] = {}

    def due(self, task: Any) -> float | None:
        """None when ``task`` may run now (a token was taken, or it has no rate limit), else
        the clock time at which to try again."""
        rate = parse_rate(task.option("rate_limit"))
        if not rate:
            return None
        current = self._buckets.get(task.name)
        if current is None or current[0] != rate:
            current = (rate, TokenBucket(rate, self.clock))
            self._buckets[task.name] = current
        bucket = current[1]
        if bucket.take():
            return None
        return self.clock.time() + bucket.wait_time()

    def reset(self, task_name: str) -> None:
        """``task_name``'s rate limit changed: a new bucket on its next message."""
        self._buckets.pop(task_name, None)


def waits_for_eta(message: TaskMessage, due: float) -> bool:
    """Whether a timer entry is an early ETA message (else it waits for a rate-limit token)."""
    return message.eta is not None and message.eta.timestamp() >= due
