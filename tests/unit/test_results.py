"""Reading results: states, waiting, values and re-raised exceptions, tracebacks, dates,
forget and revoke, expiry, and the guard against waiting inside a task."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, Task, signals, states
from celeriac._time import ManualClock
from celeriac.backends.memory import reset_store
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import (
    ImproperlyConfigured,
    RemoteError,
    TaskRevokedError,
    TimeoutError,
)
from celeriac.execution import execute
from celeriac.protocol.result_meta import build_meta, encode_meta
from celeriac.request import Context
from celeriac.result import AsyncResult
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker
from tests.support.apps import AppFactory

NAME = f"test-results-{uuid.uuid4().hex}"
URL = f"memory://{NAME}"

app = Celery("results", broker=URL, backend=URL, set_as_current=False)
ran: dict[str, list[str]] = {}


class OrderError(Exception):
    """A task exception defined at module level, so clients can rebuild it."""


@app.task
def add(x: int, y: int) -> int:
    return x + y


def explode_here(order: str) -> None:
    raise OrderError(f"order {order} is broken", 42)


@app.task
def explode(order: str) -> None:
    explode_here(order)


@app.task
def record(key: str) -> str:
    ran.setdefault(key, []).append("ran")
    return "ran"


@app.task
def wait_inside(disable_sync_subtasks: bool) -> Any:
    child = add.delay(1, 2)
    try:
        return child.get(timeout=10, disable_sync_subtasks=disable_sync_subtasks)
    except RuntimeError as exc:
        return f"RuntimeError: {exc}"


@app.task
def spawn() -> list[str]:
    return [add.delay(1, 1).id, add.delay(2, 2).id]


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    try:
        with start_worker(app, pool="threads", concurrency=2) as running:
            yield running
    finally:
        app.close()
        MemoryTransport.reset(NAME)
        reset_store(NAME)


@pytest.fixture
def local_app(make_app: AppFactory) -> Celery:
    """An app with a manual clock, used without a worker (tasks run through ``execute``)."""
    return make_app("memory", "local", clock=ManualClock(), set_as_current=False)


def run_here(task: Task[Any, Any], *args: Any, **context: Any) -> str:
    """Execute ``task`` as a worker would, without one; return the task id."""
    task_id = str(uuid.uuid4())
    request = Context(
        id=task_id, task=task.name, args=args, called_directly=False, hostname="here", **context
    )
    execute(task, request)
    return task_id


# -- success and failure ------------------------------------------------------------------------


def test_a_successful_result(worker: Worker) -> None:
    result = add.delay(2, 2)
    assert result.get(timeout=10) == 4
    assert result.state == states.SUCCESS
    assert result.status == states.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == 4 and result.info == 4
    assert result.traceback is None
    assert result.wait(timeout=10) == 4
    assert result.get(timeout=10, interval=0.01) == 4


def test_a_failure_is_reraised_as_the_original_exception(worker: Worker) -> None:
    result = explode.delay("A-1")
    with pytest.raises(OrderError) as raised:
        result.get(timeout=10)
    assert raised.value.args == ("order A-1 is broken", 42)
    assert result.state == states.FAILURE
    assert result.ready() and result.failed() and not result.successful()
    assert isinstance(result.result, OrderError)
    assert isinstance(result.info, OrderError)


def test_get_without_propagate_returns_the_exception(worker: Worker) -> None:
    result = explode.delay("A-2")
    exc = result.get(timeout=10, propagate=False)
    assert isinstance(exc, OrderError)
    assert exc.args[0] == "order A-2 is broken"


def test_traceback_holds_the_remote_traceback(worker: Worker) -> None:
    result = explode.delay("A-3")
    result.get(timeout=10, propagate=False)
    traceback = result.traceback
    assert traceback is not None
    assert "Traceback (most recent call last)" in traceback
    assert "explode_here" in traceback
    assert "OrderError: ('order A-3 is broken', 42)" in traceback


def test_date_done_is_an_aware_datetime_once_ready(worker: Worker) -> None:
    before = dt.datetime.now(dt.UTC)
    result = add.delay(1, 1)
    assert AsyncResult(str(uuid.uuid4()), app=app).date_done is None
    result.get(timeout=10)
    done = result.date_done
    assert done is not None and done.tzinfo is not None
    assert before <= done <= dt.datetime.now(dt.UTC)


def test_forget_deletes_the_result(worker: Worker) -> None:
    result = add.delay(3, 3)
    assert result.get(timeout=10) == 6
    result.forget()
    assert result.state == states.PENDING
    assert AsyncResult(result.id, app=app).state == states.PENDING


def test_get_times_out_when_nobody_runs_the_task() -> None:
    result: AsyncResult[int] = AsyncResult(str(uuid.uuid4()), app=app)
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2)
    assert result.state == states.PENDING
    assert not result.ready()


# -- revoking -----------------------------------------------------------------------------------


def test_revoke_before_the_worker_picks_it_up(worker: Worker) -> None:
    key = uuid.uuid4().hex
    discarded = threading.Event()
    wanted: list[str] = []

    def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        if wanted and request.id == wanted[0]:
            discarded.set()

    signals.task_revoked.connect(on_revoked)
    try:
        result = record.apply_async((key,), countdown=0.2)
        wanted.append(result.id)
        result.revoke()
        assert result.state == states.REVOKED
        assert discarded.wait(10), "the worker never discarded the revoked task"
    finally:
        signals.task_revoked.disconnect(on_revoked)
    assert key not in ran
    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)


def test_revoke_after_success_keeps_the_result(worker: Worker) -> None:
    result = add.delay(4, 4)
    assert result.get(timeout=10) == 8
    result.revoke()
    assert AsyncResult(result.id, app=app).state == states.SUCCESS


# -- waiting inside a task ----------------------------------------------------------------------


def test_get_inside_a_task_raises_runtime_error(worker: Worker) -> None:
    message = wait_inside.delay(True).get(timeout=10)
    assert message.startswith("RuntimeError: Never call result.get() within a task")


def test_get_inside_a_task_with_disable_sync_subtasks_false(worker: Worker) -> None:
    assert wait_inside.delay(False).get(timeout=10) == 3


def test_children_are_the_tasks_sent_by_a_task(worker: Worker) -> None:
    parent = spawn.delay()
    ids = parent.get(timeout=10)
    children = parent.children
    assert [child.id for child in children] == ids
    assert [child.get(timeout=10) for child in children] == [2, 4]


# -- exceptions that cannot be rebuilt ----------------------------------------------------------


def test_an_unknown_exception_type_becomes_remote_error(local_app: Celery) -> None:
    task_id = str(uuid.uuid4())
    meta = build_meta(
        task_id=task_id,
        status=states.FAILURE,
        result={
            "exc_type": "PaymentDeclined",
            "exc_module": "no_such_module_for_celeriac.billing",
            "exc_message": ["card expired"],
        },
        traceback="Traceback (most recent call last):\n  ...\nPaymentDeclined: card expired\n",
        date_done=local_app.now(),
    )
    local_app.results.backend.store(task_id, encode_meta(meta, "json"), state="FAILURE", ttl=None)
    result = local_app.AsyncResult(task_id)
    with pytest.raises(RemoteError) as raised:
        result.get(timeout=1)
    error = raised.value
    assert error.exc_type == "PaymentDeclined"
    assert error.exc_module == "no_such_module_for_celeriac.billing"
    assert error.exc_message == ["card expired"]
    assert error.remote_traceback is not None
    assert "PaymentDeclined: card expired" in error.remote_traceback
    assert "PaymentDeclined" in str(error)


def test_a_result_the_serializer_cannot_store_fails_the_task(local_app: Celery) -> None:
    @local_app.task
    def returns_an_object() -> object:
        return object()

    result = local_app.AsyncResult(run_here(returns_an_object))
    assert result.state == states.FAILURE
    assert type(result.result).__name__ == "EncodeError"


# -- expiry, dates and extended results -----------------------------------------------------------


def test_results_expire_after_result_expires(local_app: Celery) -> None:
    local_app.conf.result_expires = 60

    @local_app.task
    def value() -> int:
        return 7

    result = local_app.AsyncResult(run_here(value))
    assert result.state == states.SUCCESS
    clock = local_app.clock
    assert isinstance(clock, ManualClock)
    assert result.date_done == dt.datetime.fromtimestamp(clock.time(), dt.UTC)
    clock.advance(59)
    assert local_app.AsyncResult(result.id).state == states.SUCCESS
    clock.advance(2)
    assert local_app.AsyncResult(result.id).state == states.PENDING


def test_results_expire_after_a_day_by_default(local_app: Celery) -> None:
    @local_app.task
    def value() -> int:
        return 7

    task_id = run_here(value)
    clock = local_app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(86_400 - 1)
    assert local_app.AsyncResult(task_id).state == states.SUCCESS
    clock.advance(2)
    assert local_app.AsyncResult(task_id).state == states.PENDING


def test_result_expires_none_keeps_results(local_app: Celery) -> None:
    local_app.conf.result_expires = None

    @local_app.task
    def value() -> int:
        return 7

    task_id = run_here(value)
    clock = local_app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(10 * 365 * 86_400)
    assert local_app.AsyncResult(task_id).get(timeout=1) == 7


def test_result_extended_stores_name_args_kwargs_worker(local_app: Celery) -> None:
    local_app.conf.result_extended = True

    @local_app.task(name="local.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    task_id = str(uuid.uuid4())
    request = Context(
        id=task_id,
        task="local.mul",
        args=(3, 4),
        kwargs={},
        called_directly=False,
        hostname="node-1",
        retries=0,
        delivery_info={"routing_key": "math"},
    )
    execute(mul, request)
    result = local_app.AsyncResult(task_id)
    assert result.get(timeout=1) == 12
    assert result.name == "local.mul"
    assert result.args == [3, 4]
    assert result.kwargs == {}
    assert result.worker == "node-1"
    assert result.retries == 0
    assert result.queue == "math"


def test_reading_results_without_a_backend_says_what_to_configure() -> None:
    bare = Celery("nobackend", broker="redis://localhost:6379/0", set_as_current=False)
    with bare, pytest.raises(ImproperlyConfigured, match="result_backend"):
        _ = bare.AsyncResult("x").state


# -- identity -----------------------------------------------------------------------------------


def test_async_result_identity() -> None:
    first: AsyncResult[Any] = AsyncResult("abc", app=app)
    assert first == AsyncResult("abc", app=app)
    assert first == "abc"
    assert first != AsyncResult("other", app=app)
    assert hash(first) == hash(AsyncResult("abc", app=app))
    assert str(first) == "abc"
    assert first.id == first.task_id == "abc"
    assert repr(first) == "<AsyncResult: abc>"
