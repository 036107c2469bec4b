"""``start_worker``: a worker running in this process for the length of a ``with`` block.

As Celery's ``celery.contrib.testing.worker.start_worker``: the app becomes current and
default, its log goes to ``logfile`` at ``loglevel``, the worker starts without mingle or
heartbeats, a ``celery.ping`` round trip proves it runs (``perform_ping_check``, waiting
``ping_task_timeout``), and on exit the worker stops warmly within ``shutdown_timeout`` or a
``RuntimeError`` says so. The other keywords are those of Celery's ``WorkController`` that
mean something here; any other is a ``TypeError`` naming it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celeriac import signals
from celeriac._imports import import_module
from celeriac.app.base import Celery
from celeriac.utils.nodenames import anon_nodename
from celeriac.worker.lifecycle import Worker

__all__ = ["TestWorkController", "start_worker"]

#: The level of a test worker's log when none is given (``WORKER_LOGLEVEL`` in the
#: environment, as Celery's). Unset, the level of the ``celeriac`` logger is left alone, so
#: pytest's ``caplog`` still sees warnings (Celery's default there is ``error``).
WORKER_LOGLEVEL = os.environ.get("WORKER_LOGLEVEL")

test_worker_starting = signals.Signal("test_worker_starting")
test_worker_started = signals.Signal("test_worker_started")
test_worker_stopped = signals.Signal("test_worker_stopped")

# Celery's WorkController keyword -> this Worker's keyword (None: accepted, nothing to do).
_WORKER_KEYWORDS: dict[str, str | None] = {
    "hostname": "hostname",
    "queues": "queues",
    "exclude_queues": "exclude_queues",
    "prefetch_multiplier": "prefetch_multiplier",
    "max_tasks_per_child": "max_tasks_per_child",
    "max_memory_per_child": "max_memory_per_child",
    "autoscale": "autoscale",
    "task_events": "task_events",
    "send_events": "task_events",
    "statedb": "state_db",
    "state_db": "state_db",
    "without_heartbeat": None,  # mapped by hand: heartbeat = not without_heartbeat
    "without_mingle": None,  # an in-process test worker never mingles (as Celery's)
    "without_gossip": None,  # Celeriac has no gossip
    "ready_callback": None,  # Celery passes None here; start_worker waits itself
    "optimization": None,  # scheduling is always fair in Celeriac
    "beat": None,  # run beat beside the worker (worker -B), started by start_worker
}


class TestWorkController(Worker):
    """The worker ``start_worker`` runs, with the few extra methods Celery's has."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def reload(self, modules: Sequence[str] | None = None, reload: bool = False) -> None:
        """Celery's ``worker.reload()``: import ``modules`` (default: the app's imports).

        Tasks registered on the app after the worker started run with no reload, since the
        worker looks each task up by name when its message arrives.
        """
        for name in modules or (*(self.app.conf.imports or ()), *(self.app.conf.include or ())):
            import_module(name)

    def ensure_started(self) -> None:
        """Kept for Celery's API: ``start()`` returns once the worker is ready."""


def _worker_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_WORKER_KEYWORDS))
    if unknown:
        raise TypeError(
            f"start_worker() got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"it accepts concurrency, pool, loglevel, logfile, perform_ping_check, "
            f"ping_task_timeout, shutdown_timeout and {', '.join(sorted(_WORKER_KEYWORDS))}"
        )
    options: dict[str, Any] = {}
    for key, value in kwargs.items():
        target = _WORKER_KEYWORDS[key]
        if target is not None:
            options[target] = value
    options["heartbeat"] = not kwargs.get("without_heartbeat", True)
    return options


@contextmanager
def start_worker(
    app: Celery,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int | None = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorkController]:
    """Run a worker for ``app`` in a thread of this process; stop it warmly on exit.

    ``pool`` is ``solo`` or ``threads`` (``prefork`` works too, but forks the test process).
    """
    options = _worker_options(kwargs)
    options.setdefault("hostname", anon_nodename())  # Celery's default: gen<pid>@<host>
    test_worker_starting.send(sender=app)
    worker: TestWorkController | None = None
    try:
        with _worker_log(loglevel, logfile):
            app.set_current()
            app.set_default()
            if perform_ping_check:
                _ensure_ping(app)
            worker = TestWorkController(app, concurrency=concurrency, pool=pool, **options)
            worker.start()
            test_worker_started.send(sender=app, worker=worker)
            beat = _start_beat(app) if kwargs.get("beat") else None
            try:
                if perform_ping_check:
                    _ping(app, ping_task_timeout)
                yield worker
            finally:
                if beat is not None:
                    beat.stop(shutdown_timeout)
                _stop(worker, shutdown_timeout)
    finally:
        test_worker_stopped.send(sender=app, worker=worker)


def _start_beat(app: Celery) -> Any:
    # lazy: beat only when asked for
    from celeriac.beat.service import EmbeddedBeat

    beat = EmbeddedBeat(app)
    beat.start()
    return beat


def _ensure_ping(app: Celery) -> None:
    # lazy: registers celery.ping only when a test worker starts
    from celeriac.contrib.testing.tasks import ping

    if "celery.ping" not in app.tasks:
        app._add_shared(ping)
    if app.backend is None:
        raise RuntimeError(
            "start_worker(perform_ping_check=True) needs a result backend to receive the "
            "ping's answer: configure result_backend, or pass perform_ping_check=False"
        )


def _ping(app: Celery, timeout: float) -> None:
    answer = app.tasks["celery.ping"].delay().get(timeout=timeout)
    if answer != "pong":
        raise RuntimeError(f"The test worker answered the ping with {answer!r}, not 'pong'")


def _stop(worker: Worker, timeout: float) -> None:
    stopper = threading.Thread(target=worker.stop, name="TestWorkerStop", daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        raise RuntimeError(
            f"Worker thread failed to exit within the allocated timeout ({timeout} s). "
            "Consider raising `shutdown_timeout` if your tasks take longer to execute."
        )


@contextmanager
def _worker_log(loglevel: str | int | None, logfile: str | None) -> Iterator[None]:
    """Send Celeriac's log to ``logfile`` (if given) at ``loglevel`` while the worker runs."""
    logger = logging.getLogger("celeriac")
    saved_level = logger.level
    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    if level is None:
        level = saved_level
    elif not isinstance(level, int):
        raise ValueError(
            f"start_worker(loglevel={loglevel!r}): not a logging level; "
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    handler = logging.FileHandler(logfile) if logfile else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved_level)
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
