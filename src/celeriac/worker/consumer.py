"""The consumer: takes deliveries within the prefetch window and decides each one's fate.

For every delivery, in order: decode it (a message that does not decode, or whose content
type is not accepted, is dead-lettered with the reason and the worker goes on); look its task
up (an unknown task is stored as FAILURE ``NotRegistered`` and dead-lettered); drop it if
revoked or expired (stored REVOKED, acknowledged); give it back to the broker until its ETA
if it is early; otherwise hand it to the pool. Acknowledgement follows Celery: early (when
the task starts) by default, after the task with ``acks_late``. Deliveries held but not yet
acknowledged have their leases renewed, so a long task is never redelivered while it runs.

For remote control the consumer knows its jobs (``snapshot``: reserved, running, waiting in
the timer) and revokes at once (``revoke``): ids go into an in-memory revoked set checked
before anything runs, messages waiting in the timer or queued in the pool are discarded,
and with ``terminate`` the pool stops the running job. Events are sent through ``events``
(``celeriac.worker.events``) at each step.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celeriac import signals, states
from celeriac.exceptions import (
    ContentDisallowed,
    DecodeError,
    InvalidTaskError,
    NotRegistered,
    OperationalError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from celeriac.execution import ExceptionInfo, context_from_message
from celeriac.followups import after_failure
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import decode_task
from celeriac.request import Context
from celeriac.transports import mask_password
from celeriac.transports.base import Consumer, Delivery
from celeriac.worker.job import Job, JobResult
from celeriac.worker.pools import Pool
from celeriac.worker.ratelimit import TokenBucket, parse_rate
from celeriac.worker.revoked import RevokedSet

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.app.results import ResultStore
    from celeriac.worker.events import WorkerEvents

__all__ = ["TaskConsumer"]

logger = logging.getLogger("celeriac.worker")

T = TypeVar("T")


class TaskConsumer:
    """Feeds a pool from a transport consumer and acknowledges per policy."""

    def __init__(
        self, app: Celery, consumer: Consumer, *, hostname: str, prefetch_limit: int
    ) -> None:
        self.app = app
        self.consumer = consumer
        self.hostname = hostname
        self.prefetch_limit = prefetch_limit  # 0 = unlimited
        # fair: take messages only for idle pool slots (see window()).
        self.fair = True
        self.concurrency = 1
        self._inflight = 0
        self.pool: Pool | None = None
        self._held: dict[int, Delivery] = {}  # not yet acknowledged
        self._acked: set[int] = set()
        self._keys = itertools.count(1)
        self._timer: list[tuple[float, int, Delivery, TaskMessage]] = []
        self._lock = threading.Condition()
        self.processed = 0
        self.consumer_defers = app.transport.capabilities.delayed_delivery
        self._buckets: dict[str, tuple[float, TokenBucket]] = {}
        self.rate_limits = not app.conf.worker_disable_rate_limits
        self.revoked = RevokedSet(clock=app.clock)
        self.jobs: dict[int, Job] = {}  # handed to the pool: reserved or running, by key
        self.total: Counter[str] = Counter()  # jobs started, by task name
        self.events: WorkerEvents | None = None
        self._skip_revoked_checks_until = 0.0
        self._revoked_cursor: str | None = None  # read up to here in the revocation log
        self._next_revoked_read = 0.0

    # -- the loop -----------------------------------------------------------------------------

    #: Messages waiting in the timer (rate limits, early ETAs) do not take prefetch room, so
    #: other task types keep flowing; past this many the worker stops fetching.
    max_timer_held = 1000

    def window(self) -> int:
        with self._lock:
            if len(self._timer) >= self.max_timer_held:
                return 0
            limit = 100 if self.prefetch_limit == 0 else self.prefetch_limit
            room = limit - (len(self._held) - len(self._timer))
            if self.fair:  # never hold a message that no idle slot is there to start
                room = min(room, self.concurrency - self._inflight)
            return room

    def set_window(self, concurrency: int, prefetch_limit: int) -> None:
        """The pool's size changed (``pool_grow``, ``autoscale``): take messages for it."""
        with self._lock:
            self.concurrency = concurrency
            self.prefetch_limit = prefetch_limit
            self._lock.notify_all()

    def _next_timer_in(self, default: float) -> float:
        with self._lock:
            if not self._timer:
                return default
            return max(0.0, min(default, self._timer[0][0] - self.app.clock.time()))

    def step(self, timeout: float) -> int:
        """Fetch once (if the window allows) and handle what came; returns how many."""
        self._release_due_timers()
        timeout = self._next_timer_in(timeout)
        room = self.window()
        if room <= 0:
            with self._lock:
                self._lock.wait(timeout)
            return 0
        try:
            deliveries = self.consumer.fetch(min(room, 100), timeout)
        except OperationalError as exc:
            logger.error("Consumer: cannot fetch from the broker: %s; retrying", exc)
            self.app.clock.sleep(min(timeout, 1.0))
            return 0
        if deliveries:
            self.handle_batch(deliveries)
        return len(deliveries)

    def handle_batch(self, deliveries: list[Delivery]) -> None:
        decoded: list[tuple[Delivery, TaskMessage]] = []
        for delivery in deliveries:
            message = self._decode(delivery)
            if message is not None:
                decoded.append((delivery, message))
        revoked = self._revoked_ids([m.id for _, m in decoded])
        for delivery, message in decoded:
            self._handle(delivery, message, message.id in revoked)

    def _decode(self, delivery: Delivery) -> TaskMessage | None:
        try:
            return decode_task(delivery.message, accept=self.app.conf.accept_content)
        except (ContentDisallowed, DecodeError, InvalidTaskError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error(
                "Received an invalid message in queue %r; it was set aside in the dead-letter "
                "store: %s", delivery.queue, reason,
            )  # fmt: skip
            signals.task_rejected.send(sender=self, message=delivery.message, exc=exc)
            self.consumer.dead_letter(delivery, reason)
            return None

    # -- the result store: its failures are logged, never fatal to the loop ---------------------

    #: After the result store failed a check for revoked tasks, skip the checks this long
    #: (seconds), so a store that is down (and retried inside the backend) does not stall
    #: every fetch; the revoked ids broadcast to the workers are still honoured meanwhile.
    revoked_check_pause = 30.0
    #: Where the result backend keeps a revocation log, how often (seconds) the worker reads
    #: what was logged since its last read. Live workers hear revocations at once through
    #: the broadcast; the log covers those revoked while this worker was down or deaf.
    revoked_log_interval = 1.0

    def _results(self, what: str, action: Callable[[ResultStore], T]) -> T | None:
        """``action(app.results)``; when the result backend cannot be made or fails, an error
        naming the backend is logged and None returned (the next call tries again)."""
        try:
            return action(self.app.results)
        except Exception as exc:
            url = mask_password(self.app.result_backend_url or "(none)")
            logger.error(
                "Could not %s in the result backend %s (%s: %s). The worker goes on and "
                "tries the backend again later.", what, url, type(exc).__name__, exc,
            )  # fmt: skip
            return None

    def _revoked_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` were revoked through the result store (stored REVOKED, or in its
        revocation log, read into ``self.revoked`` at most every ``revoked_log_interval``)."""
        now = self.app.clock.monotonic()
        if not ids or now < self._skip_revoked_checks_until:
            return set()

        def revoked(results: ResultStore) -> set[str]:
            if not results.readable:  # no backend, or rpc:// (only the sender reads results)
                return set()
            backend = results.backend
            if backend.logs_revocations:
                if now >= self._next_revoked_read:
                    logged, self._revoked_cursor = backend.revoked_since(self._revoked_cursor)
                    self.revoked.update(logged)
                    self._next_revoked_read = now + self.revoked_log_interval
                return set()  # _handle checks self.revoked
            found = backend.fetch_many(ids)
            return {
                tid for tid, payload in found.items()
                if results.decode(payload).get("status") == states.REVOKED
            }  # fmt: skip

        found = self._results("check for revoked tasks", revoked)
        if found is None:
            self._skip_revoked_checks_until = now + self.revoked_check_pause
            return set()
        return found

    def _handle(self, delivery: Delivery, message: TaskMessage, revoked: bool) -> None:
        app = self.app
        try:
            task = app.tasks[message.task]
        except NotRegistered as exc:
            self._unknown(delivery, message, exc)
            return
        now = app.now()
        revoked = revoked or message.id in self.revoked
        if revoked or (message.expires is not None and message.expires <= now):
            self._discard(delivery, message, task, expired=not revoked)
            return
        early = message.eta is not None and message.eta > now
        if self.events is not None and not (early and self.consumer_defers):
            self.events.task_received(message)  # (a message the broker holds comes back)
        if early:
            self._defer(delivery, message)
            return
        self._dispatch(delivery, message, task)

    def _discard(
        self, delivery: Delivery, message: TaskMessage, task: Any, *, expired: bool
    ) -> None:
        """Acknowledge without running: the task was revoked, or its message expired."""
        reason = "expired" if expired else "revoked"
        logger.info("Discarding %s task: %s[%s]", reason, message.task, message.id)
        request = Context(
            id=message.id, task=message.task, hostname=self.hostname, reply_to=message.reply_to
        )
        if expired:
            self._store(message, states.REVOKED, TaskRevokedError("expired"), request=request)
        self._propagate(message, TaskRevokedError(reason))
        signals.task_revoked.send(
            sender=task, request=request, terminated=False, signum=None, expired=expired
        )
        if self.events is not None:
            self.events.task_revoked(
                message.id, message.task, terminated=False, signum=None, expired=expired
            )
        self.consumer.ack(delivery)

    def _unknown(self, delivery: Delivery, message: TaskMessage, exc: NotRegistered) -> None:
        reason = (
            f"Received unregistered task of type {message.task!r}: is the module that defines "
            "it imported by the worker (-A, include=, imports=)?"
        )
        logger.error("%s The message was set aside in the dead-letter store.", reason)
        signals.task_unknown.send(
            sender=self, message=delivery.message, exc=exc, name=message.task, id=message.id
        )
        self._store(message, states.FAILURE, exc)
        if self.events is not None:
            self.events.task_failed(message.id, message.task, exc)
        self.consumer.dead_letter(delivery, reason)

    def _defer(self, delivery: Delivery, message: TaskMessage) -> None:
        assert message.eta is not None
        if self.consumer_defers:
            self.consumer.defer(delivery, message.eta.timestamp())
            return
        with self._lock:
            key = next(self._keys)
            self._held[key] = delivery
            heapq.heappush(self._timer, (message.eta.timestamp(), key, delivery, message))

    def _release_due_timers(self) -> None:
        now = self.app.clock.time()
        due: list[tuple[Delivery, TaskMessage, int]] = []
        with self._lock:
            while self._timer and self._timer[0][0] <= now:
                _, key, delivery, message = heapq.heappop(self._timer)
                self._held.pop(key, None)
                due.append((delivery, message, key))
        for delivery, message, _ in due:
            task = self.app.tasks[message.task]
            if message.id in self.revoked:
                self._discard(delivery, message, task, expired=False)
            else:
                self._dispatch(delivery, message, task)

    def _rate_limited(self, delivery: Delivery, message: TaskMessage, task: Any) -> bool:
        """Hold the message in the timer when its task type is over its rate limit."""
        if not self.rate_limits:
            return False
        rate = parse_rate(task.option("rate_limit"))
        if not rate:
            return False
        current = self._buckets.get(task.name)
        if current is None or current[0] != rate:
            current = (rate, TokenBucket(rate, self.app.clock))
            self._buckets[task.name] = current
        bucket = current[1]
        if bucket.take():
            return False
        due = self.app.clock.time() + bucket.wait_time()
        with self._lock:
            key = next(self._keys)
            self._held[key] = delivery
            heapq.heappush(self._timer, (due, key, delivery, message))
        return True

    def _dispatch(self, delivery: Delivery, message: TaskMessage, task: Any) -> None:
        assert self.pool is not None
        if self._rate_limited(delivery, message, task):
            return
        with self._lock:
            key = next(self._keys)
            self._held[key] = delivery
            self._inflight += 1
        logger.info("Task %s[%s] received", message.task, message.id)
        info = {
            "exchange": delivery.exchange, "routing_key": delivery.routing_key,
            "priority": delivery.message.priority, "redelivered": delivery.redelivered,
        }  # fmt: skip
        job = Job(
            message, info, self.hostname, key,
            time_limit=_limit(message.time_limit, task.option("time_limit")),
            soft_time_limit=_limit(message.soft_time_limit, task.option("soft_time_limit")),
            describe=self.events is not None and self.events.describes_tasks,
        )  # fmt: skip
        with self._lock:
            self.jobs[key] = job
        signals.task_received.send(sender=self, request=job)
        self.pool.apply(job)

    # -- acknowledgement ------------------------------------------------------------------------

    def on_start(self, job: Job) -> None:
        job.started_at = self.app.clock.time()
        if job.worker_pid is None:  # solo, threads, asyncio: this process runs it
            job.worker_pid = os.getpid()
        with self._lock:
            self.total[job.name] += 1
        if self.events is not None:
            self.events.task_started(job)
        task = self.app.tasks[job.message.task]
        if not task.option("acks_late"):
            self._ack(job.key)

    def on_done(self, job: Job, result: JobResult) -> None:
        task = self.app.tasks[job.message.task]
        late = bool(task.option("acks_late"))
        if self.events is not None and not (result.timed_out or result.worker_lost):
            self.events.task_finished(job, result)
        if result.terminated is not None:
            self._terminated(job, task, result.terminated)
        elif result.timed_out:
            self._timed_out(job, late and not task.option("acks_on_failure_or_timeout"))
        elif result.worker_lost:
            self._worker_lost(job, late, bool(task.option("reject_on_worker_lost")))
        elif result.state == states.REJECTED:
            self._release(job.key, requeue=result.requeue)
        elif (
            late
            and result.state == states.FAILURE
            and not task.option("acks_on_failure_or_timeout")
        ):
            self._release(job.key, requeue=False)
        else:
            self._ack(job.key)
        with self._lock:
            self.processed += 1
            self._inflight -= 1
            self.jobs.pop(job.key, None)
            self._lock.notify_all()

    def _terminated(self, job: Job, task: Any, signum: int) -> None:
        """The job was stopped by ``revoke(terminate=True)``: REVOKED, unless it finished
        (the client may have stored REVOKED "revoked" already; "terminated" says more)."""
        logger.warning("Task %s[%s] terminated (signal %s)", job.name, job.id, signum)
        request = Context(
            id=job.id, task=job.name, hostname=self.hostname, reply_to=job.message.reply_to
        )

        def finished(results: ResultStore) -> bool:
            return results.readable and results.get_meta(job.id)["status"] in _FINISHED

        if self._results(f"read the state of task {job.id}", finished) is False:
            self._store(
                job.message, states.REVOKED, TaskRevokedError("terminated"), request=request
            )
        self._propagate(job.message, TaskRevokedError("terminated"))
        signals.task_revoked.send(
            sender=task, request=job, terminated=True, signum=signum, expired=False
        )
        if self.events is not None:
            self.events.task_revoked(job.id, job.name, terminated=True, signum=signum,
                                     expired=False)  # fmt: skip
        self._ack(job.key)

    def _worker_lost(self, job: Job, late: bool, reject_on_lost: bool) -> None:
        if late and reject_on_lost:
            self._release(job.key, requeue=True)
            return
        exc = WorkerLostError(f"Worker exited prematurely: exitcode {job_exit(job)}.")
        self._store(job.message, states.FAILURE, exc)
        self._propagate(job.message, exc)
        if self.events is not None:
            self.events.task_failed(job.id, job.name, exc)
        self._ack(job.key)

    def _timed_out(self, job: Job, dead_letter: bool) -> None:
        exc = TimeLimitExceeded(job.time_limit)
        self._store(job.message, states.FAILURE, exc)
        self._propagate(job.message, exc)
        if self.events is not None:
            self.events.task_failed(job.id, job.name, exc)
        logger.error("Task %s[%s] raised unexpected: %r", job.message.task, job.message.id, exc)
        if dead_letter:
            self._release(job.key, requeue=False)
        else:
            self._ack(job.key)

    def _store(
        self, message: TaskMessage, state: str, exc: BaseException, request: Context | None = None
    ) -> None:
        """Store ``state`` for a task that did not run to its end here (sent to the task's
        sender with rpc://); a backend failure is logged."""

        def store(results: ResultStore) -> None:
            if results.enabled:
                results.store(message.id, state, exc, request=request, reply_to=message.reply_to)

        self._results(f"store the {state} state of task {message.id}", store)

    def _propagate(self, message: TaskMessage, exc: BaseException) -> None:
        """A failure recorded here, not by the task's execution: its chord, the rest of its
        chain and its errbacks hear of it as if the task had raised ``exc``."""
        if not (message.embed.chord or message.embed.chain or message.embed.errbacks):
            return
        request = context_from_message(message, hostname=self.hostname)
        try:
            after_failure(self.app, request, exc, ExceptionInfo(exc))
        except Exception:
            logger.exception("Could not pass the failure of %s[%s] on", message.task, message.id)

    def _ack(self, key: int) -> None:
        with self._lock:
            delivery = self._held.get(key)
            if delivery is None or key in self._acked:
                return
            self._acked.add(key)
        self.consumer.ack(delivery)
        with self._lock:
            self._held.pop(key, None)
            self._acked.discard(key)
            self._lock.notify_all()

    def _release(self, key: int, *, requeue: bool) -> None:
        with self._lock:
            delivery = self._held.pop(key, None)
        if delivery is not None:
            self.consumer.reject(delivery, requeue=requeue)

    def renew_leases(self) -> None:
        with self._lock:
            held = list(self._held.values())
        if held:
            self.consumer.renew(held)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def give_back(self, jobs: list[Job]) -> None:
        """Return the messages of jobs that never started to the broker, at once."""
        for job in jobs:
            self._release(job.key, requeue=True)
            with self._lock:
                self._inflight -= 1
                self.jobs.pop(job.key, None)

    # -- remote control -------------------------------------------------------------------------

    def revoke(
        self, task_ids: list[str], *, terminate: bool = False, signum: int = signal.SIGTERM
    ) -> list[str]:
        """Revoke ``task_ids`` here now; with ``terminate``, stop the running ones (returned)."""
        self.revoked.update(task_ids)
        wanted = set(task_ids)
        with self._lock:
            waiting = [entry for entry in self._timer if entry[3].id in wanted]
            if waiting:
                self._timer = [entry for entry in self._timer if entry[3].id not in wanted]
                heapq.heapify(self._timer)
                for _, key, _, _ in waiting:
                    self._held.pop(key, None)
        for _, _, delivery, message in waiting:
            self._discard(delivery, message, self.app.tasks[message.task], expired=False)
        assert self.pool is not None
        for job in self.pool.withdraw(wanted):
            with self._lock:
                queued = self._held.pop(job.key, None)
                self.jobs.pop(job.key, None)
                self._inflight -= 1
                self._lock.notify_all()
            if queued is not None:
                self._discard(queued, job.message, self.app.tasks[job.name], expired=False)
        if not terminate:
            return []
        return [task_id for task_id in task_ids if self.pool.terminate_job(task_id, signum)]

    def reset_rate_limit(self, task_name: str) -> None:
        """``task_name``'s rate limit changed: new bucket, and what waits for a token tries
        again now (messages waiting for their ETA keep waiting)."""
        now = self.app.clock.time()
        with self._lock:
            self._buckets.pop(task_name, None)
            self._timer = [
                (now, key, delivery, message)
                if message.task == task_name and not _waits_for_eta(message, due)
                else (due, key, delivery, message)
                for due, key, delivery, message in self._timer
            ]
            heapq.heapify(self._timer)
            self._lock.notify_all()

    def snapshot(self) -> tuple[list[tuple[Job, bool]], list[tuple[float, TaskMessage, Delivery]]]:
        """``([(job, acknowledged)], [(due, message, delivery)])``: the jobs in the pool
        (running or reserved) and the messages waiting in the timer, soonest first."""
        with self._lock:
            jobs = [(job, key not in self._held) for key, job in self.jobs.items()]
            timer = [(due, message, delivery) for due, _, delivery, message in sorted(self._timer)]
        return jobs, timer


_FINISHED = frozenset({states.SUCCESS, states.FAILURE})


def _waits_for_eta(message: TaskMessage, due: float) -> bool:
    """Whether a timer entry is an early ETA message (else it waits for a rate-limit token)."""
    return message.eta is not None and message.eta.timestamp() >= due


def _limit(call: float | None, default: Any) -> float | None:
    """A per-call limit wins over the task's (or the setting's)."""
    value = call if call is not None else default
    return float(value) if value else None


def job_exit(job: Job) -> str:
    return "unknown" if job.worker_pid is None else f"pid {job.worker_pid}"
