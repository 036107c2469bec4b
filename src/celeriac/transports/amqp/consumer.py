"""The AMQP consumer: RabbitMQ pushes deliveries, ``fetch`` hands them out within its window.

An I/O thread (``celeriac._amqp.io``) owns the connection. It subscribes (``basic.consume``, manual
acks) to each queue on one channel and puts what arrives in a ``DeliveryBuffer``
(``buffer``); ``fetch`` takes from it, queues in rotation, each queue's best priority
first. Acks, rejects and
requeues are queued to the I/O thread and sent in order; ``defer`` and ``dead_letter``
publish a copy (with confirms) before acknowledging the original, so a crash between the two
duplicates a message rather than losing it.

Prefetch follows the worker's window: each subscription has a per-consumer ``basic.qos``
(the only kind quorum queues allow) equal to the ``max_count`` of the fetch that made it.
RabbitMQ applies a prefetch only to consumers created after it, so when a fetch wants more
than a subscription's remaining credit (its deliveries not yet settled use it up) the queue is
subscribed again with the new prefetch. Each queue having credit of its own is also what makes
a multi-queue consumer take from every queue, not just the first one subscribed. Messages
that no fetch takes within ``prefetch_timeout`` (a worker busy with long tasks) are given back
(republished with their count unchanged) and the queue is unsubscribed until the next fetch,
so they go to idle workers instead of waiting here into RabbitMQ's ``consumer_timeout``.

Deliveries are counted so a message that keeps killing its worker is set aside, and every
copy the consumer publishes in place of a delivery (counted, returned, deferred, dead) carries
its bookkeeping: both are drawn in ``copies``.

A message carrying ``x-celeriac-not-before`` (an ETA from the delay levels, or published
with ``not_before`` to a named exchange) is handed out only once the injected clock reaches
that time: kept back in memory when it is due within a second (RabbitMQ delays are whole
seconds) and sent back through the delay levels when it is due later.

``fetch(timeout=0)`` gives an exact answer on classic queues: it asks each queue's ready count
and makes one more round trip on the channel, after which every message the queue already
dispatched has arrived; while a queue still has ready messages and credit, it asks again.
Quorum queues dispatch through Raft, asynchronously to the channel, so there a message in
flight may be missed by a zero timeout (a worker always waits with a timeout).

RabbitMQ's ``consumer_timeout`` would close the channel under a delivery held for longer (an
``acks_late`` task that runs for an hour), so ``renew`` hands deliveries held for half of it
over to a lease queue and acknowledges them (``lease``); settling a leased delivery then
drops its lease, and the I/O thread renews the leases still held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from celeriac._amqp.driver import amqp
from celeriac._amqp.io import IOConnection
from celeriac._amqp.pool import Session
from celeriac.exceptions import TransportError
from celeriac.transports.amqp.buffer import DeliveryBuffer, Received
from celeriac.transports.amqp.copies import copy_of, delivery_failures, poison_reason
from celeriac.transports.amqp.lease import LeaseKeeper
from celeriac.transports.amqp.topology import EXCHANGE, NOT_BEFORE, RETURNED, ROUTING_KEY, from_amqp
from celeriac.transports.base import Consumer, Delivery

if TYPE_CHECKING:
    from celeriac.transports.amqp import AmqpTransport

__all__ = ["AmqpConsumer"]

logger = logging.getLogger("celeriac.amqp")

_HOLD_LIMIT = 1.0  # seconds: an early message due sooner is kept back in memory
# How long a waiting fetch lets acks in flight free credit before it subscribes again.
_CREDIT_GRACE = 0.05


@dataclass(slots=True)
class _Subscription:
    consumer_tag: str
    prefetch: int


class AmqpConsumer(Consumer):
    """Deliveries from RabbitMQ queues for one owner (module docstring)."""

    def __init__(self, transport: AmqpTransport, queues: list[str], owner: str) -> None:
        self._transport = transport
        self._clock = transport.clock
        self._queues = queues
        self._buffer = DeliveryBuffer(queues, transport.clock)
        # The I/O thread's alone:
        self._channel: Any = None
        self._publisher: Session | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._paused: set[str] = set()  # queues unsubscribed until the next fetch
        self._unsettled: dict[str, int] = {}  # consumer tag -> deliveries not yet settled
        self._inbox: deque[tuple[str, amqp.Message]] = deque()
        self._want = 1
        self._republished = 0  # copies published (counted, delayed, dead letters)
        self._leases = LeaseKeeper(transport.lease_policy, owner)
        self._started = False
        self._start_lock = threading.Lock()
        self._io = IOConnection(
            transport.connector,
            name=f"celeriac consumer {owner}",
            on_connect=self._setup,
            on_disconnect=self._reset,
            on_turn=self._turn,
            tick=min(1.0, transport.prefetch_timeout / 2),
        )

    # -- fetching (any thread) --------------------------------------------------------------

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        if self._buffer.closed:
            return []
        self._start(max_count)
        if timeout <= 0:
            return self._take_settled(max_count)
        started = time.monotonic()
        deadline = started + timeout
        asked = False
        while True:
            taken = self._buffer.take(max_count)
            if taken or self._buffer.closed:
                return taken
            self._check_failure()
            now = time.monotonic()
            if not asked and now - started >= _CREDIT_GRACE:
                # Still nothing: the subscriptions may lack credit (see _ensure_credit).
                self._io.submit(partial(self._ensure_credit, max_count))
                asked = True
            if now >= deadline:
                return []
            self._buffer.wait(deadline - now if asked else min(deadline - now, _CREDIT_GRACE))

    def _check_failure(self) -> None:
        if self._io.failure is not None:
            raise TransportError(str(self._io.failure)) from self._io.failure

    def _start(self, want: int) -> None:
        with self._start_lock:
            if not self._started:  # lazily: a worker forks its pool after making its consumer
                self._want = want
                self._started = True
                self._io.start()

    def _take_settled(self, max_count: int) -> list[Delivery]:
        """Take after making sure whatever the broker can send right now has arrived."""
        # The first connection is worth waiting for; a lost one may take long to come back.
        grace = 0.0 if self._io.connections else self._transport.connector.connect_timeout
        if not self._io.connected.wait(grace):
            self._check_failure()
            return self._buffer.take(max_count)
        give_up = time.monotonic() + self._transport.connector.confirm_timeout
        self._io.submit(partial(self._ensure_credit, max_count))
        while True:
            try:
                pending = self._io.call(self._barrier, self._transport.connector.confirm_timeout)
            except TransportError:
                pending = False
            ready = self._buffer.ready_count()
            if not pending or ready >= max_count or time.monotonic() > give_up:
                return self._buffer.take(max_count)
            self._io.submit(partial(self._ensure_credit, max_count))

    # -- settling (any thread) --------------------------------------------------------------

    def ack(self, delivery: Delivery) -> None:
        received = self._buffer.release(delivery)
        if received is not None:
            self._io.submit(partial(self._settle, received, requeue=None))

    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        if not requeue:
            self.dead_letter(delivery, "rejected")
            return
        received = self._buffer.release(delivery)
        if received is None:
            return
        if failed and "x-delivery-count" in received.bookkeeping:  # a quorum queue counts it
            self._io.submit(partial(self._settle, received, requeue=True))
            return
        # Elsewhere a requeue loses the count (and may come back at any time), and a plain
        # give-back must not count at all: send a copy with the count to the end of the queue
        # instead, confirmed before this returns.
        failures = delivery.delivery_count if failed else delivery.delivery_count - 1
        requeue_it = partial(
            self._redirect, received, None, None, failures=failures, returned=not failed
        )
        self._wait_for("requeue a message", received, requeue_it)

    def defer(self, delivery: Delivery, until: float) -> None:
        received = self._buffer.release(delivery)
        if received is not None:
            defer_it = partial(self._redirect, received, until, None)
            self._wait_for("defer a message", received, defer_it)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        received = self._buffer.release(delivery)
        if received is not None:
            dead_letter_it = partial(self._redirect, received, 0, reason)
            self._wait_for("dead-letter a message", received, dead_letter_it)

    def _wait_for(self, what: str, received: Received, command: Any) -> None:
        try:
            self._io.call(command, self._transport.connector.confirm_timeout * 2)
        except TransportError as exc:  # not acknowledged: RabbitMQ delivers it again
            logger.warning("Could not %s (%s); it will be delivered again.", what, exc)
            self._io.submit(partial(self._lapse, received))

    def _lapse(self, received: Received, connection: amqp.Connection | None = None) -> None:
        """Leased, ``received`` is left to come back from its lease queue (its command failed
        or never ran)."""
        if received.lease is not None:
            self._leases.lapse(received)

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        """Hand the deliveries held for half of consumer_timeout over to leases (module
        docstring); the I/O thread renews the leases on its own."""
        if self._buffer.closed:
            return
        now = time.monotonic()
        due = [
            received
            for delivery in deliveries
            if (received := self._buffer.peek(delivery)) is not None
            and self._leases.due(received, now)
        ]
        if due:
            timeout = self._transport.connector.confirm_timeout * 2
            self._io.call(partial(self._hand_over, due), timeout)

    def close(self) -> None:
        if not self._buffer.close() and self._io.failure is None:
            return  # closed already (one whose I/O gave up still closes its wake-up pipe)
        with self._start_lock:
            self._started = True  # a fetch racing with close must not start the thread now
        self._io.stop(final=self._close_channel)  # (only closes its wake-up pipe if never started)
        self._transport._forget(self)

    # -- the I/O thread: subscriptions ------------------------------------------------------

    def _setup(self, connection: amqp.Connection, generation: int) -> None:
        """Subscribe (again) to every queue on a new connection."""
        self._reset()
        for queue in self._queues:  # deleted meanwhile, or auto-deleted with our last connection
            self._transport.ensure_queue(connection, queue, check=True)
        self._channel = connection.channel()
        self._channel.auto_decode = False
        self._publisher = Session(self._transport.connector, connection)
        for queue in self._queues:
            self._subscribe(queue, self._want)

    def _reset(self) -> None:
        """Forget what the old connection delivered: RabbitMQ gives it all back to the queues."""
        self._buffer.clear()
        self._inbox.clear()
        self._subscriptions.clear()
        self._unsettled.clear()
        self._paused.clear()

    def _subscribe(self, queue: str, prefetch: int) -> None:
        self._channel.basic_qos(0, prefetch, False)  # applies to consumers made after it
        tag = self._channel.basic_consume(
            queue, callback=partial(self._on_message, queue), no_ack=False
        )
        self._subscriptions[queue] = _Subscription(tag, prefetch)
        self._unsettled[tag] = 0

    def _ensure_credit(self, want: int, connection: amqp.Connection) -> None:
        """Subscribe again where a queue could not send the messages a fetch of ``want`` lacks.

        ``want`` also becomes the prefetch of subscriptions made on a new connection.
        """
        self._want = max(want, 1)
        lacking = self._want - self._buffer.ready_count()
        for queue in sorted(self._paused):
            self._paused.discard(queue)
            self._subscribe(queue, self._want)
        for queue, subscription in list(self._subscriptions.items()):
            credit = subscription.prefetch - self._unsettled.get(subscription.consumer_tag, 0)
            if credit < lacking:
                logger.debug("Subscribing to %s again for %d more", queue, lacking)
                self._channel.basic_cancel(subscription.consumer_tag)  # in-flight ones arrive
                self._subscribe(queue, lacking)
        self._process_inbox(connection)

    def _barrier(self, connection: amqp.Connection) -> bool:
        """Wait out what the broker already sent; say whether a queue may still send more."""
        self._process_inbox(connection)
        republished = self._republished
        ready = {
            queue: self._channel.queue_declare(queue, passive=True)[1] for queue in self._queues
        }
        self._channel.basic_qos(0, self._want, False)  # one more round trip on this channel
        self._process_inbox(connection)
        if self._republished != republished:
            return True  # copies made meanwhile are on their way back
        return any(
            count and sub.prefetch > self._unsettled.get(sub.consumer_tag, 0)
            for queue, count in ready.items()
            if (sub := self._subscriptions.get(queue)) is not None
        )

    def _turn(self, connection: amqp.Connection) -> None:
        self._process_inbox(connection)
        self._give_back_untaken()
        if self._publisher is not None:
            try:
                self._leases.renew_if_due(self._publisher, time.monotonic())
            except TransportError as exc:  # due still: tried again next turn
                logger.warning("Could not renew the leases of long tasks: %s", exc)

    def _give_back_untaken(self) -> None:
        """Return what waited ``prefetch_timeout`` without a fetch taking it, and stop the
        queue's flow until the next fetch: a busy worker should not sit on messages that other
        workers could run (nor keep them unacknowledged into RabbitMQ's consumer_timeout)."""
        returned = self._buffer.untaken_since(time.monotonic() - self._transport.prefetch_timeout)
        for queue, untaken in returned.items():
            subscription = self._subscriptions.pop(queue, None)
            if subscription is not None:
                self._channel.basic_cancel(subscription.consumer_tag)
                self._paused.add(queue)
            for received in untaken:  # not a failed delivery: the count stays as it was
                self._redirect(received, None, None, failures=received.delivery.delivery_count - 1)
        if returned:
            self._process_inbox()

    # -- the I/O thread: deliveries ---------------------------------------------------------

    def _on_message(self, queue: str, message: amqp.Message) -> None:
        self._inbox.append((queue, message))  # handled after the frame, outside the callback

    def _process_inbox(self, connection: amqp.Connection | None = None) -> None:
        while self._inbox:
            queue, message = self._inbox.popleft()
            self._accept(queue, message)

    def _accept(self, queue: str, raw: amqp.Message) -> None:
        """File one delivery: buffered (ready or early), or handled here."""
        info = raw.delivery_info
        message, book = from_amqp(raw)
        redelivered = bool(info["redelivered"])
        broker_count = book.get("x-delivery-count")
        failures = delivery_failures(book, redelivered)
        consumer_tag = info["consumer_tag"]
        self._unsettled[consumer_tag] = self._unsettled.get(consumer_tag, 0) + 1
        delivery = Delivery(
            message=message,
            delivery_tag=f"{self._io.generation}.{info['delivery_tag']}",
            queue=queue,
            exchange=book.get(EXCHANGE, info["exchange"]),
            routing_key=book.get(ROUTING_KEY, info["routing_key"]),
            redelivered=failures > 0 or bool(book.get(RETURNED)),
            delivery_count=failures + 1,
        )
        received = Received(delivery, info["delivery_tag"], consumer_tag, self._io.generation, book)
        if failures >= self._transport.max_deliveries:
            self._redirect(received, 0, poison_reason(failures))
            self._transport.rejects.note(queue, poison_reason(failures))
        elif redelivered and broker_count is None:  # classic queue: keep the count in a copy
            self._redirect(received, None, None, failures=failures)
        else:
            not_before = book.get(NOT_BEFORE)
            if not isinstance(not_before, (int, float)) or not_before <= self._clock.time():
                self._buffer.add(received, None, time.monotonic())
            elif not_before - time.time() >= _HOLD_LIMIT and self._transport.delayed_delivery:
                self._redirect(received, float(not_before), None)  # back to the delay levels
            else:
                self._buffer.add(received, float(not_before), time.monotonic())

    def _redirect(
        self,
        received: Received,
        until: float | None,
        reason: str | None,
        connection: amqp.Connection | None = None,
        *,
        failures: int | None = None,
        returned: bool = False,
    ) -> None:
        """Publish a copy (dead letter, delayed, or counted) and acknowledge the original (or
        drop its lease)."""
        if self._publisher is None:
            return
        if received.lease is None and received.generation != self._io.generation:
            return  # from a connection that is gone: the broker has requeued it
        target = copy_of(
            self._transport,
            self._publisher.connection,
            received,
            until,
            reason,
            failures=failures,
            returned=returned,
        )
        self._publisher.publish([target])
        self._settle(received, requeue=None)
        self._republished += 1

    def _settle(
        self,
        received: Received,
        connection: amqp.Connection | None = None,
        *,
        requeue: bool | None,
    ) -> None:
        if received.lease is not None:  # handed over: the original was acknowledged then
            try:
                if requeue:
                    failures = received.delivery.delivery_count
                    self._redirect(received, None, None, failures=failures)
                elif self._publisher is not None:
                    self._leases.finish(self._publisher, received)
            except TransportError:  # not requeued: its copy will come back instead
                self._leases.lapse(received)
                raise
            return
        if received.generation != self._io.generation:
            return  # the broker requeued it when that connection closed
        if requeue is None:
            self._channel.basic_ack(received.amqp_tag)
        else:
            self._channel.basic_reject(received.amqp_tag, requeue=requeue)
        self._count_settled(received)

    def _hand_over(self, due: list[Received], connection: amqp.Connection | None = None) -> None:
        """Move the deliveries of ``due`` still held to leases: copies, then the originals
        acknowledged. One settled meanwhile is left alone (its ack is queued behind)."""
        if self._publisher is None:
            return
        ready = [
            received
            for received in due
            if received.lease is None
            and received.generation == self._io.generation
            and self._buffer.holds(received)
        ]
        if not ready:
            return
        self._leases.hand_over(self._publisher, ready)
        for received in ready:
            self._channel.basic_ack(received.amqp_tag)
            self._count_settled(received)

    def _count_settled(self, received: Received) -> None:
        tag = received.consumer_tag
        left = self._unsettled.get(tag, 1) - 1
        if left or any(s.consumer_tag == tag for s in self._subscriptions.values()):
            self._unsettled[tag] = left
        else:
            self._unsettled.pop(tag, None)  # an old subscription, now fully settled

    def _close_channel(self, connection: amqp.Connection) -> None:
        if self._channel is not None:
            for subscription in self._subscriptions.values():
                self._channel.basic_cancel(subscription.consumer_tag)  # nothing more comes
        if self._publisher is not None:
            try:  # (after the cancel, or what is given back would come here again)
                self._leases.give_back(self._publisher)
            except TransportError as exc:
                logger.warning("Leased messages go back after lease_timeout: %s", exc)
            self._give_back_uncounted()
        if self._channel is not None:
            self._channel.close()  # every unacknowledged delivery goes back to its queue now

    def _give_back_uncounted(self) -> None:
        """Closing: give back what this consumer still holds as copies with their counts
        unchanged; RabbitMQ would flag what the channel's close returns as redelivered, which
        counts as a failed delivery (a warm shutdown is not one)."""
        self._process_inbox()
        held, waiting = self._buffer.drain()
        taken = {id(received) for received in held}  # (one never taken is no redelivery)
        try:
            for received in held + waiting:
                if received.lease is None and received.generation == self._io.generation:
                    failures = received.delivery.delivery_count - 1
                    returned = id(received) in taken
                    self._redirect(received, None, None, failures=failures, returned=returned)
        except TransportError as exc:  # the rest goes back with the channel, counted
            logger.warning("Could not give held messages back uncounted: %s", exc)
