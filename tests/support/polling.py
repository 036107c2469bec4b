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


def poll(
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.02,
    until: Callable[[T], object] = bool,
) -> tuple[bool, T]:
    """Call ``check`` until ``until(value)`` holds (the value is truthy, by default) or
    ``timeout`` seconds pass; whether it held, and the last value. For waits whose end is
    not a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value):
            return True, value
        if time.monotonic() > deadline:
            return False, value
        time.sleep(interval)


def eventually(
    check: Callable[[], T],
    what: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``check`` until its value is truthy (or ``until(value)`` holds), and return the
    value; after ``timeout`` s fail with ``AssertionError`` naming ``what`` (or the check)
    and the last value."""
    held, value = poll(check, timeout, interval, until)
    if not held:
        label = what or getattr(check, "__qualname__", repr(check))
        raise AssertionError(f"{label}: still {value!r} after {timeout} s")
    return value
