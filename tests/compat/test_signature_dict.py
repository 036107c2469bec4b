"""Side by side: a signature is plain data (a ``dict``) in Celery 5.7 and in Celeriac.

The same canvases are built with both libraries, in process, with no broker: each must be a
``dict`` with Celery's keys, ``json.dumps`` it, ``signature(json.loads(...), app=app)`` must
rebuild the same kind of canvas (nested ones too), and each library must rebuild the other's
JSON into a working canvas.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest

import celeriac

pytestmark = pytest.mark.compat

KEYS = {"task", "args", "kwargs", "options", "subtask_type", "immutable"}


def add(x: int, y: int = 0) -> int:
    return x + y


def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery("sigdict", set_as_current=False)
    app.conf.task_always_eager = True
    for fun in (add, tsum):
        app.task(name=f"tasks.{fun.__name__}", shared=False)(fun)
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    url = f"memory://sigdict-{uuid.uuid4().hex}"
    with celeriac.Celery("sigdict", broker=url, backend=url, set_as_current=False) as app:
        app.conf.task_always_eager = True
        for fun in (add, tsum):
            app.task(name=f"tasks.{fun.__name__}", shared=False)(fun)
        yield app


def _canvases(lib: Any, app: Any) -> dict[str, Any]:
    """The same canvases, built with ``lib`` (celery or celeriac) on ``app``."""
    a, t = app.tasks["tasks.add"], app.tasks["tasks.tsum"]
    return {
        "signature": a.s(2, y=3).set(queue="q"),
        "immutable": a.si(1, 1),
        "linked": a.s(1, 1).on_error(t.si([0])),
        "chain": lib.chain(a.s(1, 1), a.s(2), a.s(3)),
        "group": lib.group(a.s(1, 1), a.s(2, 2)),
        "chord": lib.chord([a.s(1, 1), a.s(2, 2)], t.s()),
        "nested": lib.group(a.s(1, 1), a.s(2, 2)) | t.s() | a.s(10),
        "chord_in_group": lib.group(lib.chord([a.s(1, 1)], t.s()), a.s(5, 5)),
    }


KINDS = ["signature", "immutable", "linked", "chain", "group", "chord", "nested", "chord_in_group"]


def _shape(d: Any) -> Any:
    """What both libraries must agree on: keys, task names, args, subtask types, nesting.

    A chord's header is a list of signatures in Celery's dict and a group in Celeriac's: the
    header's members are compared, not its container.
    """
    if isinstance(d, dict) and "subtask_type" in d:
        kwargs = {k: _shape(v) for k, v in d["kwargs"].items()}
        if d["subtask_type"] == "chord":
            header = d["kwargs"]["header"]
            members = header["kwargs"]["tasks"] if isinstance(header, dict) else header
            kwargs["header"] = [_shape(m) for m in members]
        options = {k: _shape(v) for k, v in d["options"].items()}
        return (
            d["task"],
            _shape(list(d["args"])),
            kwargs,
            options,
            d["subtask_type"],
            d["immutable"],
        )
    if isinstance(d, (list, tuple)):
        return [_shape(item) for item in d]
    if isinstance(d, dict):
        return {k: _shape(v) for k, v in d.items()}
    return d


@pytest.mark.parametrize("kind", KINDS)
def test_every_canvas_is_a_dict_with_celerys_keys(kind: str, theirs: Any, ours: Any) -> None:
    for lib, app in ((celery, theirs), (celeriac, ours)):
        sig = _canvases(lib, app)[kind]
        assert isinstance(sig, dict), lib
        assert set(sig) == KEYS, lib
        assert sig["task"] == sig.task and sig["options"] is sig.options


@pytest.mark.parametrize("kind", KINDS)
def test_json_dumps_and_the_same_data(kind: str, theirs: Any, ours: Any) -> None:
    theirs_json = json.loads(json.dumps(_canvases(celery, theirs)[kind]))
    ours_json = json.loads(json.dumps(_canvases(celeriac, ours)[kind]))
    assert _shape(ours_json) == _shape(theirs_json)


@pytest.mark.parametrize("kind", KINDS)
def test_signature_rebuilds_the_json_as_the_same_kind(kind: str, theirs: Any, ours: Any) -> None:
    for lib, app in ((celery, theirs), (celeriac, ours)):
        sig = _canvases(lib, app)[kind]
        rebuilt = lib.signature(json.loads(json.dumps(sig)), app=app)
        assert type(rebuilt).__name__ == type(sig).__name__, lib
        assert json.loads(json.dumps(rebuilt)) == json.loads(json.dumps(sig)), lib


def _run(lib: Any, app: Any, data: dict[str, Any]) -> Any:
    return lib.signature(data, app=app).apply_async().get()


@pytest.mark.parametrize("kind", ["signature", "chain", "group", "chord", "nested"])
def test_each_library_runs_the_others_stored_canvas(kind: str, theirs: Any, ours: Any) -> None:
    """A canvas stored as JSON by one library is rebuilt and run (eagerly) by the other."""
    results: dict[str, Any] = {}
    builders: list[tuple[str, Any, Any, Callable[[dict[str, Any]], Any]]] = [
        ("celery->celeriac", celery, theirs, lambda d: _run(celeriac, ours, d)),
        ("celeriac->celery", celeriac, ours, lambda d: _run(celery, theirs, d)),
        ("celery", celery, theirs, lambda d: _run(celery, theirs, d)),
    ]
    for label, lib, app, run in builders:
        results[label] = run(json.loads(json.dumps(_canvases(lib, app)[kind])))
    assert results["celery->celeriac"] == results["celery"]
    assert results["celeriac->celery"] == results["celery"]


def test_typed_api_stays_on_the_dict(ours: Any) -> None:
    a = ours.tasks["tasks.add"]
    sig = a.s(2)
    sig.args = (5,)
    sig.set(countdown=3)
    assert sig["args"] == (5,) and sig["options"] == {"countdown": 3}
    sig["kwargs"] = {"y": 1}
    assert sig.kwargs == {"y": 1} and sig.apply().get() == 6
    assert sig.clone() == sig and sig.clone() is not sig
