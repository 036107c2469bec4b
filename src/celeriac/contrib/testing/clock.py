"""``VirtualClock``: time a test moves forward, so ETA, retries, rate limits and beat need no sleep.

Every time-dependent part of Celeriac reads its app's clock (``Celery(clock=...)``): the
producer stamps ``eta``/``expires`` from it, the broker-side hold of an ETA message and the
worker's timer compare against it, rate-limit buckets refill by it, and beat decides what is
due by it. A test app made with a ``VirtualClock`` therefore runs a ``countdown=3600`` task as
soon as the test calls ``clock.advance(3600)``.

The clock keeps flowing at the real rate between jumps (virtual time = real time + offset), so
timeouts that guard a test (``result.get(timeout=10)``, a worker's fetch wait) still expire in
real seconds; a jump only ever moves time forward. ``sleep`` waits until the virtual time has
moved by the amount asked, whether by real time passing or by a jump, so a sleeping beat loop
or consumer wakes at once when the test jumps past its deadline.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock that runs at real speed and that a test can move forward at will."""

    def __init__(self, start: float | dt.datetime | None = None) -> None:
        """Start at real time, or at ``start`` (Unix seconds or an aware datetime)."""
        self._offset = 0.0 if start is None else _timestamp(start) - time.time()
        self._moved = threading.Condition()

    # -- the Clock protocol (celeriac._time.Clock) -------------------------------------------

    def time(self) -> float:
        """Unix seconds, virtual."""
        return time.time() + self._offset

    def monotonic(self) -> float:
        """Monotonic seconds, moved by the same jumps as ``time``."""
        return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        """Return once the virtual time has moved ``seconds`` (real time or a jump)."""
        deadline = self.monotonic() + max(seconds, 0.0)
        with self._moved:
            while (left := deadline - self.monotonic()) > 0:
                self._moved.wait(left)

    # -- moving it ---------------------------------------------------------------------------

    def advance(self, seconds: float) -> float:
        """Jump ``seconds`` forward; returns the new time. Refuses to go backwards."""
        if seconds < 0:
            raise ValueError(
                f"VirtualClock.advance({seconds!r}): time only moves forward; "
                "make a new app (and clock) to start again earlier"
            )
        with self._moved:
            self._offset += seconds
            self._moved.notify_all()
        return self.time()

    def move_to(self, when: float | dt.datetime) -> float:
        """Jump to ``when`` (Unix seconds or an aware datetime); it must not be in the past."""
        distance = _timestamp(when) - self.time()
        if distance < 0:
            raise ValueError(
                f"VirtualClock.move_to({when!r}) is {-distance:.3f} s in the past; "
                "time only moves forward"
            )
        return self.advance(distance)

    def now(self) -> dt.datetime:
        """The virtual time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time(), tz=dt.UTC)

    @property
    def offset(self) -> float:
        """How far ahead of real time this clock is, in seconds."""
        return self._offset

    def __repr__(self) -> str:
        return f"<VirtualClock {self.now().isoformat()} ({self._offset:+.1f} s)>"


def _timestamp(when: float | dt.datetime) -> float:
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ValueError(f"{when!r} is a naive datetime; give an aware one (tzinfo=UTC)")
        return when.timestamp()
    return float(when)
