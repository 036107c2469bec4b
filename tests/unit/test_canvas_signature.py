"""Signatures and the shape of workflows, with no worker: building, merging, the ``|`` rules,
the wire dicts, freezing, and the messages a workflow puts on the broker."""

from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, chain, chord, chunks, group, maybe_signature, signature, subtask
from celeriac.backends.memory import reset_store
from celeriac.canvas import Signature, xmap, xstarmap
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.serializers import dumps, loads
from celeriac.protocol.v2 import decode_task
from celeriac.result import AsyncResult, GroupResult
from celeriac.transports.memory import MemoryTransport

NAME = f"test-canvas-signature-{uuid.uuid4().hex}"
URL = f"memory://{NAME}"

app = Celery("canvas", broker=URL, backend=URL, set_as_current=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def echo(*args: Any, **kwargs: Any) -> Any:
    return [list(args), kwargs]


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    app.close()
    MemoryTransport.reset(NAME)
    reset_store(NAME)


def queue() -> str:
    return f"inspect-{uuid.uuid4().hex}"


def sent(name: str) -> list[TaskMessage]:
    """Every message waiting in queue ``name`` (taken off it), decoded."""
    consumer = app.transport.consumer([name], owner="test")
    try:
        deliveries = consumer.fetch(100, timeout=0)
        for delivery in deliveries:
            consumer.ack(delivery)
        return [decode_task(d.message, accept=["json"]) for d in deliveries]
    finally:
        consumer.close()


# -- one signature --------------------------------------------------------------------------


def test_s_and_si_build_celerys_wire_dict() -> None:
    assert add.s(2, y=3).to_dict() == {
        "task": add.name,
        "args": [2],
        "kwargs": {"y": 3},
        "options": {},
        "subtask_type": None,
        "immutable": False,
    }
    assert add.si(2, 2).immutable is True
    assert add.s(2).__json__() == add.s(2).to_dict()
    assert isinstance(add.s(2), dict)  # as Celery's is: JSON-encodable as it stands
    assert add.s(2, 2)["task"] == add.name and add.s(2).get("args") == (2,)


def test_set_is_chainable_and_clone_does_not_share_options() -> None:
    sig = add.s(1).set(countdown=10).set(queue="q")
    assert sig.options == {"countdown": 10, "queue": "q"}
    copy = sig.clone(priority=3)
    copy.options["queue"] = "other"
    assert sig.options == {"countdown": 10, "queue": "q"}
    assert copy.options == {"countdown": 10, "queue": "other", "priority": 3}
    assert sig.set(immutable=True).immutable is True


def test_partial_arguments_are_prepended_and_merged_unless_immutable() -> None:
    assert add.s(2).clone((1,), {"z": 3}).args == (1, 2)
    assert echo.s(2, a=1).clone((1,), {"b": 2}).kwargs == {"a": 1, "b": 2}
    assert echo.si(2).clone((1,), {"b": 2}).args == (2,)
    assert echo.si(2).clone((1,), {"b": 2}).kwargs == {}
    assert add.s(2).partial((1,)).args == (1, 2)


def test_partial_options_never_replace_a_group_id() -> None:
    sig = add.s(1).set(group_id="g1", queue="a")
    assert sig.clone(group_id="g2", queue="b").options == {"group_id": "g1", "queue": "b"}
    assert add.s(1).clone(group_id="g2").options == {"group_id": "g2"}


def test_calling_a_signature_runs_the_task_here() -> None:
    assert add.s(2)(3) == 5
    assert add.si(2, 2)(100) == 4


def test_replace_swaps_whole_parts() -> None:
    sig = add.s(1, 2).set(queue="q")
    assert sig.replace(args=(5, 5)).args == (5, 5)
    assert sig.replace(options={}).options == {}
    assert sig.args == (1, 2) and sig.options == {"queue": "q"}


def test_signature_from_a_task_a_name_or_a_dict() -> None:
    by_name = signature(add.name, (1, 2), {"x": 1}, {"countdown": 1}, app=app)
    assert by_name.to_dict()["options"] == {"countdown": 1}
    assert by_name.type is add
    rebuilt = signature(by_name.to_dict(), app=app)
    assert isinstance(rebuilt, Signature) and rebuilt == by_name
    assert signature(by_name) == by_name and signature(by_name) is not by_name
    assert subtask is signature
    assert app.signature(add.name, (1, 2)).app is app
    assert add.subtask((1, 2)).args == (1, 2)
    assert maybe_signature(None) is None
    assert maybe_signature(by_name.to_dict(), app=app) == by_name
    assert maybe_signature(by_name) is by_name


def test_equality_with_dicts_and_signatures() -> None:
    assert add.s(1) == add.s(1)
    assert add.s(1) != add.s(2)
    assert add.s(1) == {"task": add.name, "args": (1,), "kwargs": {}, "options": {}}


def test_link_link_error_and_on_error() -> None:
    sig = add.s(1, 1)
    callback = add.s(10)
    assert sig.link(callback) is callback
    sig.link(callback)  # the same callback again is not added twice
    errback = echo.s()
    assert sig.on_error(errback) is sig
    assert sig.options["link"] == [callback] and sig.options["link_error"] == [errback]
    assert [s.task for s in sig.flatten_links()] == [add.name, add.name]


def test_pickle_and_the_json_serializer_take_signatures() -> None:
    sig = chain(add.s(1, 2), group(add.s(1), add.s(2)), tsum.s())
    assert pickle.loads(pickle.dumps(sig)) == sig
    body, content_type, encoding = dumps({"sig": sig}, "json")
    assert loads(body, content_type, encoding, accept=["json"]) == {"sig": sig.to_dict()}


# -- the wire dicts of the primitives ---------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: chain(add.s(1, 2), add.s(3)),
        lambda: group(add.s(1, 2), add.s(3, 4)),
        lambda: chord([add.s(1, 2), add.s(3, 4)], tsum.s()),
        lambda: chunks(add.s(), [(1, 2), (3, 4)], 1),
        lambda: xmap(tsum.s(), [[1], [2]]),
        lambda: xstarmap(add.s(), [(1, 2)]),
        lambda: chain(group(add.s(1, 1), chain(add.s(1, 2), add.s(3))), tsum.s()),
    ],
)
def test_every_kind_round_trips_through_its_dict(make: Any) -> None:
    sig = make()
    d = sig.to_dict()
    rebuilt = Signature.from_dict(d, app=app)
    assert type(rebuilt) is type(sig)
    assert rebuilt.to_dict() == d
    as_json = loads(*dumps(sig, "json"), accept=["json"])
    assert as_json == loads(*dumps(d, "json"), accept=["json"])  # JSON makes tuples lists
    assert Signature.from_dict(as_json, app=app).to_dict() == as_json


