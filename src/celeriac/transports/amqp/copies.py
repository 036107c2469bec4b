"""What the AMQP consumer publishes in place of a delivery, and how deliveries are counted.

Deliveries are counted so a message that keeps killing its worker is set aside: quorum queues
say how often a message came back (``x-delivery-count``); classic queues only flag a
redelivery, so a redelivered message is republished with the count in a header
(``x-celeriac-deliveries``) and the original acknowledged. Only failed deliveries count (the
worker died, its connection dropped): ``reject(requeue=True)`` sends a copy with the count
unchanged to the end of the queue (flagged ``x-celeriac-returned``, so it is a redelivery) and
acknowledges the original, and ``close`` gives back what it holds the same way, where
RabbitMQ's own requeue would flag it redelivered; ``reject(requeue=True, failed=True)``
counts it (a requeue by RabbitMQ where a quorum queue counts it itself). A message delivered
``max_deliveries`` times already is dead-lettered instead.

``copy_of`` is where such a copy goes, with its bookkeeping headers (``topology``): to the
dead-letter exchange (with reason, queue and time), through the delay levels (``until``), or
straight back to its queue (keeping its ``not_before``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from celeriac._amqp.driver import amqp
from celeriac._time import Clock
from celeriac.protocol.message import Message
from celeriac.transports.amqp.buffer import Received
from celeriac.transports.amqp.topology import (
    DEAD_AT,
    DEAD_LETTERS,
    DELIVERIES,
    EXCHANGE,
    NOT_BEFORE,
    QUEUE,
    REASON,
    RETURNED,
    ROUTING_KEY,
    Bookkeeping,
    to_amqp,
)


class _CopyingTransport(Protocol):
    """What a copy needs of ``AmqpTransport``: its clock, dead-letter queue and delay queues
    (typed here so this module does not import the transport that imports it)."""

    clock: Clock

    def ensure_dead_letters(self, connection: amqp.Connection) -> None: ...

    def delayed(
        self,
        connection: amqp.Connection,
        message: Message,
        queue: str,
        not_before: float,
        book: Bookkeeping,
    ) -> tuple[amqp.Message, str, str]: ...


__all__ = ["copy_of", "delivery_failures", "poison_reason"]


def poison_reason(count: int) -> str:
    return (
        f"delivered {count} times without being acknowledged (its worker probably died each time)"
    )


def copy_of(
    transport: _CopyingTransport,
    connection: amqp.Connection,
    received: Received,
    until: float | None,
    reason: str | None,
    *,
    failures: int | None,
    returned: bool,
) -> tuple[amqp.Message, str, str]:
    """The copy of ``received`` to publish on ``connection``: (message, exchange, routing key).

    A dead letter when ``reason`` is given, delayed until ``until`` when that is given (and
    not 0), else back to its queue; ``failures`` replaces the delivery's count of failed
    deliveries, ``returned`` flags the copy as given back.
    """
    delivery = received.delivery
    book: Bookkeeping = {
        EXCHANGE: delivery.exchange,
        ROUTING_KEY: delivery.routing_key,
        DELIVERIES: delivery.delivery_count - 1 if failures is None else failures,
    }
    if returned or RETURNED in received.bookkeeping:
        book[RETURNED] = 1
    if reason is not None:
        transport.ensure_dead_letters(connection)
        book.update({REASON: reason, QUEUE: delivery.queue, DEAD_AT: transport.clock.time()})
        return (to_amqp(delivery.message, book), DEAD_LETTERS, delivery.queue)
    if until:
        return transport.delayed(connection, delivery.message, delivery.queue, until, book)
    if NOT_BEFORE in received.bookkeeping:
        book[NOT_BEFORE] = received.bookkeeping[NOT_BEFORE]
    return (to_amqp(delivery.message, book), "", delivery.queue)


def _count(value: Any) -> int:
    """A delivery count from a header; one that is not a whole number counts as none."""
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        return 0
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


def delivery_failures(book: Mapping[str, Any], redelivered: bool) -> int:
    """Earlier deliveries of a message that did not finish, from its bookkeeping headers
    (RabbitMQ's ``x-delivery-count`` on quorum queues, else the ``redelivered`` flag), never
    raising for a damaged or foreign header."""
    broker_count = book.get("x-delivery-count")
    failures = _count(book.get(DELIVERIES))
    return failures + (_count(broker_count) if broker_count is not None else int(redelivered))
