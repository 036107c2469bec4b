"""Storing a task's state through a result-store outage: Celery's ``result_backend_always_retry``.

With ``result_backend_always_retry`` (on by default in Celeriac; off in Celery), a store that
fails with an error the backend calls safe to retry (``ResultBackend.exception_safe_to_retry``:
the store could not be reached) is tried again after an exponential backoff with full jitter -
a random pause between 0 and ``min(result_backend_max_sleep_between_retries_ms,
result_backend_base_sleep_between_retries_ms * 2 ** retries)`` milliseconds - up to
``result_backend_max_retries`` times (unlimited by default), then the last error is raised.
An error not safe to retry (a result the serializer cannot encode, a closed backend) is raised
at once. The worker thus keeps a task's outcome until the store answers: a success is never
recorded as a failure because the store was away, and an ``acks_late`` message is
acknowledged only once its result is stored.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from celeriac.transports import mask_password

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.backends.base import ResultBackend

__all__ = ["retrying"]

logger = logging.getLogger("celeriac.worker")

T = TypeVar("T")

_LOG_EVERY = 10  # after the first failure, log every this many retries


def backoff(retries: int, base_ms: float, max_ms: float, rand: Callable[[], float]) -> float:
    """Seconds to pause before retry number ``retries`` (1, 2, ...): Celery's full jitter."""
    ceiling = min(max_ms, base_ms * 2.0 ** min(retries, 64))
    return max(0.0, ceiling * rand()) / 1000.0


def retrying(
    app: AppLike,
    backend: ResultBackend,
    what: str,
    operation: Callable[[], T],
    *,
    rand: Callable[[], float] = random.random,
) -> T:
    """``operation()``, retried per the app's result-backend retry settings (module doc)."""
    conf = app.conf
    if not conf.result_backend_always_retry:
        return operation()
    limit = float(conf.result_backend_max_retries)
    base_ms = float(conf.result_backend_base_sleep_between_retries_ms)
    max_ms = float(conf.result_backend_max_sleep_between_retries_ms)
    retries = 0
    while True:
        try:
            return operation()
        except Exception as exc:
            if not backend.exception_safe_to_retry(exc) or retries >= limit:
                raise
            retries += 1
            pause = backoff(retries, base_ms, max_ms, rand)
            if retries == 1 or retries % _LOG_EVERY == 0:
                url = mask_password(app.result_backend_url or "(none)")
                tries = "" if math.isinf(limit) else f" of {int(limit)}"
                logger.warning(
                    "Could not %s in the result backend %s (%s); retry %d%s in %.2fs "
                    "(result_backend_always_retry).",
                    what,
                    url,
                    exc,
                    retries,
                    tries,
                    pause,
                )
            app.clock.sleep(pause)
