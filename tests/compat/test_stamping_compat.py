"""Side by side, in process: stamping (``sig.stamp``, ``StampingVisitor``) as in Celery 5.7.

The same canvases are stamped with both libraries; every task signature inside must carry
the same stamps (``stamped_headers`` compared as a set: Celery keeps it in set order), and
the message sent must carry them in Celery's ``stamped_headers``/``stamps`` headers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import celery
import celery.canvas
import celery.signals
import pytest

import celeriac
import celeriac.canvas
from celeriac import signals

pytestmark = pytest.mark.compat


def add(x: int, y: int = 0) -> int:
    return x + y


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery(
        "stamp", broker="memory://", backend="cache+memory://", set_as_current=False
    )
    app.conf.task_default_queue = f"stamp-{uuid.uuid4().hex}"  # kombu's memory queues are global
    app.task(name="tasks.add", shared=False)(add)
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    url = f"memory://stamp-{uuid.uuid4().hex}"
    with celeriac.Celery("stamp", broker=url, backend=url, set_as_current=False) as app:
        app.task(name="tasks.add", shared=False)(add)
        yield app


def _visitor(base: type) -> Any:
    class Visitor(base):  # type: ignore[misc, valid-type]
        def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"v": "sig", "seen_n": headers.get("n")}

        def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
            return {"g": "start"}

        def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
            return {"c": "start"}

        def on_chord_body(self, chord: Any, **headers: Any) -> dict[str, Any]:
            return {"body": "yes"}

        def on_callback(self, callback: Any, **headers: Any) -> dict[str, Any]:
            return {"cb": "yes"}

        def on_errback(self, errback: Any, **headers: Any) -> dict[str, Any]:
            return {"eb": "yes"}

    return Visitor()


def _leaves(d: Any) -> list[Any]:
    """Every task signature inside ``d`` (its callbacks too), as (task, args, options)."""
    if isinstance(d, dict) and "subtask_type" in d:
        found = []
        if not str(d["task"]).startswith("celery."):
            options = {k: v for k, v in d["options"].items() if k not in ("link", "link_error")}
            if "stamped_headers" in options:
                options["stamped_headers"] = sorted(options["stamped_headers"])
            found.append((d["task"], list(d["args"]), options))
        for key in ("link", "link_error"):
            found += _leaves(d["options"].get(key))
        return found + _leaves(list(d["kwargs"].values()))
    if isinstance(d, (list, tuple)):
        return [leaf for item in d for leaf in _leaves(item)]
    return []


def _canvases(lib: Any, app: Any) -> dict[str, Any]:
    a = app.tasks["tasks.add"]
    linked = a.s(4)
    linked.link(a.s(9))
    linked.link_error(a.s(10))
    return {
        "signature": a.s(1),
        "linked": linked,
        "chain": lib.chain(a.s(1), a.s(2), a.s(3)),
        "group": lib.group(a.s(1), a.s(2)),
        "chord": lib.chord([a.s(1), a.s(2)], a.s(5)),
        "group_in_chain": lib.chain(a.s(1), lib.group(a.s(2), a.s(3))),
    }


def test_stamps_replace_or_append_as_in_celery(theirs: Any, ours: Any) -> None:
    seen = []
    for app in (theirs, ours):
        sig = app.tasks["tasks.add"].s(1)
        steps = [dict(sig.stamp(mystamp="a").options)]
        steps.append(dict(sig.stamp(mystamp="b").options))
        steps.append(dict(sig.stamp(append_stamps=True, mystamp="c").options))
        steps.append(dict(sig.stamp(other=[1, 2]).options))
        steps.append(dict(sig.stamp(append_stamps=True, other=[3]).options))
        for options in steps:
            options["stamped_headers"] = sorted(options["stamped_headers"])
        seen.append(steps)
    assert seen[1] == seen[0]
    assert seen[0][-1] == {
        "mystamp": ["c", "b"],
        "other": [3, 1, 2],
        "stamped_headers": ["mystamp", "other"],
    }


@pytest.mark.parametrize(
    "kind", ["signature", "linked", "chain", "group", "chord", "group_in_chain"]
)
def test_a_visitor_stamps_every_signature_alike(kind: str, theirs: Any, ours: Any) -> None:
    stamped = []
    for lib, app, base in (
        (celery, theirs, celery.canvas.StampingVisitor),
        (celeriac, ours, celeriac.canvas.StampingVisitor),
    ):
        sig = _canvases(lib, app)[kind]
        sig.stamp(visitor=_visitor(base), n=5)
        stamped.append(sorted(_leaves(sig), key=repr))
    assert stamped[1] == stamped[0]
    assert all(options["n"] == 5 for _, _, options in stamped[0])


def test_stamps_travel_in_celerys_headers(theirs: Any, ours: Any) -> None:
    sent: list[dict[str, Any]] = []

    def on_publish(headers: Any = None, **_: Any) -> None:
        sent.append(
            {
                "stamped_headers": sorted(headers["stamped_headers"] or []),
                "stamps": headers["stamps"],
            }
        )

    celery.signals.before_task_publish.connect(on_publish, weak=False)
    signals.before_task_publish.connect(on_publish, weak=False)
    try:
        for app in (theirs, ours):
            sig = app.tasks["tasks.add"].s(1, 2)
            base = (
                celery.canvas.StampingVisitor if app is theirs else celeriac.canvas.StampingVisitor
            )
            sig.stamp(visitor=_visitor(base), on="x", n=1)
            sig.apply_async()
    finally:
        celery.signals.before_task_publish.disconnect(on_publish)
        signals.before_task_publish.disconnect(on_publish)
    assert len(sent) == 2 and sent[1] == sent[0]
    assert sent[0]["stamps"] == {"on": "x", "n": 1, "v": "sig", "seen_n": 1}


def test_stamp_links_stamps_only_the_callbacks(theirs: Any, ours: Any) -> None:
    stamped = []
    for lib, app, base in (
        (celery, theirs, celery.canvas.StampingVisitor),
        (celeriac, ours, celeriac.canvas.StampingVisitor),
    ):
        sig = _canvases(lib, app)["linked"]
        sig.stamp_links(_visitor(base), n=2)
        stamped.append(sorted(_leaves(sig), key=repr))
    assert stamped[1] == stamped[0]
