"""The state of the workers running in this process, at Celery's ``celery.worker.state`` path.

Celery keeps one worker's state in module globals; Celeriac keeps it in each ``Worker``,
and this module offers live views over every worker started in this process (usually one):
``revoked`` (ids flagged revoked: ``in``, iteration, ``add``/``update``/``discard`` reach
every running worker, ``as_dict()`` gives each id's time), ``revoked_stamps`` (the values
revoked by ``revoke_by_stamped_headers``, ``clear()``-able), ``successful_requests`` (the ids
of the last 1,000 tasks that succeeded in each worker), ``active_requests`` and
``reserved_requests`` (the ``Job`` objects running, or taken and waiting for a slot),
``total_count`` (tasks started, by name), ``all_total_count`` (``[total]``) and
``SOFTWARE_INFO``. A worker joins when it starts and leaves when it stops.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from celeriac.worker.events import _software_info

if TYPE_CHECKING:
    from celeriac.worker._worker_protocol import WorkerLike
    from celeriac.worker.job import Job

__all__ = [
    "SOFTWARE_INFO",
    "active_requests",
    "all_total_count",
    "register",
    "reserved_requests",
    "revoked",
    "revoked_stamps",
    "successful_requests",
    "total_count",
    "unregister",
    "workers",
]

_workers: weakref.WeakSet[WorkerLike] = weakref.WeakSet()
_lock = threading.Lock()


SOFTWARE_INFO = _software_info()  # what worker events say about the software


def register(worker: WorkerLike) -> None:
    """A worker of this process started (``Worker.start``)."""
    with _lock:
        _workers.add(worker)


def unregister(worker: WorkerLike) -> None:
    """A worker of this process stopped."""
    with _lock:
        _workers.discard(worker)


def workers() -> list[WorkerLike]:
    """The workers running in this process."""
    with _lock:
        return list(_workers)


def _jobs(started: bool) -> list[Job]:
    found = []
    for worker in workers():
        if worker.consumer is not None:
            jobs, _ = worker.consumer.snapshot()
            found += [job for job, _ in jobs if (job.started_at is not None) == started]
    return found


class _Revoked:
    """Every running worker's revoked ids, as one set-like object."""

    def __contains__(self, task_id: object) -> bool:
        return any(w.consumer is not None and task_id in w.consumer.revoked for w in workers())

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for worker in workers():
            if worker.consumer is not None:
                seen.update(worker.consumer.revoked)
        return iter(sorted(seen))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def add(self, task_id: str) -> None:
        self.update([task_id])

    def update(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        for worker in workers():
            if worker.consumer is not None:
                worker.consumer.revoked.update(ids)

    def discard(self, task_id: str) -> None:
        for worker in workers():
            if worker.consumer is not None:
                worker.consumer.revoked.discard(task_id)

    def as_dict(self) -> dict[str, float]:
        """Each revoked id and when it was revoked (the worker's clock)."""
        found: dict[str, float] = {}
        for worker in workers():
            if worker.consumer is not None:
                found.update(worker.consumer.revoked.items())
        return found

    def __repr__(self) -> str:
        return f"<revoked: {len(self)} ids>"


class _RevokedStamps:
    """Every running worker's revoked stamp values (``revoke_by_stamped_headers``)."""

    def as_dict(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for worker in workers():
            if worker.consumer is not None:
                for name, values in worker.consumer.revoked_stamps.as_dict().items():
                    known = found.setdefault(name, [])
                    known.extend(v for v in values if v not in known)
        return found

    def clear(self) -> None:
        for worker in workers():
            if worker.consumer is not None:
                worker.consumer.revoked_stamps.clear()

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def __repr__(self) -> str:
        return f"<revoked stamps: {self.as_dict()!r}>"


class _Succeeded:
    """The ids of the tasks that last succeeded in the workers here (``in``, iteration)."""

    def __contains__(self, task_id: object) -> bool:
        return any(w.consumer is not None and task_id in w.consumer.succeeded for w in workers())

    def __iter__(self) -> Iterator[str]:
        found: list[str] = []
        for worker in workers():
            if worker.consumer is not None:
                found += list(worker.consumer.succeeded)
        return iter(found)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<successful requests: {len(self)} ids>"


class _Requests:
    """The running (or reserved) jobs of every worker here, as a read-only set-like view."""

    def __init__(self, started: bool) -> None:
        self._started = started

    def __iter__(self) -> Iterator[Job]:
        return iter(_jobs(self._started))

    def __len__(self) -> int:
        return len(_jobs(self._started))

    def __contains__(self, job: object) -> bool:
        return any(job is each or getattr(job, "id", None) == each.id for each in self)

    def __repr__(self) -> str:
        return f"<{'active' if self._started else 'reserved'} requests: {len(self)}>"


class _TotalCount(Counter[str]):
    """Tasks started, by name, summed over the workers here (read at each access)."""

    def _fresh(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for worker in workers():
            if worker.consumer is not None:
                total.update(worker.consumer.total)
        return total

    def __getitem__(self, name: str) -> int:
        return self._fresh()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fresh())

    def __len__(self) -> int:
        return len(self._fresh())

    def items(self) -> Any:
        return self._fresh().items()


class _AllTotal:
    """``all_total_count[0]``: every task started here, as Celery's one-item list."""

    def __getitem__(self, index: int) -> int:
        if index not in (0, -1):
            raise IndexError(index)
        return sum(total_count._fresh().values())

    def __len__(self) -> int:
        return 1


revoked = _Revoked()
revoked_stamps = _RevokedStamps()
successful_requests = _Succeeded()
active_requests = _Requests(started=True)
reserved_requests = _Requests(started=False)
total_count = _TotalCount()
all_total_count = _AllTotal()