def test_composite_dicts_have_celerys_shape() -> None:
    d = chord([add.s(1, 1)], tsum.s()).to_dict()
    assert (d["task"], d["subtask_type"]) == ("celery.chord", "chord")
    assert d["kwargs"]["header"]["subtask_type"] == "group"
    assert d["kwargs"]["body"]["task"] == tsum.name
    assert d["kwargs"]["kwargs"] == {}
    assert chain(add.s(1, 1)).to_dict()["kwargs"]["tasks"][0]["args"] == [1, 1]
    assert group(add.s(1, 1)).to_dict()["task"] == "celery.group"
    assert xmap(tsum.s(), [[1]]).to_dict()["immutable"] is True


# -- composing -----------------------------------------------------------------------------


def test_or_builds_chains_and_flattens_them() -> None:
    flow = add.s(1, 1) | add.s(2) | add.s(3)
    assert isinstance(flow, chain)
    assert [t.args for t in flow.tasks] == [(1, 1), (2,), (3,)]
    both = flow | (add.s(4) | add.s(5))
    assert isinstance(both, chain) and len(both.tasks) == 5
    assert len(flow.tasks) == 3  # the operands are not changed


def test_or_upgrades_a_group_followed_by_a_task_to_a_chord() -> None:
    flow = group(add.s(1, 1), add.s(2, 2)) | tsum.s()
    assert isinstance(flow, chord)
    assert flow.body is not None and flow.body.task == tsum.name
    longer = add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()
    assert isinstance(longer, chain) and isinstance(longer.tasks[-1], chord)
    extended = flow | add.s(10)
    assert isinstance(extended, chord) and isinstance(extended.body, chain)
    assert isinstance(add.s(1, 1) | group(add.s(2)), chain)
    unrolled = add.s(1, 1) | group(add.s(2))
    assert isinstance(unrolled, chain) and not isinstance(unrolled.tasks[-1], group)


def test_chord_called_with_a_body() -> None:
    c = chord([add.s(1, 1)])
    assert c.body is None
    assert len(c) == 1 and c.tasks[0].args == (1, 1)


# -- freezing ------------------------------------------------------------------------------


def test_freeze_fixes_the_id_once() -> None:
    sig = add.s(1, 1)
    result = sig.freeze()
    assert isinstance(result, AsyncResult) and sig.id == result.id
    assert sig.freeze("other").id == result.id
    assert sig.options["reply_to"] == app.thread_oid


def test_chain_freeze_links_parents_back_to_the_first_step() -> None:
    flow = chain(add.s(1, 1), add.s(2), add.s(3))
    last = flow.freeze()
    ids = [t.id for t in flow.tasks]
    assert last.id == ids[2] and last.parent.id == ids[1] and last.parent.parent.id == ids[0]
    assert last.parent.parent.parent is None
    assert flow.freeze().id == last.id


def test_chord_freeze_body_parent_is_the_header() -> None:
    c = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    body = c.freeze()
    assert c.body is not None and body.id == c.body.id
    assert isinstance(body.parent, GroupResult)
    assert [r.id for r in body.parent.results] == [t.id for t in c.tasks]
    assert c.id == body.parent.id


# -- messages ------------------------------------------------------------------------------


def test_link_objects_travel_as_signature_dicts() -> None:
    q = queue()
    add.apply_async((1, 1), link=add.s(10), link_error=[echo.si(1)], queue=q)
    [message] = sent(q)
    assert message.embed.callbacks == [add.s(10).to_dict()]
    assert message.embed.errbacks == [echo.si(1).to_dict()]


