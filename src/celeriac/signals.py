"""Celery's signals: ``@task_success.connect`` style hooks with ``sender=`` filtering.

A ``Signal`` keeps strong references to its receivers (Celery's default is weak, which
surprises users whose handlers are closures); ``send`` calls them in order and returns
``[(receiver, result)]``. A receiver's exception is logged and returned, not raised, so one
bad handler cannot break task execution.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, overload

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]

logger = logging.getLogger("celeriac.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named hook that handlers connect to."""

    def __init__(self, name: str, providing_args: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.providing_args = providing_args
        self._receivers: list[tuple[Receiver, Any, Any]] = []  # (receiver, sender, uid)
        self._lock = threading.Lock()

    @overload
    def connect(
        self, receiver: Receiver, *, sender: Any = None, dispatch_uid: Any = None, **options: Any
    ) -> Receiver: ...

    @overload
    def connect(
        self, receiver: None = None, *, sender: Any = None, dispatch_uid: Any = None, **options: Any
    ) -> Callable[[Receiver], Receiver]: ...

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        dispatch_uid: Any = None,
        **options: Any,
    ) -> Receiver | Callable[[Receiver], Receiver]:
        """Connect ``receiver``; usable as ``@sig.connect`` or ``@sig.connect(sender=...)``.

        Connecting the same receiver (or another one with the same ``dispatch_uid``) for
        the same sender again does nothing. ``weak=`` is accepted and ignored.
        """

        def register(fun: Receiver) -> Receiver:
            with self._lock:
                if not any(
                    self._same(entry, fun, sender, dispatch_uid) for entry in self._receivers
                ):
                    self._receivers.append((fun, sender, dispatch_uid))
            return fun

        if receiver is not None:
            return register(receiver)
        return register

    @staticmethod
    def _same(entry: tuple[Receiver, Any, Any], fun: Any, sender: Any, uid: Any) -> bool:
        receiver, wanted, entry_uid = entry
        if uid is not None:
            same = bool(entry_uid == uid)
        else:
            same = _same_receiver(receiver, fun) and entry_uid is None
        return same and bool(wanted == sender)

    def disconnect(
        self, receiver: Receiver | None = None, *, sender: Any = None, dispatch_uid: Any = None
    ) -> bool:
        """Disconnect a receiver (or the one with ``dispatch_uid``); True if one was."""
        with self._lock:
            before = len(self._receivers)
            self._receivers = [
                entry
                for entry in self._receivers
                if not self._same(entry, receiver, sender, dispatch_uid)
            ]
            return len(self._receivers) != before

    @property
    def receivers(self) -> list[Receiver]:
        return [r for r, _, _ in self._receivers]

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver whose ``sender`` filter matches; return their results."""
        if not self._receivers:
            return []
        responses: list[tuple[Receiver, Any]] = []
        for receiver, wanted, _ in list(self._receivers):
            if wanted is not None and not _sender_matches(wanted, sender):
                continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("Signal handler %r for %s raised: %r", receiver, self.name, exc)
                responses.append((receiver, exc))
        return responses

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


def _same_receiver(one: Any, other: Any) -> bool:
    """The same function, or the same method of the same object: ``obj.method`` makes a new
    bound-method object at each access, so ``disconnect(obj.method)`` must find it so."""
    if one is other:
        return True
    return (
        inspect.ismethod(one)
        and inspect.ismethod(other)
        and one.__self__ is other.__self__
        and one.__func__ is other.__func__
    )


def _sender_matches(wanted: Any, sender: Any) -> bool:
    if wanted is sender or wanted == sender:
        return True
    # ``sender=`` may name a task while the signal is sent with the task object, or the reverse.
    wanted_name = getattr(wanted, "name", wanted)
    sender_name = getattr(sender, "name", sender)
    return isinstance(wanted_name, str) and wanted_name == sender_name


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_retry = Signal("task_retry")
task_failure = Signal("task_failure")
task_internal_error = Signal("task_internal_error")
task_revoked = Signal("task_revoked")
task_rejected = Signal("task_rejected")
task_unknown = Signal("task_unknown")
celeryd_init = Signal("celeryd_init")
celeryd_after_setup = Signal("celeryd_after_setup")
import_modules = Signal("import_modules")
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down")
worker_shutdown = Signal("worker_shutdown")
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")
heartbeat_sent = Signal("heartbeat_sent")
