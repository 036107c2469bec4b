"""Tasks run by an in-process worker: names, ``self.request``, handlers, states, retries,
predicates, nesting, and every calling option of ``apply_async``."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, Task, signals
from celeriac._time import ManualClock
from celeriac.backends.memory import reset_store
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import (
    EncodeError,
    Ignore,
    MaxRetriesExceededError,
    Reject,
    TaskRevokedError,
    TransportError,
)
from celeriac.protocol.v2 import decode_task
from celeriac.transports.base import Delivery
from celeriac.transports.memory import MemoryTransport
from celeriac.utils.nodenames import anon_nodename
from celeriac.worker.lifecycle import Worker
from tests.support.polling import eventually

NAME = f"test-tasks-{uuid.uuid4().hex}"
URL = f"memory://{NAME}"
ACCEPT = ["json", "msgpack", "yaml", "pickle"]

app = Celery("tests", broker=URL, backend=URL, set_as_current=False, accept_content=ACCEPT)

gates: dict[str, threading.Event] = {}
seen: defaultdict[str, list[Any]] = defaultdict(list)  # token or task id -> records
finished: dict[str, threading.Event] = {}


def gate(token: str) -> threading.Event:
    return gates.setdefault(token, threading.Event())


def token() -> str:
    return uuid.uuid4().hex


def wait_finished(task_id: str) -> None:
    """Wait for the execution of ``task_id`` to end (``task_postrun`` was sent)."""
    if not finished.setdefault(task_id, threading.Event()).wait(10):
        raise AssertionError(f"task {task_id} did not finish within 10 s")


class CustomError(Exception):
    """A task exception defined in this module."""


class Recording(Task[Any, Any]):
    """Records every handler call with its arguments."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        seen[task_id].append(("before_start", task_id, tuple(args), dict(kwargs)))

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        seen[task_id].append(("on_success", retval, task_id, tuple(args), dict(kwargs)))

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        summary = (type(einfo.exception), "CustomError: boom" in einfo.traceback)
        seen[task_id].append(("on_failure", exc, task_id, tuple(args), dict(kwargs), summary))

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        seen[task_id].append(("on_retry", exc, task_id, tuple(args), dict(kwargs)))

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        seen[task_id].append(("after_return", status, retval, task_id, tuple(args)))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="custom.multiply")
def multiply(x: int, y: int) -> int:
    return x * y


@app.task(bind=True)
def describe(self: Task[Any, Any]) -> dict[str, Any]:
    request = self.request
    fields = (
        "id",
        "task",
        "args",
        "kwargs",
        "retries",
        "eta",
        "expires",
        "hostname",
        "delivery_info",
        "correlation_id",
        "root_id",
        "parent_id",
        "group",
        "is_eager",
        "headers",
        "time_limit",
        "soft_time_limit",
        "called_directly",
    )
    return {name: getattr(request, name) for name in fields}


@app.task(base=Recording)
def recorded_add(x: int, y: int = 0) -> int:
    return x + y


@app.task(base=Recording)
def recorded_boom(x: int) -> None:
    raise CustomError("boom")


@app.task(bind=True)
def progress(self: Task[Any, Any], key: str) -> str:
    self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
    gate(key).wait(10)
    return "done"


@app.task(track_started=True)
def tracked(key: str) -> str:
    gate(key).wait(10)
    return "ok"


@app.task(ignore_result=True)
def ignored(key: str) -> str:
    seen[key].append("ran")
    return "not stored"


@app.task(bind=True, base=Recording, default_retry_delay=60)
def flaky(self: Task[Any, Any], key: str) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("flaky"), countdown=0)
    gate(key).wait(10)
    return self.request.retries


@app.task(bind=True, max_retries=2)
def always_retry(self: Task[Any, Any], key: str) -> None:
    seen[key].append(self.request.retries)
    raise self.retry(countdown=0)


@app.task(
    bind=True, autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 2, "countdown": 0}
)
def unreliable(self: Task[Any, Any], key: str, failures: int) -> int:
    seen[key].append(self.request.retries)
    if self.request.retries < failures:
        raise ConnectionError("down")
    return self.request.retries


@app.task(acks_late=True)
def rejecting(key: str) -> None:
    seen[key].append("ran")
    raise Reject("not today", requeue=False)


