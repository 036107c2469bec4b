"""The dashboard's background threads, and the steps they repeat.

``events`` thread: receive broadcasts on the event exchange, decode them, fold each batch
into the store in one transaction, publish what changed to the live feed; every
``trim_interval`` apply retention. ``poll`` thread, every ``poll_interval``: ask the result
store about the newest tasks in flight (progress of tasks that ``update_state`` with
``{'current': n, 'total': m}``, and outcomes whose events were missed, e.g. while the
dashboard was down); every ``queue_interval`` sample queue lengths. ``inspect`` thread,
every ``inspect_interval``, and at once when a worker comes online: ask the workers for
their pools and queues over remote control (replies take up to the control timeout, so this
waits apart from the rest).

Each step is a plain method (``drain``, ``poll_results``, ``sample_queues``,
``refresh_workers``) that tests call directly. A failing step is logged and retried on the
next round: the broker or result store being away for a while must not kill the dashboard.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from celeriac._time import Clock, system_clock
from celeriac.dashboard.adapter import ControlAdapter, decode_events, subscribe
from celeriac.dashboard.live import LiveFeed
from celeriac.dashboard.queues import QueueMonitor
from celeriac.dashboard.store import Changes, DashboardStore
from celeriac.exceptions import CeleryError
from celeriac.transports.base import Subscription

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["Collector"]

logger = logging.getLogger("celeriac.dashboard")


class Collector:
    """Keeps the store and the live feed up to date while the dashboard runs."""

    def __init__(
        self,
        app: Celery,
        store: DashboardStore,
        feed: LiveFeed,
        queues: QueueMonitor,
        control: ControlAdapter,
        *,
        clock: Clock = system_clock,
        poll_interval: float = 1.0,
        queue_interval: float = 5.0,
        inspect_interval: float = 15.0,
        trim_interval: float = 60.0,
    ) -> None:
        self.app = app
        self.store = store
        self.feed = feed
        self.queues = queues
        self.control = control
        self.clock = clock
        self.poll_interval = poll_interval
        self.queue_interval = queue_interval
        self.inspect_interval = inspect_interval
        self.trim_interval = trim_interval
        self._stopping = threading.Event()
        self._inspect_now = threading.Event()  # a worker came online: ask it at once
        self._workers_seen: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._subscription: Subscription | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe (so every event sent from now on is seen), then start both threads."""
        self._subscription = subscribe(self.app)
        loops = (
            ("events", self._events_loop),
            ("poll", self._poll_loop),
            ("inspect", self._inspect_loop),
        )
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"dashboard-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        self._inspect_now.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    # -- steps ------------------------------------------------------------------------------

    def drain(self, subscription: Subscription, timeout: float) -> int:
        """Fold the events received within ``timeout`` into the store; how many there were."""
        events = []
        for broadcast in subscription.receive(timeout):
            events.extend(decode_events(self.app, broadcast))
        if events:
            for event in events:
                self._note(event)
            self.publish(self.store.apply(events))
        return len(events)

    def _note(self, event: dict[str, object]) -> None:
        """What an event tells beyond the store: tasks sent per queue, workers coming up."""
        kind, hostname = event.get("type"), event.get("hostname")
        if kind == "task-sent" and isinstance(event.get("queue"), str):
            ts = event.get("timestamp")
            when = float(ts) if isinstance(ts, int | float) else self.clock.time()
            self.queues.note_sent(str(event["queue"]), when)
            return
        if not (isinstance(kind, str) and kind.startswith("worker-")):
            return
        if isinstance(hostname, str) and (
            kind == "worker-online" or hostname not in self._workers_seen
        ):
            self._workers_seen.add(hostname)
            self._inspect_now.set()

    def poll_results(self) -> Changes:
        """Ask the result store about tasks in flight: progress, and missed outcomes."""
        results = self.app.results
        if not results.readable:
            return Changes()  # no store, or rpc:// whose results are one-shot: never read
        ids = self.store.in_flight()
        if not ids:
            return Changes()
        metas = {}
        for task_id, payload in results.backend.fetch_many(ids).items():
            try:
                metas[task_id] = results.decode(payload)
            except CeleryError:  # someone else's data under a task id: not ours to judge
                continue
        changes = self.store.apply_metas(metas)
        self.publish(changes)
        return changes

    def sample_queues(self) -> None:
        self.queues.sample()
        self.feed.publish("queues", self.queues.snapshot())

    def refresh_workers(self) -> None:
        """Record each worker's pool and queues, as remote control reports them."""
        info = self.control.worker_info()
        for hostname, (pool, queue_names) in info.items():
            self.store.set_worker_info(hostname, pool=pool, queues=queue_names)
        self.queues.set_consumers({h: q or [] for h, (_, q) in info.items()})
        if info:
            for worker in self.store.workers():
                self.feed.publish("worker", worker)

    def refresh_soon(self) -> None:
        """Ask the workers for their pools and queues now (after an action changed them)."""
        self._inspect_now.set()

    def publish(self, changes: Changes) -> None:
        for task in changes.tasks:
            self.feed.publish("task", task)
        for worker in changes.workers:
            self.feed.publish("worker", worker)

    # -- threads ----------------------------------------------------------------------------

    def _events_loop(self) -> None:
        next_trim = self.clock.monotonic()
        while not self._stopping.is_set():
            subscription = self._subscription
            if subscription is None:
                return
            self._guarded("receive events", functools.partial(self.drain, subscription, 0.5))
            if self.clock.monotonic() >= next_trim:
                self._guarded("apply retention", self.store.trim)
                next_trim = self.clock.monotonic() + self.trim_interval

    def _poll_loop(self) -> None:
        next_queues = self.clock.monotonic()
        while not self._stopping.is_set():
            self._guarded("poll the result store", self.poll_results)
            if self.clock.monotonic() >= next_queues:
                self._guarded("sample queue lengths", self.sample_queues)
                next_queues = self.clock.monotonic() + self.queue_interval
            self._stopping.wait(self.poll_interval)

    def _inspect_loop(self) -> None:
        while self.control.available and not self._stopping.is_set():
            self._inspect_now.clear()
            self._guarded("ask the workers for their pools", self.refresh_workers)
            self._inspect_now.wait(self.inspect_interval)

    def _guarded(self, what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except CeleryError as exc:
            logger.warning("Dashboard: could not %s (will retry): %s", what, exc)
            self._stopping.wait(1.0)
        except Exception:  # a bug must not silently stop the live view
            logger.exception("Dashboard: unexpected error while trying to %s", what)
            self._stopping.wait(1.0)
