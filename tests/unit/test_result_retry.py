"""result_backend_always_retry and friends: the worker keeps an outcome while the store is
away, with Celery's backoff, and never records a success as a failure."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from celeriac import Celery, states
from celeriac._time import ManualClock
from celeriac.app._result_retry import backoff
from celeriac.exceptions import EncodeError
from celeriac.execution import execute
from celeriac.request import Context
from tests.support.apps import AppFactory

#: Nothing listens on port 1: every store fails at once with "connection refused".
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    clock = ManualClock()  # the backoff pauses move it instead of sleeping
    return make_app(
        "memory",
        "retry",
        backend=DEAD_REDIS,
        clock=clock,
        set_as_current=False,
        result_backend_transport_options={"retry_policy": {"max_retries": 0}},
        result_backend_max_retries=3,
    )


def request(name: str) -> Context:
    return Context(id=str(uuid.uuid4()), task=name, hostname="w@x", called_directly=False)


def test_backoff_is_celerys_full_jitter_capped_exponential() -> None:
    assert backoff(1, 10, 10_000, lambda: 1.0) == pytest.approx(0.02)
    assert backoff(4, 10, 10_000, lambda: 1.0) == pytest.approx(0.16)
    assert backoff(20, 10, 10_000, lambda: 1.0) == pytest.approx(10.0)
    assert backoff(3, 10, 10_000, lambda: 0.0) == 0.0
    assert backoff(500, 10, 10_000, lambda: 0.5) == pytest.approx(5.0)


def test_a_success_the_store_never_takes_is_not_recorded_as_a_failure(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="t.ok")
    def ok() -> int:
        return 1

    caplog.set_level(logging.WARNING)
    outcome = execute(ok, request("t.ok"))
    assert outcome.state == states.SUCCESS
    retries = [r for r in caplog.records if "result_backend_always_retry" in r.getMessage()]
    assert len(retries) == 1  # logged at the first retry (then every tenth)
    messages = [r.getMessage() for r in caplog.records]
    assert any("succeeded, but its result could not be stored" in m for m in messages)
    assert not any("could not store its failure" in m for m in messages)


def test_a_result_that_cannot_be_encoded_fails_at_once(app: Celery) -> None:
    clock = app.clock
    assert isinstance(clock, ManualClock)
    before = clock.time()

    @app.task(name="t.odd")
    def odd() -> Any:
        return object()  # JSON cannot hold it: not a store outage, so no retry

    outcome = execute(odd, request("t.odd"))
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, EncodeError)
    assert clock.time() - before < 1.0  # the FAILURE store was retried (3 short pauses)


def test_always_retry_off_gives_up_at_once(app: Celery) -> None:
    app.conf.result_backend_always_retry = False

    @app.task(name="t.ok2")
    def ok2() -> int:
        return 2

    clock = app.clock
    assert isinstance(clock, ManualClock)
    before = clock.time()
    assert execute(ok2, request("t.ok2")).state == states.SUCCESS
    assert clock.time() == before  # no pause