@app.task
def ignoring(key: str) -> None:
    seen[key].append("ran")
    raise Ignore()


@app.task(bind=True)
def lineage(self: Task[Any, Any], depth: int) -> dict[str, Any]:
    child = lineage.delay(depth - 1).id if depth else None
    request = self.request
    return {"id": request.id, "parent": request.parent_id, "root": request.root_id, "child": child}


@app.task
def flag(key: str) -> str:
    seen[key].append("ran")
    return "ran"


@app.task(typing=False)
def untyped(x: int) -> int:
    return x


def _on_postrun(sender: Any = None, task_id: str = "", **kwargs: Any) -> None:
    finished.setdefault(task_id, threading.Event()).set()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    signals.task_postrun.connect(_on_postrun)
    try:
        with start_worker(app, pool="threads", concurrency=4) as running:
            yield running
    finally:
        for event in gates.values():
            event.set()
        signals.task_postrun.disconnect(_on_postrun)
        app.close()
        MemoryTransport.reset(NAME)
        reset_store(NAME)


def take_one(queue: str) -> Delivery:
    """Take (and acknowledge) the one message waiting in ``queue``; no worker reads it."""
    consumer = app.transport.consumer([queue], owner="test")
    try:
        deliveries = consumer.fetch(10, timeout=0)
        assert len(deliveries) == 1, f"expected one message in {queue}, got {len(deliveries)}"
        consumer.ack(deliveries[0])
        return deliveries[0]
    finally:
        consumer.close()


# -- names ----------------------------------------------------------------------------------


def test_default_and_explicit_names() -> None:
    assert add.name == "tests.unit.test_tasks.add"
    assert multiply.name == "custom.multiply"
    assert app.tasks["custom.multiply"] is multiply


def test_delay_runs_the_task_on_the_worker(worker: Worker) -> None:
    assert add.delay(2, 3).get(timeout=10) == 5
    assert multiply.apply_async((4, 5)).get(timeout=10) == 20


# -- self.request ---------------------------------------------------------------------------


def test_bound_task_sees_its_request(worker: Worker) -> None:
    result = describe.apply_async(headers={"x-trace": "abc"}, group_id="group-1")
    request = result.get(timeout=10)
    assert request["id"] == result.id
    assert request["task"] == describe.name
    assert request["args"] == [] or request["args"] == ()
    assert request["kwargs"] == {}
    assert request["retries"] == 0
    assert request["eta"] is None
    assert request["expires"] is None
    assert request["hostname"] == worker.hostname
    assert request["hostname"] == anon_nodename()  # start_worker's default name, as Celery's
    assert request["delivery_info"]["routing_key"] == "celery"
    assert request["delivery_info"]["redelivered"] is False
    assert request["correlation_id"] == result.id
    assert request["root_id"] == result.id
    assert request["parent_id"] is None
    assert request["group"] == "group-1"
    assert request["is_eager"] is False
    assert request["headers"] == {"x-trace": "abc"}
    assert request["called_directly"] is False


def test_request_outside_a_worker_is_called_directly() -> None:
    request = describe()
    assert request["called_directly"] is True
    assert request["id"] is None


def test_eta_expires_and_time_limits_reach_the_request(worker: Worker) -> None:
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=50)
    expires = eta + dt.timedelta(hours=1)
    result = describe.apply_async(eta=eta, expires=expires, time_limit=30, soft_time_limit=20)
    request = result.get(timeout=10)
    assert request["eta"] == eta
    assert request["expires"] == expires
    assert request["time_limit"] == 30
    assert request["soft_time_limit"] == 20


def test_countdown_sets_the_eta(worker: Worker) -> None:
    before = dt.datetime.now(dt.UTC)
    request = describe.apply_async(countdown=0.05).get(timeout=10)
    assert request["eta"] >= before + dt.timedelta(milliseconds=50)
    assert dt.datetime.now(dt.UTC) >= request["eta"]  # it did not run early


# -- handlers -------------------------------------------------------------------------------


def test_handlers_on_success_get_celerys_arguments(worker: Worker) -> None:
    result = recorded_add.apply_async((2,), {"y": 3})
    assert result.get(timeout=10) == 5
    wait_finished(result.id)
    tid = result.id
    assert seen[tid] == [
        ("before_start", tid, (2,), {"y": 3}),
        ("on_success", 5, tid, (2,), {"y": 3}),
        ("after_return", "SUCCESS", 5, tid, (2,)),
    ]


