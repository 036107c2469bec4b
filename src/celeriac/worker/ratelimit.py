"""Rate limits: Celery's ``rate_limit='10/s'`` as a token bucket per task type per worker.

A task over its limit waits in the worker's timer, holding no pool slot, so other task types
keep running. The bucket holds one token (Celery's choice), which spaces executions evenly.
"""

from __future__ import annotations

from celeriac._time import Clock
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["TokenBucket", "parse_rate"]

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float | int | None) -> float:
    """Tasks per second for ``'10/s'``, ``'100/m'``, ``'1000/h'`` or a number (0: no limit)."""
    if rate is None or rate == "":
        return 0.0
    if isinstance(rate, (int, float)):
        return float(rate)
    count, _, unit = str(rate).partition("/")
    try:
        value = float(count)
    except ValueError:
        raise ImproperlyConfigured(
            f"Invalid rate limit {rate!r}: use '<number>/s', '/m' or '/h', e.g. '10/m'"
        ) from None
    per = _PER.get(unit.strip()[:1] or "s")
    if per is None:
        raise ImproperlyConfigured(f"Invalid rate limit unit in {rate!r}: use s, m or h")
    return value / per


class TokenBucket:
    """``fill_rate`` tokens per second, at most ``capacity`` held."""

    def __init__(self, fill_rate: float, clock: Clock, capacity: float = 1.0) -> None:
        self.fill_rate = fill_rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.fill_rate)
        self._last = now

    def take(self) -> bool:
        """Take a token if one is there."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until a token is there."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.fill_rate)
