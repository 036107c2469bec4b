"""A result-store outage never turns a success into a failure, nor runs a task twice.

The result store is a private redis-server that the test stops for a few seconds while
``acks_late`` tasks finish (the broker, the machine's Redis, stays up). With
``result_backend_always_retry`` (on by default) the worker keeps each outcome and stores it
once the store is back; the leases stay renewed meanwhile, so no other consumer runs the
tasks again; and each task's ``link`` callback runs once, after its SUCCESS was stored.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.lifecycle import Worker
from tests.support import redis_support
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

TASKS = 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[redis_support.RedisServer]:
    redis_support.require_redis()
    with redis_support.RedisServer(tmp_path, appendonly=True) as server:  # results survive
        yield server


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    prefix, db = redis_support.unique_prefix(), redis_support.TRANSPORT_DB
    yield f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}", prefix
    redis_support.delete_prefix(db, prefix)


def make_app(broker: tuple[str, str], store_url: str, log: dict[str, list[Any]]) -> Celery:
    url, prefix = broker
    app = Celery("outage", broker=url, backend=store_url, set_as_current=False)
    app.conf.broker_transport_options = {
        "global_keyprefix": prefix,
        "lease_timeout": 1.0,
        "recover_interval": 0.2,
    }
    # The backend gives up at once; what keeps the outcome is result_backend_always_retry.
    app.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}
    app.conf.result_backend_max_sleep_between_retries_ms = 300
    lock = threading.Lock()

    @app.task(name="t.work", bind=True, acks_late=True)
    def work(self: Any, n: int) -> int:
        with lock:
            log["runs"].append(self.request.id)
        time.sleep(0.3)
        return n * 10

    @app.task(name="t.after", bind=True)
    def after(self: Any, value: int) -> None:
        parent = app.AsyncResult(self.request.parent_id)
        with lock:
            log["callbacks"].append((self.request.parent_id, parent.state, value))

    return app


def test_an_outage_of_the_result_store_loses_no_outcome(
    broker: tuple[str, str], store: redis_support.RedisServer
) -> None:
    log: dict[str, list[Any]] = {"runs": [], "callbacks": []}
    app = make_app(broker, store.url, log)
    worker = Worker(app, hostname="w1@test", pool="threads", concurrency=2 * TASKS)
    worker.start()
    try:
        store.stop()
        results = [
            app.tasks["t.work"].apply_async((n,), link=app.signature("t.after"))
            for n in range(TASKS)
        ]
        eventually(lambda: len(log["runs"]) == TASKS)
        time.sleep(3.0)  # three lease periods with the store down and the tasks done
        assert log["callbacks"] == []  # none of the outcomes is durable yet
        store.start()
        assert [r.get(timeout=30) for r in results] == [n * 10 for n in range(TASKS)]
        eventually(lambda: len(log["callbacks"]) == TASKS, timeout=20)
    finally:
        worker.stop()
        app.close()
    assert collections.Counter(log["runs"]) == {r.id: 1 for r in results}
    assert sorted(log["callbacks"]) == sorted(
        (r.id, "SUCCESS", n * 10) for n, r in enumerate(results)
    )
