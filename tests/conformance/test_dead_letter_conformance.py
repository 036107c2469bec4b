"""The dead-letter store every transport keeps: list, get, requeue, purge, and its bounds.

Memory, SQLite, Redis and AMQP run the same tests (AMQP's age limit is RabbitMQ's message TTL
in real time, so the age test, which moves an injected clock, covers the other three).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac._time import Clock, ManualClock
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports.base import Outgoing, Transport
from celeriac.transports.memory import MemoryTransport
from celeriac.transports.sqlite import SQLiteTransport
from tests.support import amqp_support, redis_support

Factory = Callable[[Path, Clock, dict[str, Any]], AbstractContextManager[Transport]]


@contextmanager
def memory(tmp_path: Path, clock: Clock, options: dict[str, Any]) -> Iterator[Transport]:
    name = f"dead-{tmp_path.name}"
    transport = MemoryTransport(f"memory://{name}", options=options, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        MemoryTransport.reset(name)


@contextmanager
def sqlite(tmp_path: Path, clock: Clock, options: dict[str, Any]) -> Iterator[Transport]:
    transport = SQLiteTransport(f"sqlite:///{tmp_path}/b.sqlite", options=options, clock=clock)
    try:
        yield transport
    finally:
        transport.close()


@contextmanager
def redis(tmp_path: Path, clock: Clock, options: dict[str, Any]) -> Iterator[Transport]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix(tmp_path)
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{redis_support.TRANSPORT_DB}"
    transport = create_transport(url, options={**options, "global_keyprefix": prefix}, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        redis_support.delete_prefix(redis_support.TRANSPORT_DB, prefix)


@contextmanager
def amqp(tmp_path: Path, clock: Clock, options: dict[str, Any]) -> Iterator[Transport]:
    vhost = amqp_support.take_vhost()
    transport = create_transport(amqp_support.url(vhost), options=options, clock=clock)
    try:
        yield transport
    finally:
        transport.close()
        amqp_support.drop_vhost(vhost)


ALL: list[Factory] = [memory, sqlite, redis, amqp]


def _ids(factory: Factory) -> str:
    return factory.__name__


def bury(transport: Transport, queue: str, *bodies: bytes, reason: str = "bad") -> None:
    """Publish ``bodies`` to ``queue`` and dead-letter each of them."""
    sent = [Message(b, "application/json", "utf-8", {"id": b.decode()}) for b in bodies]
    transport.publish([Outgoing(m, routing_key=queue) for m in sent])
    consumer = transport.consumer([queue], owner="burier")
    try:
        left = set(bodies)
        while left:
            for delivery in consumer.fetch(len(left), timeout=5):
                consumer.dead_letter(delivery, f"{reason} {delivery.message.body.decode()}")
                left.discard(delivery.message.body)
    finally:
        consumer.close()


@pytest.mark.parametrize("factory", ALL, ids=_ids)
def test_list_get_requeue_and_purge(factory: Factory, tmp_path: Path) -> None:
    with factory(tmp_path, ManualClock(), {}) as transport:
        for name in ("dq1", "dq2"):  # AMQP: the queues exist, as a worker would declare them
            transport.consumer([name], owner="declare").close()
        bury(transport, "dq1", b"a")
        bury(transport, "dq1", b"b")
        bury(transport, "dq2", b"c")
        letters = transport.dead_letters()
        assert [(d.queue, d.message.body, d.reason) for d in letters] == [
            ("dq1", b"a", "bad a"),
            ("dq1", b"b", "bad b"),
            ("dq2", b"c", "bad c"),
        ]
        assert len({d.id for d in letters}) == 3 and all(d.id for d in letters)
        assert all(d.is_message for d in letters)
        first = transport.get_dead_letter(letters[0].id)
        assert first is not None and first.message == letters[0].message
        assert transport.get_dead_letter("no-such-letter") is None

        requeued = transport.requeue_dead_letter(letters[1].id)
        assert requeued is not None and requeued.message.body == b"b"
        assert transport.requeue_dead_letter(letters[1].id) is None  # once only
        consumer = transport.consumer(["dq1"], owner="after-the-fix")
        [again] = consumer.fetch(1, timeout=5)
        assert again.message.body == b"b" and again.message.headers == {"id": "b"}
        consumer.ack(again)
        consumer.close()
        assert [d.message.body for d in transport.dead_letters()] == [b"a", b"c"]

        assert transport.purge_dead_letters("dq2") == 1
        assert [d.message.body for d in transport.dead_letters()] == [b"a"]
        assert transport.purge_dead_letters() == 1
        assert transport.dead_letters() == []


@pytest.mark.parametrize("factory", ALL, ids=_ids)
def test_the_oldest_letters_past_the_cap_are_dropped(
    factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with factory(tmp_path, ManualClock(), {"dead_letter_max_entries": 3}) as transport:
        transport.consumer(["cap"], owner="declare").close()
        with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
            for body in (b"1", b"2", b"3", b"4", b"5"):
                bury(transport, "cap", body)
            kept = [d.message.body for d in transport.dead_letters()]
        assert kept == [b"3", b"4", b"5"]
        if factory is amqp:
            return  # RabbitMQ drops them itself (x-max-length), without telling anyone
        dropped = [r.getMessage() for r in caplog.records if "Dropped" in r.getMessage()]
        assert dropped and "dead_letter_max_entries=3" in dropped[0]


@pytest.mark.parametrize("factory", [memory, sqlite, redis], ids=_ids)
def test_letters_older_than_the_age_limit_are_dropped(
    factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    with factory(tmp_path, clock, {"dead_letter_max_age": 3600}) as transport:
        bury(transport, "age", b"old")
        clock.advance(3000)
        bury(transport, "age", b"young")
        clock.advance(1000)  # "old" is 4000 s old now, "young" 1000 s
        with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
            assert [d.message.body for d in transport.dead_letters()] == [b"young"]
        assert any("Dropped the 1 oldest" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"dead_letter_max_entries": 0}, "dead_letter_max_entries must be a positive integer"),
        ({"dead_letter_max_entries": "many"}, "dead_letter_max_entries"),
        ({"dead_letter_max_age": -1}, "dead_letter_max_age must be a positive number"),
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, options: dict[str, Any], error: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=error):
        SQLiteTransport(f"sqlite:///{tmp_path}/b.sqlite", options=options)


def test_the_app_passes_its_dead_letter_settings_to_the_transport(tmp_path: Path) -> None:
    clock = ManualClock()
    app = Celery("dlq", broker=f"sqlite:///{tmp_path}/app.sqlite", clock=clock)
    app.conf.update(dead_letter_max_entries=2, dead_letter_max_age=60)
    try:
        bury(app.transport, "celery", b"1", b"2", b"3")
        assert [d.message.body for d in app.transport.dead_letters()] == [b"2", b"3"]
        clock.advance(61)
        assert app.transport.dead_letters() == []
    finally:
        app.close()


def test_an_unbounded_rabbitmq_queue_from_before_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import amqp as py_amqp

    with amqp(tmp_path, ManualClock(), {}) as transport:
        vhost = transport.connector.addresses[0].virtual_host  # type: ignore[attr-defined]
        old = py_amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost)
        old.connect()
        old.channel().queue_declare("celeriac.dead_letters", durable=True, auto_delete=False)
        old.close()
        with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
            transport.consumer(["old"], owner="declare").close()
            bury(transport, "old", b"kept")
        assert [d.message.body for d in transport.dead_letters()] == [b"kept"]
    assert any(
        "exists without Celeriac's dead-letter limits" in r.getMessage() for r in caplog.records
    )


def test_none_lifts_a_bound_and_reaches_the_transport(tmp_path: Path) -> None:
    from celeriac.app._connection_options import transport_options

    app = Celery("dlq", broker=f"sqlite:///{tmp_path}/none.sqlite")
    assert "dead_letter_max_entries" not in transport_options(app.conf)  # default: 10,000
    app.conf.update(dead_letter_max_entries=None, dead_letter_max_age=None)
    try:
        bury(app.transport, "celery", *(str(i).encode() for i in range(5)))
        assert transport_options(app.conf)["dead_letter_max_entries"] is None
        assert len(app.transport.dead_letters()) == 5
    finally:
        app.close()


@pytest.mark.parametrize("factory", [memory, sqlite, redis], ids=_ids)
def test_a_poison_message_the_broker_sets_aside_is_logged_once(
    factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    options = {"max_deliveries": 2, "lease_timeout": 30}
    with factory(tmp_path, clock, options) as transport:
        transport.publish([Outgoing(Message(b"poison", "text/plain", "utf-8"), routing_key="p")])
        consumer = transport.consumer(["p"], owner="dies")
        with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
            for _ in range(3):  # two deliveries whose worker "died", then the third take
                consumer.fetch(1, timeout=0)
                clock.advance(31)
            consumer.fetch(1, timeout=0)  # (Redis logs what its scripts set aside here)
            consumer.close()
        assert [d.message.body for d in transport.dead_letters("p")] == [b"poison"]
    lines = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 1 and "'p'" in lines[0] and "delivered 2 times" in lines[0], lines
