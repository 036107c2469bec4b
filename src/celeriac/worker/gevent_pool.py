"""The gevent pool: every job runs in a greenlet of the worker's one process (``-P gevent``).

It needs the process monkey-patched before anything else ran (``celeriac._gevent_patch``,
triggered by ``-P gevent`` on the command line). Then the worker's own threads (consumer,
events, remote control) are greenlets too, and every socket read, ``time.sleep`` and lock wait
lets the others run, so one process runs ``concurrency`` I/O-bound tasks at once. At most
``concurrency`` greenlets run jobs; more jobs (``-O default`` prefetch) wait in a queue, and
with fair prefetch (the default) the consumer takes messages only for idle greenlets.

Limits are ``gevent.Timeout`` objects armed in the job's greenlet (``celeriac.worker.timelimits``
has how every pool enforces them). ``revoke(terminate=True)`` throws
``Terminated`` into the greenlet the same way and the job ends REVOKED. A warm stop hands
queued jobs back and waits for the running greenlets.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac._gevent_patch import GEVENT_MISSING
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.job import Job, JobResult, run_job
from celeriac.worker.pools import OnDone, OnStart, Pool, Terminated
from celeriac.worker.timelimits import greenlets

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["GeventPool"]

logger = logging.getLogger("celeriac.worker")

NOT_PATCHED = (
    "The gevent pool needs the process monkey-patched before anything else is imported: "
    "start the worker with -P gevent (or --pool=gevent) on the command line. "
    "worker_pool='gevent' in the settings is read too late to patch, as in Celery."
)


def _gevent() -> Any:
    """The gevent module, once the process is patched; else ImproperlyConfigured, saying why."""
    try:
        import gevent  # type: ignore[import-untyped]
        import gevent.pool  # type: ignore[import-untyped]
        from gevent import monkey
    except ImportError:
        raise ImproperlyConfigured(GEVENT_MISSING) from None
    if not (monkey.is_module_patched("socket") and monkey.is_module_patched("threading")):
        raise ImproperlyConfigured(NOT_PATCHED)
    return gevent


class GeventPool(Pool):
    """Runs each job in its own greenlet, at most ``concurrency`` at once."""

    name = "gevent"

    def __init__(self, app: Celery, concurrency: int, on_start: OnStart, on_done: OnDone) -> None:
        super().__init__(app, concurrency, on_start, on_done)
        self._gevent = _gevent()
        self._queue: collections.deque[Job] = collections.deque()  # waiting for a greenlet
        self._greenlets: Any = self._gevent.pool.Group()  # for stop() to join
        self._busy = 0  # greenlets running jobs (each takes queued ones after its own)
        self._in_task: dict[int, tuple[Job, Any]] = {}  # job key -> (job, greenlet) in run_job
        self._stopping = False

    def start(self) -> None:
        """Greenlets are started as jobs come; nothing to do."""

    def apply(self, job: Job) -> None:
        if self._busy < self.concurrency and not self._stopping:
            self._busy += 1
            self._greenlets.spawn(self._work, job)
        else:
            self._queue.append(job)

    def _work(self, job: Job | None) -> None:
        """Run ``job``, then queued jobs while any wait (and the pool has room for this one)."""
        try:
            while job is not None:
                self.on_start(job)
                self.on_done(job, self._execute(job))
                more = self._queue and not self._stopping and self._busy <= self.concurrency
                job = self._queue.popleft() if more else None
        finally:
            self._busy -= 1

    def _execute(self, job: Job) -> JobResult:
        """``run_job`` under the job's limits, terminable; how it ended."""
        gevent = self._gevent
        limits = greenlets.arm(gevent, job)
        self._in_task[job.key] = (job, gevent.getcurrent())
        try:
            return run_job(self.app, job)
        except Terminated:
            return self._terminated(job)
        except gevent.Timeout as exc:
            if exc is not limits.hard:  # the task's own Timeout, let out: gevent's, not a limit
                logger.error("Task %s[%s] let out a gevent.Timeout: %r", job.name, job.id, exc)
                return JobResult(states.FAILURE, detail=repr(exc))
            logger.error(
                "Hard time limit (%ss) exceeded for %s[%s]: its greenlet was killed",
                job.time_limit,
                job.message.task,
                job.message.id,
            )
            return JobResult(states.FAILURE, timed_out=True)
        except Exception as exc:  # execute() never raises; a bug guard
            logger.exception("Internal error running %s[%s]", job.message.task, job.message.id)
            return JobResult(states.FAILURE, detail=repr(exc))
        finally:
            # No switch since run_job ended: nothing can be thrown in past this point.
            self._in_task.pop(job.key, None)
            limits.close()

    def terminate_job(self, task_id: str, signum: int) -> bool:
        for key, (job, greenlet) in list(self._in_task.items()):
            if job.id == task_id:
                self._terminated_by[key] = signum
                hub = self._gevent.get_hub()
                hub.loop.run_callback(self._throw_terminated, key, greenlet)
                return True
        return False

    def _throw_terminated(self, key: int, greenlet: Any) -> None:
        """(In the hub.) Throw ``Terminated`` if the greenlet still waits inside its task."""
        if key in self._in_task and not greenlet.dead:
            greenlet.throw(Terminated)
        else:  # it finished meanwhile: too late
            self._terminated_by.pop(key, None)

    def withdraw(self, task_ids: Collection[str]) -> list[Job]:
        taken = [job for job in self._queue if job.id in task_ids]
        for job in taken:
            self._queue.remove(job)
        return taken

    def grow(self, n: int) -> None:
        self.concurrency += n
        while self._queue and self._busy < self.concurrency and not self._stopping:
            self._busy += 1
            self._greenlets.spawn(self._work, self._queue.popleft())

    def shrink(self, n: int) -> None:
        n = min(n, self.concurrency - 1)
        if n < 1:
            raise ValueError("Cannot shrink the pool below one greenlet")
        self.concurrency -= n  # running greenlets finish; fewer start after them

    def processes(self) -> list[int]:
        return [os.getpid()]

    def stop(self, *, wait: bool) -> list[Job]:
        self._stopping = True
        unstarted = list(self._queue)
        self._queue.clear()
        if wait:
            self._greenlets.join()
        return unstarted
