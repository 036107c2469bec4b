"""Callbacks and errbacks (``link``, ``link_error``, old and new style), ``Task.replace``,
and workflows in eager mode, run by an in-process worker on ``memory://``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, Task, chain, chord, group, states
from celeriac.backends.memory import reset_store
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import ChordError
from celeriac.request import Context
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker
from tests.support.polling import eventually

NAME = f"test-canvas-callbacks-{uuid.uuid4().hex}"
URL = f"memory://{NAME}"
T = 10

app = Celery("callbacks", broker=URL, backend=URL, set_as_current=False)
seen: defaultdict[str, list[Any]] = defaultdict(list)


def token() -> str:
    return uuid.uuid4().hex


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def fail(*args: Any) -> None:
    raise KeyError("broken")


@app.task
def record(value: Any, key: str) -> Any:
    seen[key].append(value)
    return value


@app.task
def on_error(request: Context, exc: BaseException, traceback: str | None, key: str) -> None:
    """A new-style errback: called in the worker with the failed task's request."""
    seen[key].append((request.id, type(exc).__name__, str(exc)))


@app.task
def log_failed(task_id: str, key: str) -> None:
    """An old-style errback: sent with the failed task's id."""
    seen[key].append(task_id)


@app.task(bind=True)
def becomes(self: Task[Any, Any], kind: str, x: int) -> Any:
    if kind == "chain":
        return self.replace(add.s(x, 1) | mul.s(10))
    if kind == "group":
        return self.replace(group(add.s(x, i) for i in range(3)))
    return self.replace(add.s(x, 100))


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    try:
        with start_worker(app, pool="threads", concurrency=4) as running:
            yield running
    finally:
        app.close()
        MemoryTransport.reset(NAME)
        reset_store(NAME)


# -- link ----------------------------------------------------------------------------------


def test_a_callback_gets_the_result_first(worker: Worker) -> None:
    key = token()
    result = add.apply_async((1, 1), link=record.s(key))
    assert result.get(timeout=T) == 2
    eventually(lambda: seen[key] == [2], "the callback")
    [child] = result.children
    assert child.get(timeout=T) == 2


def test_many_callbacks_each_get_the_result(worker: Worker) -> None:
    keys = [token(), token()]
    add.apply_async((2, 2), link=[record.s(keys[0]), record.s(keys[1])]).get(timeout=T)
    eventually(lambda: seen[keys[0]] == [4] and seen[keys[1]] == [4], "both callbacks")


def test_an_immutable_callback_keeps_its_arguments(worker: Worker) -> None:
    key = token()
    add.apply_async((2, 2), link=record.si("fixed", key)).get(timeout=T)
    eventually(lambda: seen[key] == ["fixed"], "the callback")


def test_callbacks_on_a_signature_and_a_chain(worker: Worker) -> None:
    key = token()
    sig = add.s(1, 1)
    sig.link(record.s(key))
    sig.delay()
    flow = chain(add.s(1, 2), add.s(3))
    flow.link(record.s(key))
    flow.delay()
    eventually(lambda: sorted(seen[key]) == [2, 6], "the callbacks of the last steps")


# -- link_error ----------------------------------------------------------------------------


def test_old_style_errbacks_get_the_failed_task_id(worker: Worker) -> None:
    key = token()
    result = fail.apply_async(link_error=log_failed.s(key))
    with pytest.raises(KeyError):
        result.get(timeout=T)
    eventually(lambda: seen[key] == [result.id], "the errback")


def test_old_style_errbacks_with_keyword_arguments_get_the_failed_task_id(worker: Worker) -> None:
    key = token()
    result = fail.apply_async(link_error=log_failed.s(key=key))  # (task_id, key): old style
    with pytest.raises(KeyError):
        result.get(timeout=T)
    eventually(lambda: seen[key] == [result.id], "the errback")


def test_new_style_errbacks_with_keyword_arguments_get_the_request(worker: Worker) -> None:
    key = token()
    result = fail.apply_async(link_error=on_error.s(key=key))
    with pytest.raises(KeyError):
        result.get(timeout=T)
    eventually(lambda: seen[key] == [(result.id, "KeyError", "'broken'")], "the errback")


def test_new_style_errbacks_run_in_the_worker_with_the_request(worker: Worker) -> None:
    key = token()
    result = fail.apply_async(link_error=on_error.s(key))
    with pytest.raises(KeyError):
        result.get(timeout=T)
    eventually(lambda: seen[key] == [(result.id, "KeyError", "'broken'")], "the errback")


def test_a_chains_errback_hears_of_the_step_that_failed(worker: Worker) -> None:
    key = token()
    result = chain(add.s(1, 1), fail.s(), add.s(1)).on_error(log_failed.s(key)).apply_async()
    with pytest.raises(KeyError):
        result.get(timeout=T)
    eventually(lambda: seen[key] == [result.parent.id], "the errback")


