"""Time limits for tasks that run on threads (``threads`` and ``solo`` pools).

A watchdog thread raises ``SoftTimeLimitExceeded`` inside the task's thread when the soft limit
passes, and ``TimeLimitExceeded`` when the hard limit passes, using CPython's asynchronous
exception (``PyThreadState_SetAsyncExc``). The exception arrives at the next Python bytecode
the thread runs: a task blocked inside one long C call (a socket read without timeout) sees it
only when that call returns. The prefork pool does better (SIGALRM in the child for the soft
limit, SIGKILL of the child for the hard one); see ``celeriac.worker.timelimits``.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import threading
import time

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

__all__ = ["Watchdog", "raise_in_thread"]


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Make ``exc_type`` raise in thread ``thread_id``; False when the thread is gone."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
    if done > 1:  # more than one thread affected: undo, as the C API asks
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return bool(done == 1)


class Watchdog:
    """Raises time-limit exceptions in threads whose task ran past its limits."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, type[BaseException]]] = []
        self._live: dict[int, int] = {}  # token -> thread id
        self._tokens = itertools.count(1)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="TimeLimitWatchdog", daemon=True)
        self._started = False

    def watch(self, soft: float | None, hard: float | None) -> int:
        """Start watching the calling thread; returns a token for ``clear``."""
        token = next(self._tokens)
        now = time.monotonic()
        limits: list[tuple[float, int, int, type[BaseException]]] = []
        if soft:
            limits.append((now + soft, token, 0, SoftTimeLimitExceeded))
        if hard:
            limits.append((now + hard, token, 1, TimeLimitExceeded))
        with self._cond:
            if not self._started:
                self._thread.start()
                self._started = True
            self._live[token] = threading.get_ident()
            for item in limits:
                heapq.heappush(self._heap, item)
            self._cond.notify()
        return token

    def clear(self, token: int) -> None:
        """The watched task ended: raise nothing more in its thread (pending ones dropped)."""
        with self._cond:
            thread_id = self._live.pop(token, None)
            if thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, token, _, exc_type = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                thread_id = self._live.get(token)
                if thread_id is not None:
                    raise_in_thread(thread_id, exc_type)
