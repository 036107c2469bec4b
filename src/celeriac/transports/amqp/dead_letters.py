"""The AMQP broker's dead-letter store: the queue ``celeriac.dead_letters`` (see ``amqp``).

Bounds are RabbitMQ's own: the queue is declared with ``x-max-length``
(``dead_letter_max_entries``; ``x-overflow`` drop-head, RabbitMQ's default, drops the
oldest) and ``x-message-ttl`` (``dead_letter_max_age``). RabbitMQ drops those letters itself,
so Celeriac cannot log each drop on this broker. A queue declared earlier without these
arguments cannot be changed (RabbitMQ refuses a redeclaration with other arguments): it is
then used as it is, with a WARNING saying how to bound it (a policy, or deleting the queue).

Reading takes every letter with ``basic.get`` (at most ``READ_LIMIT``) on a channel of its
own and closes the channel, which gives them all back in order; ``requeue`` and ``purge``
acknowledge the letters they remove on that channel before closing it, and ``requeue``
publishes the original (confirmed) before acknowledging its letter, so a failure in between
leaves a duplicate letter, never a lost one. A letter's id is the first 16 hex digits of the
SHA-1 of its queue, reason, time and body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from celeriac._amqp.driver import amqp, amqp_errors
from celeriac.transports._dead_letters import DeadLetterLimits
from celeriac.transports.amqp.topology import (
    DEAD_AT,
    DEAD_LETTERS,
    QUEUE,
    REASON,
    ensure_queue,
    from_amqp,
    to_amqp,
)
from celeriac.transports.base import DeadLetter

__all__ = ["READ_LIMIT", "declare_bounded", "letter_of", "read", "requeue", "take_out"]

logger = logging.getLogger("celeriac.dead_letters")

READ_LIMIT = 10_000


def queue_arguments(limits: DeadLetterLimits) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if limits.max_entries is not None:
        arguments["x-max-length"] = limits.max_entries
    if limits.max_age is not None:
        arguments["x-message-ttl"] = int(limits.max_age * 1000)
    return arguments


def declare_bounded(connection: amqp.Connection, limits: DeadLetterLimits) -> None:
    """Declare the dead-letter exchange and queue, bounded by ``limits`` where possible."""
    channel = connection.channel()
    try:
        channel.exchange_declare(DEAD_LETTERS, "fanout", durable=True, auto_delete=False)
        channel.queue_declare(
            DEAD_LETTERS, durable=True, auto_delete=False, arguments=queue_arguments(limits)
        )
    except amqp_errors.PreconditionFailed:
        logger.warning(
            "The RabbitMQ queue %s exists without Celeriac's dead-letter limits, so it is "
            "not bounded by dead_letter_max_entries / dead_letter_max_age. Bound it with a "
            "policy (rabbitmqctl set_policy celeriac-dlq '^%s$' "
            "'{\"max-length\": %s}' --apply-to queues), or delete it once its letters are "
            "dealt with (celeriac dlq).",
            DEAD_LETTERS,
            DEAD_LETTERS,
            limits.max_entries or 10000,
        )
        channel = connection.channel()
        channel.exchange_declare(DEAD_LETTERS, "fanout", durable=True, auto_delete=False)
    channel.queue_bind(DEAD_LETTERS, DEAD_LETTERS, "")
    channel.close()


def letter_of(raw: amqp.Message) -> DeadLetter:
    message, book = from_amqp(raw)
    if REASON in book:
        queue, reason, at = str(book.get(QUEUE, "")), str(book[REASON]), float(book[DEAD_AT])
    else:  # dead-lettered by RabbitMQ (a queue with x-dead-letter-exchange: this one)
        deaths = message.headers.get("x-death") or [{}]
        death = deaths[0] if isinstance(deaths, list) and deaths else {}
        when = death.get("time")
        queue = str(death.get("queue", ""))
        reason = str(death.get("reason", "dead-lettered by RabbitMQ"))
        at = when.timestamp() if isinstance(when, dt.datetime) else 0.0
    digest = hashlib.sha1(f"{queue}\0{reason}\0{at!r}\0".encode(), usedforsecurity=False)
    digest.update(message.body)
    return DeadLetter(message, queue, reason, at, id=digest.hexdigest()[:16])


def _get_all(channel: amqp.Channel) -> list[amqp.Message]:
    taken: list[amqp.Message] = []
    while len(taken) < READ_LIMIT:
        message = channel.basic_get(DEAD_LETTERS, no_ack=False)
        if message is None:
            break
        taken.append(message)
    return taken


def _with_letters(
    connection: amqp.Connection,
    limits: DeadLetterLimits,
    act: Callable[[amqp.Channel, list[tuple[amqp.Message, DeadLetter]]], Any],
) -> Any:
    """Run ``act`` on every letter, held on a channel that is closed afterwards."""
    declare_bounded(connection, limits)
    channel = connection.channel()
    channel.auto_decode = False
    try:
        return act(channel, [(raw, letter_of(raw)) for raw in _get_all(channel)])
    finally:
        channel.close()  # what was not acknowledged goes back, in order


def read(connection: amqp.Connection, limits: DeadLetterLimits) -> list[DeadLetter]:
    return list(_with_letters(connection, limits, lambda _, found: [d for _, d in found]))


def take_out(
    connection: amqp.Connection, limits: DeadLetterLimits, wanted: Callable[[DeadLetter], bool]
) -> int:
    """Remove the letters ``wanted`` says so; return how many."""

    def act(channel: amqp.Channel, found: list[tuple[amqp.Message, DeadLetter]]) -> int:
        doomed = [raw for raw, letter in found if wanted(letter)]
        for raw in doomed:
            channel.basic_ack(raw.delivery_tag)
        return len(doomed)

    return int(_with_letters(connection, limits, act))


def requeue(
    connection: amqp.Connection, limits: DeadLetterLimits, letter_id: str, max_priority: int | None
) -> DeadLetter | None:
    """Publish the letter's original to its queue (confirmed), then remove the letter."""

    def act(
        channel: amqp.Channel, found: list[tuple[amqp.Message, DeadLetter]]
    ) -> DeadLetter | None:
        match = next(((raw, d) for raw, d in found if d.id == letter_id), None)
        if match is None:
            return None
        raw, letter = match
        ensure_queue(connection, letter.queue, max_priority)
        publisher = connection.channel()
        try:
            publisher.confirm_select()
            publisher.basic_publish(to_amqp(letter.message), exchange="", routing_key=letter.queue)
        finally:
            publisher.close()
        channel.basic_ack(raw.delivery_tag)
        return letter

    result: DeadLetter | None = _with_letters(connection, limits, act)
    return result
