"""What every transport's dead-letter store shares: its bounds, its logging, its JSON record.

Bounds: ``DeadLetterLimits`` (Celeriac's settings ``dead_letter_max_entries``, default
10,000, and ``dead_letter_max_age``, default 7 days; ``None`` lifts either). The stores drop
their oldest letters when a new one would exceed the cap and those older than the age limit,
and say so with ``log_dropped`` (WARNING).

Logging: the worker logs the letters it sets aside itself (a message that does not decode, an
unknown task); a transport logs those that never reach the worker (a queue entry that is not
an envelope, an envelope whose body is bad base64, a message delivered ``max_deliveries``
times) through a ``RejectLog``: one WARNING per letter, at most ``burst`` a minute, then one
line saying how many more were set aside without a line of their own.

Record: ``record(letter)`` is the JSON form the CLI (``celeriac dlq``) and the dashboard show;
a body that is not UTF-8 text is base64 and says so (``body_encoding``).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac._time import Clock, system_clock
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.base import DeadLetter

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ENTRIES",
    "DeadLetterLimits",
    "RejectLog",
    "log_dropped",
    "record",
]

logger = logging.getLogger("celeriac.dead_letters")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class DeadLetterLimits:
    """How many dead letters a store keeps, and for how long (None: no bound)."""

    max_entries: int | None = DEFAULT_MAX_ENTRIES
    max_age: float | None = DEFAULT_MAX_AGE

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> DeadLetterLimits:
        """The limits in a transport's options (the app passes the two settings there)."""
        opts = options or {}
        entries = opts.get("dead_letter_max_entries", DEFAULT_MAX_ENTRIES)
        age = opts.get("dead_letter_max_age", DEFAULT_MAX_AGE)
        if entries is not None and (
            isinstance(entries, bool) or not isinstance(entries, int) or entries < 1
        ):
            raise ImproperlyConfigured(
                f"dead_letter_max_entries must be a positive integer or None (no cap), not "
                f"{entries!r}."
            )
        if isinstance(age, dt.timedelta):
            age = age.total_seconds()
        if age is not None and (
            isinstance(age, bool) or not isinstance(age, int | float) or age <= 0
        ):
            raise ImproperlyConfigured(
                "dead_letter_max_age must be a positive number of seconds, a timedelta, or "
                f"None (kept for ever), not {age!r}."
            )
        return cls(entries, None if age is None else float(age))

    def oldest_kept(self, now: float) -> float | None:
        """Letters set aside before this time are past the age limit (None: no limit)."""
        return None if self.max_age is None else now - self.max_age


def log_dropped(store: str, count: int, limits: DeadLetterLimits) -> None:
    """Say that ``count`` of the oldest letters left ``store`` to respect ``limits``."""
    if count > 0:
        logger.warning(
            "Dropped the %d oldest dead letter(s) from the %s to keep within "
            "dead_letter_max_entries=%s and dead_letter_max_age=%s s.",
            count,
            store,
            limits.max_entries,
            limits.max_age,
        )


class RejectLog:
    """One WARNING per dead letter a transport sets aside on its own, rate-limited."""

    def __init__(self, *, burst: int = 10, window: float = 60.0, clock: Clock = system_clock):
        self._burst = burst
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._window_end = float("-inf")
        self._logged = 0
        self._unlogged = 0

    def note(self, queue: str, reason: str) -> None:
        """Log that a message of ``queue`` went to the dead letters, unless over the burst."""
        with self._lock:
            now = self._clock.monotonic()
            if now >= self._window_end:
                if self._unlogged:
                    logger.warning(
                        "%d more message(s) were set aside in the dead-letter store without a "
                        "line of their own (see celeriac dlq list).",
                        self._unlogged,
                    )
                self._window_end, self._logged, self._unlogged = now + self._window, 0, 0
            if self._logged >= self._burst:
                self._unlogged += 1
                return
            self._logged += 1
        logger.warning(
            "A message in queue %r was set aside in the dead-letter store: %s", queue, reason
        )


def record(letter: DeadLetter) -> dict[str, Any]:
    """The JSON form of a dead letter (the CLI's and the dashboard's; always valid JSON)."""
    message = letter.message
    try:
        body, encoding = message.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(message.body).decode("ascii"), "base64"
    headers = message.headers
    return {
        "id": letter.id,
        "queue": letter.queue,
        "reason": letter.reason,
        "dead_lettered_at": letter.dead_lettered_at,
        "is_message": letter.is_message,
        "task": _text(headers.get("task")),
        "task_id": _text(headers.get("id")),
        "message": {
            "headers": _jsonable(headers),
            "properties": _jsonable(message.properties),
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "body": body,
            "body_encoding": encoding,
        },
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold (bytes, datetimes, ...) as text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