def test_a_failed_chord_member_reaches_the_body_errbacks(worker: Worker) -> None:
    new, old = token(), token()
    body = tsum.s().on_error(on_error.s(new)).on_error(log_failed.s(old))
    result = chord([add.s(1, 1), fail.s()], body).apply_async()
    with pytest.raises(KeyError):  # as in Celery: the failed member's error, raised first
        result.get(timeout=T)
    with pytest.raises(ChordError):  # the body's own stored failure
        result.get(timeout=T, follow_parents=False)
    eventually(lambda: len(seen[new]) == 1 and seen[old] == [result.id], "both errbacks")
    [(failed_id, exc_type, message)] = seen[new]
    assert (failed_id, exc_type) == (result.id, "ChordError")
    assert result.parent.results[1].id in message


# -- replace -------------------------------------------------------------------------------


def test_replace_with_a_task_or_a_chain_keeps_the_id(worker: Worker) -> None:
    assert becomes.delay("task", 1).get(timeout=T) == 101
    result = becomes.delay("chain", 1)
    assert result.get(timeout=T) == 20


def test_replace_with_a_group_returns_its_results(worker: Worker) -> None:
    assert becomes.delay("group", 10).get(timeout=T) == [10, 11, 12]


def test_a_replaced_step_goes_on_with_the_chain(worker: Worker) -> None:
    result: Any = (becomes.s("chain", 1) | add.s(5)).apply_async()
    assert result.get(timeout=T) == 25
    assert result.parent.get(timeout=T) == 20


def test_a_replaced_chord_member_still_reports(worker: Worker) -> None:
    header = [becomes.s("chain", 1), becomes.s("group", 1), add.s(1, 1)]
    assert chord(header, record.s(token())).delay().get(timeout=T) == [20, [1, 2, 3], 2]


def test_replace_outside_a_worker_is_refused() -> None:
    from celeriac.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="needs a running task"):
        becomes("task", 1)


# -- eager mode ----------------------------------------------------------------------------


@pytest.fixture
def eager() -> Iterator[Celery]:
    app.conf.task_always_eager = True
    try:
        yield app
    finally:
        app.conf.task_always_eager = False


def test_workflows_run_in_place_when_always_eager(eager: Celery) -> None:
    flow = chain(add.s(1, 2), add.s(3), mul.s(10))
    result = flow.apply_async()
    assert result.get() == 60 and result.parent.get() == 6
    assert group(add.s(i, i) for i in range(3)).delay().get() == [0, 2, 4]
    assert chord([add.s(1, 1), add.s(2, 2)], tsum.s()).delay().get() == 6
    assert (group(add.s(1, 1), add.s(2, 2)) | tsum.s() | add.s(1)).delay().get() == 7
    assert add.chunks([(1, 1), (2, 2)], 1).delay().get() == [[2], [4]]
    assert becomes.delay("chain", 1).get() == 20


def test_eager_callbacks_and_errbacks(eager: Celery) -> None:
    key = token()
    add.apply_async((2, 3), link=record.s(key))
    fail.apply_async(link_error=on_error.s(key), throw=False)
    assert seen[key][0] == 5
    assert seen[key][1][1:] == ("KeyError", "'broken'")


def test_apply_with_link_sends_the_callback(worker: Worker) -> None:
    key = token()
    assert add.apply((4, 4), link=record.s(key)).get() == 8
    eventually(lambda: seen[key] == [8], "the callback sent by apply()")
    assert add.s(2).apply((3,)).state == states.SUCCESS


@app.task(bind=True)
def replace_with_nothing(self: Task[Any, Any]) -> Any:
    return self.replace(chain())


def test_replacing_with_an_empty_chain_fails_with_celerys_message(worker: Worker) -> None:
    from celeriac.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="Cannot replace with an empty chain"):
        replace_with_nothing.delay().get(timeout=T)


def test_a_nested_chain_keeps_its_callbacks_when_flattened(worker: Worker) -> None:
    """chain(inner, c) where inner was linked: the link runs after inner's last step."""
    key = token()
    inner = chain(add.s(1, 1), add.s(1))
    inner.link(record.s(key))
    assert chain(inner, mul.s(10)).apply_async().get(timeout=T) == 30
    eventually(lambda: seen[key] == [3], "the inner chain's callback")


def test_what_follows_a_chord_with_a_group_body_runs_once(worker: Worker) -> None:
    """chain(chord(h, group(a, b)), c, d): c and d run once, after a and b (Celery 5958)."""
    body, after = token(), token()
    workflow = chain(
        chord([add.si(1, 1), add.si(2, 2)], group(record.si(1, body), record.si(2, body))),
        group(record.si("c", after)),
        record.si("d", after),
    )
    assert workflow.apply_async().get(timeout=T) == "d"
    assert sorted(seen[body]) == [1, 2]  # both body members ran before c and d
    assert seen[after] == ["c", "d"]
