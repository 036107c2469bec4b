"""The prefork pool: forked child processes, each running one job at a time.

The parent keeps a pipe to every child and gives a job only to an idle child (fair
scheduling: a long task never holds short ones queued behind it in a busy child). A child
reports ``started`` (the parent acknowledges early there) and ``done``; it stores results
itself, through connections it opens after the fork. A child that dies mid-job (SIGKILL, OOM,
``os._exit``) is noticed by its pipe closing: the job ends as worker-lost and a new child
takes the slot. ``max_tasks_per_child`` recycles a child after that many jobs.

Remote control: ``terminate_job`` sends the signal to the child running the job (the job ends
REVOKED and a new child takes the slot); ``grow`` forks more children; ``shrink`` asks idle
children to exit, and busy ones to exit after their job; ``set_autoscale`` moves the bounds.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Collection
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac._forkguard import forking
from celeriac.worker.job import Job, JobResult, run_job
from celeriac.worker.pools import OnDone, OnStart, Pool
from celeriac.worker.timelimits import prefork as timelimits

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["PreforkPool"]

logger = logging.getLogger("celeriac.worker")
_ctx = multiprocessing.get_context("fork")


def _over_memory(max_memory_kib: int | None) -> bool:
    """Whether this child's peak resident memory passed ``--max-memory-per-child`` (KiB)."""
    if not max_memory_kib:
        return False
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > max_memory_kib