def test_handlers_on_failure_get_celerys_arguments(worker: Worker) -> None:
    result = recorded_boom.delay(7)
    with pytest.raises(CustomError, match="boom"):
        result.get(timeout=10)
    wait_finished(result.id)
    tid = result.id
    names = [record[0] for record in seen[tid]]
    assert names == ["before_start", "on_failure", "after_return"]
    _, exc, task_id, args, kwargs, (einfo_type, has_traceback) = seen[tid][1]
    assert isinstance(exc, CustomError)
    assert (task_id, args, kwargs) == (tid, (7,), {})
    assert einfo_type is CustomError
    assert has_traceback
    _, status, retval, _, _ = seen[tid][2]
    assert status == "FAILURE"
    assert isinstance(retval, CustomError)


# -- states while running -------------------------------------------------------------------


def test_update_state_is_visible_while_the_task_runs(worker: Worker) -> None:
    key = token()
    result = progress.delay(key)
    try:
        eventually(lambda: result.state == "PROGRESS", "PROGRESS state")
        assert result.info == {"current": 1, "total": 2}
        assert not result.ready()
    finally:
        gate(key).set()
    assert result.get(timeout=10) == "done"
    assert result.state == "SUCCESS"


def test_track_started_shows_started_while_running(worker: Worker) -> None:
    key = token()
    result = tracked.delay(key)
    try:
        eventually(lambda: result.state == "STARTED", "STARTED state")
        assert result.info["hostname"] == worker.hostname
    finally:
        gate(key).set()
    assert result.get(timeout=10) == "ok"


def test_without_track_started_the_state_stays_pending_while_running(worker: Worker) -> None:
    key = token()
    result = progress.apply_async((key,))
    try:
        eventually(lambda: result.state == "PROGRESS", "the task to start")
    finally:
        gate(key).set()
    result.get(timeout=10)


def test_ignore_result_stores_nothing(worker: Worker) -> None:
    key = token()
    result = ignored.delay(key)
    wait_finished(result.id)
    assert seen[key] == ["ran"]
    assert result.state == "PENDING"


def test_ignore_result_per_call(worker: Worker) -> None:
    result = add.apply_async((1, 1), ignore_result=True)
    wait_finished(result.id)
    assert result.state == "PENDING"


# -- retries --------------------------------------------------------------------------------


def test_retry_shows_retry_state_calls_on_retry_then_succeeds(worker: Worker) -> None:
    key = token()
    result = flaky.delay(key)
    try:
        eventually(lambda: result.state == "RETRY", "RETRY state")
        assert isinstance(result.info, KeyError)
        assert "KeyError" in (result.traceback or "")
    finally:
        gate(key).set()
    assert result.get(timeout=10) == 1
    wait_finished(result.id)
    retries = [r for r in seen[result.id] if r[0] == "on_retry"]
    assert len(retries) == 1
    _, exc, task_id, args, kwargs = retries[0]
    assert isinstance(exc, KeyError)
    assert (task_id, args, kwargs) == (result.id, (key,), {})


@app.task(bind=True, max_retries=1)
def retry_positionally(self: Task[Any, Any], foo: int, bar: int, label: str = "") -> Any:
    if not self.request.retries:
        raise self.retry(args=(foo + 1, bar + 1), countdown=0)
    return [foo, bar, label, self.request.retries]


@app.task(bind=True, max_retries=1)
def retry_by_keyword(self: Task[Any, Any], foo: int, bar: int) -> Any:
    if not self.request.retries:
        raise self.retry(kwargs={"foo": foo + 1}, countdown=0)
    return [foo, bar, self.request.retries]


def test_retry_with_new_args_drops_the_kwargs_they_replace(worker: Worker) -> None:
    """Celery 5.7: called with kwargs, retried with args: the rest of the kwargs stay."""
    result = retry_positionally.apply_async(kwargs={"foo": 1, "bar": 2, "label": "kept"})
    assert result.get(timeout=10) == [2, 3, "kept", 1]


