"""Task time limits, for every pool: who enforces what, and where to read it.

A job carries its limits (``Job.soft_time_limit``, ``Job.time_limit``), resolved by the
consumer: the call's (``apply_async(time_limit=...)``), else the task's attribute (which
the ``time_limit`` remote-control command changes), else the worker's (``--time-limit``,
``--soft-time-limit``, else ``task_time_limit``, ``task_soft_time_limit``). Each pool
enforces them its own way; the code of each way is one module here.

    pool     soft limit: SoftTimeLimitExceeded     hard limit: the job ends FAILURE    module
    -------  ------------------------------------  ----------------------------------  ----------
    prefork  SIGALRM in the child (setitimer)      the parent SIGKILLs the child,      prefork
                                                   a new one takes the slot
    threads  a watchdog thread raises it in the    the same watchdog raises            threads
             task's thread (async exception)       TimeLimitExceeded there
    solo     as threads (the consumer's thread)    as threads                          threads
    asyncio  async def: the coroutine cancelled    the coroutine cancelled             coroutines
             sync tasks: as threads                sync tasks: as threads              threads
    gevent   a gevent.Timeout in the greenlet      a gevent.Timeout unwinds it         greenlets

Where a limit arrives: in prefork at once (a signal; a hard limit kills even a C call);
on threads and greenlets at the task's next Python bytecode or cooperative switch, so a
task blocked in one long C call sees it only when the call returns; in asyncio at the
coroutine's next ``await``.
"""

from __future__ import annotations

from celeriac.worker.timelimits.threads import Watchdog, raise_in_thread

__all__ = ["Watchdog", "raise_in_thread"]
