"""How a producer retries a publish the broker did not take: Celery's ``retry_policy``.

``task_publish_retry`` (or the call's ``retry=``) turns retrying on; the policy
(``task_publish_retry_policy`` merged with the call's ``retry_policy=``) says how:
``max_retries`` (3; None: until the broker takes it), then pauses of ``interval_start``
(0 s), growing by ``interval_step`` (0.2 s) up to ``interval_max`` (1 s). So by default a
publish is tried 4 times, pausing 0, 0.2 and 0.4 s, and raises about 0.6 s (plus the
connect attempts' own time) after the first try; docs/connection-retry.md has the numbers.

This is the only retry loop around a publish: the transports do not retry a publish
themselves beyond one immediate reconnect of a connection that broke (Redis, RabbitMQ), so
the two never multiply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

from celeriac.exceptions import ImproperlyConfigured, TransportError

__all__ = ["PublishRetry"]

logger = logging.getLogger("celeriac.producer")


def _seconds(policy: Mapping[str, Any], name: str, default: float) -> float:
    value = policy.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(
            f"retry_policy[{name!r}] must be a number of seconds >= 0, not {value!r}."
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class PublishRetry:
    """A publish retry policy; ``max_retries`` None retries for ever."""

    max_retries: int | None = 3
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 1.0

    @classmethod
    def from_policy(cls, retry: bool, policy: Mapping[str, Any]) -> PublishRetry:
        """The policy in force: ``retry`` False means a single attempt."""
        limit = policy.get("max_retries", 3)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ImproperlyConfigured(
                f"retry_policy['max_retries'] must be a whole number or None, not {limit!r}."
            )
        return cls(
            max_retries=(max(limit, 0) if limit is not None else None) if retry else 0,
            interval_start=_seconds(policy, "interval_start", 0.0),
            interval_step=_seconds(policy, "interval_step", 0.2),
            interval_max=_seconds(policy, "interval_max", 1.0),
        )

    def pauses(self) -> Iterator[float]:
        """The pause before each retry, in order (endless when ``max_retries`` is None)."""
        retries = count() if self.max_retries is None else range(self.max_retries)
        for n in retries:
            yield min(self.interval_start + n * self.interval_step, self.interval_max)

    def run(self, attempt: Callable[[], None], sleep: Callable[[float], None]) -> None:
        """Call ``attempt`` until it does not raise ``TransportError``, pausing per the policy.

        The last ``TransportError`` is raised once the retries are spent.
        """
        pauses = self.pauses()
        while True:
            try:
                attempt()
                return
            except TransportError as exc:
                pause = next(pauses, None)
                if pause is None:
                    raise
                logger.warning("Publishing failed (%s); retrying in %.1fs", exc, pause)
                sleep(pause)