def test_retry_with_new_kwargs_replaces_those_positional_args(worker: Worker) -> None:
    """Celery 5.7: called with args, retried with kwargs naming one of them."""
    result = retry_by_keyword.apply_async(args=(1, 2))
    assert result.get(timeout=10) == [2, 2, 1]


@app.task(bind=True, max_retries=1)
def retry_keeping_stamps(self: Task[Any, Any]) -> Any:
    if not self.request.retries:
        raise self.retry(countdown=0)
    return [dict(self.request.stamps), list(self.request.stamped_headers or ())]


def test_a_retry_keeps_the_stamps(worker: Worker) -> None:
    """As Celery: the retried message carries the task's stamps."""
    result = retry_keeping_stamps.si().stamp(mon="42").apply_async()
    assert result.get(timeout=10) == [{"mon": "42"}, ["mon"]]


def test_max_retries_exceeded(worker: Worker) -> None:
    key = token()
    result = always_retry.delay(key)
    with pytest.raises(MaxRetriesExceededError):
        result.get(timeout=10)
    assert seen[key] == [0, 1, 2]
    assert result.state == "FAILURE"


def test_autoretry_for_retries_then_succeeds(worker: Worker) -> None:
    key = token()
    assert unreliable.delay(key, 1).get(timeout=10) == 1
    assert seen[key] == [0, 1]


def test_autoretry_for_gives_up_after_retry_kwargs_max_retries(worker: Worker) -> None:
    key = token()
    result = unreliable.delay(key, 10)
    with pytest.raises(ConnectionError, match="down"):
        result.get(timeout=10)
    assert seen[key] == [0, 1, 2]


# -- predicates -----------------------------------------------------------------------------


def test_reject_dead_letters_the_message_and_stores_failure(worker: Worker) -> None:
    """As Celery 5.7: a task rejected for good stores FAILURE, so get() does not hang."""
    key = token()
    result = rejecting.delay(key)
    eventually(
        lambda: any(d.message.headers["id"] == result.id for d in app.transport.dead_letters()),
        "the rejected message to be dead-lettered",
    )
    assert seen[key] == ["ran"]
    assert result.state == "FAILURE"
    with pytest.raises(Reject, match="not today"):
        result.get(timeout=10)


def test_ignore_stores_nothing(worker: Worker) -> None:
    key = token()
    states: list[str] = []

    def on_postrun(sender: Any = None, state: str = "", **kwargs: Any) -> None:
        states.append(state)

    signals.task_postrun.connect(on_postrun, sender=ignoring)
    try:
        result = ignoring.delay(key)
        wait_finished(result.id)
    finally:
        signals.task_postrun.disconnect(on_postrun, sender=ignoring)
    assert seen[key] == ["ran"]
    assert states == ["IGNORED"]
    assert result.state == "PENDING"


# -- nesting --------------------------------------------------------------------------------


def test_a_task_sent_from_a_task_gets_parent_and_root_ids(worker: Worker) -> None:
    top = lineage.delay(2)
    first = top.get(timeout=10)
    second = lineage.AsyncResult(first["child"]).get(timeout=10)
    third = lineage.AsyncResult(second["child"]).get(timeout=10)
    assert first == {"id": top.id, "parent": None, "root": top.id, "child": second["id"]}
    assert second["parent"] == top.id and second["root"] == top.id
    assert third["parent"] == second["id"] and third["root"] == top.id
    assert third["child"] is None


# -- calling options ------------------------------------------------------------------------


