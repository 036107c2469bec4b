"""Mingle: what a starting worker learns from the workers already running (Celery's Mingle).

Before it consumes anything, a worker broadcasts Celery's ``hello`` control command with its
name and its revoked ids, and collects replies for a second (as Celery does)::

    request   {"method": "hello", "arguments": {"from_node": "w2@vm", "revoked": [...]}, ...}
    replies   {"w1@vm": {"revoked": ["<task id>", ...], "clock": 42}}

It adds the ids of every reply to its revoked set and moves its Lamport clock past the
clocks it got. The running workers answer with the ``hello`` command
(``celeriac.worker.remote.commands``) and merge the newcomer's ids in turn, so Celery and
Celeriac workers mingle with each other. Celery 5.7 sends the ids as a list, oldest first; earlier
versions sent the set's ``{id: stamp}`` mapping, which is read as its keys (stamps taken on
another host mean nothing here, so every merged id lives ``REVOKE_EXPIRES`` from now).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import CeleryError
from celeriac.worker.options import MINGLE_TIMEOUT

if TYPE_CHECKING:
    from celeriac.worker._worker_protocol import WorkerLike

__all__ = ["revoked_ids", "sync_with_neighbors"]

logger = logging.getLogger("celeriac.worker")


def revoked_ids(value: Any) -> list[str]:
    """The task ids in a ``hello`` payload: a list of ids, or a ``{id: stamp}`` mapping."""
    if isinstance(value, Mapping):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if isinstance(item, str)]


def sync_with_neighbors(worker: WorkerLike, timeout: float = MINGLE_TIMEOUT) -> int:
    """Sync revoked ids and the logical clock with the running workers; how many replied."""
    assert worker.consumer is not None
    app = worker.app
    logger.info("mingle: searching for neighbors")
    inspect = app.control.inspect(timeout=timeout)
    try:
        replies = inspect.hello(worker.hostname, list(worker.consumer.revoked)) or {}
    except CeleryError as exc:  # the broker hiccuped: start anyway, as if alone
        logger.warning("mingle: cannot reach the other workers: %s", exc)
        return 0
    replies.pop(worker.hostname, None)  # our own pidbox answers too (with None)
    neighbours = {node: reply for node, reply in replies.items() if reply}
    if not neighbours:
        logger.info("mingle: all alone")
        return 0
    logger.info("mingle: sync with %s nodes", len(neighbours))
    for node, reply in neighbours.items():
        logger.debug("mingle: processing reply from %s", node)
        if not isinstance(reply, dict) or "error" in reply:
            logger.warning("mingle: sync with %s failed: %r", node, reply)
            continue
        _sync_with_node(worker, reply)
    logger.info("mingle: sync complete")
    return len(neighbours)


def _sync_with_node(worker: WorkerLike, reply: dict[str, Any]) -> None:
    assert worker.consumer is not None
    clock = reply.get("clock")
    if isinstance(clock, str) and clock.isdigit():
        clock = int(clock)
    if clock:
        worker.app.lamport_clock.adjust(clock)
    else:
        worker.app.lamport_clock.forward()
    worker.consumer.revoked.update(revoked_ids(reply.get("revoked")))
