"""The worker's lifecycle, readable top to bottom: ``start`` then ``stop``.

Start: import the task modules, declare the queues, load the state file (``--statedb``:
revoked ids and clock), start the pool, send ``worker-online`` and start the events thread
(heartbeats, task events), start answering remote control, mingle (learn the revoked ids and
the clock of the running workers), start the consumer thread, the lease-renewal thread and
the state-saving thread, then say ready. Stop (warm): stop answering remote control, stop
fetching, hand the messages of jobs that never started back to the broker at once, let
running jobs finish, send their last events and ``worker-offline``, close the consumer (which
returns whatever is still held), save the state file. Cold stop: the same without waiting
for running jobs.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Unpack

from celeriac import signals
from celeriac.app._annotations import annotate_tasks
from celeriac.exceptions import ImproperlyConfigured, QueueNotFound
from celeriac.routing import Queue
from celeriac.worker import state as worker_state
from celeriac.worker.banner import banner
from celeriac.worker.consumer import TaskConsumer
from celeriac.worker.events import WorkerEvents
from celeriac.worker.metrics import MetricsServer, WorkerMetrics
from celeriac.worker.options import WorkerArguments, WorkerOptions, expand_hostname
from celeriac.worker.pool_factory import create_pool
from celeriac.worker.pools import Pool
from celeriac.worker.queues import QueueSwitch
from celeriac.worker.remote.control import WorkerControl
from celeriac.worker.remote.mingle import sync_with_neighbors
from celeriac.worker.revoked import RevokedSet
from celeriac.worker.statedb import SAVE_INTERVAL, StateDB

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["Worker", "WorkerOptions", "expand_hostname", "select_queues"]

logger = logging.getLogger("celeriac.worker")


def select_queues(
    app: Celery, queues: Sequence[str] | None, exclude: Sequence[str] | None = None
) -> list[Queue]:
    """The queues a worker consumes, as Celery chooses them: those named (``-Q``; one that
    ``task_queues`` does not define is created when ``task_create_missing_queues`` allows,
    else ``ImproperlyConfigured``), by default every queue the settings define
    (``task_queues``, else ``task_default_queue``); minus the excluded ones (``-X``)."""
    router = app.router
    if queues:
        selected = []
        for name in dict.fromkeys(queues):
            try:
                selected.append(router.queue(name))
            except QueueNotFound:
                raise ImproperlyConfigured(
                    f"Cannot consume from queue {name!r}: task_queues does not define it and "
                    "task_create_missing_queues is off. Add it to task_queues, or turn "
                    "task_create_missing_queues on to have it created."
                ) from None
    else:
        selected = list(router.defined)
    excluded = set(exclude or ())
    chosen = [queue for queue in selected if queue.name not in excluded]
    if not chosen:
        logger.warning(
            "The worker consumes no queue (all of %s excluded); add one with "
            "app.control.add_consumer.",
            ", ".join(q.name for q in selected) or "none",
        )
    return chosen


class Worker:
    """One worker node: a consumer feeding a pool.

    ``Worker(app, concurrency=2, pool="threads")`` takes the keywords of ``WorkerArguments``
    (the flags of ``celeriac worker``) and builds its ``WorkerOptions`` from them and the
    app's settings; ``Worker(app, options=WorkerOptions.from_settings(app.conf, ...))``
    takes options built elsewhere.
    """

    def __init__(
        self,
        app: Celery,
        *,
        options: WorkerOptions | None = None,
        **arguments: Unpack[WorkerArguments],
    ) -> None:
        if options is None:
            options = WorkerOptions.from_settings(app.conf, **arguments)
        elif arguments:
            raise TypeError("Worker() takes options or keyword arguments, not both")
        self.app = app
        self.options = options
        self.hostname = options.hostname
        self.pool_name = options.pool
        self.concurrency = options.concurrency  # changes with pool_grow/pool_shrink
        self.min_concurrency = options.min_concurrency
        self.prefetch_multiplier = options.prefetch_multiplier
        self.prefetch_limit = options.prefetch_limit
        self.queues: list[Queue] = select_queues(app, options.queues, options.exclude_queues)
        self.quiet = options.quiet
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self.crashed = False  # the consumer loop died of an error: the CLI exits non-zero
        self._threads: list[threading.Thread] = []
        self.pool: Pool | None = None
        self.consumer: TaskConsumer | None = None
        self.state_db: StateDB | None = None
        self.events: WorkerEvents | None = None
        self.control: WorkerControl | None = None
        self.metrics_server: MetricsServer | None = None
        self.started_at = app.clock.time()

    # -- the options under the names the worker always had (read-only) -----------------------

    @property
    def fair(self) -> bool:
        return self.options.fair

    @property
    def max_tasks_per_child(self) -> int | None:
        return self.options.max_tasks_per_child

    @property
    def max_memory_per_child(self) -> int | None:
        return self.options.max_memory_per_child

    @property
    def autoscale_keepalive(self) -> float:
        return self.options.autoscale_keepalive

    @property
    def task_events(self) -> bool:
        return self.options.task_events

    @property
    def heartbeat(self) -> bool:
        return self.options.heartbeat

    @property
    def heartbeat_interval(self) -> float:
        return self.options.heartbeat_interval

    @property
    def remote_control(self) -> bool:
        return self.options.remote_control

    @property
    def mingle(self) -> bool:
        return self.options.mingle

    @property
    def mingle_timeout(self) -> float:
        return self.options.mingle_timeout

    @property
    def state_db_path(self) -> str | None:
        return self.options.state_db

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self.options.metrics_address

    def start(self) -> None:
        """Start consuming; returns once the worker is ready."""
        app = self.app
        self._prepare()
        self.started_at = app.clock.time()
        self.consumer = self._make_consumer()
        self.pool = self.consumer.pool
        self.pool.start()  # before any thread starts, so forked children inherit none
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=app.conf)
        assert self.events is not None
        self.events.start()
        if self.options.remote_control:
            self.control = WorkerControl(self)
            self.control.start()
        if self.options.mingle and app.transport.capabilities.broadcast:  # before any message
            sync_with_neighbors(self, self.options.mingle_timeout)
        self._spawn(self._consume, "Consumer")
        if app.transport.lease_renew_interval is not None:
            self._spawn(self._renew, "LeaseRenewer")
        if self.state_db is not None:
            self._spawn(self._save_state_periodically, "StateDB")
        worker_state.register(self)  # celeriac.worker.state's views see this worker
        self._serve_metrics()
        logger.info("%s ready.", self.hostname)
        signals.worker_ready.send(sender=self)

    def _prepare(self) -> None:
        """Import the tasks, check the result backend, declare the queues, print the banner."""
        app = self.app
        app.set_current()
        signals.celeryd_init.send(sender=self.hostname, instance=self, conf=app.conf, options={})
        app.import_default_modules(extra=self.options.include)
        annotate_tasks(app)  # task_annotations, once every task is registered
        self.options = self.options.at_start(app.conf)
        transport = app.transport
        # A result backend that cannot be made (unknown scheme, missing client library) stops
        # the worker here, named, rather than failing every task it would run.
        _ = app.backend
        for queue in self.queues:
            transport.declare(queue)
        signals.worker_init.send(sender=self)
        if not self.quiet:  # to the real stdout, even when stdouts are redirected to the log
            out = sys.__stdout__ or sys.stdout
            out.write(
                banner(
                    app,
                    hostname=self.hostname,
                    pool=self.pool_name,
                    concurrency=self.concurrency,
                    queues=self.queues,
                    transport=transport,
                    prefetch_multiplier=self.prefetch_multiplier,
                )
                + "\n"
            )
            out.flush()

    def _make_consumer(self) -> TaskConsumer:
        """The consumer with its parts: state file, events, metrics and pool."""
        app, options = self.app, self.options
        revoked = RevokedSet(clock=app.clock)
        if options.state_db:  # before remote control and mingle, so all three merge
            self.state_db = StateDB(options.state_db, revoked, app.lamport_clock)
            self.state_db.load()
        self.events = WorkerEvents(
            app,
            self.hostname,
            task_events=options.task_events,
            heartbeat=options.heartbeat,
            freq=options.heartbeat_interval,
            load=self._load,
        )
        make_pool = functools.partial(
            create_pool,
            options.pool,
            app,
            options.concurrency,
            max_tasks_per_child=options.max_tasks_per_child,
            hostname=self.hostname,
            max_memory_per_child=options.max_memory_per_child,
            min_concurrency=options.min_concurrency,
            keepalive=options.autoscale_keepalive,
            time_limits=(options.soft_time_limit, options.time_limit),
        )
        return TaskConsumer(
            app,
            QueueSwitch(app.transport, [q.name for q in self.queues], owner=self.hostname),
            hostname=self.hostname,
            options=options,
            make_pool=make_pool,
            events=self.events,
            metrics=None if options.metrics_address is None else WorkerMetrics(self),
            revoked=revoked,
        )

    def _serve_metrics(self) -> None:
        """``--metrics-port``: after the pool forked, so no child inherits the socket."""
        assert self.consumer is not None
        address = self.options.metrics_address
        if self.consumer.metrics is None or address is None:
            return
        try:
            self.metrics_server = MetricsServer(self.consumer.metrics, *address)
        except ImproperlyConfigured:
            self.stop(warm=False)
            raise
        self.metrics_server.start()

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _consume(self) -> None:
        assert self.consumer is not None
        try:
            while not self._stop.is_set():
                self.consumer.step(timeout=0.5)
        except Exception:
            logger.exception("Consumer loop crashed; stopping the worker")
            self.crashed = True
            self._stop.set()

    def _renew(self) -> None:
        interval = self.app.transport.lease_renew_interval or 10.0
        assert self.consumer is not None
        while not self._stop.wait(interval):
            try:
                self.consumer.renew_leases()
            except Exception as exc:
                logger.warning("Could not renew leases: %s", exc)

    def _save_state_periodically(self) -> None:
        assert self.state_db is not None
        while not self._stop.wait(SAVE_INTERVAL):
            self.state_db.save()

    def save_state(self) -> None:
        """Write the state file now, if the worker has one (``--statedb``)."""
        if self.state_db is not None:
            self.state_db.save()

    def _load(self) -> tuple[int, int]:
        """(running jobs, jobs processed), for heartbeats."""
        consumer = self.consumer
        if consumer is None:
            return 0, 0
        jobs, _ = consumer.snapshot()
        return sum(1 for job, _ in jobs if job.started_at is not None), consumer.processed

    def set_queues(self, queues: Sequence[Queue]) -> None:
        """Consume ``queues`` from now on (``add_consumer``/``cancel_consumer``)."""
        self.queues = list(queues)
        if self.consumer is not None and isinstance(self.consumer.consumer, QueueSwitch):
            self.consumer.consumer.set_queues([q.name for q in self.queues])

    def resize(self, concurrency: int) -> None:
        """The pool has ``concurrency`` slots now: prefetch as much as that allows."""
        self.concurrency = concurrency
        self.prefetch_limit = self.prefetch_multiplier * concurrency
        if self.consumer is not None:
            self.consumer.set_window(concurrency, self.prefetch_limit)

    def request_stop(self) -> None:
        """Ask the worker to stop (remote ``shutdown``); whoever runs it calls ``stop``."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker stopped (or ``timeout``); True when stopped."""
        return self._stopped.wait(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, *, warm: bool = True) -> None:
        """Stop: warm lets running tasks finish; cold does not wait for them."""
        if self._stopped.is_set():
            return
        worker_state.unregister(self)
        signals.worker_shutting_down.send(
            sender=self.hostname, sig="SIGTERM", how="Warm" if warm else "Cold", exitcode=0
        )
        self._stop.set()
        if self.control is not None:
            self.control.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.pool is not None and self.consumer is not None:
            unstarted = self.pool.stop(wait=warm)
            self.consumer.give_back(unstarted)
        if self.events is not None:
            self.events.stop()
        if self.consumer is not None:
            self.consumer.consumer.close()
        self.save_state()  # after the last job and the last control command
        if self.metrics_server is not None:
            self.metrics_server.stop()
        signals.worker_shutdown.send(sender=self)
        self.app.close()
        self._stopped.set()
        logger.info("%s stopped.", self.hostname)
