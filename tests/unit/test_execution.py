"""Executing one task with ``celeriac.execution.execute`` (no worker, no threads), and the
signals sent around publishing and execution."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, Task, signals, states
from celeriac._time import ManualClock
from celeriac.exceptions import Ignore, Reject, Retry
from celeriac.execution import (
    ExceptionInfo,
    Outcome,
    awaitables_run_by,
    context_from_message,
    execute,
)
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import decode_task
from celeriac.request import Context
from tests.support.apps import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "exec", clock=ManualClock(), set_as_current=False)


def request_for(task: Task[Any, Any], *args: Any, **fields: Any) -> Context:
    fields.setdefault("id", str(uuid.uuid4()))
    fields.setdefault("hostname", "node@example")
    return Context(task=task.name, args=args, called_directly=False, **fields)


def waiting(app: Celery, queue: str) -> list[TaskMessage]:
    consumer = app.transport.consumer([queue], owner="test")
    try:
        deliveries = consumer.fetch(10, timeout=0)
        for delivery in deliveries:
            consumer.ack(delivery)
        return [decode_task(d.message, accept=["json"]) for d in deliveries]
    finally:
        consumer.close()


def advance(app: Celery, seconds: float) -> None:
    clock = app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


class Recording(Task[Any, Any]):
    calls: list[tuple[Any, ...]]

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self.calls.append(("before_start", task_id, args, kwargs))

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.calls.append(("on_success", retval, task_id, args, kwargs))

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("on_failure", exc, task_id, args, kwargs, einfo))

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.calls.append(("on_retry", exc, task_id, args, kwargs, einfo))

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.calls.append(("after_return", status, retval, task_id, args, kwargs, einfo))


def recording(app: Celery, fun: Any, **options: Any) -> Recording:
    decorate: Any = app.task(base=Recording, **options)
    task = decorate(fun)
    assert isinstance(task, Recording)
    task.calls = []
    return task


# -- outcomes and stored states ---------------------------------------------------------------


def test_success_is_stored_and_handlers_run_in_order(app: Celery) -> None:
    def add(x: int, y: int) -> int:
        return x + y

    task = recording(app, add)
    request = request_for(task, 2, 3)
    outcome = execute(task, request)
    assert isinstance(outcome, Outcome)
    assert (outcome.state, outcome.retval, outcome.exc) == (states.SUCCESS, 5, None)
    assert app.AsyncResult(str(request.id)).get(timeout=1) == 5
    tid = request.id
    assert task.calls == [
        ("before_start", tid, (2, 3), {}),
        ("on_success", 5, tid, (2, 3), {}),
        ("after_return", states.SUCCESS, 5, tid, (2, 3), {}, None),
    ]


def test_failure_is_stored_with_its_traceback(app: Celery) -> None:
    def fail(order: str) -> None:
        raise LookupError(f"no order {order}")

    task = recording(app, fail)
    request = request_for(task, "A7")
    outcome = execute(task, request)
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, LookupError)
    result = app.AsyncResult(str(request.id))
    assert result.state == states.FAILURE
    assert isinstance(result.result, LookupError)
    assert "LookupError: no order A7" in (result.traceback or "")
    names = [call[0] for call in task.calls]
    assert names == ["before_start", "on_failure", "after_return"]
    _, exc, task_id, args, kwargs, einfo = task.calls[1]
    assert exc is outcome.exc
    assert (task_id, args, kwargs) == (request.id, ("A7",), {})
    assert isinstance(einfo, ExceptionInfo)
    assert einfo.exception is exc and einfo.type is LookupError
    assert "no order A7" in einfo.traceback


def test_before_start_raising_fails_the_task(app: Celery) -> None:
    class Guarded(Task[Any, Any]):
        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            raise PermissionError("not now")

    ran: list[bool] = []
    task = app.task(base=Guarded)(lambda: ran.append(True))
    outcome = execute(task, request_for(task))
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, PermissionError)
    assert ran == []


def test_a_failure_log_record_does_not_hold_the_exception(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that keeps records must not keep the traceback's frames (Celery #8882)."""

    def broken() -> None:
        raise RuntimeError("kept?")

    task = app.task(name="exec.broken")(broken)
    with caplog.at_level(logging.ERROR, logger="celeriac.task"):
        outcome = execute(task, request_for(task))
    assert outcome.state == states.FAILURE
    records = [r for r in caplog.records if "raised unexpected" in r.getMessage()]
    assert len(records) == 1
    assert "RuntimeError('kept?')" in records[0].getMessage()
    assert not any(isinstance(arg, BaseException) for arg in records[0].args or ())


