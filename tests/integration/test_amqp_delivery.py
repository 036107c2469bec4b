"""Delivery on RabbitMQ: ETAs waiting in the broker, prefetch matched to the fetch window,
message TTL from ``expires``, dead letters with a reason, poison messages set aside."""

from __future__ import annotations

import time
from collections.abc import Iterator

import amqp  # type: ignore[import-untyped]
import pytest

from celeriac import Celery
from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports import create_transport
from celeriac.transports.base import Consumer, Outgoing, Transport
from tests.support import amqp_support

pytestmark = pytest.mark.integration


@pytest.fixture
def transport(vhost: str) -> Iterator[Transport]:
    transport = create_transport(amqp_support.url(vhost), options={"max_deliveries": 3})
    yield transport
    transport.close()


def message(body: bytes) -> Message:
    return Message(body, "application/json", "utf-8", {"id": body.decode()}, {})


def die(consumer: Consumer) -> None:
    """The consumer's worker dies: its connection drops without a word (no graceful close,
    which would give held messages back uncounted); RabbitMQ requeues what it held."""
    consumer._io.stop()  # type: ignore[attr-defined]


def delayed_messages(transport: Transport) -> int:
    """Messages waiting in the 28 delay levels."""
    return sum(transport.queue_length(f"celery_delayed_{level}") for level in range(28))


def test_an_eta_waits_in_rabbitmq_not_in_the_consumer(transport: Transport) -> None:
    due = time.time() + 2.2
    transport.publish([Outgoing(message(b"later"), routing_key="eta", not_before=due)])
    assert transport.queue_length("eta") == 0
    assert delayed_messages(transport) == 1
    consumer = transport.consumer(["eta"], owner="w1")
    try:
        assert consumer.fetch(1, timeout=0.5) == []
        [delivery] = consumer.fetch(1, timeout=10)
        assert time.time() >= due  # never early (the last fraction of a second waits here)
        assert delivery.message == message(b"later")
        assert (delivery.exchange, delivery.routing_key) == ("", "eta")
        consumer.ack(delivery)
    finally:
        consumer.close()
    assert delayed_messages(transport) == 0


def test_defer_gives_the_message_to_rabbitmq_until_it_is_due(transport: Transport) -> None:
    transport.publish([Outgoing(message(b"early"), routing_key="defer")])
    consumer = transport.consumer(["defer"], owner="w1")
    try:
        [delivery] = consumer.fetch(1, timeout=5)
        until = time.time() + 1.5
        consumer.defer(delivery, until)
        assert delayed_messages(transport) == 1  # acked here, held by the broker
        [again] = consumer.fetch(1, timeout=10)
        assert time.time() >= until
        assert again.message == delivery.message
        assert (again.redelivered, again.delivery_count) == (False, 1)  # not a failure
        consumer.ack(again)
    finally:
        consumer.close()


def test_prefetch_follows_the_fetch_window(transport: Transport) -> None:
    """A subscription's basic.qos is the fetch's max_count: at most that many unsettled."""
    transport.publish([Outgoing(message(str(i).encode()), routing_key="window") for i in range(10)])
    consumer = transport.consumer(["window"], owner="w1")
    try:
        first = consumer.fetch(3, timeout=0)
        assert len(first) == 3
        assert transport.queue_length("window") == 7  # the other 7 were never sent to us
        for delivery in first:
            consumer.ack(delivery)
        assert len(consumer.fetch(2, timeout=0)) == 2
        assert transport.queue_length("window") == 4  # 3 more in flight: 2 taken, 1 prefetched
    finally:
        consumer.close()
    assert transport.queue_length("window") == 7  # the 3 unsettled came back on close
    transport.purge("window")


def test_a_message_that_keeps_coming_back_is_set_aside(transport: Transport) -> None:
    """max_deliveries=3: its worker "dies" three times (connection closed, no ack)."""
    transport.publish([Outgoing(message(b"poison"), routing_key="poison")])
    for attempt in (1, 2, 3):
        consumer = transport.consumer(["poison"], owner=f"w{attempt}")
        [delivery] = consumer.fetch(1, timeout=5)
        assert (delivery.delivery_count, delivery.redelivered) == (attempt, attempt > 1)
        die(consumer)  # RabbitMQ requeues it: a failed delivery
    consumer = transport.consumer(["poison"], owner="w4")
    try:
        assert consumer.fetch(1, timeout=0.5) == []
    finally:
        consumer.close()
    [dead] = transport.dead_letters("poison")
    assert dead.message == message(b"poison")
    assert "delivered 3 times without being acknowledged" in dead.reason


def test_quorum_queues_count_deliveries_with_x_delivery_count(transport: Transport) -> None:
    """The broker requeues what a closed connection held; the quorum queue counts it."""
    transport.declare(Queue("qpoison", queue_arguments={"x-queue-type": "quorum"}))
    transport.publish([Outgoing(message(b"q"), routing_key="qpoison")])
    for attempt in (1, 2, 3):
        consumer = transport.consumer(["qpoison"], owner=f"w{attempt}")
        [delivery] = consumer.fetch(1, timeout=5)
        assert delivery.delivery_count == attempt
        die(consumer)
    consumer = transport.consumer(["qpoison"], owner="w4")
    try:
        assert consumer.fetch(1, timeout=0.5) == []
    finally:
        consumer.close()
    [dead] = transport.dead_letters("qpoison")
    assert "delivered 3 times" in dead.reason


