"""Waiting for something another thread or process does: ``eventually`` and ``poll``.

Tests never assert a timing; they wait, with a generous deadline, until a condition holds.
``eventually`` fails with the last value the check returned, so a timeout says what was seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


def poll(check: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """Call ``check`` until it returns something truthy or ``timeout`` seconds pass; return
    its last value either way (falsy on timeout). For waits whose end is not a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def eventually(
    check: Callable[[], T],
    what: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
) -> T:
    """Call ``check`` until it returns something truthy, and return that; fail with
    ``AssertionError`` naming ``what`` (or the check) and its last value after ``timeout`` s."""
    value = poll(check, timeout, interval)
    if not value:
        label = what or getattr(check, "__qualname__", repr(check))
        raise AssertionError(f"{label}: still {value!r} after {timeout} s")
    return value
