"""Forking safely while other threads use SQLite.

A process forked while another thread is inside a SQLite call inherits SQLite's internal
mutexes in the locked state, and the child deadlocks at its first ``sqlite3.connect``. So
every SQLite call holds this guard in shared mode, and ``forking()`` takes it exclusively:
the prefork pool forks a replacement child only when no thread is inside SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["forking", "sqlite_call"]

_cond = threading.Condition(threading.Lock())
_inside = 0  # threads inside a SQLite call now
_forking = False
_depth = threading.local()  # re-entrant per thread: a nested call never waits on a fork


@contextmanager
def sqlite_call() -> Iterator[None]:
    """Hold while calling into SQLite (many threads at once; never during a fork)."""
    global _inside
    depth = getattr(_depth, "n", 0)
    if depth == 0:
        with _cond:
            while _forking:
                _cond.wait()
            _inside += 1
    _depth.n = depth + 1
    try:
        yield
    finally:
        _depth.n = depth
        if depth == 0:
            with _cond:
                _inside -= 1
                if _inside == 0:
                    _cond.notify_all()


@contextmanager
def forking() -> Iterator[None]:
    """Hold while forking: waits until no thread is inside SQLite, and keeps them out."""
    global _forking
    with _cond:
        while _forking:
            _cond.wait()
        _forking = True
        while _inside:
            _cond.wait()
    try:
        yield
    finally:
        with _cond:
            _forking = False
            _cond.notify_all()


def _reset_in_child() -> None:
    global _cond, _inside, _forking, _depth
    _cond = threading.Condition(threading.Lock())
    _inside = 0
    _forking = False
    _depth = threading.local()


os.register_at_fork(after_in_child=_reset_in_child)