def test_a_requeued_message_keeps_its_count(transport: Transport) -> None:
    """A plain requeue is not a failed delivery; one after its worker process died is."""
    transport.publish([Outgoing(message(b"r"), routing_key="requeue")])
    consumer = transport.consumer(["requeue"], owner="w1")
    try:
        for attempt in range(5):
            [delivery] = consumer.fetch(1, timeout=0)
            assert (delivery.delivery_count, delivery.redelivered) == (1, attempt > 0)
            consumer.reject(delivery, requeue=True)
        for attempt in (1, 2, 3):
            [delivery] = consumer.fetch(1, timeout=0)
            assert (delivery.delivery_count, delivery.redelivered) == (attempt, True)
            consumer.reject(delivery, requeue=True, failed=True)
        assert consumer.fetch(1, timeout=0) == []
    finally:
        consumer.close()
    [dead] = transport.dead_letters("requeue")
    assert "delivered 3 times" in dead.reason


def test_expires_becomes_a_per_message_ttl(vhost: str) -> None:
    app = Celery("ttl", broker=amqp_support.url(vhost), backend="memory://")
    # A queue that lets RabbitMQ's own dead letters (here: expired) join Celeriac's.
    queue = Queue("short", queue_arguments={"x-dead-letter-exchange": "celeriac.dead_letters"})
    try:
        app.transport.declare(queue)
        app.send_task("stale", queue=queue, expires=0.3)
        app.send_task("fresh", queue=queue)
        deadline = time.monotonic() + 5
        while app.transport.queue_length("short") > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.transport.queue_length("short") == 1
        [dead] = app.transport.dead_letters("short")
        assert (dead.message.headers["task"], dead.reason) == ("stale", "expired")
    finally:
        app.transport.purge("short")
        app.close()


def test_dead_letters_keep_their_reason_and_order(transport: Transport) -> None:
    transport.declare(Queue("dl", Exchange("dl")))
    transport.publish(
        [Outgoing(message(b"a"), routing_key="dl"), Outgoing(message(b"b"), routing_key="dl")]
    )
    consumer = transport.consumer(["dl"], owner="w1")
    try:
        first, second = consumer.fetch(2, timeout=0)
        consumer.dead_letter(first, "cannot decode")
        consumer.reject(second, requeue=False)
    finally:
        consumer.close()
    found = [(d.message.body, d.reason) for d in transport.dead_letters("dl")]
    assert found == [(b"a", "cannot decode"), (b"b", "rejected")]
    assert found == [(d.message.body, d.reason) for d in transport.dead_letters("dl")]  # kept


def test_prefetched_messages_no_fetch_takes_go_back_to_the_queue(vhost: str) -> None:
    """A worker busy with long tasks does not sit on prefetched messages: after
    prefetch_timeout they return to the queue for others, their count unchanged."""
    transport = create_transport(amqp_support.url(vhost), options={"prefetch_timeout": 1.0})
    consumer = transport.consumer(["busy"], owner="w1")
    try:
        transport.publish([Outgoing(message(b"a"), routing_key="busy")])
        [first] = consumer.fetch(2, timeout=5)  # subscribed with a prefetch of 2
        consumer.ack(first)  # as a task acknowledged when it starts, then runs for long
        transport.publish([Outgoing(message(m), routing_key="busy") for m in (b"b", b"c")])
        lengths = [transport.queue_length("busy")]
        deadline = time.monotonic() + 10
        while lengths[-1] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            lengths.append(transport.queue_length("busy"))
        assert 0 in lengths and lengths[-1] == 2  # prefetched, then given back: waiting again
        again = consumer.fetch(2, timeout=5) + consumer.fetch(2, timeout=1)
        assert sorted((d.message.body, d.delivery_count) for d in again) == [(b"b", 1), (b"c", 1)]
    finally:
        consumer.close()
        transport.close()


def test_a_deleted_queue_comes_back_for_producers_and_consumers(
    transport: Transport, vhost: str
) -> None:
    consumer = transport.consumer(["gone"], owner="w1")
    try:
        transport.publish([Outgoing(message(b"1"), routing_key="gone")])
        [first] = consumer.fetch(1, timeout=5)
        consumer.ack(first)
        connection = amqp.Connection(f"{amqp_support.HOST}:{amqp_support.PORT}", virtual_host=vhost)
        connection.connect()
        try:
            connection.channel().queue_delete("gone")  # RabbitMQ cancels the consumer
        finally:
            connection.close()
        # The producer's cache said "exists": the message came back, the queue is made again.
        assert transport.publish([Outgoing(message(b"2"), routing_key="gone")]) == [1]
        [second] = consumer.fetch(1, timeout=10)  # the consumer subscribed again
        assert second.message.body == b"2"
        consumer.ack(second)
    finally:
        consumer.close()
