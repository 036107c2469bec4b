"""The live view: recent changes, numbered, that browsers follow over Server-Sent Events.

The collector threads ``publish`` what changed (a task, a worker, a queue sample); each open
stream waits in the server's event loop for items newer than the last number it sent. The
feed keeps the newest ``capacity`` items, so a browser that reconnects with
``Last-Event-ID`` gets what it missed, or learns that it fell behind (``gap``) and reloads
its tables. Publishing never blocks on a slow browser: waiting streams are only woken,
through their own event loop's ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["LiveFeed", "LiveItem"]


@dataclass(frozen=True)
class LiveItem:
    """One change: its number in the feed, its kind (task, worker, queues) and its data."""

    seq: int
    kind: str
    data: Any


class LiveFeed:
    """Numbered recent changes; publish from any thread, wait from any event loop."""

    def __init__(self, capacity: int = 5000) -> None:
        self._items: collections.deque[LiveItem] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._closed = False

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, kind: str, data: Any) -> int:
        """Add a change; return its number. Wakes every waiting stream."""
        with self._lock:
            self._seq += 1
            self._items.append(LiveItem(self._seq, kind, data))
            seq = self._seq
        self._wake()
        return seq

    def since(self, seq: int) -> tuple[list[LiveItem], bool]:
        """Items numbered after ``seq``, and whether some of them were already dropped."""
        with self._lock:
            items = [item for item in self._items if item.seq > seq]
            gap = bool(self._items) and self._items[0].seq > seq + 1
        return items, gap

    async def wait(self, seq: int, timeout: float) -> tuple[list[LiveItem], bool]:
        """Items after ``seq``, waiting up to ``timeout`` seconds for the first one."""
        items, gap = self.since(seq)
        if items or self._closed:
            return items, gap
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            if self._seq == seq and not self._closed:  # nothing published while registering
                await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self.since(seq)

    def close(self) -> None:
        """Wake every stream for good (the server is stopping)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its stream is gone
                with self._lock:
                    self._waiters.discard((loop, event))
