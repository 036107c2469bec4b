"""Only failed deliveries count toward max_deliveries: a task that requeues itself with
``Reject(requeue=True)`` more often than that, or a message given back by a worker stopped
warm again and again, is never dead-lettered; a message whose worker died each time is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import Reject
from celeriac.worker.lifecycle import Worker
from tests.support import redis_support
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

MAX_DELIVERIES = 2


@pytest.fixture(params=["sqlite", "redis"])
def broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, object]]]:
    options: dict[str, object] = {"max_deliveries": MAX_DELIVERIES}
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/broker.sqlite", options
        return
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    db = redis_support.TRANSPORT_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    yield url, {**options, "global_keyprefix": prefix}
    redis_support.delete_prefix(db, prefix)


def make_app(broker: tuple[str, dict[str, object]], runs: list[int]) -> Celery:
    url, options = broker
    app = Celery("counting", broker=url, set_as_current=False)
    app.conf.broker_transport_options = options

    @app.task(name="t.stubborn", bind=True, acks_late=True)  # Reject needs acks_late
    def stubborn(self: object) -> str:
        runs.append(1)
        if len(runs) <= MAX_DELIVERIES + 2:
            raise Reject("not yet", requeue=True)
        return "done"

    @app.task(name="t.record", rate_limit="1/h")
    def record(n: int) -> int:
        runs.append(n)
        return n

    return app


def test_reject_requeue_is_not_a_failed_delivery(broker: tuple[str, dict[str, object]]) -> None:
    runs: list[int] = []
    app = make_app(broker, runs)
    worker = Worker(app, hostname="w1@test", pool="threads", concurrency=1)
    worker.start()
    try:
        app.send_task("t.stubborn")
        eventually(lambda: len(runs) == MAX_DELIVERIES + 3, timeout=30)
        eventually(lambda: app.transport.queue_length("celery") == 0)
        assert app.transport.dead_letters() == []
    finally:
        worker.stop()
        app.close()


def test_warm_shutdown_give_backs_are_not_failed_deliveries(
    broker: tuple[str, dict[str, object]],
) -> None:
    runs: list[int] = []
    first = make_app(broker, runs)
    first.send_task("t.record", (0,))
    first.send_task("t.record", (1,))  # waits in the worker's rate-limit timer, then given back
    first.close()
    for restart in range(MAX_DELIVERIES + 2):
        run_one_and_stop_warm(broker, runs, restart)


def run_one_and_stop_warm(
    broker: tuple[str, dict[str, object]], runs: list[int], restart: int
) -> None:
    """A worker runs one message (its one token), holds the other two for the next token,
    and is stopped warm."""
    app = make_app(broker, runs)
    worker = Worker(app, hostname=f"w{restart}@test", pool="threads", concurrency=1)
    worker.start()
    try:
        eventually(lambda: len(runs) == restart + 1)
        app.send_task("t.record", (restart + 2,))  # one more to hold
        eventually(lambda: worker.consumer is not None and worker.consumer.held() == 2)
    finally:
        worker.stop()  # warm: the waiting message goes back to the broker
        assert app.transport.queue_length("celery") == 2
        assert app.transport.dead_letters() == []
        app.close()
