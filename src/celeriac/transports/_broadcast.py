"""Broadcast in one process (the memory transport), and the routing-key match brokers share.

Memory: each subscription is a queue in the named broker; ``broadcast`` appends to every
matching one and wakes its waiter. ``wanted`` is the topic match of a routing key against a
subscription's patterns, used by every transport that filters broadcasts itself (memory,
SQLite). The SQLite broadcast is ``celeriac.transports.sqlite.broadcast``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence

from celeriac.protocol.message import Message
from celeriac.routing import matches
from celeriac.transports.base import Broadcast, Subscription

__all__ = ["MemoryHub", "wanted"]


def wanted(patterns: Sequence[str], routing_key: str) -> bool:
    return any(matches("topic", pattern, routing_key) for pattern in patterns)


class _MemorySubscription(Subscription):
    def __init__(self, hub: MemoryHub, exchange: str, patterns: Sequence[str]) -> None:
        self.hub = hub
        self.exchange = exchange
        self.patterns = tuple(patterns)
        self.inbox: collections.deque[Broadcast] = collections.deque()
        self.closed = False

    def receive(self, timeout: float) -> list[Broadcast]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self.hub.condition:
            while not self.inbox and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.hub.condition.wait(remaining)
            items = list(self.inbox)
            self.inbox.clear()
            return items

    def close(self) -> None:
        with self.hub.condition:
            self.closed = True
            if self in self.hub.subscriptions:
                self.hub.subscriptions.remove(self)
            self.hub.condition.notify_all()


class MemoryHub:
    """The broadcast side of one named in-memory broker."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.subscriptions: list[_MemorySubscription] = []

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        with self.condition:
            for sub in self.subscriptions:
                if sub.exchange == exchange and wanted(sub.patterns, routing_key):
                    sub.inbox.append(Broadcast(exchange, routing_key, message))
            self.condition.notify_all()

    def subscribe(self, exchange: str, patterns: Sequence[str]) -> Subscription:
        sub = _MemorySubscription(self, exchange, patterns)
        with self.condition:
            self.subscriptions.append(sub)
        return sub