def test_expires_in_the_past_is_revoked_by_the_worker_and_never_runs(worker: Worker) -> None:
    key = token()
    result = flag.apply_async((key,), expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == "REVOKED"
    assert seen[key] == []


def test_expires_as_seconds(worker: Worker) -> None:
    request = describe.apply_async(expires=60).get(timeout=10)
    remaining = request["expires"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=50) < remaining <= dt.timedelta(seconds=60)


def test_a_worker_on_another_queue_does_not_get_the_task(worker: Worker) -> None:
    key = token()
    result = flag.apply_async((key,), queue="elsewhere")
    assert add.delay(1, 2).get(timeout=10) == 3  # the worker is busy with its own queue
    assert seen[key] == []
    assert result.state == "PENDING"
    delivery = take_one("elsewhere")
    assert delivery.message.headers["id"] == result.id


def test_priority_reaches_the_broker_and_the_request(worker: Worker) -> None:
    request = describe.apply_async(priority=7).get(timeout=10)
    assert request["delivery_info"]["priority"] == 7
    describe.apply_async(priority=3, queue="prio-inspect")
    assert take_one("prio-inspect").message.priority == 3


@pytest.mark.parametrize(
    ("serializer", "content_type"),
    [
        ("json", "application/json"),
        ("msgpack", "application/x-msgpack"),
        ("yaml", "application/x-yaml"),
        ("pickle", "application/x-python-serialize"),
    ],
)
def test_serializers(worker: Worker, serializer: str, content_type: str) -> None:
    assert add.apply_async((20, 22), serializer=serializer).get(timeout=10) == 42
    add.apply_async((1, 2), serializer=serializer, queue="ser-inspect")
    message = take_one("ser-inspect").message
    assert message.content_type == content_type
    decoded = decode_task(message, accept=ACCEPT)
    assert list(decoded.args) == [1, 2]


@pytest.mark.parametrize(
    ("compression", "header"), [("zlib", "application/x-gzip"), ("bzip2", "application/x-bz2")]
)
def test_compression(worker: Worker, compression: str, header: str) -> None:
    assert add.apply_async((2, 2), compression=compression).get(timeout=10) == 4
    add.apply_async((3, 3), compression=compression, queue="zip-inspect")
    message = take_one("zip-inspect").message
    assert message.headers["compression"] == header
    assert list(decode_task(message, accept=["json"]).args) == [3, 3]


def test_task_id_option(worker: Worker) -> None:
    task_id = f"my-id-{token()}"
    result = describe.apply_async(task_id=task_id)
    assert result.id == task_id
    assert result.get(timeout=10)["id"] == task_id


def test_time_limits_and_headers_in_the_message() -> None:
    result = add.apply_async(
        (1, 2),
        queue="limits-inspect",
        time_limit=30,
        soft_time_limit=20,
        headers={"tenant": "acme"},
        ignore_result=True,
    )
    message = take_one("limits-inspect").message
    assert message.headers["id"] == result.id
    assert message.headers["timelimit"] == [30, 20]
    assert message.headers["tenant"] == "acme"
    assert message.headers["ignore_result"] is True
    decoded = decode_task(message, accept=["json"])
    assert decoded.time_limit == 30 and decoded.soft_time_limit == 20
    assert decoded.extra_headers == {"tenant": "acme"}


def test_task_options_override_routes_and_calls_override_task_options() -> None:
    routed = Celery("routed", broker=f"{URL}-routes", set_as_current=False)
    routed.conf.task_routes = {"routed.*": {"queue": "from-route", "priority": 1}}

    @routed.task(name="routed.plain")
    def plain() -> None: ...

    @routed.task(name="routed.pinned", queue="from-task", priority=5)
    def pinned() -> None: ...

    plain.delay()
    pinned.delay()
    pinned.apply_async(queue="from-call")
    transport = routed.transport
    try:
        assert transport.queue_length("from-route") == 1
        assert transport.queue_length("from-task") == 1
        assert transport.queue_length("from-call") == 1
    finally:
        routed.close()
        MemoryTransport.reset(f"{NAME}-routes")


def test_soft_time_limit_above_time_limit_is_refused() -> None:
    @app.task(name="limits.bad", time_limit=5, soft_time_limit=10)
    def bad() -> None: ...

    with pytest.raises(ValueError, match="soft_time_limit must be less than or equal to time"):
        bad.delay()
    del app.tasks["limits.bad"]


def test_unencodable_arguments_raise_encode_error_and_publish_nothing() -> None:
    published: list[Any] = []

    def on_publish(sender: Any = None, **kwargs: Any) -> None:
        published.append(sender)

    signals.before_task_publish.connect(on_publish)
    try:
        with pytest.raises(EncodeError, match="object"):
            add.apply_async((object(), 1), queue="encode-inspect")
    finally:
        signals.before_task_publish.disconnect(on_publish)
    assert published == []
    assert app.transport.queue_length("encode-inspect") == 0


def test_wrong_arity_raises_type_error_at_call_time() -> None:
    with pytest.raises(TypeError, match="add"):
        add.delay(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        add.apply_async((1, 2, 3), queue="arity-inspect")
    with pytest.raises(TypeError):
        describe.delay(1)  # type: ignore[call-arg]
    assert app.transport.queue_length("arity-inspect") == 0


def test_the_positional_arity_check_knows_defaults_varargs_and_keywords() -> None:
    checker = Celery("arity", broker=f"{URL}-arity", set_as_current=False)

    @checker.task
    def optional(a: int, b: int = 0) -> int:
        return a + b

    @checker.task
    def star(a: int, *rest: int) -> int:
        return a

    @checker.task
    def keyword_only(a: int, *, flag: bool) -> int:
        return a

    for good in ((1,), (1, 2)):
        optional.check_arguments(good, {})
    for bad in ((), (1, 2, 3)):
        with pytest.raises(TypeError, match="optional"):
            optional.check_arguments(bad, {})
    star.check_arguments((1, 2, 3, 4), {})
    with pytest.raises(TypeError):
        star.check_arguments((), {})
    with pytest.raises(TypeError, match="flag"):
        keyword_only.check_arguments((1,), {})  # the keyword-only argument is missing
    keyword_only.check_arguments((1,), {"flag": True})
    with pytest.raises(TypeError):
        optional.check_arguments((1,), {"c": 2})
    checker.close()


def test_typing_false_and_strict_typing_false_skip_the_check() -> None:
    untyped.apply_async((1, 2, 3), queue="untyped-inspect")
    assert take_one("untyped-inspect").message.headers["task"] == untyped.name
    loose = Celery("loose", broker=f"{URL}-loose", strict_typing=False, set_as_current=False)

    @loose.task
    def one(x: int) -> int:
        return x

    one.apply_async((1, 2))
    try:
        assert loose.transport.queue_length("celery") == 1
    finally:
        loose.close()
        MemoryTransport.reset(f"{NAME}-loose")


def test_publish_retry_policy_on_a_failing_broker() -> None:
    clock = ManualClock()
    broken = Celery("broken", broker=f"{URL}-broken", clock=clock, set_as_current=False)

    @broken.task
    def noop() -> None: ...

    broken.transport.close()  # every publish now fails
    start = clock.time()
    with pytest.raises(TransportError):
        noop.apply_async(retry=False)
    assert clock.time() == start  # no retry, no wait
    policy = {"max_retries": 2, "interval_start": 1, "interval_step": 2, "interval_max": 10}
    with pytest.raises(TransportError):
        noop.apply_async(retry=True, retry_policy=policy)
    assert clock.time() == start + 1 + 3  # waited before each of the two retries
    broken.close()
    MemoryTransport.reset(f"{NAME}-broken")


def test_task_received_signal_gets_the_request(worker: Worker) -> None:
    received: list[Any] = []

    def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        received.append(request)

    def elsewhere(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        received.append("from another consumer")

    # Celery sends task_received with the worker's consumer as the sender.
    signals.task_received.connect(on_received, sender=worker.consumer)
    other_consumer = object()
    signals.task_received.connect(elsewhere, sender=other_consumer)
    try:
        result = add.delay(5, 5)
        assert result.get(timeout=10) == 10
    finally:
        signals.task_received.disconnect(on_received, sender=worker.consumer)
        assert signals.task_received.disconnect(elsewhere, sender=other_consumer)
    assert "from another consumer" not in received
    mine = [r for r in received if r.message.id == result.id]
    assert len(mine) == 1


def test_task_received_request_has_celerys_request_attributes(worker: Worker) -> None:
    received: list[Any] = []

    def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        received.append(request)

    signals.task_received.connect(on_received)
    try:
        result = add.delay(6, 6)
        result.get(timeout=10)
    finally:
        signals.task_received.disconnect(on_received)
    assert [r.id for r in received if r.name == add.name] == [result.id]
    mine = next(r for r in received if r.id == result.id)
    assert (mine.args, mine.kwargs) == ((6, 6), {})
    assert (mine.retries, mine.replaced_task_nesting, mine.stamps) == (0, 0, {})
    assert (mine.root_id, mine.parent_id, mine.group) == (result.id, None, None)


def test_async_result_backend_is_the_apps(worker: Worker) -> None:
    """As Celery's: ``result.backend.get_task_meta(result.id)`` reads the app's backend."""
    result = add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.backend is app.backend
    assert result.backend.get_task_meta(result.id)["result"] == 5
