"""The transport interface: what a task queue needs from a broker.

A transport publishes messages (one or a batch) to an exchange with a routing key, and hands
out ``Consumer`` objects that take deliveries from named queues within a prefetch window.
A delivery is *leased* to its consumer until it is acked, rejected, deferred or dead-lettered;
transports that can (``Capabilities.leases``) give a delivery back to its queue when its
consumer dies, and ``Consumer.renew`` keeps the lease of a delivery whose task is still
running. Brokers with ``Capabilities.delayed_delivery`` hold a message published with
``not_before`` until that time, so ETA tasks wait in the broker, not in worker memory.

Exchanges and routing: ``declare(queue)`` binds a queue to its exchange. A message published
to exchange ``""`` goes to the queue named by its routing key (declared or not); to a named
exchange, to every queue bound with a matching key (``routing.matches``). A message that
reaches no queue is dropped by the broker, as AMQP does; ``publish`` returns how many queue
deliveries each item made so callers can warn.

Broadcast: ``broadcast(exchange, routing_key, message)`` sends one message to every current
``subscribe(exchange, patterns)`` subscription whose AMQP topic pattern (``#``, ``worker.*``)
matches the routing key — fire and forget, nothing stored for subscribers that come later.
Remote control (``celery.pidbox``) and events (``celeryev``) travel on it; replies to control
commands go back through ``publish`` to a reply queue.

Errors: every method may raise ``TransportError`` (broker unreachable or failed), translated
from the driver's own exception. Consumer methods are safe to call from any thread; ack,
reject, renew and dead_letter of a delivery that is no longer held are no-ops (idempotent).
Only ``Consumer.fetch`` blocks, for at most its timeout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from celeriac.protocol.message import Message
from celeriac.routing import Queue

__all__ = [
    "Broadcast",
    "Capabilities",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Outgoing",
    "Subscription",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a transport can do; the worker adapts to these flags."""

    delayed_delivery: bool = False  # holds ``not_before`` messages broker-side
    leases: bool = False  # a dead consumer's deliveries return to their queue
    priorities: bool = False  # higher ``properties['priority']`` is delivered first
    cross_process: bool = False  # several processes can share it
    persistent: bool = False  # messages survive a restart of every process
    broadcast: bool = False  # broadcast()/subscribe() work (remote control, events)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish, with where it goes and when it may be delivered."""

    message: Message
    exchange: str = ""
    routing_key: str = "celery"
    not_before: float | None = None  # Unix time; None means now


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message taken from a queue and leased to one consumer."""

    message: Message
    delivery_tag: str
    queue: str
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False
    delivery_count: int = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message set aside for good, with the reason.

    ``id`` names it in its store (``get_dead_letter``, ``requeue_dead_letter`` take it).
    ``is_message`` is False when what was set aside was not a message of the transport at all
    (random bytes, JSON that is no envelope): ``message.body`` then holds those raw bytes.
    """

    message: Message
    queue: str
    reason: str
    dead_lettered_at: float = field(default=0.0)
    id: str = ""
    is_message: bool = True


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A message received from a broadcast exchange."""

    exchange: str
    routing_key: str
    message: Message


class Subscription(ABC):
    """Receives broadcasts sent after it was made. Safe to use from one thread at a time."""

    @abstractmethod
    def receive(self, timeout: float) -> list[Broadcast]:
        """Wait up to ``timeout`` seconds for broadcasts; [] when none came."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving. Idempotent."""


class Consumer(ABC):
    """Takes deliveries from a set of queues for one owner (a worker)."""

    @abstractmethod
    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` seconds for deliveries; return at most ``max_count``.

        Returns an empty list on timeout. Takes from higher priorities first where the
        transport supports priorities, and from the queues in a fair rotation.
        """

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The message is done with: remove it for good."""

    @abstractmethod
    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        """Give the message back (``requeue=True``) or drop it (dead-lettered with a reason).

        A delivery given back does not count toward the transport's ``max_deliveries``
        (``Reject(requeue=True)``, a warm shutdown's give-back), unless ``failed`` says its
        worker process died running it: only deliveries whose worker died or whose lease
        lapsed count.
        """

    @abstractmethod
    def defer(self, delivery: Delivery, until: float) -> None:
        """Give the message back to its queue, not to be delivered before ``until`` (not
        counted toward ``max_deliveries``).

        Only meaningful with ``Capabilities.delayed_delivery``; others raise
        ``NotImplementedError`` and the worker keeps the delivery in a timer instead.
        """

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Remove the message from its queue and keep it aside with ``reason``."""

    @abstractmethod
    def renew(self, deliveries: Sequence[Delivery]) -> None:
        """Extend the leases of deliveries whose tasks are still running."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming and give every delivery still held back to its queue at once
        (not counted toward ``max_deliveries``)."""


class Transport(ABC):
    """A connection to one broker. Safe to share between threads; not across ``fork``."""

    capabilities: Capabilities = Capabilities()

    @property
    def lease_renew_interval(self) -> float | None:
        """How often a consumer should ``renew`` held deliveries; None when leases don't expire."""
        return None

    @abstractmethod
    def declare(self, queue: Queue) -> None:
        """Create ``queue`` and bind it to its exchange. Idempotent."""

    @abstractmethod
    def publish(self, items: Sequence[Outgoing]) -> list[int]:
        """Publish messages in order, as one batch where the broker allows.

        Returns, per item, how many queues it reached.
        """

    @abstractmethod
    def consumer(self, queues: Sequence[str], *, owner: str) -> Consumer:
        """A consumer of ``queues`` for ``owner`` (a worker's node name)."""

    @abstractmethod
    def queue_length(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not counting leased ones)."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Delete the waiting messages of ``queue``; return how many."""

    @abstractmethod
    def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        """Messages set aside (for one queue or all), oldest first.

        The store is bounded (``dead_letter_max_entries``, ``dead_letter_max_age``): the
        oldest letters are dropped, with a WARNING log, when a new one would exceed the cap
        or when they grow older than the age limit.
        """

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        """The dead letter called ``letter_id``; None when there is none (any more)."""
        return next((d for d in self.dead_letters() if d.id == letter_id), None)

    @abstractmethod
    def requeue_dead_letter(self, letter_id: str) -> DeadLetter | None:
        """Send a dead letter's original message back to its queue and remove the letter.

        Returns the letter, or None when there is none called ``letter_id`` (already requeued
        or purged), so two operators requeueing the same letter send it once where the broker
        makes the step atomic (memory, SQLite, Redis). Raises ``ValueError`` when the
        original was not a message (``is_message`` False): there is nothing to run.
        """

    @abstractmethod
    def purge_dead_letters(self, queue: str | None = None) -> int:
        """Delete the dead letters (of one queue or all); return how many."""

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        """Send ``message`` to every current subscription of ``exchange`` that matches."""
        raise NotImplementedError(f"{type(self).__name__} has no broadcast channel")

    def subscribe(self, exchange: str, patterns: Sequence[str] = ("#",)) -> Subscription:
        """Receive what is broadcast on ``exchange`` from now on, filtered by topic patterns."""
        raise NotImplementedError(f"{type(self).__name__} has no broadcast channel")

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""
