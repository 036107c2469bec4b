"""A job: one task message handed to a pool, and what comes back from running it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac._pickling import fast_pickle
from celeriac.exceptions import Retry
from celeriac.execution import context_from_message, execute
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import saferepr

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["Job", "JobResult", "run_job"]


@fast_pickle
@dataclass(slots=True)
class Job:
    """What a pool runs: the decoded message, where it came from, and who runs it."""

    message: TaskMessage
    info: dict[str, Any]  # delivery info: exchange, routing_key, priority, redelivered
    hostname: str
    key: int = 0  # the consumer's handle for the delivery
    time_limit: float | None = None
    soft_time_limit: float | None = None
    started_at: float | None = field(default=None)
    worker_pid: int | None = field(default=None)
    # Fill JobResult's reprs (task events are on); off, a large result costs no repr().
    describe: bool = False

    # Celery's Request attributes, for signal handlers (``task_received``) and inspection.
    @property
    def id(self) -> str:
        return self.message.id

    task_id = id

    @property
    def name(self) -> str:
        return self.message.task

    task_name = name

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.message.args)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.message.kwargs)

    @property
    def eta(self) -> str | None:
        return self.message.eta.isoformat() if self.message.eta else None

    @property
    def expires(self) -> str | None:
        return self.message.expires.isoformat() if self.message.expires else None

    @property
    def delivery_info(self) -> dict[str, Any]:
        return self.info

    @property
    def retries(self) -> int:
        return self.message.retries

    @property
    def root_id(self) -> str | None:
        return self.message.root_id

    @property
    def parent_id(self) -> str | None:
        return self.message.parent_id

    @property
    def group(self) -> str | None:
        return self.message.group

    @property
    def replaced_task_nesting(self) -> int:
        return self.message.replaced_task_nesting

    @property
    def stamped_headers(self) -> list[str] | None:
        return self.message.stamped_headers

    @property
    def stamps(self) -> dict[str, Any]:
        return self.message.stamps

    @property
    def callbacks(self) -> list[Any] | None:
        return self.message.embed.callbacks

    @property
    def errbacks(self) -> list[Any] | None:
        return self.message.embed.errbacks

    def info_dict(self, *, safe: bool = False, acknowledged: bool = False) -> dict[str, Any]:
        """What ``inspect active``/``reserved`` show for this request (Celery's ``info()``);
        ``safe`` gives the arguments' reprs instead of the arguments."""
        message = self.message
        return {
            "id": self.id,
            "name": self.name,
            "type": self.name,
            "args": message.argsrepr or saferepr(message.args) if safe else list(self.args),
            "kwargs": message.kwargsrepr or saferepr(message.kwargs) if safe else self.kwargs,
            "hostname": self.hostname,
            "time_start": self.started_at,
            "acknowledged": acknowledged,
            "delivery_info": self.info,
            "worker_pid": self.worker_pid,
        }


@fast_pickle
@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job ended, as far as acknowledgement cares."""

    state: str
    runtime: float = 0.0
    requeue: bool = False
    worker_lost: bool = False
    timed_out: bool = False
    exitcode: int | None = None
    detail: str = ""
    # For events (filled when the job asked to be described): the return value's repr on
    # SUCCESS, the exception's repr and the traceback on FAILURE and RETRY.
    retval_repr: str | None = None
    exception_repr: str | None = None
    traceback: str | None = None
    terminated: int | None = None  # the signal of a revoke(terminate=True) that stopped it


def run_job(app: Celery, job: Job) -> JobResult:
    """Run ``job`` in this process: the whole execution of one task, results stored."""
    task = app.tasks[job.message.task]
    request = context_from_message(job.message, hostname=job.hostname, delivery_info=job.info)
    outcome = execute(task, request)
    detail = repr(outcome.exc) if outcome.exc is not None else ""
    retval_repr = exception_repr = traceback = None
    if job.describe:
        if outcome.state == states.SUCCESS:
            retval_repr = saferepr(outcome.retval, int(task.resultrepr_maxsize or 1024))
        reason = outcome.exc.exc if isinstance(outcome.exc, Retry) else outcome.exc
        if reason is not None:
            exception_repr = saferepr(reason)
        traceback = outcome.traceback
    return JobResult(
        outcome.state,
        outcome.runtime,
        requeue=outcome.requeue,
        detail=detail,
        exitcode=None if outcome.state != states.FAILURE else 0,
        retval_repr=retval_repr,
        exception_repr=exception_repr,
        traceback=traceback,
    )


def process_id() -> int:
    return os.getpid()
