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

Beside it: ``_consumer_held`` (the deliveries held, the timer, the rate limits) and
``_consumer_outcomes`` (what is recorded for a task settled here rather than by its run).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac.exceptions import (
    ContentDisallowed,
    DecodeError,
    InvalidTaskError,
    NotRegistered,
    OperationalError,
)
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import decode_task
from celeriac.transports.base import Consumer, Delivery
from celeriac.worker._consumer_held import HeldDeliveries, RateLimits, waits_for_eta
from celeriac.worker._consumer_outcomes import Outcomes
from celeriac.worker._consumer_outcomes import job_exit as job_exit
from celeriac.worker.job import Job, JobResult
from celeriac.worker.pools import OnDone, OnStart, Pool
from celeriac.worker.revoked import RevokedSet, RevokedStamps

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.worker.events import WorkerEvents
    from celeriac.worker.metrics import WorkerMetrics
    from celeriac.worker.options import WorkerOptions

__all__ = ["PoolFactory", "TaskConsumer"]

logger = logging.getLogger("celeriac.worker")

#: How many ids of succeeded tasks a worker remembers (``worker.state.successful_requests``).
SUCCEEDED_MAX = 1000

_waits_for_eta = waits_for_eta  # its old name here, which worker.commands imports


#: Makes the pool that runs the consumer's jobs, given the consumer's ``on_start`` and
#: ``on_done`` (the pool reports to the consumer that owns it).
PoolFactory = Callable[[OnStart, OnDone], Pool]


