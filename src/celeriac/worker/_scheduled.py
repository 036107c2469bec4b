"""The ETA tasks a worker's queues hold in the broker, for ``inspect scheduled``.

A Celeriac worker gives an early message back to the broker's delayed store instead of
keeping it in memory (``celeriac.worker.consumer``), so Celery's ``scheduled()`` — the ETA
tasks a worker holds — is answered with those the broker holds for the queues this worker
consumes, beside any the worker's own timer holds. Every worker consuming a queue lists the
same broker-held tasks. Transports that cannot read delayed messages back (RabbitMQ) list
none, as Celery's own workers list none of the tasks native delayed delivery keeps there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import CeleryError
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import decode_task
from celeriac.transports.base import Delivery

if TYPE_CHECKING:
    from celeriac.worker._worker_protocol import WorkerLike

__all__ = ["ETA_TIMER_PRIORITY", "broker_scheduled"]

logger = logging.getLogger("celeriac.worker")

#: At most this many broker-held tasks are read per queue for one reply.
LIMIT_PER_QUEUE = 1000

#: What Celery's ``scheduled()`` reports as ``priority``: the priority of its timer entry,
#: 6 for every ETA task (the message's own priority is in ``request["delivery_info"]``).
ETA_TIMER_PRIORITY = 6

MessageInfo = Callable[["WorkerLike", TaskMessage, Delivery], dict[str, Any]]


def broker_scheduled(worker: WorkerLike, describe: MessageInfo) -> list[tuple[str, Any]]:
    """(task id, ``{"eta", "priority", "request"}``) of every ETA task the broker holds for
    the worker's queues, earliest first; ``describe`` makes the request dict."""
    transport = worker.app.transport
    accept = worker.app.conf.accept_content
    revoked: Container[str] = worker.consumer.revoked if worker.consumer is not None else ()
    found: list[tuple[str, Any]] = []
    for queue in worker.queues:
        try:
            held = transport.delayed_messages(queue.name, LIMIT_PER_QUEUE)
        except CeleryError as exc:
            logger.warning("inspect scheduled: cannot read queue %r: %s", queue.name, exc)
            continue
        for _, raw in held:
            try:
                message = decode_task(raw, accept=accept)
            except CeleryError:
                continue  # the worker dead-letters it with the reason when it comes due
            if message.eta is None or message.id in revoked:
                continue  # not an ETA task, or revoked: dropped when it comes due
            delivery = Delivery(raw, "", queue.name, routing_key=queue.routing_key or queue.name)
            entry = {
                "eta": message.eta.isoformat(),
                "priority": ETA_TIMER_PRIORITY,
                "request": describe(worker, message, delivery),
            }
            found.append((message.id, entry))
    return found
