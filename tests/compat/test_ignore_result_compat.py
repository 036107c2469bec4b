"""Side by side, no network service: ``apply_async(ignore_result=...)`` overrides the task's
own ``ignore_result``, in the worker and across a retry, as in Celery 5.7.

Each side sends the call, takes its message off its in-memory broker and runs it as its
worker would (Celery: ``Request`` and its tracer, ``trace_task_ret``; Celeriac: ``execute``),
then runs the retry it sent, and reads what its result store holds. A message whose header
has no ``ignore_result`` (a Celery 5.0 sender) leaves the task's option to decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import celery
import pytest

import celeriac
from celeriac.backends.memory import reset_store
from celeriac.protocol.message import Message
from celeriac.transports.memory import MemoryTransport
from tests.compat.test_canvas_golden import drain, run_ours, run_theirs, taken

pytestmark = pytest.mark.compat


def _register(app: Any) -> None:
    for name, ignored in (("tasks.retry_ignored", True), ("tasks.retry_kept", False)):

        def retry_once(self: Any) -> int:
            if not self.request.retries:
                raise self.retry(countdown=0)
            return int(self.request.retries)

        app.task(name=name, bind=True, shared=False, ignore_result=ignored)(retry_once)


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery(
        "ignore", broker="memory://", backend="cache+memory://", set_as_current=False
    )
    _register(app)
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    name = f"ignore-result-{uuid.uuid4().hex}"
    url = f"memory://{name}"
    with celeriac.Celery("ignore", broker=url, backend=url, set_as_current=False) as app:
        _register(app)
        yield app
    MemoryTransport.reset(name)
    reset_store(name)


def _theirs_until_done(app: Any, sent: Message) -> str:
    run_theirs(app, sent)  # raises Retry inside the tracer; the retry is on the queue
    (retried,) = drain(app, "celery")
    run_theirs(app, retried)
    return str(app.AsyncResult(sent.headers["id"]).state)


def _ours_until_done(app: celeriac.Celery, sent: Message) -> str:
    run_ours(app, sent)
    (retried,) = taken(app)
    run_ours(app, retried)
    return str(app.results.get_meta(sent.headers["id"])["status"])


CASES = [
    ("tasks.retry_ignored", {"ignore_result": False}, "SUCCESS"),
    ("tasks.retry_kept", {"ignore_result": True}, "PENDING"),
    ("tasks.retry_ignored", {}, "PENDING"),
    ("tasks.retry_kept", {}, "SUCCESS"),
]


@pytest.mark.parametrize(("name", "options", "state"), CASES)
def test_the_calls_ignore_result_holds_across_a_retry(
    name: str, options: dict[str, Any], state: str, theirs: Any, ours: celeriac.Celery
) -> None:
    theirs.send_task(name, **options)
    (their_message,) = drain(theirs, "celery")
    ours.send_task(name, **options)
    (our_message,) = taken(ours)
    assert their_message.headers["ignore_result"] is our_message.headers["ignore_result"]
    assert _theirs_until_done(theirs, their_message) == state
    assert _ours_until_done(ours, our_message) == state


@pytest.mark.parametrize(("name", "options", "state"), CASES)
def test_a_celery_message_keeps_its_ignore_result_on_celeriac(
    name: str, options: dict[str, Any], state: str, theirs: Any, ours: celeriac.Celery
) -> None:
    theirs.tasks[name].apply_async(**options)
    (message,) = drain(theirs, "celery")
    assert _ours_until_done(ours, message) == state


@pytest.mark.parametrize(
    ("name", "state"), [("tasks.retry_ignored", "PENDING"), ("tasks.retry_kept", "SUCCESS")]
)
def test_without_the_header_the_task_decides(
    name: str, state: str, theirs: Any, ours: celeriac.Celery
) -> None:
    """A Celery 5.0 sender has no ``ignore_result`` header: the worker uses the task's."""
    theirs.tasks[name].apply_async()
    (their_message,) = drain(theirs, "celery")
    ours.tasks[name].apply_async()
    (our_message,) = taken(ours)
    for message in (their_message, our_message):
        del message.headers["ignore_result"]
    assert _theirs_until_done(theirs, their_message) == state
    assert _ours_until_done(ours, our_message) == state


@pytest.mark.parametrize(("name", "options", "state"), CASES)
def test_apply_stores_as_the_call_says(
    name: str, options: dict[str, Any], state: str, theirs: Any, ours: celeriac.Celery
) -> None:
    """Eagerly, with ``task_store_eager_result``: the same precedence."""
    states = []
    for app in (theirs, ours):
        app.conf.task_store_eager_result = True
        result = app.tasks[name].apply(task_id=str(uuid.uuid4()), **options)
        states.append(str(app.AsyncResult(result.id).state))
    assert states == [state, state]
