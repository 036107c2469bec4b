"""Time limits in the gevent pool: ``gevent.Timeout`` objects armed in the job's greenlet.

They arrive at the task's next cooperative switch; code that never yields (a CPU-bound loop,
a long C call) delays them, and every other greenlet with it. Soft: ``SoftTimeLimitExceeded``
is raised in the task, which may catch it. Hard: the ``Timeout`` itself, a ``BaseException``
that ``except Exception`` lets through, unwinds the greenlet (its ``finally`` blocks run); the
pool recognises it as the hard limit (``Armed.hard``) and ends the job FAILURE
``TimeLimitExceeded``, as a killed prefork child's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.worker.job import Job

__all__ = ["Armed", "arm"]


@dataclass(frozen=True, slots=True)
class Armed:
    """The timeouts armed for one job (None where the job has no such limit)."""

    soft: Any
    hard: Any

    def close(self) -> None:
        """The job ended: nothing more is thrown into its greenlet."""
        for timeout in (self.soft, self.hard):
            if timeout is not None:
                timeout.close()


def arm(gevent: Any, job: Job) -> Armed:
    """Start ``job``'s timeouts in the calling greenlet (``gevent`` is the patched module)."""
    soft = hard = None
    if job.soft_time_limit:
        soft = gevent.Timeout.start_new(job.soft_time_limit, SoftTimeLimitExceeded())
    if job.time_limit:
        hard = gevent.Timeout.start_new(job.time_limit)
    return Armed(soft, hard)