def _child_main(
    app: Celery,
    conn: Connection,
    max_tasks: int | None,
    hostname: str,
    max_memory_kib: int | None = None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    timelimits.install_soft_limit_handler()
    signals.worker_process_init.send(sender=hostname)
    done = 0
    exitcode = 0
    parent = os.getppid()
    try:
        while max_tasks is None or done < max_tasks:
            try:
                # Poll so an orphan notices its parent is gone (other children hold copies of
                # this pipe's far end, so no EOF would come).
                while not conn.poll(1.0):
                    if os.getppid() != parent:
                        return
                job: Job | None = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:  # the parent's request to exit
                break
            conn.send(("started", job.key, os.getpid()))
            timelimits.arm_soft_limit(job)
            try:
                result = run_job(app, job)
            except Exception as exc:
                result = JobResult(states.FAILURE, detail=repr(exc))
            finally:
                timelimits.disarm_soft_limit()
            done += 1
            # Say whether this child exits now, in the same message, so the parent never
            # hands a job to a child that is on its way out.
            over_memory = _over_memory(max_memory_kib)
            exiting = over_memory or (max_tasks is not None and done >= max_tasks)
            conn.send(("done", job.key, (result, exiting)))
            if over_memory:
                logger.warning(
                    "Child %s used more than %s KiB: it exits and a new one takes its place",
                    os.getpid(),
                    max_memory_kib,
                )
            if exiting:
                break
    finally:
        signals.worker_process_shutdown.send(sender=hostname, pid=os.getpid(), exitcode=exitcode)
        _leave(app, conn, exitcode)


def _leave(app: Celery, conn: Connection, exitcode: int) -> None:
    """Exit now, closing our end of the pipe so the parent sees it at once.

    A normal interpreter exit joins threads and runs finalizers inherited from the parent,
    any of which can hang a forked child; its work is done and flushed, so skip them.
    """
    try:
        app.close()
        conn.close()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    finally:
        os._exit(exitcode)


class _Child:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.job: Job | None = None
        self.deadline: float | None = None  # monotonic time of the job's hard limit
        self.timed_out = False
        self.exiting = False  # said it exits after its current job
        self.terminated: int | None = None  # the signal revoke(terminate=True) sent it
        self.retire_after_job = False  # pool_shrink: exit once the current job is done


class PreforkPool(Pool):
    """Runs jobs in ``concurrency`` forked child processes."""

    name = "prefork"

    def __init__(
        self,
        app: Celery,
        concurrency: int,
        on_start: OnStart,
        on_done: OnDone,
        *,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        hostname: str = "",
        min_concurrency: int | None = None,
        keepalive: float = 30.0,
        time_limits: tuple[float | None, float | None] = (None, None),
    ) -> None:
        super().__init__(app, concurrency, on_start, on_done)
        self.time_limits = time_limits  # the worker's (soft, hard), for stats
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        # Autoscale: between min_concurrency and concurrency children, by load.
        self.min_concurrency = concurrency if min_concurrency is None else min_concurrency
        self.autoscaling = self.min_concurrency < concurrency
        self.keepalive = keepalive
        self._idle_since = time.monotonic()
        self.hostname = hostname
        self._children: list[_Child] = []
        self._retired: list[_Child] = []
        self._pending: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._serial = 0
        self._wakeup_r, self._wakeup_w = _ctx.Pipe(duplex=False)
        self._collector = threading.Thread(target=self._collect, name="PreforkCollector")
        self._collector.daemon = True

    def start(self) -> None:
        for _ in range(self.min_concurrency):
            self._children.append(self._spawn())
        self._collector.start()

    def _spawn(self) -> _Child:
        parent_conn, child_conn = _ctx.Pipe()
        self._serial += 1
        process = _ctx.Process(
            target=_child_main,
            args=(
                self.app,
                child_conn,
                self.max_tasks_per_child,
                self.hostname,
                self.max_memory_per_child,
            ),
            name=f"ForkPoolWorker-{self._serial}",
            daemon=True,
        )
        with forking():  # never while another thread is inside SQLite (see _forkguard)
            process.start()
        child_conn.close()
        return _Child(process, parent_conn)

    def apply(self, job: Job) -> None:
        with self._lock:
            self._pending.append(job)
            self._dispatch()

    def _dispatch(self) -> None:
        """Give pending jobs to idle children (call with the lock held)."""
        for child in self._children:
            if not self._pending or self._stopping:
                return
            if child.job is None and not child.exiting and child.process.is_alive():
                job = self._pending.popleft()
                child.job = job
                try:
                    child.conn.send(job)
                except (BrokenPipeError, OSError):
                    child.job = None
                    self._pending.appendleft(job)

    #: Seconds between the collector's housekeeping (hard limits, reaping, autoscale): often
    #: enough for time limits, rare enough to cost nothing per message.
    housekeeping_interval = 0.05

    def _collect(self) -> None:
        next_housekeeping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_housekeeping:
                timelimits.kill_past_deadline(self._children, self._lock)
                self._reap_retired()
                self._autoscale()
                next_housekeeping = now + self.housekeeping_interval
            with self._lock:
                if self._stopping and all(c.job is None for c in self._children):
                    return
                conns = {c.conn: c for c in self._children}
            ready = wait([*conns, self._wakeup_r], timeout=self.housekeeping_interval)
            for conn in ready:
                if conn is self._wakeup_r:
                    self._wakeup_r.recv()
                    continue
                assert isinstance(conn, Connection)
                child = conns[conn]
                # A quick task's "started" and "done" often arrive together: read both now.
                while self._read(child) and self._has_more(child):
                    pass

    def _read(self, child: _Child) -> bool:
        """Handle one message from ``child``; False when its pipe is gone (replaced)."""
        try:
            kind, _key, payload = child.conn.recv()
        except (EOFError, OSError):
            self._replace(child)
            return False
        job = child.job
        if job is None:
            return True
        if kind == "started":
            job.worker_pid = payload
            timelimits.start_deadline(child, job)
            self.on_start(job)
        elif kind == "done":
            payload, child.exiting = payload
            with self._lock:
                child.job = None
                child.deadline = None
                if child.retire_after_job and child in self._children:
                    self._retire(child)
                self._dispatch()
            self.on_done(job, payload)
        return True

    @staticmethod
    def _has_more(child: _Child) -> bool:
        """Whether another message from a child in service is already waiting."""
        if child.exiting or child.retire_after_job:
            return False
        try:
            return child.conn.poll(0)
        except (EOFError, OSError):
            return False

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._children)

    def _reap_retired(self) -> None:
        with self._lock:
            for gone in [c for c in self._retired if not c.process.is_alive()]:
                self._retired.remove(gone)  # is_alive() reaped it
                gone.conn.close()

    def _autoscale(self) -> None:
        """Grow while jobs wait for a child; shrink idle children after ``keepalive``."""
        if not self.autoscaling:
            return
        now = time.monotonic()
        with self._lock:
            if self._stopping:
                return
            while len(self._children) < self.min_concurrency:
                self._children.append(self._spawn())
            busy = sum(1 for c in self._children if c.job is not None)
            if self._pending and len(self._children) < self.concurrency:
                grow = min(len(self._pending), self.concurrency - len(self._children))
                for _ in range(grow):
                    self._children.append(self._spawn())
                logger.info("Autoscale: grew to %s children", len(self._children))
                self._dispatch()
            if busy or self._pending:
                self._idle_since = now
            elif len(self._children) > self.min_concurrency and (
                now - self._idle_since >= self.keepalive
            ):
                for child in [c for c in self._children if c.job is None][
                    : len(self._children) - self.min_concurrency
                ]:
                    self._retire(child)
                logger.info("Autoscale: shrank to %s children", len(self._children))

    def _retire(self, child: _Child) -> None:
        """Ask an idle child to exit (call with the lock held)."""
        self._children.remove(child)
        with contextlib.suppress(BrokenPipeError, OSError):
            child.conn.send(None)
        self._retired.append(child)

    def _replace(self, child: _Child) -> None:
        child.process.join(timeout=5)
        exitcode = child.process.exitcode
        job = child.job
        with self._lock:
            if child not in self._children:
                return
            self._children.remove(child)
            child.conn.close()
            if not self._stopping:
                self._children.append(self._spawn())
            self._dispatch()
        if job is None:
            return
        if child.terminated is not None:
            self.on_done(
                job, JobResult(states.REVOKED, exitcode=exitcode, terminated=child.terminated)
            )
            return
        if not child.timed_out:
            logger.error(
                "Process %s (pid %s) running %s[%s] exited prematurely: exitcode %s",
                child.process.name,
                child.process.pid,
                job.message.task,
                job.message.id,
                exitcode,
            )
        self.on_done(
            job,
            JobResult(
                states.FAILURE,
                worker_lost=not child.timed_out,
                timed_out=child.timed_out,
                exitcode=exitcode,
            ),
        )

    # -- remote control ---------------------------------------------------------------------

    def withdraw(self, task_ids: Collection[str]) -> list[Job]:
        with self._lock:
            taken = [job for job in self._pending if job.id in task_ids]
            for job in taken:
                self._pending.remove(job)
        return taken

    def terminate_job(self, task_id: str, signum: int) -> bool:
        with self._lock:
            for child in self._children:
                job = child.job
                if job is not None and job.id == task_id and child.process.pid is not None:
                    child.terminated = signum
                    child.exiting = True  # never hand it another job
                    logger.info("Terminating %s[%s] (signal %s)", job.name, job.id, signum)
                    os.kill(child.process.pid, signum)
                    return True
        return False

    def grow(self, n: int) -> None:
        if self.autoscaling:
            raise ValueError("pool_grow is not supported with autoscale: use autoscale max min")
        with self._lock:
            for _ in range(n):
                self._children.append(self._spawn())
            staying = sum(1 for child in self._children if not child.retire_after_job)
            self.concurrency = self.min_concurrency = staying
            self._dispatch()

    def shrink(self, n: int) -> None:
        if self.autoscaling:
            raise ValueError("pool_shrink is not supported with autoscale: use autoscale max min")
        with self._lock:
            leaving = [c for c in self._children if not c.retire_after_job]
            n = min(n, len(leaving) - 1)
            if n < 1:
                raise ValueError("Cannot shrink the pool below one process")
            leaving.sort(key=lambda child: child.job is not None)  # idle ones first
            for child in leaving[:n]:
                if child.job is None:
                    self._retire(child)
                else:
                    child.retire_after_job = True
            self.concurrency = self.min_concurrency = len(leaving) - n

    def set_autoscale(self, high: int, low: int) -> None:
        """New autoscale bounds; the pool moves into them as load allows."""
        if not self.autoscaling:
            raise ValueError("Autoscale not enabled (start the worker with --autoscale)")
        with self._lock:
            self.concurrency, self.min_concurrency = high, min(low, high)
            for child in [c for c in self._children if c.job is None][
                : max(0, len(self._children) - high)
            ]:
                self._retire(child)

    def processes(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    def info(self) -> dict[str, Any]:
        soft, hard = self.time_limits
        return {
            **super().info(),
            "max-tasks-per-child": self.max_tasks_per_child or "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [soft or 0, hard or 0],
            "writes": "N/A",
        }

    def stop(self, *, wait: bool) -> list[Job]:
        with self._lock:
            self._stopping = True
            unstarted = list(self._pending)
            self._pending.clear()
        self._wakeup_w.send(None)
        if wait:
            self._collector.join()
        for child in self._children:
            if not wait and child.process.is_alive():
                child.process.terminate()
            with contextlib.suppress(BrokenPipeError, OSError):
                child.conn.send(None)
            child.conn.close()
        for child in self._children:
            child.process.join(timeout=10)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
        return unstarted