def test_a_handler_that_raises_does_not_change_the_outcome(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    class Clumsy(Task[Any, Any]):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("handler bug")

    task = app.task(base=Clumsy)(lambda: 1)
    request = request_for(task)
    with caplog.at_level(logging.ERROR, logger="celeriac.task"):
        outcome = execute(task, request)
    assert outcome.state == states.SUCCESS
    assert app.AsyncResult(str(request.id)).get(timeout=1) == 1
    assert "on_success handler raised" in caplog.text


def test_ignore_result_with_track_started_stores_nothing(app: Celery) -> None:
    task = app.task(ignore_result=True, track_started=True)(lambda: 1)
    request = request_for(task)
    assert execute(task, request).state == states.SUCCESS
    assert app.AsyncResult(str(request.id)).state == states.PENDING


def test_track_started_stores_started_before_the_call(app: Celery) -> None:
    seen: list[str] = []

    def peek() -> None:
        seen.append(app.AsyncResult(str(current.id)).state)

    task = app.task(track_started=True)(peek)
    current = request_for(task)
    execute(task, current)
    assert seen == [states.STARTED]


def test_errors_are_stored_when_ignoring_results_only_if_asked(app: Celery) -> None:
    def fail() -> None:
        raise ValueError("x")

    quiet = app.task(name="exec.quiet", ignore_result=True)(fail)
    loud = app.task(name="exec.loud", ignore_result=True, store_errors_even_if_ignored=True)(fail)
    quiet_request, loud_request = request_for(quiet), request_for(loud)
    execute(quiet, quiet_request)
    execute(loud, loud_request)
    assert app.AsyncResult(str(quiet_request.id)).state == states.PENDING
    assert app.AsyncResult(str(loud_request.id)).state == states.FAILURE


def test_ignore_and_reject_store_nothing_and_skip_after_return(app: Celery) -> None:
    def ignore() -> None:
        raise Ignore()

    def reject() -> None:
        raise Reject("bad input", requeue=True)

    ignoring, rejecting = recording(app, ignore), recording(app, reject)
    ignore_request, reject_request = request_for(ignoring), request_for(rejecting)
    ignored = execute(ignoring, ignore_request)
    rejected = execute(rejecting, reject_request)
    assert ignored.state == states.IGNORED
    assert (rejected.state, rejected.requeue) == (states.REJECTED, True)
    assert app.AsyncResult(str(ignore_request.id)).state == states.PENDING
    assert app.AsyncResult(str(reject_request.id)).state == states.PENDING
    assert [c[0] for c in ignoring.calls] == ["before_start"]
    assert [c[0] for c in rejecting.calls] == ["before_start"]


def test_an_async_def_task_is_awaited(app: Celery) -> None:
    async def double(x: int) -> int:
        return 2 * x

    task = app.task(double)
    request = request_for(task, 21)
    assert execute(task, request).retval == 42


def test_awaitables_run_by_hands_async_bodies_to_the_runner(app: Celery) -> None:
    ran_by: list[str] = []

    async def triple(x: int) -> int:
        return 3 * x

    def runner(awaitable: Any) -> Any:
        ran_by.append("runner")
        return asyncio.run(awaitable)

    task = app.task(triple)
    with awaitables_run_by(runner):
        assert execute(task, request_for(task, 5)).retval == 15
    assert ran_by == ["runner"]
    assert execute(task, request_for(task, 1)).retval == 3  # the block ended: asyncio.run
    assert ran_by == ["runner"]


# -- retries ----------------------------------------------------------------------------------


def test_retry_stores_retry_then_sends_the_task_again(app: Celery) -> None:
    states_at_publish: list[str] = []

    def bounce(self: Task[Any, Any], x: int) -> None:
        raise self.retry(exc=TimeoutError("slow"), countdown=30)

    task = recording(app, bounce, bind=True, name="exec.bounce")
    expires = app.now() + dt.timedelta(hours=1)
    request = request_for(
        task,
        1,
        retries=1,
        root_id="root-1",
        expires=expires,
        headers={"tenant": "acme"},
        delivery_info={"routing_key": "celery"},
    )

    def on_publish(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        states_at_publish.append(app.AsyncResult(headers["id"]).state)

    signals.before_task_publish.connect(on_publish, sender="exec.bounce")
    try:
        outcome = execute(task, request)
    finally:
        signals.before_task_publish.disconnect(on_publish, sender="exec.bounce")
    assert outcome.state == states.RETRY
    assert isinstance(outcome.exc, Retry)
    assert states_at_publish == [states.RETRY]  # never after: the retry could finish first
    result = app.AsyncResult(str(request.id))
    assert result.state == states.RETRY
    assert isinstance(result.info, TimeoutError)
    assert waiting(app, "celery") == []  # held by the broker until its ETA
    advance(app, 30)
    [message] = waiting(app, "celery")
    assert message.id == request.id
    assert message.retries == 2
    assert list(message.args) == [1]
    assert message.root_id == "root-1"
    assert message.parent_id == request.id
    assert message.eta == app.now()
    assert message.expires == expires
    assert message.extra_headers == {"tenant": "acme"}
    [retry_call] = [c for c in task.calls if c[0] == "on_retry"]
    assert isinstance(retry_call[1], TimeoutError)
    assert retry_call[2:5] == (request.id, (1,), {})
    assert [c[0] for c in task.calls] == ["before_start", "on_retry"]  # no after_return


def test_retry_with_new_arguments_and_options(app: Celery) -> None:
    def reroute(self: Task[Any, Any], x: int) -> None:
        raise self.retry(args=(x + 1,), kwargs={"note": "again"}, countdown=0, queue="retries")

    task = app.task(bind=True, typing=False)(reroute)
    request = request_for(task, 1, delivery_info={"routing_key": "celery"})
    assert execute(task, request).state == states.RETRY
    [message] = waiting(app, "retries")
    assert list(message.args) == [2]
    assert message.kwargs == {"note": "again"}
    assert waiting(app, "celery") == []


def test_retry_with_ignore_result_stores_no_retry_state(app: Celery) -> None:
    def bounce(self: Task[Any, Any]) -> None:
        raise self.retry(countdown=0)

    task = app.task(bind=True, ignore_result=True)(bounce)
    request = request_for(task)
    assert execute(task, request).state == states.RETRY
    assert app.AsyncResult(str(request.id)).state == states.PENDING
    assert len(waiting(app, "celery")) == 1


def test_retry_called_directly_raises(app: Celery) -> None:
    def bounce(self: Task[Any, Any]) -> None:
        raise self.retry(exc=KeyError("direct"))

    task = app.task(bind=True)(bounce)
    with pytest.raises(KeyError):
        task()


def test_autoretry_backoff_countdown(app: Celery) -> None:
    def fails(self: Task[Any, Any]) -> None:
        raise ConnectionError("down")

    task = app.task(
        bind=True, autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=False
    )(fails)
    request = request_for(task, retries=2)
    assert execute(task, request).state == states.RETRY
    eta = app.now() + dt.timedelta(seconds=2 * 2**2)
    advance(app, 8)
    [message] = waiting(app, "celery")
    assert message.eta == eta


# -- the context of a message -------------------------------------------------------------------


def test_context_from_message(app: Celery) -> None:
    result = app.send_task(
        "exec.remote",
        args=(1,),
        kwargs={"k": 2},
        headers={"h": "v"},
        group_id="g",
        time_limit=9,
        soft_time_limit=8,
        priority=4,
    )
    [message] = waiting(app, "celery")
    info = {"exchange": "", "routing_key": "celery", "priority": 4, "redelivered": False}
    context = context_from_message(message, hostname="w1@host", delivery_info=info)
    assert context.id == result.id
    assert context.task == "exec.remote"
    assert context.args == (1,) and context.kwargs == {"k": 2}
    assert context.headers == {"h": "v"}
    assert context.group == "g"
    assert context.timelimit == (9, 8)
    assert context.hostname == "w1@host"
    assert context.delivery_info == info
    assert context.correlation_id == result.id
    assert context.root_id == result.id
    assert context.called_directly is False
    assert context.is_eager is False
    assert context.get("hostname") == "w1@host"


def test_link_callback_with_frozen_ids_is_sent_with_this_tasks_ids(app: Celery) -> None:
    task = app.task(lambda: 5)
    callback = {
        "task": "exec.after",
        "args": [1],
        "kwargs": {},
        "subtask_type": None,
        "immutable": False,
        "options": {"queue": "callbacks", "root_id": "stale", "parent_id": "stale"},
    }
    request = request_for(task, callbacks=[callback], root_id="root-9")
    assert execute(task, request).state == states.SUCCESS
    [message] = waiting(app, "callbacks")
    assert message.task == "exec.after"
    assert list(message.args) == [5, 1]
    assert message.parent_id == request.id
    assert message.root_id == "root-9"


# -- signals ------------------------------------------------------------------------------------


class Received:
    """A signal receiver that records what it was sent, and disconnects itself at the end."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.connections: list[tuple[signals.Signal, Any]] = []

    def __call__(self, sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
        self.calls.append({"sender": sender, "signal": signal, **kwargs})

    def listen(self, signal: signals.Signal, sender: Any = None) -> None:
        signal.connect(self, sender=sender)
        self.connections.append((signal, sender))


@pytest.fixture
def receiver() -> Iterator[Received]:
    received = Received()
    yield received
    for signal, sender in received.connections:
        signal.disconnect(received, sender=sender)


def test_publish_signals_with_sender_filtering(app: Celery, receiver: Received) -> None:
    receiver.listen(signals.before_task_publish, sender="exec.signalled")
    receiver.listen(signals.after_task_publish, sender="exec.signalled")
    app.send_task("exec.other")
    result = app.send_task("exec.signalled", args=(1,))
    before, after = receiver.calls
    assert before["signal"] is signals.before_task_publish
    assert before["sender"] == "exec.signalled"
    assert before["headers"]["id"] == result.id
    assert before["routing_key"] == "celery"
    assert before["exchange"] == ""
    assert {"body", "properties", "declare", "retry_policy"} <= set(before)
    assert after["signal"] is signals.after_task_publish
    assert after["headers"]["id"] == result.id
    assert {"body", "exchange", "routing_key"} <= set(after)


def test_before_task_publish_can_add_headers(app: Celery) -> None:
    def stamp(headers: Any = None, **kwargs: Any) -> None:
        headers["x-request-id"] = "req-1"

    signals.before_task_publish.connect(stamp, sender="exec.stamped")
    try:
        app.send_task("exec.stamped")
    finally:
        signals.before_task_publish.disconnect(stamp, sender="exec.stamped")
    [message] = waiting(app, "celery")
    assert message.extra_headers == {"x-request-id": "req-1"}


def test_execution_signals_success(app: Celery, receiver: Received) -> None:
    task = app.task(name="exec.signalled")(lambda x: x * 2)
    other = app.task(name="exec.other")(lambda: None)
    for signal in (signals.task_prerun, signals.task_postrun, signals.task_success):
        receiver.listen(signal, sender=task)
    execute(other, request_for(other))
    request = request_for(task, 4)
    execute(task, request)
    prerun, success, postrun = receiver.calls
    assert prerun["signal"] is signals.task_prerun
    assert (prerun["sender"], prerun["task_id"], prerun["task"]) == (task, request.id, task)
    assert (prerun["args"], prerun["kwargs"]) == ((4,), {})
    assert success["signal"] is signals.task_success
    assert success["result"] == 8 and success["runtime"] >= 0
    assert postrun["signal"] is signals.task_postrun
    assert (postrun["retval"], postrun["state"], postrun["task_id"]) == (8, "SUCCESS", request.id)


def test_sender_may_be_given_as_the_task_name(app: Celery, receiver: Received) -> None:
    task = app.task(name="exec.signalled")(lambda: 1)
    receiver.listen(signals.task_success, sender="exec.signalled")
    execute(task, request_for(task))
    assert [call["result"] for call in receiver.calls] == [1]


def test_execution_signals_failure_and_retry(app: Celery, receiver: Received) -> None:
    def fail(self: Task[Any, Any], retry: bool) -> None:
        if retry:
            raise self.retry(exc=KeyError("again"), countdown=0)
        raise KeyError("final")

    task = app.task(bind=True, name="exec.signalled")(fail)
    receiver.listen(signals.task_failure, sender=task)
    receiver.listen(signals.task_retry, sender=task)
    retry_request, fail_request = request_for(task, True), request_for(task, False)
    execute(task, retry_request)
    execute(task, fail_request)
    retried, failed = receiver.calls
    assert retried["signal"] is signals.task_retry
    assert retried["request"] is retry_request
    assert isinstance(retried["reason"], Retry)
    assert isinstance(retried["einfo"], ExceptionInfo)
    assert failed["signal"] is signals.task_failure
    assert failed["task_id"] == fail_request.id
    assert isinstance(failed["exception"], KeyError)
    assert (failed["args"], failed["kwargs"]) == ((False,), {})
    assert failed["traceback"] is failed["exception"].__traceback__
    assert isinstance(failed["einfo"], ExceptionInfo)


def test_a_receiver_that_raises_does_not_break_execution(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    task = app.task(name="exec.signalled")(lambda: 3)
    signals.task_prerun.connect(broken, sender=task)
    try:
        with caplog.at_level(logging.ERROR, logger="celeriac.signals"):
            outcome = execute(task, request_for(task))
    finally:
        signals.task_prerun.disconnect(broken, sender=task)
    assert outcome.state == states.SUCCESS
    assert "receiver bug" in caplog.text


def test_connect_is_idempotent_and_disconnect_stops_delivery(
    app: Celery, receiver: Received
) -> None:
    task = app.task(name="exec.signalled")(lambda: 1)
    receiver.listen(signals.task_success)
    signals.task_success.connect(receiver)  # again: no effect
    execute(task, request_for(task))
    assert len(receiver.calls) == 1
    assert signals.task_success.disconnect(receiver)
    execute(task, request_for(task))
    assert len(receiver.calls) == 1


def test_bound_methods_of_each_object_are_separate_receivers() -> None:
    """As Celery: ``obj.method`` connects once per object and ``disconnect(obj.method)``
    removes that object's receiver only (each access makes a new bound-method object)."""

    class Recorder:
        def __init__(self) -> None:
            self.calls = 0

        def on_signal(self, **kwargs: Any) -> None:
            self.calls += 1

    signal = signals.Signal("test_bound")
    one, two = Recorder(), Recorder()
    for recorder in (one, two, one):  # ``one`` again: no effect
        signal.connect(recorder.on_signal)
    signal.send(sender=None)
    assert (one.calls, two.calls) == (1, 1)
    assert signal.disconnect(two.on_signal)
    signal.send(sender=None)
    assert (one.calls, two.calls) == (2, 1)


def test_dispatch_uid_connects_once() -> None:
    calls: list[str] = []
    first = signals.Signal("test_signal")

    for label in ("a", "b"):
        first.connect(lambda label=label, **kwargs: calls.append(label), dispatch_uid="only-one")
    first.send(sender=None)
    assert calls == ["a"]
    assert first.disconnect(dispatch_uid="only-one")
    first.send(sender=None)
    assert calls == ["a"]


def test_decorator_form_of_connect() -> None:
    calls: list[Any] = []
    signal = signals.Signal("test_decorated")

    @signal.connect(sender="x")
    def handler(sender: Any = None, **kwargs: Any) -> str:
        calls.append(sender)
        return "handled"

    assert signal.send(sender="y") == []
    assert signal.send(sender="x") == [(handler, "handled")]
    assert calls == ["x"]
