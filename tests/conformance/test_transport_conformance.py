"""One suite every transport must pass (memory, sqlite, redis; amqp joins as a param).

Each factory in ``FACTORIES`` takes ``(tmp_path, clock)`` and is a context manager yielding a
transport; called twice with the same arguments it yields a second transport connected to the
same broker, and on exit it cleans up what it made. Time is a ``ManualClock``: tests move it
instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest

from celeriac._time import Clock, ManualClock
from celeriac.exceptions import ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports import create_transport
from celeriac.transports.base import Consumer, Delivery, Outgoing, Transport
from celeriac.transports.memory import MemoryTransport
from celeriac.transports.sqlite import SQLiteTransport
from tests.support import amqp_support, redis_support

LEASE_TIMEOUT = 30.0
MAX_DELIVERIES = 4
OPTIONS = {"lease_timeout": LEASE_TIMEOUT, "max_deliveries": MAX_DELIVERIES}

TransportFactory = Callable[[Path, Clock], AbstractContextManager[Transport]]


@contextmanager
def memory_transport(tmp_path: Path, clock: Clock) -> Iterator[Transport]:
    name = f"conformance-{tmp_path.name}"
    transport = MemoryTransport(f"memory://{name}", options=OPTIONS, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        MemoryTransport.reset(name)


@contextmanager
def sqlite_transport(tmp_path: Path, clock: Clock) -> Iterator[Transport]:
    transport = SQLiteTransport(f"sqlite:///{tmp_path}/broker.sqlite", options=OPTIONS, clock=clock)
    try:
        yield transport
    finally:
        transport.close()


@contextmanager
def redis_transport(tmp_path: Path, clock: Clock) -> Iterator[Transport]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix(tmp_path)  # the same for every call in one test
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{redis_support.TRANSPORT_DB}"
    transport = create_transport(url, options={**OPTIONS, "global_keyprefix": prefix}, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        redis_support.delete_prefix(redis_support.TRANSPORT_DB, prefix)


_AMQP_VHOSTS: dict[Path, str] = {}  # one vhost per test, shared by its transports


@contextmanager
def amqp_transport(tmp_path: Path, clock: Clock) -> Iterator[Transport]:
    first = tmp_path not in _AMQP_VHOSTS
    if first:
        _AMQP_VHOSTS[tmp_path] = amqp_support.take_vhost()
    url = amqp_support.url(_AMQP_VHOSTS[tmp_path])
    # max_priority: Celery's task_queue_max_priority, so every queue orders by priority.
    transport = create_transport(url, options={**OPTIONS, "max_priority": 9}, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        if first:
            amqp_support.drop_vhost(_AMQP_VHOSTS.pop(tmp_path))


FACTORIES: list[TransportFactory] = [
    memory_transport,
    sqlite_transport,
    redis_transport,
    amqp_transport,
]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=FACTORIES, ids=lambda factory: factory.__name__.removesuffix("_transport"))
def connect(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[Callable[[], Transport]]:
    """Opens transports to one broker; all are closed when the test ends."""
    factory: TransportFactory = request.param
    with ExitStack() as stack:
        yield lambda: stack.enter_context(factory(tmp_path, clock))


@pytest.fixture
def transport(connect: Callable[[], Transport]) -> Transport:
    return connect()


def message(body: bytes = b"hello", *, priority: int | None = None) -> Message:
    properties = {} if priority is None else {"priority": priority}
    return Message(body, "application/json", "utf-8", {"id": body.decode()}, properties)


def send(transport: Transport, queue: str, *bodies: bytes, not_before: float | None = None) -> None:
    items = [Outgoing(message(b), routing_key=queue, not_before=not_before) for b in bodies]
    assert transport.publish(items) == [1] * len(bodies)


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.message.body for d in deliveries]


def take(consumer: Consumer, max_count: int = 100) -> list[Delivery]:
    return consumer.fetch(max_count, timeout=0)


def needs(transport: Transport, capability: str) -> None:
    if not getattr(transport.capabilities, capability):
        pytest.skip(f"{type(transport).__name__} has no {capability}")


def test_roundtrip_preserves_every_part(transport: Transport) -> None:
    sent = Message(
        b'[[1, 2], {"x": null}, {}]',
        "application/json",
        "utf-8",
        {"task": "add", "retries": 0, "eta": None, "nested": {"a": [1, "b", True, 2.5]}},
        {"correlation_id": "c1", "reply_to": "r", "delivery_mode": 2, "priority": 3},
    )
    assert transport.publish([Outgoing(sent, routing_key="q")]) == [1]
    [delivery] = take(transport.consumer(["q"], owner="w1"))
    assert delivery.message == sent
    assert (delivery.queue, delivery.routing_key, delivery.exchange) == ("q", "q", "")
    assert (delivery.redelivered, delivery.delivery_count) == (False, 1)


def test_batch_keeps_publish_order(transport: Transport) -> None:
    sent = [str(i).encode() for i in range(20)]
    send(transport, "q", *sent)
    consumer = transport.consumer(["q"], owner="w1")
    assert bodies(take(consumer, 5)) + bodies(take(consumer, 15)) == sent


def test_fetch_times_out_empty(transport: Transport) -> None:
    assert transport.consumer(["q"], owner="w1").fetch(1, timeout=0.05) == []


def test_blocked_fetch_gets_a_message_published_meanwhile(connect: Callable[[], Transport]) -> None:
    consumer = connect().consumer(["q"], owner="w1")
    publisher = connect()
    timer = threading.Timer(0.05, send, args=(publisher, "q", b"late"))
    timer.start()
    try:
        assert bodies(consumer.fetch(1, timeout=10)) == [b"late"]
    finally:
        timer.join()


def test_max_count_is_respected(transport: Transport) -> None:
    send(transport, "q", b"1", b"2", b"3", b"4", b"5")
    consumer = transport.consumer(["q"], owner="w1")
    assert bodies(take(consumer, 2)) == [b"1", b"2"]
    assert bodies(take(consumer, 10)) == [b"3", b"4", b"5"]


def test_ack_removes_for_good(transport: Transport, clock: ManualClock) -> None:
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    [delivery] = take(consumer)
    consumer.ack(delivery)
    consumer.ack(delivery)  # idempotent
    clock.advance(LEASE_TIMEOUT + 1)
    assert take(consumer) == []
    assert transport.queue_length("q") == 0


def test_reject_with_requeue_redelivers(transport: Transport) -> None:
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    [first] = take(consumer)
    consumer.reject(first, requeue=True)
    [again] = take(consumer)
    assert again.message == first.message
    # A redelivery, but a give-back is not a failed delivery: the count stays at 1.
    assert (again.redelivered, again.delivery_count) == (True, 1)
    assert again.delivery_tag != first.delivery_tag


def test_give_backs_never_count_toward_max_deliveries(
    connect: Callable[[], Transport], clock: ManualClock
) -> None:
    transport = connect()
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    for _ in range(MAX_DELIVERIES + 2):  # Reject(requeue=True) again and again
        [delivery] = take(consumer)
        assert delivery.delivery_count == 1
        consumer.reject(delivery, requeue=True)
    consumer.close()
    for turn in range(MAX_DELIVERIES + 2):  # a worker restarted (warm) again and again
        restarted = connect().consumer(["q"], owner=f"w{turn}")
        [delivery] = take(restarted)
        assert (delivery.redelivered, delivery.delivery_count) == (True, 1)
        restarted.close()
    consumer = transport.consumer(["q"], owner="w1")
    if transport.capabilities.delayed_delivery:
        for _ in range(MAX_DELIVERIES + 2):  # an early ETA given back to the broker
            [delivery] = take(consumer)
            consumer.defer(delivery, clock.time() + 1)
            clock.advance(2)
    [delivery] = take(consumer)
    assert delivery.delivery_count == 1
    consumer.ack(delivery)
    assert transport.dead_letters("q") == []


def test_a_requeue_after_its_worker_died_counts(transport: Transport) -> None:
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    for attempt in range(1, MAX_DELIVERIES + 1):
        [delivery] = take(consumer)
        assert delivery.delivery_count == attempt
        consumer.reject(delivery, requeue=True, failed=True)  # its pool process died
    assert take(consumer) == []
    [dead] = transport.dead_letters("q")
    assert f"delivered {MAX_DELIVERIES} times without being acknowledged" in dead.reason


def test_reject_without_requeue_dead_letters(transport: Transport) -> None:
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    [delivery] = take(consumer)
    consumer.reject(delivery, requeue=False)
    assert take(consumer) == []
    [dead] = transport.dead_letters("q")
    assert (dead.message, dead.queue, dead.reason) == (delivery.message, "q", "rejected")


def test_dead_letter_keeps_reason(transport: Transport, clock: ManualClock) -> None:
    send(transport, "q", b"a", b"b")
    send(transport, "other", b"c")
    consumer = transport.consumer(["q", "other"], owner="w1")
    by_body = {d.message.body: d for d in take(consumer)}
    consumer.dead_letter(by_body[b"b"], "cannot decode")
    consumer.dead_letter(by_body[b"c"], "unknown task")
    consumer.dead_letter(by_body[b"c"], "twice")  # no longer held: nothing happens
    assert [(d.message.body, d.reason) for d in transport.dead_letters()] == [
        (b"b", "cannot decode"),
        (b"c", "unknown task"),
    ]
    [dead] = transport.dead_letters("q")
    assert (dead.queue, dead.dead_lettered_at) == ("q", clock.time())
    assert transport.dead_letters("nowhere") == []


def test_defer_holds_until_time(transport: Transport, clock: ManualClock) -> None:
    needs(transport, "delayed_delivery")
    send(transport, "q", b"a")
    consumer = transport.consumer(["q"], owner="w1")
    [delivery] = take(consumer)
    consumer.defer(delivery, clock.time() + 60)
    assert take(consumer) == []
    clock.advance(59)
    assert take(consumer) == []
    clock.advance(1)
    assert bodies(take(consumer)) == [b"a"]


def test_not_before_holds_until_time(transport: Transport, clock: ManualClock) -> None:
    needs(transport, "delayed_delivery")
    send(transport, "q", b"later", not_before=clock.time() + 10)
    send(transport, "q", b"now")
    consumer = transport.consumer(["q"], owner="w1")
    assert bodies(take(consumer)) == [b"now"]
    clock.advance(10)
    assert bodies(take(consumer)) == [b"later"]


def test_delayed_messages_lists_what_waits_for_a_time(
    transport: Transport, clock: ManualClock
) -> None:
    send(transport, "q", b"later", not_before=clock.time() + 20)
    send(transport, "q", b"sooner", not_before=clock.time() + 10)
    send(transport, "q", b"now")
    listed = transport.delayed_messages("q")
    if type(transport).__name__ == "AmqpTransport":  # its delayed messages wait in TTL queues
        assert listed == []
        return
    assert [(at - clock.time(), m.body) for at, m in listed] == [(10, b"sooner"), (20, b"later")]
    consumer = transport.consumer(["q"], owner="w1")
    [delivery] = take(consumer)
    consumer.defer(delivery, clock.time() + 5)
    assert [m.body for _, m in transport.delayed_messages("q", limit=2)] == [b"now", b"sooner"]


def test_blocked_fetch_notices_the_clock_reach_not_before(
    transport: Transport, clock: ManualClock
) -> None:
    needs(transport, "delayed_delivery")
    send(transport, "q", b"eta", not_before=clock.time() + 60)
    consumer = transport.consumer(["q"], owner="w1")
    got: list[Delivery] = []
    fetching = threading.Thread(target=lambda: got.extend(consumer.fetch(1, timeout=10)))
    fetching.start()
    clock.advance(60)
    fetching.join()
    assert bodies(got) == [b"eta"]


def test_delayed_messages_are_waiting_messages(transport: Transport, clock: ManualClock) -> None:
    needs(transport, "delayed_delivery")
    send(transport, "q", b"later", not_before=clock.time() + 60)
    assert transport.queue_length("q") == 1
    assert transport.purge("q") == 1
    clock.advance(60)
    assert take(transport.consumer(["q"], owner="w1")) == []


def test_higher_priority_first_then_fifo(transport: Transport) -> None:
    needs(transport, "priorities")
    levels = {b"p0": 0, b"p9a": 9, b"p5": 5, b"p9b": 9, b"p1": 1, b"none": None}
    items = [Outgoing(message(body, priority=p), routing_key="q") for body, p in levels.items()]
    transport.publish(items)
    consumer = transport.consumer(["q"], owner="w1")
    expected = [b"p9a", b"p9b", b"p5", b"p1", b"p0", b"none"]
    if getattr(transport, "lower_priority_first", False):
        # kombu's order on Redis (wire.md §2.1): steps 0-2, 3-5, 6-8, 9, lowest first.
        expected = [b"p0", b"p1", b"none", b"p5", b"p9a", b"p9b"]
    assert bodies(take(consumer, 2)) + bodies(take(consumer)) == expected


def test_expired_lease_returns_message_and_stale_ack_is_noop(
    transport: Transport, clock: ManualClock
) -> None:
    needs(transport, "leases")
    send(transport, "q", b"a")
    slow, other = transport.consumer(["q"], owner="w1"), transport.consumer(["q"], owner="w2")
    [stale] = take(slow)
    assert take(other) == []
    clock.advance(LEASE_TIMEOUT + 1)
    [current] = take(other)
    assert (current.redelivered, current.delivery_count) == (True, 2)
    slow.ack(stale)  # the lease was lost: this must not delete other's claim
    other.reject(current, requeue=True)
    assert bodies(take(other)) == [b"a"]


def test_renew_keeps_the_lease(transport: Transport, clock: ManualClock) -> None:
    needs(transport, "leases")
    send(transport, "q", b"a")
    holder, other = transport.consumer(["q"], owner="w1"), transport.consumer(["q"], owner="w2")
    [delivery] = take(holder)
    clock.advance(LEASE_TIMEOUT - 5)
    holder.renew([delivery])
    clock.advance(10)
    assert take(other) == []
    clock.advance(LEASE_TIMEOUT)
    assert bodies(take(other)) == [b"a"]


def test_close_gives_held_messages_back(transport: Transport) -> None:
    send(transport, "q", b"a", b"b", b"c")
    closing = transport.consumer(["q"], owner="w1")
    held = take(closing, 2)
    closing.close()
    closing.close()  # idempotent
    closing.ack(held[0])  # no longer held: nothing happens
    again = take(transport.consumer(["q"], owner="w2"))
    assert sorted(bodies(again)) == [b"a", b"b", b"c"]
    assert {d.message.body for d in again if d.redelivered} == {b"a", b"b"}


def test_queue_length_and_purge_count_waiting_messages(transport: Transport) -> None:
    send(transport, "q", b"a", b"b", b"c")
    send(transport, "other", b"d")
    consumer = transport.consumer(["q"], owner="w1")
    [leased] = take(consumer, 1)
    assert transport.queue_length("q") == 2
    assert transport.purge("q") == 2
    assert (transport.queue_length("q"), transport.queue_length("other")) == (0, 1)
    assert transport.purge("empty") == 0
    consumer.reject(leased, requeue=True)  # leased messages survive a purge
    assert bodies(take(consumer)) == [b"a"]


def test_exchanges_route_by_type(transport: Transport) -> None:
    direct, topic, fanout = (
        Exchange("ex.direct", "direct"),
        Exchange("ex.topic", "topic"),
        Exchange("ex.fanout", "fanout"),
    )
    declared = [
        Queue("d1", direct, "images"),
        Queue("t.one", topic, "news.*"),
        Queue("t.all", topic, "#"),
        Queue("f1", fanout, "ignored"),
        Queue("f2", fanout, "also.ignored"),
        Queue("plain"),
    ]
    for queue in declared + declared:  # declaring twice changes nothing
        transport.declare(queue)
    counts = transport.publish(
        [
            Outgoing(message(b"1"), exchange="ex.direct", routing_key="images"),
            Outgoing(message(b"2"), exchange="ex.direct", routing_key="videos"),
            Outgoing(message(b"3"), exchange="ex.topic", routing_key="news.sport"),
            Outgoing(message(b"4"), exchange="ex.topic", routing_key="news.sport.today"),
            Outgoing(message(b"5"), exchange="ex.fanout", routing_key="anything"),
            Outgoing(message(b"6"), exchange="plain", routing_key="plain"),
            Outgoing(message(b"7"), exchange="", routing_key="undeclared"),
            Outgoing(message(b"8"), exchange="nobody", routing_key="x"),
        ]
    )
    assert counts == [1, 0, 2, 1, 2, 1, 1, 0]
    received = {
        name: take(transport.consumer([name], owner="w1"))
        for name in ["d1", "t.one", "t.all", "f1", "f2", "plain", "undeclared"]
    }
    [direct_delivery] = received["d1"]
    assert (direct_delivery.exchange, direct_delivery.routing_key) == ("ex.direct", "images")
    assert {name: bodies(got) for name, got in received.items()} == {
        "d1": [b"1"],
        "t.one": [b"3"],
        "t.all": [b"3", b"4"],
        "f1": [b"5"],
        "f2": [b"5"],
        "plain": [b"6"],
        "undeclared": [b"7"],
    }


def test_consumers_see_only_their_queues(transport: Transport) -> None:
    send(transport, "a", b"for-a")
    send(transport, "b", b"for-b")
    assert bodies(take(transport.consumer(["b"], owner="w1"))) == [b"for-b"]
    assert bodies(take(transport.consumer(["a", "c"], owner="w2"))) == [b"for-a"]


def test_consumer_takes_from_all_its_queues(transport: Transport) -> None:
    send(transport, "a", b"a1", b"a2", b"a3")
    send(transport, "b", b"b1")
    consumer = transport.consumer(["a", "b"], owner="w1")
    first = take(consumer, 2)
    assert b"b1" in bodies(first)
    assert sorted(bodies(first + take(consumer))) == [b"a1", b"a2", b"a3", b"b1"]


def test_two_consumers_never_share_a_message(connect: Callable[[], Transport]) -> None:
    sent = {str(i).encode() for i in range(60)}
    send(connect(), "q", *sorted(sent))
    consumers = [connect().consumer(["q"], owner=f"w{i}") for i in range(2)]
    got: list[list[bytes]] = [[], []]

    def drain(index: int) -> None:
        while batch := consumers[index].fetch(3, timeout=0):
            got[index].extend(bodies(batch))  # held, never acked: leases stay taken

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == sorted(sent)


def test_message_never_acked_is_dead_lettered_after_max_deliveries(
    transport: Transport, clock: ManualClock
) -> None:
    needs(transport, "leases")
    send(transport, "q", b"poison", b"fine")
    consumer = transport.consumer(["q"], owner="w1")
    for attempt in range(1, MAX_DELIVERIES + 1):
        [delivery] = take(consumer, 1)
        assert (delivery.message.body, delivery.delivery_count) == (b"poison", attempt)
        clock.advance(LEASE_TIMEOUT + 1)  # the worker "died": its lease lapses
    assert bodies(take(consumer)) == [b"fine"]
    [dead] = transport.dead_letters("q")
    assert dead.message.body == b"poison"
    assert f"delivered {MAX_DELIVERIES} times without being acknowledged" in dead.reason


def test_lease_renew_interval_is_a_third_of_the_lease(transport: Transport) -> None:
    needs(transport, "leases")
    assert transport.lease_renew_interval == pytest.approx(LEASE_TIMEOUT / 3)


def test_closed_transport_refuses_work(connect: Callable[[], Transport]) -> None:
    transport = connect()
    transport.close()
    transport.close()  # idempotent
    with pytest.raises(TransportError):
        send(transport, "q", b"a")


# The factory that picks these implementations by URL scheme.


def test_create_transport_picks_by_scheme(tmp_path: Path, clock: ManualClock) -> None:
    memory = create_transport("memory://factory-test", clock=clock)
    sqlite = create_transport(f"sqlite:///{tmp_path}/b.sqlite", options={"x": 1}, clock=clock)
    try:
        assert isinstance(memory, MemoryTransport)
        assert isinstance(sqlite, SQLiteTransport)
    finally:
        memory.close()
        sqlite.close()
        MemoryTransport.reset("factory-test")


@pytest.mark.parametrize(
    "url", ["kafka://:s3cret@localhost:9092/0", "nats://guest:s3cret@localhost:4222", "nonsense"]
)
def test_create_transport_names_unknown_url_without_its_password(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        create_transport(url)
    assert "s3cret" not in str(raised.value)
    assert "memory://" in str(raised.value)
    assert "sqlite://" in str(raised.value)
    assert url.replace("s3cret", "**") in str(raised.value)


def test_create_transport_rejects_a_bad_option() -> None:
    with pytest.raises(ImproperlyConfigured, match="lease_timeout"):
        create_transport("memory://", options={"lease_timeout": "soon"})
