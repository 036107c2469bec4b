"""Time limits in the prefork pool: a soft limit is ``SIGALRM`` in the child, a hard one is
``SIGKILL`` from the parent.

The child arms ``ITIMER_REAL`` for the soft limit before it runs a job and disarms it after;
the alarm's handler raises ``SoftTimeLimitExceeded`` in the task, which may catch it. The
parent notes a deadline when the child says the job started, and its collector's
housekeeping kills every child past its deadline; the pool then sees the pipe close, ends the
job FAILURE ``TimeLimitExceeded`` and forks a new child for the slot.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.worker.job import Job

__all__ = [
    "Timed",
    "arm_soft_limit",
    "disarm_soft_limit",
    "install_soft_limit_handler",
    "kill_past_deadline",
    "start_deadline",
]

logger = logging.getLogger("celeriac.worker")


class Timed(Protocol):
    """A child as the parent sees it: the job it runs and that job's hard deadline."""

    process: Any
    job: Job | None
    deadline: float | None  # monotonic time of the job's hard limit
    timed_out: bool


# -- in the child ----------------------------------------------------------------------------


def _soft_time_limit(signum: int, frame: object) -> None:
    raise SoftTimeLimitExceeded()


def install_soft_limit_handler() -> None:
    """In a new child: ``SIGALRM`` raises ``SoftTimeLimitExceeded``."""
    signal.signal(signal.SIGALRM, _soft_time_limit)


def arm_soft_limit(job: Job) -> None:
    """Before running ``job`` in the child: the alarm for its soft limit, if it has one."""
    if job.soft_time_limit:
        signal.setitimer(signal.ITIMER_REAL, job.soft_time_limit)


def disarm_soft_limit() -> None:
    """After the job, however it ended: no alarm left for the next one."""
    signal.setitimer(signal.ITIMER_REAL, 0)


# -- in the parent ---------------------------------------------------------------------------


def start_deadline(child: Timed, job: Job) -> None:
    """The child said it started ``job``: its hard limit runs from now."""
    if job.time_limit:
        child.deadline = time.monotonic() + job.time_limit


def kill_past_deadline(children: Iterable[Timed], lock: threading.Lock) -> None:
    """Kill children whose job ran past its hard time limit (the pool then replaces them)."""
    now = time.monotonic()
    with lock:
        late = [c for c in children if c.deadline is not None and c.deadline <= now]
    for child in late:
        child.deadline = None
        child.timed_out = True
        job = child.job
        if job is not None:
            logger.error(
                "Hard time limit (%ss) exceeded for %s[%s]: killing pid %s",
                job.time_limit,
                job.message.task,
                job.message.id,
                child.process.pid,
            )
        if child.process.pid is not None:
            os.kill(child.process.pid, signal.SIGKILL)
