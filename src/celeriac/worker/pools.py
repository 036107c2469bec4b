"""Pools run jobs: the interface, and the ``solo`` and ``threads`` implementations.

A pool calls ``on_start(job)`` when a job begins (early acknowledgement happens there) and
``on_done(job, result)`` when it ends, from whatever thread ran it. ``stop`` lets running jobs
finish and hands back the jobs that never started, so the consumer can return their messages
to the broker at once.

Remote control reaches pools through ``withdraw`` (take back queued jobs of revoked tasks),
``terminate_job`` (``revoke(terminate=True)``: the threads pools raise ``Terminated`` in the
thread running the task, the prefork pool kills the child, the asyncio pool cancels the
coroutine), and ``grow``/``shrink`` (``pool_grow``/``pool_shrink``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac.worker.job import Job, JobResult, run_job
from celeriac.worker.timelimits.threads import Watchdog, raise_in_thread

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["Pool", "SoloPool", "Terminated", "ThreadPool"]

logger = logging.getLogger("celeriac.worker")

OnStart = Callable[[Job], None]
OnDone = Callable[[Job, JobResult], None]


class Terminated(BaseException):
    """Raised into the thread running a task by ``revoke(terminate=True)``.

    A BaseException, so the task's own ``except Exception`` and the failure handling of
    ``execute`` let it through; the pool ends the job as REVOKED.
    """


class Pool(ABC):
    """Runs jobs with a fixed number of slots."""

    name: str = ""

    def __init__(self, app: Celery, concurrency: int, on_start: OnStart, on_done: OnDone) -> None:
        self.app = app
        self.concurrency = concurrency
        self.on_start = on_start
        self.on_done = on_done
        # Jobs running on a thread of this process: job key -> (job, thread id); and the
        # signal of the revoke(terminate=True) that stopped one.
        self._running: dict[int, tuple[Job, int]] = {}
        self._terminated_by: dict[int, int] = {}
        self._running_lock = threading.Lock()

    def withdraw(self, task_ids: Collection[str]) -> list[Job]:
        """Take back the queued, not yet started jobs of ``task_ids``."""
        return []

    def terminate_job(self, task_id: str, signum: int) -> bool:
        """Stop the running job of ``task_id``; False when none runs here."""
        with self._running_lock:
            for key, (job, thread_id) in self._running.items():
                if job.id == task_id:
                    self._terminated_by[key] = signum
                    return raise_in_thread(thread_id, Terminated)
        return False

    def grow(self, n: int) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot grow")

    def shrink(self, n: int) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot shrink")

    def processes(self) -> list[int]:
        """Pids (or thread ids) of the pool's workers."""
        return []

    def info(self) -> dict[str, Any]:
        """The ``pool`` section of ``inspect stats``."""
        cls = type(self)
        return {
            "implementation": f"{cls.__module__}:{cls.__name__}",
            "max-concurrency": self.concurrency,
            "processes": self.processes(),
        }

    @contextlib.contextmanager
    def _terminable(self, job: Job) -> Iterator[None]:
        """While the block runs ``job`` in this thread, ``terminate_job`` may stop it."""
        thread_id = threading.get_ident()
        with self._running_lock:
            self._running[job.key] = (job, thread_id)
        try:
            yield
        finally:
            with self._running_lock:
                self._running.pop(job.key, None)
                # Drop a Terminated set but not yet raised: this job is over.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)

    def _terminated(self, job: Job) -> JobResult:
        with self._running_lock:
            signum = self._terminated_by.pop(job.key, signal.SIGTERM)
        return JobResult(states.REVOKED, terminated=int(signum))

    @abstractmethod
    def start(self) -> None:
        """Make the slots ready; returns when they are."""

    @abstractmethod
    def apply(self, job: Job) -> None:
        """Queue ``job``; it starts when a slot is free."""

    @abstractmethod
    def stop(self, *, wait: bool) -> list[Job]:
        """Stop; with ``wait`` let running jobs finish. Returns jobs that never started."""

    _watchdog: Watchdog | None = None

    def _run(self, job: Job) -> None:
        self.on_start(job)
        token = None
        if job.soft_time_limit or job.time_limit:
            if self._watchdog is None:
                self._watchdog = Watchdog()
            token = self._watchdog.watch(job.soft_time_limit, job.time_limit)
        try:
            with self._terminable(job):
                result = run_job(self.app, job)
        except Terminated:
            result = self._terminated(job)
        except Exception as exc:  # execute() never raises; this is a bug guard
            logger.exception("Internal error running %s[%s]", job.message.task, job.message.id)
            result = JobResult(states.FAILURE, detail=repr(exc))
        else:
            if self._terminated_by:  # a terminate that came as the job ended: too late
                with self._running_lock:
                    self._terminated_by.pop(job.key, None)
        finally:
            if token is not None and self._watchdog is not None:
                self._watchdog.clear(token)
        self.on_done(job, result)


class SoloPool(Pool):
    """Runs each job inline in the consumer's thread, one at a time."""

    name = "solo"

    def start(self) -> None:
        signals.worker_process_init.send(sender=None)

    def apply(self, job: Job) -> None:
        self._run(job)

    def processes(self) -> list[int]:
        return [os.getpid()]

    def stop(self, *, wait: bool) -> list[Job]:
        return []


class ThreadPool(Pool):
    """Runs jobs on ``concurrency`` threads fed from one queue."""

    name = "threads"

    def __init__(self, app: Celery, concurrency: int, on_start: OnStart, on_done: OnDone) -> None:
        super().__init__(app, concurrency, on_start, on_done)
        self._queue: collections.deque[Job | None] = collections.deque()  # None: a thread exits
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self) -> None:
        self._add_threads(self.concurrency)

    def _add_threads(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(
                target=self._loop, name=f"ThreadPoolWorker-{len(self._threads) + 1}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _take(self) -> Job | None:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            return self._queue.popleft()

    def _loop(self) -> None:
        while True:
            job = self._take()
            if job is None or self._stopping.is_set():
                if job is not None:
                    with self._ready:
                        self._queue.appendleft(job)  # leave it for stop() to hand back
                return
            self._run(job)

    def apply(self, job: Job) -> None:
        with self._ready:
            self._queue.append(job)
            self._ready.notify()

    def withdraw(self, task_ids: Collection[str]) -> list[Job]:
        with self._ready:
            taken = [job for job in self._queue if job is not None and job.id in task_ids]
            for job in taken:
                self._queue.remove(job)
        return taken

    def grow(self, n: int) -> None:
        self.concurrency += n
        self._add_threads(n)

    def shrink(self, n: int) -> None:
        n = min(n, self.concurrency - 1)
        if n < 1:
            raise ValueError("Cannot shrink the pool below one thread")
        self.concurrency -= n
        with self._ready:
            for _ in range(n):  # the next n threads to look for work exit instead
                self._queue.appendleft(None)
            self._ready.notify(n)

    def processes(self) -> list[int]:
        return [t.ident for t in self._threads if t.ident is not None and t.is_alive()]

    def stop(self, *, wait: bool) -> list[Job]:
        self._stopping.set()
        with self._ready:
            self._queue.extend([None] * len(self._threads))
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()
        with self._ready:
            unstarted = [job for job in self._queue if job is not None]
            self._queue.clear()
        return unstarted
