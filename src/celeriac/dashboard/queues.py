"""Queues as the dashboard shows them: length, consumers and rates, sampled from the broker.

The queues watched are the app's default queue and ``task_queues``, plus any queue a worker
consumes (from remote control) or a task was sent to (``task-sent`` events name it). Lengths
come from ``Transport.queue_length`` at most every ``max_age`` seconds however many browsers
ask. Two rates per queue, per minute over the last five: tasks sent to it (needs
``task_send_sent_event`` on the clients) and the change of its length (positive: growing).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celeriac._time import Clock
from celeriac.exceptions import CeleryError
from celeriac.transports.base import Transport

__all__ = ["QueueMonitor"]

logger = logging.getLogger("celeriac.dashboard")

_WINDOW = 300.0  # seconds the rates look back


class QueueMonitor:
    """Samples queue lengths and counts tasks sent per queue; any thread may call."""

    def __init__(
        self,
        transport: Callable[[], Transport],
        configured: Iterable[str],
        clock: Clock,
        *,
        max_age: float = 2.0,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._names: set[str] = {name for name in configured if name}
        self._consumers: dict[str, int] | None = None
        self._sent: dict[str, collections.deque[float]] = {}
        self._lengths: dict[str, collections.deque[tuple[float, int]]] = {}
        self._sampled_at: float | None = None

    def watch(self, names: Iterable[str]) -> None:
        """Also watch these queues."""
        with self._lock:
            self._names.update(name for name in names if name)

    def note_sent(self, queue: str, when: float) -> None:
        """A task was sent to ``queue`` at ``when`` (from a ``task-sent`` event)."""
        if not queue:
            return
        with self._lock:
            self._names.add(queue)
            self._sent.setdefault(queue, collections.deque()).append(when)

    def set_consumers(self, consumed: Mapping[str, Iterable[str]]) -> None:
        """Which queues each worker consumes (hostname -> queue names), from remote control."""
        counts: dict[str, int] = collections.Counter()
        for queues in consumed.values():
            for name in set(queues):
                counts[name] += 1
        with self._lock:
            self._consumers = dict(counts)
            self._names.update(counts)

    def sample(self) -> None:
        """Read every watched queue's length from the broker now."""
        with self._lock:
            names = sorted(self._names)
        now = self._clock.time()
        found: dict[str, int] = {}
        for name in names:
            try:
                found[name] = self._transport().queue_length(name)
            except CeleryError as exc:
                logger.warning("Dashboard: cannot read the length of queue %s: %s", name, exc)
        with self._lock:
            for name, length in found.items():
                samples = self._lengths.setdefault(name, collections.deque())
                samples.append((now, length))
                while samples and samples[0][0] < now - _WINDOW:
                    samples.popleft()
            self._sampled_at = now

    def snapshot(self) -> list[dict[str, Any]]:
        """Each watched queue: name, length, consumers, sent and change rates per minute."""
        now = self._clock.time()
        if self._sampled_at is None or now - self._sampled_at >= self._max_age:
            self.sample()
        with self._lock:
            return [self._describe(name, now) for name in sorted(self._names)]

    def _describe(self, name: str, now: float) -> dict[str, Any]:
        sent = self._sent.get(name, collections.deque())
        while sent and sent[0] < now - _WINDOW:
            sent.popleft()
        samples = self._lengths.get(name)
        length = samples[-1][1] if samples else None
        change = None
        if samples and len(samples) > 1 and samples[-1][0] > samples[0][0]:
            span = samples[-1][0] - samples[0][0]
            change = round((samples[-1][1] - samples[0][1]) * 60.0 / span, 2)
        consumers = None if self._consumers is None else self._consumers.get(name, 0)
        return {
            "name": name,
            "length": length,
            "consumers": consumers,
            "sent_per_min": round(len(sent) * 60.0 / _WINDOW, 2),
            "change_per_min": change,
        }
