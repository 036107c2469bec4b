"""The Redis broker against the keys kombu reads and writes (no worker processes).

Each test has a key prefix of its own on database ``TRANSPORT_DB`` and deletes its keys after.
"Kombu" here means what a Celery process does to Redis, done with redis-py directly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports import create_transport
from celeriac.transports.base import Outgoing, Transport
from celeriac.transports.redis import RedisTransport
from tests.support import redis_support

pytestmark = pytest.mark.integration

DB = redis_support.TRANSPORT_DB


@pytest.fixture
def prefix() -> Iterator[str]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    yield prefix
    redis_support.delete_prefix(DB, prefix)


@pytest.fixture
def connect(prefix: str) -> Iterator[Callable[..., RedisTransport]]:
    made: list[Transport] = []

    def make(**options: Any) -> RedisTransport:
        url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{DB}"
        transport = create_transport(url, options={"global_keyprefix": prefix, **options})
        made.append(transport)
        assert isinstance(transport, RedisTransport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def raw() -> Iterator[Any]:
    conn = redis_support.client(DB)
    yield conn
    conn.close()


def message(body: bytes, priority: int = 0) -> Message:
    return Message(body, "application/json", "utf-8", {"id": body.decode()}, {"priority": priority})


def test_a_push_by_another_client_wakes_a_waiting_fetch(
    connect: Callable[..., RedisTransport], raw: Any, prefix: str
) -> None:
    sender = connect()
    consumer = connect().consumer(["q"], owner="w1")
    envelope = json.loads(_published(sender, raw, prefix, b"kombu"))
    raw.delete(f"{prefix}q")
    timer = threading.Timer(0.2, lambda: raw.lpush(f"{prefix}q", json.dumps(envelope)))
    timer.start()
    started = time.monotonic()
    try:
        [delivery] = consumer.fetch(1, timeout=10)
    finally:
        timer.join()
    assert delivery.message.body == b"kombu"
    assert time.monotonic() - started < 5  # woken by Redis, well before the 10 s timeout


def _published(transport: RedisTransport, raw: Any, prefix: str, body: bytes) -> bytes:
    transport.publish([Outgoing(message(body), routing_key="q")])
    value: bytes = raw.lindex(f"{prefix}q", 0)
    return value


def test_queue_order_strategies(connect: Callable[..., RedisTransport]) -> None:
    publisher = connect()
    for queue in ("b", "a", "c"):
        publisher.publish(
            [Outgoing(message(f"{queue}{n}".encode()), routing_key=queue) for n in range(2)]
        )
    ordered = connect(queue_order_strategy="priority").consumer(["b", "a", "c"], owner="w1")
    assert [d.message.body for d in ordered.fetch(3, 0)] == [b"b0", b"b1", b"a0"]
    ordered.close()  # gives them back
    in_turn = connect().consumer(["b", "a", "c"], owner="w2")
    assert [d.message.body for d in in_turn.fetch(3, 0)] == [b"b0", b"a0", b"c0"]
    in_turn.close()
    by_name = connect(queue_order_strategy="sorted").consumer(["c", "b", "a"], owner="w3")
    assert [d.message.body for d in by_name.fetch(3, 0)] == [b"a0", b"a1", b"b0"]


def test_kombu_fanout_channels(connect: Callable[..., RedisTransport], raw: Any) -> None:
    transport = connect()
    prefix = transport.keys.prefix
    pubsub = raw.pubsub()
    pubsub.psubscribe(f"{prefix}/{DB}.celery.pidbox", f"{prefix}/{DB}.celeryev/*")
    for _ in range(2):
        pubsub.get_message(timeout=1)  # the subscription confirmations
    transport.broadcast("celery.pidbox", "", message(b"ping"))
    transport.broadcast("celeryev", "worker.heartbeat", message(b"beat"))
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        reply = pubsub.get_message(timeout=1)
        if reply and reply["type"] == "pmessage":
            got.append((reply["channel"].decode(), json.loads(reply["data"])))
    pubsub.close()
    assert [channel for channel, _ in got] == [
        f"{prefix}/{DB}.celery.pidbox",
        f"{prefix}/{DB}.celeryev/worker.heartbeat",
    ]
    assert got[1][1]["properties"]["delivery_info"] == {
        "exchange": "celeryev",
        "routing_key": "worker.heartbeat",
    }
    # And what a Celery process publishes there reaches a Celeriac subscription.
    subscription = transport.subscribe("celeryev", ["worker.#"])
    raw.publish(f"{prefix}/{DB}.celeryev/worker.online", json.dumps(got[1][1]))
    [received] = subscription.receive(5)
    assert (received.routing_key, received.message.body) == ("worker.online", b"beat")
    subscription.close()


def test_fanout_exchange_reaches_bound_queues_and_subscribers(
    connect: Callable[..., RedisTransport],
) -> None:
    transport = connect()
    exchange = Exchange("broadcasts", "fanout")
    for name in ("f1", "f2"):
        transport.declare(Queue(name, exchange, ""))
    subscription = transport.subscribe("broadcasts")
    assert transport.publish([Outgoing(message(b"all"), exchange="broadcasts")]) == [3]
    assert [b.message.body for b in subscription.receive(5)] == [b"all"]
    subscription.close()
    for name in ("f1", "f2"):
        [delivery] = transport.consumer([name], owner="w1").fetch(1, 0)
        assert delivery.message.body == b"all"


def test_celery_unacked_message_is_restored_after_the_visibility_timeout(
    connect: Callable[..., RedisTransport], raw: Any, prefix: str
) -> None:
    transport = connect(visibility_timeout=1)
    envelope = _published(transport, raw, prefix, b"held-by-celery")
    raw.rpop(f"{prefix}q")  # a Celery worker took it (BRPOP) and recorded it as kombu does
    tag = json.loads(envelope)["properties"]["delivery_tag"]
    raw.hset(f"{prefix}unacked", tag, f'[{envelope.decode()}, "", "q"]')
    raw.zadd(f"{prefix}unacked_index", {tag: time.time() - 5})
    [delivery] = transport.consumer(["q"], owner="w1").fetch(1, timeout=5)
    assert delivery.message.body == b"held-by-celery"
    assert raw.zscore(f"{prefix}unacked_index", tag) is not None  # now leased by Celeriac


def test_renewal_moves_kombus_unacked_index(
    connect: Callable[..., RedisTransport], raw: Any, prefix: str
) -> None:
    transport = connect()
    _published(transport, raw, prefix, b"long")
    consumer = transport.consumer(["q"], owner="w1")
    [delivery] = consumer.fetch(1, 0)
    tag = delivery.delivery_tag.partition("/")[2]
    first = raw.zscore(f"{prefix}unacked_index", tag)
    time.sleep(0.05)
    consumer.renew([delivery])
    assert raw.zscore(f"{prefix}unacked_index", tag) > first  # Celery's restore sees it live
    assert json.loads(raw.hget(f"{prefix}unacked", tag))[2] == "q"
    consumer.ack(delivery)
    consumer.close()
    assert raw.hget(f"{prefix}unacked", tag) is None


def test_without_delayed_delivery_eta_messages_go_on_the_list(
    connect: Callable[..., RedisTransport], raw: Any, prefix: str
) -> None:
    transport = connect(delayed_delivery=False)
    assert not transport.capabilities.delayed_delivery
    later = Outgoing(message(b"later"), routing_key="q", not_before=time.time() + 3600)
    transport.publish([later])
    assert raw.llen(f"{prefix}q") == 1  # a Celery worker takes it and waits for its ETA


def test_polls_when_client_tracking_is_denied(tmp_path: Path) -> None:
    with redis_support.RedisServer(tmp_path) as server:
        admin = redis_support.client(0, server.port)
        admin.execute_command("ACL", "SETUSER", "default", "-client|tracking")
        admin.close()
        transport = create_transport(server.url, options={"polling_interval": 0.05})
        try:
            consumer = transport.consumer(["q"], owner="w1")
            assert consumer.fetch(1, 0.1) == []
            assert not consumer._tracker.tracking
            timer = threading.Timer(
                0.1, lambda: transport.publish([Outgoing(message(b"x"), routing_key="q")])
            )
            timer.start()
            got = consumer.fetch(1, timeout=10)
            timer.join()
            assert [d.message.body for d in got] == [b"x"]
        finally:
            transport.close()
