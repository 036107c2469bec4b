"""A result backend that fails (unreachable, or that cannot even be made) never stops the
worker's consumer: it logs an error naming the backend and goes on."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker
from tests.support.polling import eventually

#: Nothing listens on port 1: every use of this backend fails at once (no retries).
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def broker() -> Iterator[str]:
    name = f"test-backend-errors-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    MemoryTransport.reset(name)


def worker_app(broker: str, backend: str) -> tuple[Celery, list[int]]:
    app = Celery(
        "errors",
        broker=broker,
        backend=backend,
        set_as_current=False,
        result_backend_transport_options={"retry_policy": {"max_retries": 0}},
        result_backend_always_retry=False,  # give up at once (else: until the store answers)
    )
    ran: list[int] = []

    @app.task(name="t.record")
    def record(n: int) -> int:
        ran.append(n)
        return n

    return app, ran


def errors_naming(caplog: pytest.LogCaptureFixture, url: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "celeriac.worker" and url in r.getMessage()
    ]


def test_an_unreachable_backend_is_logged_and_tasks_still_run(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="celeriac")
    app, ran = worker_app(broker, DEAD_REDIS)
    sender = Celery("sender", broker=broker, set_as_current=False)  # no backend of its own
    worker = Worker(app, hostname="w1@test", pool="threads", concurrency=1)
    worker.start()
    try:
        sender.send_task("t.record", (1,))
        eventually(lambda: ran == [1])
        # An expired message is discarded; storing its REVOKED state fails too.
        sender.send_task("t.record", (2,), expires=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        sender.send_task("t.record", (3,))
        eventually(lambda: ran == [1, 3])
        messages = errors_naming(caplog, DEAD_REDIS)
        assert any("Could not check for revoked tasks" in m for m in messages)
        assert not worker.stopping
    finally:
        worker.stop()
        sender.close()
        app.close()


def test_a_backend_that_cannot_be_made_stops_the_worker_at_start(broker: str) -> None:
    app, ran = worker_app(broker, "nosuch://anywhere")
    worker = Worker(app, hostname="w1@test", pool="threads", concurrency=1)
    try:
        with pytest.raises(ImproperlyConfigured, match=r"nosuch://anywhere"):
            worker.start()
        assert worker.consumer is None and ran == []
    finally:
        worker.stop()
        app.close()