def test_a_chain_sends_its_first_step_with_the_rest_reversed() -> None:
    q = queue()
    result = chain(add.s(1, 2), add.s(3), add.si(5, 5).set(countdown=1)).apply_async(queue=q)
    [message] = sent(q)
    assert (message.task, message.args) == (add.name, (1, 2))
    rest = message.embed.chain
    assert rest is not None and [(d["args"], d["immutable"]) for d in rest] == [
        ([5, 5], True),
        ([3], False),
    ]
    assert rest[0]["options"]["countdown"] == 1
    assert result.id == rest[0]["options"]["task_id"]
    assert result.parent.id == rest[1]["options"]["task_id"]
    assert result.parent.parent.id == message.id


def test_a_group_sends_members_with_group_id_and_index() -> None:
    q = queue()
    result = group(add.s(i, i) for i in range(3)).apply_async(queue=q)
    messages = sorted(sent(q), key=lambda m: m.group_index or 0)
    assert [m.id for m in messages] == [r.id for r in result.results]
    assert {m.group for m in messages} == {result.id}
    assert [m.group_index for m in messages] == [0, 1, 2]
    assert all(m.root_id == m.id for m in messages)


def test_a_chord_saves_its_header_and_sends_the_body_in_every_member() -> None:
    q = queue()
    result = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async(queue=q)
    messages = sent(q)
    header = result.parent
    assert isinstance(header, GroupResult)
    assert {m.group for m in messages} == {header.id}
    for message in messages:
        body = message.embed.chord
        assert body is not None and body["task"] == tsum.name
        assert body["options"]["task_id"] == result.id
        assert body["options"]["group_id"] == header.id
    restored = GroupResult.restore(str(header.id), app=app)
    assert restored is not None and [r.id for r in restored.results] == [m.id for m in messages]


def test_chunks_and_maps_send_builtin_tasks_routed_as_the_inner_task() -> None:
    q = queue()
    app.conf.task_routes = {add.name: {"queue": q}}
    try:
        add.chunks([(1, 1), (2, 2), (3, 3)], 2).apply_async()
        add.starmap([(1, 2)]).apply_async()
        tsum.map([[1]]).apply_async(queue=q)
    finally:
        app.conf.task_routes = None
    messages = sent(q)
    assert sorted(m.task for m in messages) == [
        "celery.map",
        "celery.starmap",
        "celery.starmap",
        "celery.starmap",
    ]
    sizes = sorted(len(m.kwargs["it"]) for m in messages if m.group is not None)
    assert sizes == [1, 2]


def test_every_app_registers_the_builtin_tasks() -> None:
    with Celery("other", broker="memory://other", set_as_current=False) as other:
        names = {name for name in other.tasks if name.startswith("celery.")}
    assert {
        "celery.chain",
        "celery.group",
        "celery.chord",
        "celery.chunks",
        "celery.map",
        "celery.starmap",
        "celery.accumulate",
        "celery.chord_unlock",
    } <= names
    assert "celery.map" not in app.tasks.regular()


def test_reprs() -> None:
    assert repr(add.s(1, y=2)) == f"{add.name}(1, y=2)"
    assert repr(add.s(1) | add.s(2)) == f"{add.name}(1) | {add.name}(2)"
    assert repr(group(add.s(1))).startswith("group([")


def test_chord_callbacks_go_on_the_body() -> None:
    c = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    c.link(echo.s())
    c.link_error(echo.si("failed"))
    assert c.body is not None
    assert c.body.options["link"] == [echo.s()] and c.body.options["link_error"] == [
        echo.si("failed")
    ]
    assert all("link_error" not in t.options for t in c.tasks)
    app.conf.task_allow_error_cb_on_chord_header = True
    try:
        c.link_error(echo.s())
    finally:
        app.conf.task_allow_error_cb_on_chord_header = False
    assert all(t.options["link_error"] == [echo.si()] for t in c.tasks)


def test_a_signature_of_a_task_not_registered_here_is_sent_by_name() -> None:
    q = queue()
    result = signature("elsewhere.only", (1,), app=app).apply_async(queue=q)
    [message] = sent(q)
    assert (message.task, message.id, message.args) == ("elsewhere.only", result.id, (1,))


def test_the_pipe_works_when_only_the_signature_module_is_imported() -> None:
    """``a | b`` reaches ``canvas.compose`` through ``Signature.register_combine``; importing
    ``canvas.signature`` alone (in a fresh interpreter) runs ``celeriac.canvas``, which
    registers it, so the pipe builds a chain, and a group piped into a task a chord."""
    script = (
        "from celeriac.canvas.signature import Signature\n"
        "piped = Signature('a') | Signature('b')\n"
        "print(type(piped).__name__, [t.task for t in piped.tasks])\n"
        "grouped = Signature.from_dict({'task': 'celery.group', 'subtask_type': 'group',"
        " 'kwargs': {'tasks': [{'task': 'a'}, {'task': 'b'}]}})\n"
        "print(type(grouped | Signature('c')).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:2] == ["chain ['a', 'b']", "chord"]
