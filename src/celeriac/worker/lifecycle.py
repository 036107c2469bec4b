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

import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from celeriac import signals
from celeriac.app._annotations import annotate_tasks
from celeriac.exceptions import ImproperlyConfigured, QueueNotFound
from celeriac.routing import Queue
from celeriac.worker import state as worker_state
from celeriac.worker.banner import banner
from celeriac.worker.consumer import TaskConsumer
from celeriac.worker.events import WorkerEvents
from celeriac.worker.metrics import MetricsServer, WorkerMetrics
from celeriac.worker.pools import Pool, create_pool
from celeriac.worker.queues import QueueSwitch
from celeriac.worker.remote.control import WorkerControl
from celeriac.worker.remote.mingle import MINGLE_TIMEOUT, sync_with_neighbors
from celeriac.worker.statedb import SAVE_INTERVAL, StateDB

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["Worker", "expand_hostname", "select_queues"]

logger = logging.getLogger("celeriac.worker")


def expand_hostname(name: str | None) -> str:
    """Celery's ``-n`` expansion: ``%h`` host, ``%n`` short name, ``%d`` domain."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    if not name:
        return f"celeriac@{host}"
    expanded = name.replace("%h", host).replace("%n", short).replace("%d", domain)
    return expanded if "@" in expanded else f"{expanded}@{host}"


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
            "app.control.add_consumer.", ", ".join(q.name for q in selected) or "none",
        )  # fmt: skip
    return chosen


class Worker:
    """One worker node: a consumer feeding a pool."""

    def __init__(
        self,
        app: Celery,
        *,
        hostname: str | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        queues: Sequence[str] | None = None,
        exclude_queues: Sequence[str] | None = None,
        prefetch_multiplier: int | None = None,
        max_tasks_per_child: int | None = None,
        fair: bool | None = None,
        max_memory_per_child: int | None = None,
        autoscale: tuple[int, int] | None = None,
        quiet: bool = True,
        task_events: bool | None = None,
        heartbeat: bool = True,
        heartbeat_interval: float | None = None,
        remote_control: bool | None = None,
        mingle: bool = False,
        mingle_timeout: float = MINGLE_TIMEOUT,
        state_db: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        conf = app.conf
        self.app = app
        self.hostname = expand_hostname(hostname)
        self.pool_name = pool or conf.worker_pool or "prefork"
        default = {"solo": 1, "asyncio": 100}.get(self.pool_name, os.cpu_count() or 1)
        self.concurrency = int(concurrency or conf.worker_concurrency or default)
        self.min_concurrency: int | None = None
        if autoscale is not None:  # (max, min), as Celery's --autoscale=max,min
            self.concurrency, self.min_concurrency = autoscale
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        # How long extra autoscaled children may stay idle (Celery's AUTOSCALE_KEEPALIVE).
        self.autoscale_keepalive = float(os.environ.get("CELERIAC_AUTOSCALE_KEEPALIVE", "30"))
        multiplier = (
            conf.worker_prefetch_multiplier
            if prefetch_multiplier is None
            else (prefetch_multiplier)
        )
        self.prefetch_multiplier = int(multiplier)
        self.prefetch_limit = self.prefetch_multiplier * self.concurrency
        self.queues: list[Queue] = select_queues(app, queues, exclude_queues)
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.quiet = quiet
        # worker_disable_prefetch (Celery 5.6) asks for what fair scheduling does already.
        self.fair = True if fair is None or conf.worker_disable_prefetch else fair
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self.crashed = False  # the consumer loop died of an error: the CLI exits non-zero
        self._threads: list[threading.Thread] = []
        self.pool: Pool | None = None
        self.consumer: TaskConsumer | None = None
        # -E / worker_send_task_events; --without-heartbeat; worker_enable_remote_control.
        self.task_events = bool(
            conf.worker_send_task_events if task_events is None else task_events
        )
        self.heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval or 2.0
        self.remote_control = bool(
            conf.worker_enable_remote_control if remote_control is None else remote_control
        )
        # Sync with the running workers at start; the CLI turns it on unless --without-mingle,
        # in-process workers (tests, start_worker) leave it off, as Celery's start_worker does.
        self.mingle = mingle
        self.mingle_timeout = mingle_timeout
        # -S/--statedb / worker_state_db: revoked ids and the clock kept across restarts.
        self.state_db_path: str | None = state_db or conf.worker_state_db or None
        self.state_db: StateDB | None = None
        self.events: WorkerEvents | None = None
        self.control: WorkerControl | None = None
        # --metrics-port: this worker's Prometheus endpoint (celeriac.worker.metrics).
        self.metrics_address = None if metrics_port is None else (metrics_host, metrics_port)
        self.metrics_server: MetricsServer | None = None
        self.started_at = app.clock.time()

    def start(self) -> None:
        """Start consuming; returns once the worker is ready."""
        app = self.app
        app.set_current()
        signals.celeryd_init.send(sender=self.hostname, instance=self, conf=app.conf, options={})
        app.import_default_modules()
        annotate_tasks(app)  # task_annotations, once every task is registered
        transport = app.transport
        # A result backend that cannot be made (unknown scheme, missing client library) stops
        # the worker here, named, rather than failing every task it would run.
        _ = app.backend
        for queue in self.queues:
            transport.declare(queue)
        signals.worker_init.send(sender=self)
        if not self.quiet:  # to the real stdout, even when stdouts are redirected to the log
            out = sys.__stdout__ or sys.stdout
            out.write(banner(
                app, hostname=self.hostname, pool=self.pool_name, concurrency=self.concurrency,
                queues=self.queues, transport=transport,
            ) + "\n")  # fmt: skip
            out.flush()
        self.started_at = app.clock.time()
        consumer = QueueSwitch(transport, [q.name for q in self.queues], owner=self.hostname)
        self.consumer = TaskConsumer(
            app, consumer, hostname=self.hostname, prefetch_limit=self.prefetch_limit
        )
        if self.state_db_path:  # before remote control and mingle, so all three merge
            self.state_db = StateDB(self.state_db_path, self.consumer.revoked, app.lamport_clock)
            self.state_db.load()
        self.events = WorkerEvents(
            app, self.hostname, task_events=self.task_events, heartbeat=self.heartbeat,
            freq=self.heartbeat_interval, load=self._load,
        )  # fmt: skip
        self.consumer.events = self.events
        if self.metrics_address is not None:
            self.consumer.metrics = WorkerMetrics(self)
        self.pool = create_pool(
            self.pool_name, app, self.concurrency, self.consumer.on_start, self.consumer.on_done,
            max_tasks_per_child=self.max_tasks_per_child, hostname=self.hostname,
            max_memory_per_child=self.max_memory_per_child, min_concurrency=self.min_concurrency,
            keepalive=self.autoscale_keepalive,
        )  # fmt: skip
        self.consumer.pool = self.pool
        self.consumer.fair = self.fair
        self.consumer.concurrency = self.concurrency
        self.pool.start()  # before any thread starts, so forked children inherit none
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=app.conf)
        self.events.start()
        if self.remote_control:
            self.control = WorkerControl(self)
            self.control.start()
        if self.mingle and transport.capabilities.broadcast:  # before the first message
            sync_with_neighbors(self, self.mingle_timeout)
        self._spawn(self._consume, "Consumer")
        if transport.lease_renew_interval is not None:
            self._spawn(self._renew, "LeaseRenewer")
        if self.state_db is not None:
            self._spawn(self._save_state_periodically, "StateDB")
        worker_state.register(self)  # celeriac.worker.state's views see this worker
        if self.consumer.metrics is not None and self.metrics_address is not None:
            # After the pool forked, so no child inherits the listening socket.
            try:
                self.metrics_server = MetricsServer(self.consumer.metrics, *self.metrics_address)
            except ImproperlyConfigured:
                self.stop(warm=False)
                raise
            self.metrics_server.start()
        logger.info("%s ready.", self.hostname)
        signals.worker_ready.send(sender=self)

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
