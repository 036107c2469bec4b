"""The asyncio pool: ``async def`` tasks run on one event loop, sync tasks on threads beside it.

One event loop runs in its own thread. Every job runs its bookkeeping (signals, result
storage, acknowledgement) on one of ``concurrency`` threads, exactly as in the ``threads``
pool; when the task's body is a coroutine, the thread hands it to the event loop and waits,
so thousands of I/O-bound coroutines share one loop while the blocking parts stay off it.
The default concurrency is 100, as I/O-bound work wants.

Time limits: a coroutine past its soft limit is cancelled (it can clean up in ``finally`` or
``except asyncio.CancelledError``) and fails with ``SoftTimeLimitExceeded``; past its hard
limit, with ``TimeLimitExceeded``. Sync tasks get the ``threads`` pool's limits.
``revoke(terminate=True)`` cancels a coroutine the same way and the job ends REVOKED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.execution import awaitables_run_by
from celeriac.worker.job import Job, JobResult, run_job
from celeriac.worker.pools import OnDone, OnStart, Terminated, ThreadPool
from celeriac.worker.timelimits.coroutines import run_limited

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["AsyncioPool"]

DEFAULT_CONCURRENCY = 100


class AsyncioPool(ThreadPool):
    """Runs coroutines on a shared event loop; their bookkeeping on threads."""

    name = "asyncio"

    def __init__(self, app: Celery, concurrency: int, on_start: OnStart, on_done: OnDone) -> None:
        super().__init__(app, concurrency, on_start, on_done)
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="AsyncioPoolLoop", daemon=True
        )
        # job key -> (job, the asyncio task running its coroutine)
        self._coroutines: dict[int, tuple[Job, asyncio.Future[Any]]] = {}

    def start(self) -> None:
        self._loop_thread.start()
        super().start()

    def _is_async(self, job: Job) -> bool:
        task = self.app.tasks.get(job.message.task)
        fun = getattr(task, "_fun", None) or getattr(task, "run", None)
        return inspect.iscoroutinefunction(fun)

    def _run(self, job: Job) -> None:
        if not self._is_async(job):
            super()._run(job)  # sync task: a thread, with the thread watchdog's limits
            return
        self.on_start(job)

        def started(task: asyncio.Future[Any]) -> None:
            with self._running_lock:
                self._coroutines[job.key] = (job, task)

        def on_loop(awaitable: Awaitable[Any]) -> Any:
            coro: Coroutine[Any, Any, Any] = run_limited(
                awaitable, job.soft_time_limit, job.time_limit, started
            )
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            try:
                return future.result()
            except concurrent.futures.CancelledError:
                if job.key in self._terminated_by:
                    raise Terminated() from None
                raise
            finally:
                with self._running_lock:
                    self._coroutines.pop(job.key, None)

        try:
            with awaitables_run_by(on_loop):
                result = run_job(self.app, job)
        except Terminated:
            result = self._terminated(job)
        except Exception as exc:  # execute() never raises; a bug guard
            result = JobResult(states.FAILURE, detail=repr(exc))
        self.on_done(job, result)

    def terminate_job(self, task_id: str, signum: int) -> bool:
        with self._running_lock:
            for key, (job, task) in self._coroutines.items():
                if job.id == task_id:
                    self._terminated_by[key] = signum
                    self.loop.call_soon_threadsafe(task.cancel)
                    return True
        return super().terminate_job(task_id, signum)

    def stop(self, *, wait: bool) -> list[Job]:
        unstarted = super().stop(wait=wait)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(timeout=10)
        if not self._loop_thread.is_alive():
            self.loop.close()
        return unstarted
