"""A worker's events: its heartbeat, and with ``-E`` an event for each step of each task.

The consumer calls the ``task_*`` hooks as a task is received, started and finished (for the
prefork pool too: the parent sees every job start and end, and the child's ``JobResult``
carries the result's and exception's repr), so every event is sent from the worker's main
process with its pid and its Lamport clock. Task events go into the dispatcher's buffer;
this module's thread flushes it every ``FLUSH_INTERVAL`` seconds (at once when 24 wait) and
sends ``worker-heartbeat`` every ``freq`` seconds. ``worker-online`` goes out at ``start``,
``worker-offline`` at ``stop``, after the last task events. ``--without-heartbeat`` turns the
worker events off; task events are on with ``-E``/``worker_send_task_events`` and can be
switched at run time (``enable_events``/``disable_events``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac._version import __version__
from celeriac.events.dispatcher import EventDispatcher
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import saferepr

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.worker.job import Job, JobResult

__all__ = ["FLUSH_INTERVAL", "SOFTWARE_INFO", "WorkerEvents"]

logger = logging.getLogger("celeriac.worker")

#: How often buffered task events are sent, in seconds.
FLUSH_INTERVAL = 0.25


def _software_info() -> dict[str, str]:
    return {"sw_ident": "py-celeriac", "sw_ver": __version__, "sw_sys": platform.system()}


SOFTWARE_INFO = _software_info()


def load_average() -> list[float]:
    try:
        return [math.ceil(load * 100) / 100 for load in os.getloadavg()]
    except OSError:  # not available on this platform
        return [0.0, 0.0, 0.0]


class WorkerEvents:
    """Sends one worker's events (see the module docstring)."""

    def __init__(
        self,
        app: Celery,
        hostname: str,
        *,
        task_events: bool,
        heartbeat: bool = True,
        freq: float = 2.0,
        load: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        self.app = app
        self.freq = freq
        self.heartbeat = heartbeat
        self.load = load  # () -> (active, processed)
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dispatcher = EventDispatcher(
            app=app, hostname=hostname, buffer_group={"task"}, on_buffer_full=self._wakeup.set
        )
        self.available = self.dispatcher.enabled  # the broker has a broadcast channel
        self.task_events = task_events

    @property
    def task_events(self) -> bool:
        return self._task_events

    @task_events.setter
    def task_events(self, on: bool) -> None:
        self._task_events = on
        self.dispatcher.groups = set() if on else {"worker"}
        self.dispatcher.enabled = self.available and (on or self.heartbeat)

    @property
    def describes_tasks(self) -> bool:
        """Whether task events go out, so jobs should bring back their result's repr."""
        return self._task_events and self.available

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Send ``worker-online`` and start the flushing and heartbeat thread."""
        if not self.available:
            return
        if self.heartbeat:
            self._send_worker("worker-online")
        self._thread = threading.Thread(target=self._loop, name="Events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send what is buffered, then ``worker-offline``."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.dispatcher.flush()
        if self.heartbeat and self.available:
            self._send_worker("worker-offline")
        self.dispatcher.close()

    def _loop(self) -> None:
        next_beat = time.monotonic() + self.freq
        while not self._stopping.is_set():
            wait = min(FLUSH_INTERVAL, max(next_beat - time.monotonic(), 0.0))
            self._wakeup.wait(wait)
            self._wakeup.clear()
            try:
                self.dispatcher.flush()
                if self.heartbeat and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.freq
                    self.send_heartbeat()
            except Exception:  # never let monitoring take the worker down
                logger.exception("Could not send events")

    def send_heartbeat(self) -> None:
        """Send ``worker-heartbeat`` now (also on a remote ``heartbeat`` request)."""
        self._send_worker("worker-heartbeat")
        signals.heartbeat_sent.send(sender=self)

    def _send_worker(self, type: str) -> None:
        active, processed = self.load()
        fields: dict[str, Any] = {
            "freq": self.freq,
            "active": active,
            "processed": processed,
            "loadavg": load_average(),
            **SOFTWARE_INFO,
        }
        self.dispatcher.send(type, **fields)

    # -- task hooks (called by the consumer) ----------------------------------------------------

    def _wanted(self, name: str) -> bool:
        if not self._task_events or not self.dispatcher.enabled:
            return False
        task = self.app.tasks.get(name)
        return task is None or bool(getattr(task, "send_events", True))

    def task_received(self, message: TaskMessage) -> None:
        if self._wanted(message.task):
            self.dispatcher.send(
                "task-received",
                uuid=message.id,
                name=message.task,
                args=_repr(message.argsrepr, message.args),
                kwargs=_repr(message.kwargsrepr, message.kwargs),
                root_id=message.root_id,
                parent_id=message.parent_id,
                retries=message.retries,
                eta=message.eta.isoformat() if message.eta else None,
                expires=message.expires.isoformat() if message.expires else None,
            )

    def task_started(self, job: Job) -> None:
        if self._wanted(job.name):
            self.dispatcher.send("task-started", uuid=job.id)

    def task_finished(self, job: Job, result: JobResult) -> None:
        """The event for how the job ended (nothing for IGNORED)."""
        if not self._wanted(job.name):
            return
        send = self.dispatcher.send
        if result.state == states.SUCCESS:
            send("task-succeeded", uuid=job.id, result=result.retval_repr, runtime=result.runtime)
        elif result.state == states.RETRY:
            send(
                "task-retried",
                uuid=job.id,
                exception=result.exception_repr,
                traceback=result.traceback,
            )
        elif result.state == states.REJECTED:
            send("task-rejected", uuid=job.id, requeue=result.requeue)
        elif result.state == states.FAILURE:
            send(
                "task-failed",
                uuid=job.id,
                exception=result.exception_repr or result.detail,
                traceback=result.traceback,
            )

    def task_failed(self, task_id: str, name: str, exc: BaseException) -> None:
        """A task that failed without running (unknown task, worker lost, time limit)."""
        if self._wanted(name):
            self.dispatcher.send(
                "task-failed", uuid=task_id, exception=saferepr(exc), traceback=None
            )

    def task_revoked(
        self, task_id: str, name: str, *, terminated: bool, signum: int | None, expired: bool
    ) -> None:
        if self._wanted(name):
            self.dispatcher.send(
                "task-revoked", uuid=task_id, terminated=terminated, signum=signum, expired=expired
            )


def _repr(given: str | None, value: Any) -> str:
    return given if given is not None else saferepr(value)
