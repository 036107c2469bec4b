"""Broadcast (remote control and events travel on it), against every transport that has it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from celeriac.protocol.message import Message
from celeriac.transports.base import Broadcast, Transport

from .test_transport_conformance import clock, connect, transport  # noqa: F401 - fixtures


def note(body: bytes) -> Message:
    return Message(body, "application/json", "utf-8", {"h": 1}, {"delivery_mode": 1})


def gather(sub: object, count: int, timeout: float = 5.0) -> list[Broadcast]:
    got: list[Broadcast] = []
    while len(got) < count:
        batch = sub.receive(timeout)  # type: ignore[attr-defined]
        if not batch:
            break
        got.extend(batch)
    return got


@pytest.fixture
def broadcasting(transport: Transport) -> Transport:  # noqa: F811
    if not transport.capabilities.broadcast:
        pytest.skip(f"{type(transport).__name__} has no broadcast channel")
    return transport


def test_subscribers_get_matching_broadcasts_only(broadcasting: Transport) -> None:
    workers = broadcasting.subscribe("celeryev", ["worker.#"])
    everything = broadcasting.subscribe("celeryev", ["#"])
    broadcasting.broadcast("celeryev", "task.succeeded", note(b"t"))
    broadcasting.broadcast("celeryev", "worker.heartbeat", note(b"w"))
    broadcasting.broadcast("other", "worker.heartbeat", note(b"x"))  # another exchange
    assert [b.message.body for b in gather(everything, 2)] == [b"t", b"w"]
    got = gather(workers, 1)
    assert [(b.routing_key, b.message.body) for b in got] == [("worker.heartbeat", b"w")]
    assert got[0].exchange == "celeryev"
    assert got[0].message.headers == {"h": 1}
    assert workers.receive(0.05) == []
    workers.close()
    everything.close()


def test_broadcasts_sent_before_subscribing_are_not_received(broadcasting: Transport) -> None:
    broadcasting.broadcast("celery.pidbox", "", note(b"early"))
    sub = broadcasting.subscribe("celery.pidbox")
    assert sub.receive(0.05) == []
    broadcasting.broadcast("celery.pidbox", "", note(b"late"))
    assert [b.message.body for b in gather(sub, 1)] == [b"late"]
    sub.close()


def test_broadcast_reaches_another_connection(connect: Callable[[], Transport]) -> None:  # noqa: F811
    sender, receiver = connect(), connect()
    if not sender.capabilities.broadcast:
        pytest.skip("no broadcast channel")
    sub = receiver.subscribe("celery.pidbox")
    got: list[Broadcast] = []
    waiter = threading.Thread(target=lambda: got.extend(gather(sub, 1)))
    waiter.start()
    sender.broadcast("celery.pidbox", "", note(b"ping"))
    waiter.join(10)
    assert [b.message.body for b in got] == [b"ping"]
    sub.close()


def test_closed_subscription_receives_nothing(broadcasting: Transport) -> None:
    sub = broadcasting.subscribe("celeryev")
    sub.close()
    sub.close()  # idempotent
    broadcasting.broadcast("celeryev", "task.sent", note(b"x"))
    assert sub.receive(0.05) == []