class TaskConsumer:
    """Feeds a pool from a transport consumer and acknowledges per policy.

    Its parts are given at construction: the pool (made by ``make_pool`` with this
    consumer's callbacks), where events go, the metrics, the revoked set (shared with the
    state file); ``options`` are the worker's (fair scheduling, timer and rate limits, the
    worker's time limits).
    """

    def __init__(
        self,
        app: Celery,
        consumer: Consumer,
        *,
        hostname: str,
        options: WorkerOptions,
        make_pool: PoolFactory,
        events: WorkerEvents | None = None,
        metrics: WorkerMetrics | None = None,
        revoked: RevokedSet | None = None,
    ) -> None:
        self.app = app
        self.consumer = consumer
        self.hostname = hostname
        self.options = options
        self.prefetch_limit = options.prefetch_limit  # 0 = unlimited
        # fair: take messages only for idle pool slots (see window()).
        self.fair = options.fair
        self.concurrency = options.concurrency
        self._inflight = 0
        self._lock = threading.Condition()
        self._held = HeldDeliveries(consumer, self._lock)  # not yet settled; with the timer
        self.processed = 0
        self.consumer_defers = app.transport.capabilities.delayed_delivery
        if options.eta_task_limit:  # early ETAs held here (no broker-side delay)
            self.max_timer_held = options.eta_task_limit
        self._rate_limits = RateLimits(app.clock)
        self.rate_limits = options.rate_limits
        self.revoked = RevokedSet(clock=app.clock) if revoked is None else revoked
        self.revoked_stamps = RevokedStamps()  # revoke_by_stamped_headers
        self.jobs: dict[int, Job] = {}  # handed to the pool: reserved or running, by key
        self.total: Counter[str] = Counter()  # jobs started, by task name
        self.succeeded: deque[str] = deque(maxlen=SUCCEEDED_MAX)  # ids of the last successes
        self.metrics = metrics  # worker --metrics-port
        # The result store, followups, signals and events of tasks settled here.
        self.outcomes = Outcomes(app, hostname, self.revoked, events=events)
        self.pool: Pool = make_pool(self.on_start, self.on_done)

    @property
    def events(self) -> WorkerEvents | None:
        """Where worker events go (``celeriac.worker.events``); None sends none."""
        return self.outcomes.events

    # -- the loop -----------------------------------------------------------------------------

    #: Messages waiting in the timer (rate limits, early ETAs) do not take prefetch room, so
    #: other task types keep flowing; past this many the worker stops fetching.
    max_timer_held = 1000

    def window(self) -> int:
        with self._lock:
            waiting = self._held.waiting()
            if waiting >= self.max_timer_held:
                return 0
            limit = 100 if self.prefetch_limit == 0 else self.prefetch_limit
            room = limit - (len(self._held) - waiting)
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
        due = self._held.next_due()
        if due is None:
            return default
        return max(0.0, min(default, due - self.app.clock.time()))

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
        revoked = self.outcomes.revoked_ids([m.id for _, m in decoded])
        for delivery, message in decoded:
            self._handle(delivery, message, message.id in revoked)

    def _decode(self, delivery: Delivery) -> TaskMessage | None:
        try:
            return decode_task(delivery.message, accept=self.app.conf.accept_content)
        except (ContentDisallowed, DecodeError, InvalidTaskError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error(
                "Received an invalid message in queue %r; it was set aside in the dead-letter "
                "store: %s",
                delivery.queue,
                reason,
            )
            signals.task_rejected.send(sender=self, message=delivery.message, exc=exc)
            self.consumer.dead_letter(delivery, reason)
            return None

    def _handle(self, delivery: Delivery, message: TaskMessage, revoked: bool) -> None:
        app = self.app
        try:
            task = app.tasks[message.task]
        except NotRegistered as exc:
            self._unknown(delivery, message, exc)
            return
        now = app.now()
        revoked = revoked or message.id in self.revoked
        if not revoked and self.revoked_stamps.matches(message.stamps):
            self._discard(delivery, message, task, expired=False, store=True)
            return
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
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Any,
        *,
        expired: bool,
        store: bool = False,
    ) -> None:
        """Acknowledge without running: the task was revoked, or its message expired."""
        self.outcomes.discarded(message, task, expired=expired, store=store)
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
        self.outcomes.unknown(message, exc)
        self.consumer.dead_letter(delivery, reason)

    def _defer(self, delivery: Delivery, message: TaskMessage) -> None:
        assert message.eta is not None
        if self.consumer_defers:
            self.consumer.defer(delivery, message.eta.timestamp())
            return
        self._held.hold_until(message.eta.timestamp(), delivery, message)

    def _release_due_timers(self) -> None:
        for delivery, message in self._held.pop_due(self.app.clock.time()):
            task = self.app.tasks[message.task]
            if message.id in self.revoked:
                self._discard(delivery, message, task, expired=False)
            else:
                self._dispatch(delivery, message, task)

    def _rate_limited(self, delivery: Delivery, message: TaskMessage, task: Any) -> bool:
        """Hold the message in the timer when its task type is over its rate limit."""
        if not self.rate_limits:
            return False
        due = self._rate_limits.due(task)
        if due is None:
            return False
        self._held.hold_until(due, delivery, message)
        return True

    def _dispatch(self, delivery: Delivery, message: TaskMessage, task: Any) -> None:
        if self._rate_limited(delivery, message, task):
            return
        with self._lock:
            key = self._held.add(delivery)
            self._inflight += 1
        logger.info("Task %s[%s] received", message.task, message.id)
        info = {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "priority": delivery.message.priority,
            "redelivered": delivery.redelivered,
        }
        job = Job(
            message,
            info,
            self.hostname,
            key,
            time_limit=_limit(message.time_limit, task.time_limit, self.options.time_limit),
            soft_time_limit=_limit(
                message.soft_time_limit, task.soft_time_limit, self.options.soft_time_limit
            ),
            describe=self.events is not None and self.events.describes_tasks,
        )
        with self._lock:
            self.jobs[key] = job
        signals.task_received.send(sender=self, request=job)
        if self.metrics is not None:
            self.metrics.received(job)
        self.pool.apply(job)

    # -- acknowledgement ------------------------------------------------------------------------

    def on_start(self, job: Job) -> None:
        job.started_at = self.app.clock.time()
        if job.worker_pid is None:  # solo, threads, asyncio: this process runs it
            job.worker_pid = os.getpid()
        with self._lock:
            self.total[job.name] += 1
        if self.metrics is not None:
            self.metrics.started(job)
        if self.events is not None:
            self.events.task_started(job)
        task = self.app.tasks[job.message.task]
        if not task.option("acks_late"):
            self._held.ack(job.key)

    def on_done(self, job: Job, result: JobResult) -> None:
        task = self.app.tasks[job.message.task]
        late = bool(task.option("acks_late"))
        if self.metrics is not None:
            self.metrics.finished(job, result)
        if self.events is not None and not (result.timed_out or result.worker_lost):
            self.events.task_finished(job, result)
        if result.terminated is not None:
            self.outcomes.terminated(job, task, result.terminated)
            self._held.ack(job.key)
        elif result.timed_out:
            self.outcomes.timed_out(job)
            if late and not _acks_on(task, "acks_on_timeout", "task_acks_on_timeout"):
                self._held.release(job.key, requeue=False)  # dead-lettered
            else:
                self._held.ack(job.key)
        elif result.worker_lost:
            if late and task.option("reject_on_worker_lost"):  # counted: its process died
                self._held.release(job.key, requeue=True, failed=True)
            else:
                self.outcomes.worker_lost(job)
                self._held.ack(job.key)
        elif result.state == states.REJECTED:
            self._held.release(job.key, requeue=result.requeue)
        elif (
            late
            and result.state == states.FAILURE
            and not _acks_on(task, "acks_on_failure", "task_acks_on_failure")
        ):
            self._held.release(job.key, requeue=False)
        else:
            self._held.ack(job.key)
        with self._lock:
            if result.state == states.SUCCESS:
                self.succeeded.append(job.id)
            self.processed += 1
            self._inflight -= 1
            self.jobs.pop(job.key, None)
            self._lock.notify_all()

    def renew_leases(self) -> None:
        self._held.renew()

    def held(self) -> int:
        return len(self._held)

    def give_back(self, jobs: list[Job]) -> None:
        """Return the messages of jobs that never started to the broker, at once."""
        for job in jobs:
            self._held.release(job.key, requeue=True)
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
        for delivery, message in self._held.withdraw(wanted):
            self._discard(delivery, message, self.app.tasks[message.task], expired=False)
        for job in self.pool.withdraw(wanted):
            with self._lock:
                queued = self._held.pop(job.key)
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
            self._rate_limits.reset(task_name)
            self._held.retry_rate_limited(task_name, now)
            self._lock.notify_all()

    def snapshot(self) -> tuple[list[tuple[Job, bool]], list[tuple[float, TaskMessage, Delivery]]]:
        """``([(job, acknowledged)], [(due, message, delivery)])``: the jobs in the pool
        (running or reserved) and the messages waiting in the timer, soonest first."""
        with self._lock:
            jobs = [(job, key not in self._held) for key, job in self.jobs.items()]
            timer = self._held.timer()
        return jobs, timer


def _limit(call: float | None, task: Any, worker: float | None) -> float | None:
    """A per-call limit wins over the task's, which wins over the worker's (its flag, else
    its setting: ``WorkerOptions``)."""
    value = call if call is not None else task if task is not None else worker
    return float(value) if value else None


def _acks_on(task: Any, outcome: str, setting: str) -> bool:
    """Celery's ``acks_on_failure`` / ``acks_on_timeout`` (task attribute, then the
    ``task_*`` setting), each falling back to ``acks_on_failure_or_timeout``."""
    value = getattr(task, outcome, None)
    if value is None:
        value = task.app.conf[setting]
    if value is None:
        value = task.option("acks_on_failure_or_timeout")
    return bool(value)
