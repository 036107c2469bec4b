"""``delay()`` while the broker is down: the attempts and pauses are the retry policy's, once.

Against a Redis port nothing listens on (connection refused at once) and a RabbitMQ one. The
producer sleeps on the app's injected clock, so the pauses are read, never waited; the
attempts are counted where the transport opens its connections. No wall time is asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.app._publish_retry import PublishRetry
from celeriac.exceptions import OperationalError
from celeriac.transports.redis import RedisTransport
from tests.support import redis_support

pytestmark = pytest.mark.integration


class SleepLog(ManualClock):
    """A manual clock that remembers each sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        super().sleep(seconds)


def _dead_redis_app(clock: ManualClock) -> tuple[Celery, list[int]]:
    """An app whose broker is a Redis port nothing listens on; the list counts connects."""
    app = Celery("down", broker=f"redis://127.0.0.1:{redis_support.free_port()}/9", clock=clock)
    transport = app.transport
    assert isinstance(transport, RedisTransport)
    connects: list[int] = []
    locate = transport.connector.locate

    def counted() -> Any:
        connects.append(1)
        return locate()

    transport.connector.locate = counted
    return app, connects


def test_the_default_policy_tries_four_times_and_pauses_0_6_s() -> None:
    clock = SleepLog()
    app, connects = _dead_redis_app(clock)
    try:
        with pytest.raises(OperationalError, match=r"could not .*Is the Redis server running"):
            app.send_task("proj.add", (1, 2))
    finally:
        app.close()
    # Celery's task_publish_retry_policy: 3 retries, 0 s start, 0.2 s step, 1 s cap.
    assert len(connects) == 4  # 1 + max_retries: the transport adds no retries of its own
    assert clock.sleeps == [0.0, 0.2, 0.4]
    assert list(PublishRetry.from_policy(True, app.conf.task_publish_retry_policy).pauses()) == [
        0.0,
        0.2,
        0.4,
    ]


def test_a_longer_policy_is_followed_exactly() -> None:
    clock = SleepLog()
    app, connects = _dead_redis_app(clock)
    policy = {"max_retries": 10, "interval_start": 0, "interval_step": 0.2, "interval_max": 1}
    try:
        with pytest.raises(OperationalError):
            app.send_task("proj.add", retry_policy=policy)
    finally:
        app.close()
    assert len(connects) == 11
    assert clock.sleeps == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert sum(clock.sleeps) == pytest.approx(7.0)


def test_without_retry_one_attempt_and_no_pause() -> None:
    clock = SleepLog()
    app, connects = _dead_redis_app(clock)
    app.conf.task_publish_retry = False
    try:
        with pytest.raises(OperationalError):
            app.send_task("proj.add")
    finally:
        app.close()
    assert (len(connects), clock.sleeps) == (1, [])


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"max_retries": "3"}, "max_retries'] must be a whole number or None"),
        ({"interval_step": -1}, "interval_step'] must be a number of seconds >= 0"),
    ],
)
def test_a_bad_policy_is_a_clear_error(policy: dict[str, Any], error: str) -> None:
    with pytest.raises(Exception, match=error):
        PublishRetry.from_policy(True, policy)


def test_rabbitmq_down_follows_the_same_policy() -> None:
    clock = SleepLog()
    port = redis_support.free_port()  # any free loopback port: nothing listens there
    app = Celery("down", broker=f"amqp://guest:guest@127.0.0.1:{port}//", clock=clock)
    transport: Any = app.transport
    connects: list[int] = []
    connect = transport.connector.connect

    def counted(**kwargs: Any) -> Any:
        connects.append(1)
        return connect(**kwargs)

    transport.connector.connect = counted
    try:
        with pytest.raises(OperationalError):
            app.send_task("proj.add")
    finally:
        app.close()
    assert (len(connects), clock.sleeps) == (4, [0.0, 0.2, 0.4])


def _counted_redis(url: str, **options: Any) -> tuple[RedisTransport, list[int]]:
    fast = {"interval_start": 0, "interval_step": 0, "interval_max": 0, **options}
    transport = RedisTransport(url, options=fast)
    connects: list[int] = []
    locate = transport.connector.locate

    def counted() -> Any:
        connects.append(1)
        return locate()

    transport.connector.locate = counted
    return transport, connects


@pytest.mark.parametrize(
    ("options", "attempts"),
    [
        ({"broker_connection_max_retries": 3}, 4),
        ({"broker_connection_max_retries": 3, "broker_connection_retry": False}, 1),
        (
            {
                "broker_connection_max_retries": 3,
                "broker_connection_retry": False,
                "broker_connection_retry_on_startup": True,
            },
            4,
        ),
        ({"broker_connection_max_retries": 3, "broker_connection_retry_on_startup": False}, 1),
    ],
)
def test_connection_retry_settings_at_startup(options: dict[str, Any], attempts: int) -> None:
    url = f"redis://127.0.0.1:{redis_support.free_port()}/9"
    transport, connects = _counted_redis(url, **options)
    try:
        with pytest.raises(OperationalError):
            transport.queue_length("q")
    finally:
        transport.close()
    assert len(connects) == attempts


@pytest.mark.parametrize(("retry", "reconnects"), [(True, 3), (False, 0)])
def test_broker_connection_retry_after_a_lost_connection(
    tmp_path: Path, retry: bool, reconnects: int
) -> None:
    with redis_support.RedisServer(tmp_path) as server:
        transport, connects = _counted_redis(
            server.url, broker_connection_max_retries=3, broker_connection_retry=retry
        )
        try:
            assert transport.queue_length("q") == 0
            server.stop()
            connects.clear()
            with pytest.raises(OperationalError):
                transport.queue_length("q")
        finally:
            transport.close()
    # The first try runs on the connection that broke; each retry opens a new one.
    assert len(connects) == reconnects


@pytest.mark.parametrize(
    ("options", "attempts", "said"),
    [
        ({}, 4, "Gave up after 3 reconnection attempts"),
        ({"broker_connection_retry_on_startup": False}, 1, "broker_connection_retry_on_startup"),
        ({"broker_connection_retry": False}, 1, "broker_connection_retry_on_startup is off"),
    ],
)
def test_a_rabbitmq_consumer_follows_the_connection_retry_settings(
    options: dict[str, Any], attempts: int, said: str
) -> None:
    from celeriac.transports.amqp import AmqpTransport

    url = f"amqp://guest:guest@127.0.0.1:{redis_support.free_port()}//"
    fast = {"interval_start": 0, "interval_step": 0, "interval_max": 0.001}
    transport = AmqpTransport(url, options={**fast, "broker_connection_max_retries": 3, **options})
    connects: list[int] = []
    connect = transport.connector.connect

    def counted(**kwargs: Any) -> Any:
        connects.append(1)
        return connect(**kwargs)

    transport.connector.connect = counted  # type: ignore[method-assign]
    consumer = transport.consumer(["q"], owner="w")
    try:
        with pytest.raises(OperationalError, match=said):
            consumer.fetch(1, timeout=5)
    finally:
        consumer.close()
        transport.close()
    assert len(connects) == attempts
