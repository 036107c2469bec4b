"""Running tasks in place: ``apply()`` and ``task_always_eager`` (with and without
``task_eager_propagates``), retries in place, the serializer round trip, eager results."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from celeriac import Celery, EagerResult, Task, states
from celeriac.exceptions import EncodeError, MaxRetriesExceededError
from tests.support.apps import AppFactory


class InvoiceError(Exception):
    """A task exception defined at module level."""


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "eager", task_always_eager=True)


def test_delay_runs_in_place_and_returns_an_eager_result(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    assert isinstance(result, EagerResult)
    assert result.get() == 5
    assert result.state == states.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == 5
    done = result.date_done
    assert done is not None and done.tzinfo is not None
    assert app.transport.queue_length("celery") == 0  # nothing was sent


def test_options_such_as_countdown_do_not_delay_an_eager_run(app: Celery) -> None:
    @app.task
    def echo(x: int) -> int:
        return x

    result = echo.apply_async((1,), countdown=3600, queue="elsewhere", task_id="fixed-id")
    assert result.id == "fixed-id"
    assert result.get() == 1


def test_eager_propagates_raises_at_the_call(app: Celery) -> None:
    app.conf.task_eager_propagates = True

    @app.task
    def fail() -> None:
        raise InvoiceError("unpaid")

    with pytest.raises(InvoiceError, match="unpaid"):
        fail.delay()


def test_without_eager_propagates_the_result_holds_the_failure(app: Celery) -> None:
    @app.task
    def fail() -> None:
        raise InvoiceError("unpaid")

    result = fail.delay()
    assert result.state == states.FAILURE
    assert result.failed() and result.ready()
    assert isinstance(result.result, InvoiceError)
    assert "InvoiceError: unpaid" in (result.traceback or "")
    with pytest.raises(InvoiceError):
        result.get()
    assert isinstance(result.get(propagate=False), InvoiceError)


def test_apply_runs_in_place_without_always_eager(app: Celery) -> None:
    app.conf.task_always_eager = False

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def fail() -> None:
        raise InvoiceError("late")

    assert add.apply((1, 2)).get() == 3
    assert fail.apply().state == states.FAILURE
    with pytest.raises(InvoiceError):
        fail.apply(throw=True)
    assert app.transport.queue_length("celery") == 0


def test_arguments_make_a_serializer_round_trip(app: Celery) -> None:
    @app.task
    def kinds(items: Any, when: dt.datetime) -> tuple[str, str]:
        return type(items).__name__, type(when).__name__

    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert kinds.delay((1, 2), when).get() == ("list", "datetime")


def test_unencodable_arguments_raise_encode_error(app: Celery) -> None:
    ran: list[bool] = []

    @app.task
    def take(value: Any) -> None:
        ran.append(True)

    with pytest.raises(EncodeError, match="set"):
        take.delay({1, 2})
    assert ran == []


def test_wrong_arity_raises_type_error(app: Celery) -> None:
    @app.task
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="one"):
        one.delay(1, 2)  # type: ignore[call-arg]


def test_an_eager_request(app: Celery) -> None:
    @app.task(bind=True)
    def describe(self: Task[Any, Any], x: int) -> dict[str, Any]:
        r = self.request
        return {
            "id": r.id,
            "args": r.args,
            "is_eager": r.is_eager,
            "retries": r.retries,
            "headers": r.headers,
            "called_directly": r.called_directly,
            "root_id": r.root_id,
        }

    result = describe.apply((7,), headers={"k": "v"}, task_id="eager-1")
    assert result.get() == {
        "id": "eager-1",
        "args": (7,),
        "is_eager": True,
        "retries": 0,
        "headers": {"k": "v"},
        "called_directly": False,
        "root_id": "eager-1",
    }


def test_eager_retry_runs_again_in_place(app: Celery) -> None:
    seen: list[tuple[int, int]] = []

    @app.task(bind=True, max_retries=5)
    def climb(self: Task[Any, Any], x: int) -> int:
        seen.append((self.request.retries, x))
        if x < 3:
            raise self.retry(args=(x + 1,), countdown=60)
        return x

    assert climb.delay(0).get() == 3
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_eager_retry_gives_up_after_max_retries(app: Celery) -> None:
    app.conf.task_eager_propagates = True
    seen: list[int] = []

    @app.task(bind=True, max_retries=2)
    def stubborn(self: Task[Any, Any]) -> None:
        seen.append(self.request.retries)
        raise self.retry()

    with pytest.raises(MaxRetriesExceededError):
        stubborn.delay()
    assert seen == [0, 1, 2]


def test_eager_results_are_not_stored_unless_asked(app: Celery) -> None:
    @app.task
    def value() -> int:
        return 1

    @app.task(store_eager_result=True)
    def stored() -> int:
        return 2

    plain = value.delay()
    kept = stored.delay()
    assert app.AsyncResult(plain.id).state == states.PENDING
    assert app.AsyncResult(kept.id).get(timeout=1) == 2


def test_a_nested_eager_call_knows_its_parent(app: Celery) -> None:
    @app.task(bind=True)
    def child(self: Task[Any, Any]) -> tuple[str | None, str | None]:
        return self.request.parent_id, self.request.root_id

    @app.task(bind=True)
    def parent(self: Task[Any, Any]) -> Any:
        return self.request.id, child.delay().get()

    parent_id, (child_parent, child_root) = parent.delay().get()
    assert child_parent == parent_id
    assert child_root == parent_id


def test_a_handler_error_is_raised_in_eager_mode(app: Celery) -> None:
    class Strict(Task[Any, Any]):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("handler bug")

    task = app.task(base=Strict)(lambda: 1)
    with pytest.raises(RuntimeError, match="handler bug"):
        task.delay()


def test_eager_result_revoke_and_forget(app: Celery) -> None:
    @app.task
    def value() -> int:
        return 1

    result = value.delay()
    result.forget()  # nothing stored: nothing to do
    assert result.get() == 1
    result.revoke()
    assert result.state == states.REVOKED


def test_retry_says_when_as_celery_does(app: Celery) -> None:
    import datetime as dt

    from celeriac.exceptions import Retry

    messages: list[str] = []

    @app.task(bind=True, default_retry_delay=7)
    def later(self: Task[Any, Any], how: str) -> str:
        if self.request.retries == 0:
            options: dict[str, Any] = {
                "default": {},
                "countdown": {"countdown": 2},
                "eta": {"eta": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)},
            }[how]
            try:
                raise self.retry(**options)
            except Retry as retry:
                messages.append(retry.humanize())
                raise
        return how

    assert [later.delay(how).get() for how in ("default", "countdown", "eta")] == [
        "default",
        "countdown",
        "eta",
    ]
    assert messages == ["in 7s", "in 2s", "at 2030-01-01 00:00:00+00:00"]
