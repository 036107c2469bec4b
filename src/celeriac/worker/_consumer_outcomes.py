"""What the consumer records for a task it settles itself, and its reads of revocations.

A task that does not run to its end under execution still gets an outcome: revoked or
expired before it started, unknown to this worker, terminated by ``revoke(terminate=True)``,
killed by its hard time limit, or lost with the pool process that ran it. ``Outcomes`` stores
its state in the result store (sent to the task's sender with rpc://), passes the failure on
to its chord, the rest of its chain and its errbacks, sends ``task_revoked`` and the worker
events. Before anything runs it also tells which tasks were revoked through the result store.
Acknowledging the message stays with the consumer.

The result store's failures are logged, never fatal to the consumer's loop: the next call
tries the backend again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celeriac import signals, states
from celeriac.exceptions import NotRegistered, TaskRevokedError, TimeLimitExceeded, WorkerLostError
from celeriac.execution import ExceptionInfo, context_from_message
from celeriac.followups import after_failure
from celeriac.protocol.message import TaskMessage
from celeriac.request import Context
from celeriac.transports import mask_password
from celeriac.worker.job import Job
from celeriac.worker.revoked import RevokedSet

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.app.results import ResultStore
    from celeriac.worker.events import WorkerEvents

__all__ = ["Outcomes", "job_exit"]

logger = logging.getLogger("celeriac.worker")

T = TypeVar("T")

_FINISHED = frozenset({states.SUCCESS, states.FAILURE})


class Outcomes:
    """Records the outcome of the tasks the consumer settles without running them through."""

    #: After the result store failed a check for revoked tasks, skip the checks this long
    #: (seconds), so a store that is down (and retried inside the backend) does not stall
    #: every fetch; the revoked ids broadcast to the workers are still honoured meanwhile.
    revoked_check_pause = 30.0
    #: Where the result backend keeps a revocation log, how often (seconds) the worker reads
    #: what was logged since its last read. Live workers hear revocations at once through
    #: the broadcast; the log covers those revoked while this worker was down or deaf.
    revoked_log_interval = 1.0

    def __init__(
        self,
        app: Celery,
        hostname: str,
        revoked: RevokedSet,
        *,
        events: WorkerEvents | None = None,
    ) -> None:
        self.app = app
        self.hostname = hostname
        self.revoked = revoked
        self.events = events
        self._skip_revoked_checks_until = 0.0
        self._revoked_cursor: str | None = None  # read up to here in the revocation log
        self._next_revoked_read = 0.0

    # -- revocations ----------------------------------------------------------------------------

    def revoked_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` were revoked through the result store (stored REVOKED, or in its
        revocation log, read into ``self.revoked`` at most every ``revoked_log_interval``)."""
        now = self.app.clock.monotonic()
        if not ids or now < self._skip_revoked_checks_until:
            return set()

        def revoked(results: ResultStore) -> set[str]:
            if not results.readable:  # no backend, or rpc:// (only the sender reads results)
                return set()
            backend = results.backend
            if backend.capabilities.revocation_log:
                if now >= self._next_revoked_read:
                    logged, self._revoked_cursor = backend.revoked_since(self._revoked_cursor)
                    self.revoked.update(logged)
                    self._next_revoked_read = now + self.revoked_log_interval
                return set()  # the consumer checks self.revoked
            found = backend.fetch_many(ids)
            return {
                tid
                for tid, payload in found.items()
                if results.decode(payload).get("status") == states.REVOKED
            }

        found = self._results("check for revoked tasks", revoked)
        if found is None:
            self._skip_revoked_checks_until = now + self.revoked_check_pause
            return set()
        return found

    # -- outcomes -------------------------------------------------------------------------------

    def discarded(
        self, message: TaskMessage, task: Any, *, expired: bool, store: bool = False
    ) -> None:
        """The task was revoked, or its message expired: it is not run. REVOKED is stored
        here for an expired one, and with ``store`` (revoked by its stamps: no client
        stored it); a revoke by id is stored by the client that sent it."""
        reason = "expired" if expired else "revoked"
        logger.info("Discarding %s task: %s[%s]", reason, message.task, message.id)
        request = Context(
            id=message.id, task=message.task, hostname=self.hostname, reply_to=message.reply_to
        )
        if expired or store:
            self._store(message, states.REVOKED, TaskRevokedError(reason), request=request)
        self._propagate(message, TaskRevokedError(reason))
        signals.task_revoked.send(
            sender=task, request=request, terminated=False, signum=None, expired=expired
        )
        if self.events is not None:
            self.events.task_revoked(
                message.id, message.task, terminated=False, signum=None, expired=expired
            )

    def unknown(self, message: TaskMessage, exc: NotRegistered) -> None:
        """No task of the message's name is registered here: stored as FAILURE."""
        self._store(message, states.FAILURE, exc)
        if self.events is not None:
            self.events.task_failed(message.id, message.task, exc)

    def terminated(self, job: Job, task: Any, signum: int) -> None:
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
            self.events.task_revoked(
                job.id, job.name, terminated=True, signum=signum, expired=False
            )

    def worker_lost(self, job: Job) -> None:
        """The pool process running the job exited: FAILURE ``WorkerLostError``."""
        exc = WorkerLostError(f"Worker exited prematurely: exitcode {job_exit(job)}.")
        self._failed(job, exc)

    def timed_out(self, job: Job) -> None:
        """The job ran past its hard time limit and was killed: FAILURE ``TimeLimitExceeded``."""
        exc = TimeLimitExceeded(job.time_limit)
        self._failed(job, exc)
        logger.error("Task %s[%s] raised unexpected: %r", job.message.task, job.message.id, exc)

    def _failed(self, job: Job, exc: BaseException) -> None:
        self._store(job.message, states.FAILURE, exc)
        self._propagate(job.message, exc)
        if self.events is not None:
            self.events.task_failed(job.id, job.name, exc)

    # -- the result store and followups ---------------------------------------------------------

    def _results(self, what: str, action: Callable[[ResultStore], T]) -> T | None:
        """``action(app.results)``; when the result backend cannot be made or fails, an error
        naming the backend is logged and None returned (the next call tries again)."""
        try:
            return action(self.app.results)
        except Exception as exc:
            url = mask_password(self.app.result_backend_url or "(none)")
            logger.error(
                "Could not %s in the result backend %s (%s: %s). The worker goes on and "
                "tries the backend again later.",
                what,
                url,
                type(exc).__name__,
                exc,
            )
            return None

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


def job_exit(job: Job) -> str:
    return "unknown" if job.worker_pid is None else f"pid {job.worker_pid}"
