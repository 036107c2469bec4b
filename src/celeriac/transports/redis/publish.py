"""One publish to Redis that a retry cannot apply twice.

A publish is one MULTI (the LPUSH/ZADD/PUBLISH of a batch). When the connection drops after
Redis ran the EXEC but before its reply arrived, retrying the MULTI would push every message
a second time with the same delivery tag; two entries sharing a tag share their ``unacked``
and claim records, so the first ack forgets both. So every publish MULTI also sets a marker,
``_celeriac.sent.<publisher>``, to the publish's sequence number: one key per publishing
thread and process, kept ``MARKER_TTL`` seconds after its last publish. A retry first reads
the marker: when it already holds this publish's number, the MULTI ran and is not sent
again. (The one case left: a reply lost to a socket *timeout* while Redis had not yet read
the EXEC, which then runs after the retry's read; the messages are then pushed twice.)
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["MARKER_TTL", "IdempotentPublish"]

#: Seconds a marker outlives its thread's last publish: longer than any retrying of one.
MARKER_TTL = 3600


class _Publisher(threading.local):
    """This thread's marker key suffix and sequence (new in a forked child)."""

    pid = -1
    name = ""
    numbers: itertools.count[int] = itertools.count(1)


class IdempotentPublish:
    """Builds marked publish commands and runs them at most once per publish."""

    def __init__(self, marker_prefix: str) -> None:
        self._marker_prefix = marker_prefix
        self._local = _Publisher()

    def _next(self) -> tuple[str, str]:
        local = self._local
        if local.pid != os.getpid():
            local.pid, local.name = os.getpid(), uuid.uuid4().hex
            local.numbers = itertools.count(1)
        return self._marker_prefix + local.name, str(next(local.numbers))

    def operation(
        self,
        commands: list[tuple[Any, ...]],
        execute: Callable[[list[tuple[Any, ...]]], list[Any]],
    ) -> Callable[[], list[Any] | None]:
        """What ``RedisConnector.run`` should retry for ``commands`` (one MULTI with the
        marker last): the MULTI's replies (without the marker's), or None when a previous
        attempt is found to have run (its replies were lost)."""
        marker, number = self._next()
        marked = [*commands, ("SET", marker, number, "EX", MARKER_TTL)]
        attempts = itertools.count()

        def attempt() -> list[Any] | None:
            if next(attempts) > 0:
                [seen] = execute([("GET", marker)])
                if seen is not None and bytes(seen).decode() == number:
                    return None
            return execute(marked)[:-1]

        return attempt
