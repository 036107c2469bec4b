"""A Lamport clock: the logical ``clock`` that control messages and events carry.

Every process keeps one counter (``app.lamport_clock``). Sending a message moves it forward
(``forward``) and stamps the message with the new value; receiving one moves it past the
value it carries (``adjust``), so the stamps order causally related messages across
processes whatever their wall clocks say. Celery's ``app.clock`` is the same thing; in
Celeriac ``app.clock`` is the injected wall clock, hence the longer name.

Safe to use from any thread, and across ``fork``: a child starts with a fresh lock, so a lock
held by another thread of the parent at fork time cannot block it.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["LamportClock"]

_clocks: weakref.WeakSet[LamportClock] = weakref.WeakSet()


class LamportClock:
    """A counter that only moves forward."""

    def __init__(self, initial: int = 0) -> None:
        self.value = initial
        self._lock = threading.Lock()
        _clocks.add(self)

    def forward(self) -> int:
        """Tick for a message about to be sent; the value to stamp on it."""
        with self._lock:
            self.value += 1
            return self.value

    def adjust(self, other: object) -> int:
        """Move past ``other`` (a received stamp); non-numbers are ignored."""
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            return self.value
        with self._lock:
            self.value = max(self.value, int(other)) + 1
            return self.value

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"<LamportClock: {self.value}>"

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


def _renew_locks() -> None:
    for clock in list(_clocks):
        clock._after_fork()


os.register_at_fork(after_in_child=_renew_locks)
