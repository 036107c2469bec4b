"""The ids a worker was told are revoked, kept in memory for a while (Celery's LimitedSet).

The result store is what makes a revocation last (a revoked task that has not started is
stored REVOKED, and workers check the store before running anything); this set makes it
*immediate*: a ``revoke`` broadcast adds the ids here, and the consumer checks the set before
it hands a message to the pool, when an ETA or rate-limit timer releases one, and when a new
message arrives. At most ``maxlen`` ids are kept (the oldest go first), each for ``expires``
seconds, read from the injected clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from celeriac._time import Clock, system_clock

__all__ = ["REVOKES_MAX", "REVOKE_EXPIRES", "RevokedSet", "RevokedStamps"]

REVOKES_MAX = 50_000
REVOKE_EXPIRES = 10_800.0  # 3 hours


class RevokedSet:
    """A bounded set of task ids whose members expire."""

    def __init__(
        self,
        maxlen: int = REVOKES_MAX,
        expires: float = REVOKE_EXPIRES,
        clock: Clock = system_clock,
    ) -> None:
        self.maxlen = maxlen
        self.expires = expires
        self._clock = clock
        self._added: OrderedDict[str, float] = OrderedDict()  # id -> when, oldest first
        self._lock = threading.Lock()

    def update(self, task_ids: Iterable[str]) -> None:
        now = self._clock.time()
        with self._lock:
            for task_id in task_ids:
                self._added[task_id] = now
                self._added.move_to_end(task_id)
            while len(self._added) > self.maxlen:
                self._added.popitem(last=False)

    def add(self, task_id: str) -> None:
        self.update([task_id])

    def discard(self, task_id: str) -> None:
        """Forget ``task_id`` (nothing happens when it is not here)."""
        with self._lock:
            self._added.pop(task_id, None)

    def items(self) -> list[tuple[str, float]]:
        """``(task id, when revoked)`` of the live ids, oldest first (to persist them)."""
        self.purge()
        with self._lock:
            return list(self._added.items())

    def restore(self, entries: Iterable[tuple[str, float]]) -> None:
        """Merge persisted ``(task id, when)`` pairs, keeping their times (the newer where an
        id is known twice) and the newest ``maxlen``; what expired meanwhile is dropped."""
        with self._lock:
            merged = dict(self._added)
            for task_id, stamp in entries:
                merged[task_id] = max(stamp, merged.get(task_id, stamp))
            ordered = sorted(merged.items(), key=lambda item: item[1])[-self.maxlen :]
            self._added.clear()
            self._added.update(ordered)
        self.purge()

    def purge(self) -> None:
        """Forget the ids older than ``expires``."""
        horizon = self._clock.time() - self.expires
        with self._lock:
            while self._added and next(iter(self._added.values())) < horizon:
                self._added.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            added = self._added.get(task_id) if isinstance(task_id, str) else None
        return added is not None and added >= self._clock.time() - self.expires

    def __iter__(self) -> Iterator[str]:
        self.purge()
        with self._lock:
            return iter(list(self._added))

    def __len__(self) -> int:
        self.purge()
        with self._lock:
            return len(self._added)


class RevokedStamps:
    """Stamped headers revoked by ``revoke_by_stamped_headers``: a task arriving with one of
    those stamps set to a revoked value is revoked too (Celery's ``revoked_stamps``)."""

    def __init__(self) -> None:
        self._values: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def update(self, headers: Mapping[str, Any]) -> None:
        with self._lock:
            for name, value in headers.items():
                known = self._values.setdefault(name, [])
                known.extend(v for v in stamp_values(value) if v not in known)

    def clear(self) -> None:
        """Forget every revoked stamp."""
        with self._lock:
            self._values.clear()

    def as_dict(self) -> dict[str, list[Any]]:
        """The revoked values, by stamped header name."""
        with self._lock:
            return {name: list(values) for name, values in self._values.items()}

    def matches(self, stamps: Mapping[str, Any]) -> bool:
        """Whether one of ``stamps`` (a value, or a list of them) has a revoked value."""
        with self._lock:
            if not self._values:
                return False
            return any(
                v in self._values.get(name, ())
                for name, value in stamps.items()
                for v in stamp_values(value)
            )


def stamp_values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
