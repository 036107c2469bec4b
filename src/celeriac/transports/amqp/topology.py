"""What the AMQP transport declares on RabbitMQ, and how messages are dressed for the trip.

Declarations match kombu's byte for byte, so Celery and Celeriac share a vhost without
PRECONDITION_FAILED: a ``Queue``'s exchange (type, durable, auto_delete, arguments), the queue
(durable, exclusive, auto_delete; ``queue_arguments`` plus ``x-max-priority`` from
``max_priority``) and its binding; nothing is declared for the default exchange ``""``.
Queues that nobody declared (a publish to ``""``, a consumer of an undeclared name) are
created as Celery creates missing queues: durable, with only ``x-max-priority`` when the
transport's ``max_priority`` option is set. One difference: a ``Queue(exclusive=True)`` (the
reply queue of remote control) is declared without ``exclusive``, because RabbitMQ lets only
the declaring connection use an exclusive queue and this transport declares on a pooled
connection but consumes on another; ``auto_delete`` and ``x-expires`` still remove it.

Delayed delivery reuses Celery 5.5's native topology (kombu ``native_delayed_delivery``)::

    celery_delayed_27 ... celery_delayed_0     topic exchanges, each with a queue of the same
                                               name (x-queue-type quorum by default,
                                               x-message-ttl 2^level s, x-overflow
                                               reject-publish, dead-lettering to the next
                                               level, level 0 to celery_delayed_delivery)
    routing key  "<28 binary digits of the delay in seconds>.celeriac"
    celery_delayed_delivery (topic) ──"#.celeriac"──▶ celeriac.delayed (headers)
    celeriac.delayed ──{x-match: all, x-celeriac-queue: <q>}──▶ queue <q>

A message waits ``2^level`` s in each level whose bit is set and skips the others, then the
headers exchange hands it to the one queue its ``x-celeriac-queue`` header names, so delayed
messages of queues whose names share a suffix never cross. Celery's own delayed messages
(``<digits>.<routing key>``) pass through the same levels untouched.

Dead letters go to the fanout exchange ``celeriac.dead_letters`` and its queue of the same
name, with the reason in headers. A consumer's lease queues (``celeriac.lease.*``, for
deliveries held near RabbitMQ's consumer_timeout) are drawn in ``lease``. Headers
Celeriac adds (all ``x-celeriac-*``) are removed before a worker sees the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac._amqp.driver import amqp, amqp_errors
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.routing import Queue

__all__ = [
    "DEAD_LETTERS",
    "Bookkeeping",
    "declare_delay_levels",
    "declare_queue",
    "delay_routing_key",
    "from_amqp",
    "to_amqp",
]

# Bookkeeping headers, removed before a worker sees the message.
DELIVERIES = "x-celeriac-deliveries"  # earlier deliveries that did not finish
RETURNED = "x-celeriac-returned"  # given back before (not counted): the next is a redelivery
NOT_BEFORE = "x-celeriac-not-before"  # Unix time; not handed out before it
QUEUE = "x-celeriac-queue"  # the queue a delayed message goes back to / a dead letter left
EXCHANGE = "x-celeriac-exchange"  # where the message was first published, kept on republish
ROUTING_KEY = "x-celeriac-routing-key"
PROPERTIES = "x-celeriac-properties"  # properties AMQP has no field for (or None-valued)
EXPIRATION = "x-celeriac-expiration"  # a per-message TTL put aside while the message waits
REASON = "x-celeriac-reason"  # why a dead letter was set aside
DEAD_AT = "x-celeriac-dead-lettered-at"
LEASE = "x-celeriac-lease"  # the id of a lease copy (``lease``)
_BROKER_ANNOTATIONS = ("x-delivery-count", "x-death", "x-first-death-", "x-last-death-")

DEAD_LETTERS = "celeriac.dead_letters"  # exchange (fanout) and queue
DELAY_LEVELS = 28
DELAY_ENTRY = f"celery_delayed_{DELAY_LEVELS - 1}"
DELAY_FINAL = "celery_delayed_delivery"
DELAY_TARGETS = "celeriac.delayed"
MAX_DELAY = 2**DELAY_LEVELS - 1  # seconds (about 8.5 years); longer delays go round again

_AMQP_PROPERTIES = (
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)

Bookkeeping = dict[str, Any]


def to_amqp(message: Message, bookkeeping: Mapping[str, Any] | None = None) -> amqp.Message:
    """The py-amqp message for ``message``, with ``bookkeeping`` headers added."""
    properties = dict(message.properties)
    standard = {
        key: properties.pop(key)
        for key in _AMQP_PROPERTIES
        if properties.get(key) is not None and key in properties
    }
    headers = dict(message.headers)
    if properties:  # keys AMQP has no property for, and properties set to None
        headers[PROPERTIES] = properties
    headers.update(bookkeeping or {})
    if EXPIRATION in headers:  # waiting in the delay levels: no TTL may cut the wait short
        standard.pop("expiration", None)
    return amqp.Message(
        message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        application_headers=headers,
        **standard,
    )


def from_amqp(received: amqp.Message) -> tuple[Message, Bookkeeping]:
    """The message as its sender made it, and the bookkeeping headers it carried."""
    props = received.properties
    headers = dict(props.get("application_headers") or {})
    bookkeeping = {key: headers.pop(key) for key in list(headers) if key.startswith("x-celeriac-")}
    if NOT_BEFORE in bookkeeping or QUEUE in bookkeeping:  # traces of the delay levels
        for key in list(headers):
            if key.startswith(_BROKER_ANNOTATIONS):
                bookkeeping[key] = headers.pop(key)
    if "x-delivery-count" in headers:
        bookkeeping["x-delivery-count"] = headers.pop("x-delivery-count")
    properties = {key: props[key] for key in _AMQP_PROPERTIES if key in props}
    extra = bookkeeping.get(PROPERTIES)
    if isinstance(extra, Mapping):
        properties.update(extra)
    if EXPIRATION in bookkeeping:
        properties["expiration"] = bookkeeping[EXPIRATION]
    body = received.body
    message = Message(
        body=body
        if isinstance(body, bytes)
        else bytes(body, "utf-8")
        if isinstance(body, str)
        else bytes(body),
        content_type=str(props.get("content_type") or ""),
        content_encoding=str(props.get("content_encoding") or ""),
        headers=headers,
        properties=properties,
    )
    return message, bookkeeping


def queue_arguments(queue: Queue, default_max_priority: int | None) -> dict[str, Any]:
    """The x-arguments ``queue`` is declared with (kombu's merge), checked for RabbitMQ."""
    arguments = dict(queue.queue_arguments or {})
    quorum = arguments.get("x-queue-type") == "quorum"
    max_priority = queue.max_priority
    if max_priority is None and not quorum and "x-max-priority" not in arguments:
        max_priority = default_max_priority
    if max_priority is not None:
        arguments["x-max-priority"] = max_priority
    if quorum and (not queue.durable or queue.exclusive or queue.auto_delete):
        raise ImproperlyConfigured(
            f"Queue {queue.name!r} is a quorum queue, which RabbitMQ requires to be durable, "
            "not exclusive and not auto_delete: fix its Queue(...) flags."
        )
    if quorum and "x-max-priority" in arguments:
        raise ImproperlyConfigured(
            f"Queue {queue.name!r}: RabbitMQ 3.x quorum queues have no priorities; drop "
            "max_priority (or x-max-priority) or use a classic queue."
        )
    return arguments


def declare_queue(channel: amqp.Channel, queue: Queue, default_max_priority: int | None) -> None:
    """Declare ``queue``, its exchange and the binding between them, as kombu does."""
    exchange = queue.bound_exchange
    if exchange.name:
        channel.exchange_declare(
            exchange.name,
            exchange.type,
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
            arguments=exchange.arguments,
        )
    channel.queue_declare(
        queue.name,
        durable=queue.durable,
        exclusive=False,  # see the module docstring
        auto_delete=queue.auto_delete,
        arguments=queue_arguments(queue, default_max_priority),
    )
    if exchange.name:
        channel.queue_bind(queue.name, exchange.name, queue.binding_key)


def queue_exists(connection: amqp.Connection, name: str) -> int | None:
    """The ready-message count of queue ``name``, or None when it does not exist.

    Uses a channel of its own: RabbitMQ closes the channel that asked about a missing queue.
    """
    channel = connection.channel()
    try:
        _, count, _ = channel.queue_declare(name, passive=True)
    except amqp_errors.NotFound:
        return None
    channel.close()
    return int(count)


def ensure_queue(connection: amqp.Connection, name: str, default_max_priority: int | None) -> None:
    """Create queue ``name`` as a missing queue (durable, bound to nothing) unless it exists."""
    if queue_exists(connection, name) is not None:
        return
    channel = connection.channel()
    try:
        arguments = queue_arguments(Queue(name), default_max_priority)
        channel.queue_declare(
            name, durable=True, exclusive=False, auto_delete=False, arguments=arguments
        )
    finally:
        channel.close()


def declare_delay_levels(channel: amqp.Channel, queue_type: str) -> None:
    """Celery's 28 delay levels and its delivery exchange, then Celeriac's targets exchange."""
    key = "1.#"
    for level in range(DELAY_LEVELS - 1, -1, -1):
        name = f"celery_delayed_{level}"
        arguments: dict[str, Any] = {
            "x-queue-type": queue_type,
            "x-overflow": "reject-publish",
            "x-message-ttl": 2**level * 1000,
            "x-dead-letter-exchange": f"celery_delayed_{level - 1}" if level else DELAY_FINAL,
        }
        if queue_type == "quorum":
            arguments["x-dead-letter-strategy"] = "at-least-once"
        channel.exchange_declare(name, "topic", durable=True, auto_delete=False)
        channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
        channel.queue_bind(name, name, key)
        key = "*." + key
    key = "0.#"
    for level in range(DELAY_LEVELS - 1, 0, -1):  # a 0 bit skips the level's queue
        channel.exchange_bind(f"celery_delayed_{level - 1}", f"celery_delayed_{level}", key)
        key = "*." + key
    channel.exchange_declare(DELAY_FINAL, "topic", durable=True, auto_delete=False)
    channel.exchange_bind(DELAY_FINAL, "celery_delayed_0", key)
    channel.exchange_declare(DELAY_TARGETS, "headers", durable=True, auto_delete=False)
    channel.exchange_bind(DELAY_TARGETS, DELAY_FINAL, "#.celeriac")


def bind_delay_target(channel: amqp.Channel, queue: str) -> None:
    """Let delayed messages addressed to ``queue`` come back to it."""
    channel.queue_bind(queue, DELAY_TARGETS, "", arguments={"x-match": "all", QUEUE: queue})


def delay_routing_key(seconds: int) -> str:
    """The routing key that makes the delay levels hold a message ``seconds`` (1..MAX_DELAY)."""
    return ".".join(f"{min(seconds, MAX_DELAY):0{DELAY_LEVELS}b}") + ".celeriac"
