"""Golden tests: workflows between real Celery 5.7 and Celeriac, with no network service.

Celery publishes to kombu's in-memory transport (results in its in-memory cache backend,
or a file backend where Celery needs ``celery.chord_unlock``); its messages are taken off
the queue and run by Celeriac's ``execute`` on an in-memory app, which sends the next steps
to its own in-memory broker, read back here. The other way round, Celeriac's messages are
run by Celery's worker tracer (``trace_task_ret``), whose next steps are read off kombu's
queue. Group metas are copied between the two result stores to stand for one shared store.
"""

from __future__ import annotations

import base64
import queue as queue_module
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest
from celery.app.trace import trace_task_ret
from celery.canvas import Signature as CelerySignature
from celery.worker.request import Request
from kombu.message import Message as KombuMessage
from kombu.serialization import loads as kombu_loads
from kombu.serialization import prepare_accept_content

import celeriac
from celeriac import states
from celeriac._time import ManualClock
from celeriac.backends.memory import reset_store
from celeriac.exceptions import ChordError
from celeriac.execution import Outcome, context_from_message, execute
from celeriac.protocol.message import Message, TaskMessage
from celeriac.protocol.v2 import decode_task
from celeriac.result import GroupResult
from celeriac.transports.memory import MemoryTransport

pytestmark = pytest.mark.compat

WIRE_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "priority")


def add(x: int, y: int) -> int:
    return x + y


def tsum(numbers: list[int]) -> int:
    return sum(numbers)


def boom(*args: Any) -> None:
    raise KeyError("boom")


def _register(app: Any) -> None:
    for name, fun in (("tasks.add", add), ("tasks.tsum", tsum), ("tasks.boom", boom)):
        app.task(name=name, shared=False)(fun)


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery(
        "golden", broker="memory://", backend="cache+memory://", set_as_current=False
    )
    _register(app)
    yield app
    app.close()


@pytest.fixture
def theirs_unlocking(tmp_path: Path) -> Iterator[Any]:
    """A Celery client whose result backend has no native join: it sends chord_unlock."""
    (tmp_path / "results").mkdir()
    app = celery.Celery(
        "golden", broker="memory://", backend=f"file://{tmp_path}/results", set_as_current=False
    )
    _register(app)
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    name = f"canvas-golden-{uuid.uuid4().hex}"
    url = f"memory://{name}"
    clock = ManualClock(time.time())  # retries wait in the broker until it is advanced
    with celeriac.Celery(
        "golden", broker=url, backend=url, clock=clock, set_as_current=False
    ) as app:
        _register(app)
        yield app
    MemoryTransport.reset(name)
    reset_store(name)


# -- moving messages -------------------------------------------------------------------------


def drain(app: Any, queue: str) -> list[Message]:
    """Every message on kombu's in-memory ``queue``, as stored (the wire form)."""
    found = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while True:
            try:
                envelope = channel._get(queue)
            except queue_module.Empty:
                break
            body = envelope["body"]
            if envelope["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            props = envelope["properties"]
            properties = {k: props[k] for k in WIRE_PROPERTIES if k in props}
            content = (envelope["content-type"], envelope["content-encoding"])
            found.append(Message(body, *content, dict(envelope["headers"]), properties))
    return found


def taken(app: celeriac.Celery, *queues: str) -> list[Message]:
    """Every message waiting in Celeriac's ``queues`` (taken off them): by default the
    default queue and ``q``, where the tests send (and the options of their steps say)."""
    consumer = app.transport.consumer(list(queues or ("celery", "q")), owner="golden")
    try:
        deliveries = consumer.fetch(100, timeout=0)
        for delivery in deliveries:
            consumer.ack(delivery)
        return [delivery.message for delivery in deliveries]
    finally:
        consumer.close()


def run_ours(app: celeriac.Celery, message: Message) -> tuple[TaskMessage, Outcome]:
    task = decode_task(message, accept=["json"])
    request = context_from_message(task, hostname="golden@ours", delivery_info={})
    return task, execute(app.tasks[task.task], request)


def run_ours_until_idle(app: celeriac.Celery) -> list[TaskMessage]:
    """Run what Celeriac's workflow steps send, until nothing more is sent."""
    ran = []
    while messages := taken(app):
        for message in messages:
            ran.append(run_ours(app, message)[0])
    return ran


def run_theirs(app: Any, message: Message) -> Any:
    """Celery's worker tracer runs ``message``, as its worker would; the return value."""
    kombu_message = KombuMessage(  # type: ignore[no-untyped-call]
        body=message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=dict(message.headers),
        properties=dict(message.properties),
        delivery_info={"exchange": "", "routing_key": "celery"},
        accept=prepare_accept_content(["json"]),  # type: ignore[no-untyped-call]
    )
    request = Request(kombu_message, app=app, task=app.tasks[message.headers["task"]])
    name, task_id = message.headers["task"], message.headers["id"]
    return trace_task_ret(
        name,
        task_id,
        dict(request.request_dict),
        message.body,
        message.content_type,
        message.content_encoding,
        app=app,
    )


def run_theirs_until_idle(app: Any) -> list[Message]:
    ran = []
    while messages := drain(app, "celery"):
        for message in messages:
            run_theirs(app, message)
            ran.append(message)
    return ran


def calls_in(d: Any) -> list[tuple[str, Any, Any]]:
    """``(task, args, task_id)`` of every task signature inside ``d`` (not the ``celery.*``
    composites: Celery keeps a chord's header as a list, not a group), depth first."""
    if isinstance(d, dict):
        is_task = "options" in d and not str(d.get("task")).startswith("celery.")
        found = [(d["task"], list(d["args"]), d["options"].get("task_id"))] if is_task else []
        return found + [call for item in d.values() for call in calls_in(item)]
    if isinstance(d, (list, tuple)):
        return [call for item in d for call in calls_in(item)]
    return []


def value(app: celeriac.Celery, task_id: str) -> Any:
    meta = app.results.get_meta(task_id)
    assert meta["status"] in states.READY_STATES, (task_id, meta)
    return app.results.value_of(meta)


# -- Celery's workflows on Celeriac ----------------------------------------------------------


def test_a_celery_chain_runs_on_celeriac(theirs: Any, ours: celeriac.Celery) -> None:
    add_ = theirs.tasks["tasks.add"]
    flow = celery.chain(add_.s(1, 2), add_.s(3), add_.si(5, 5), add_.s(10))
    result = flow.apply_async(queue="q")
    [first] = drain(theirs, "q")
    run_ours(ours, first)
    steps = run_ours_until_idle(ours)
    assert [step.id for step in steps] == [result.parent.parent.id, result.parent.id, result.id]
    assert [list(step.args) for step in steps] == [[3, 3], [5, 5], [10, 10]]
    assert steps[-1].embed.chain == []
    assert {step.root_id for step in steps} == {first.headers["id"]}
    assert steps[0].parent_id == first.headers["id"]
    assert value(ours, result.id) == 20 and value(ours, result.parent.parent.id) == 6


def test_a_celery_chain_with_a_chord_step_runs_on_celeriac(
    theirs: Any, ours: celeriac.Celery
) -> None:
    add_, tsum_ = theirs.tasks["tasks.add"], theirs.tasks["tasks.tsum"]
    flow = celery.chain(add_.s(1, 2), celery.group(add_.s(1), add_.s(2)), tsum_.s(), add_.s(10))
    result = flow.apply_async(queue="q")
    [first] = drain(theirs, "q")
    step = decode_task(first, accept=["json"]).embed.chain
    assert step is not None and step[-1]["subtask_type"] == "chord"  # Celery made a chord
    run_ours(ours, first)
    ran = run_ours_until_idle(ours)
    assert [m.task for m in ran] == ["tasks.add", "tasks.add", "tasks.tsum", "tasks.add"]
    assert ran[-1].id == result.id and list(ran[2].args) == [[4, 5]]
    assert value(ours, result.id) == 19


def test_a_celery_group_and_its_saved_meta(theirs: Any, ours: celeriac.Celery) -> None:
    add_ = theirs.tasks["tasks.add"]
    result = celery.group(add_.s(i, i) for i in range(3)).apply_async(queue="q")
    result.save()
    members = drain(theirs, "q")
    assert sorted(m.headers["group_index"] for m in members) == [0, 1, 2]
    key = theirs.backend.get_key_for_group(result.id)
    saved = theirs.backend.get(key)
    ours.results.backend.save_group(result.id, saved.encode(), ttl=None)  # one shared store
    for message in members:
        run_ours(ours, message)
    restored = GroupResult.restore(result.id, app=ours)
    assert restored is not None
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=1) == [0, 2, 4]


def test_a_celery_chord_joins_on_celeriac(theirs: Any, ours: celeriac.Celery) -> None:
    add_, tsum_ = theirs.tasks["tasks.add"], theirs.tasks["tasks.tsum"]
    result = celery.chord([add_.s(1, 1), add_.s(2, 2), add_.s(3, 3)], tsum_.s()).apply_async(
        queue="q"
    )
    members = drain(theirs, "q")
    group_id = members[0].headers["group"]
    saved = theirs.backend.get(theirs.backend.get_key_for_group(group_id))
    ours.results.backend.save_group(group_id, saved.encode(), ttl=None)
    for message in reversed(members):
        run_ours(ours, message)
    [body] = run_ours_until_idle(ours)
    assert (body.id, body.task, list(body.args)) == (result.id, "tasks.tsum", [[2, 4, 6]])
    assert value(ours, result.id) == 12


def test_celery_chord_unlock_runs_on_celeriac(theirs_unlocking: Any, ours: celeriac.Celery) -> None:
    app = theirs_unlocking
    add_, tsum_ = app.tasks["tasks.add"], app.tasks["tasks.tsum"]
    result = celery.chord([add_.s(1, 1), add_.s(2, 2)], tsum_.s()).apply_async(queue="q")
    messages = drain(app, "q")
    [unlock] = [m for m in messages if m.headers["task"] == "celery.chord_unlock"]
    members = [m for m in messages if m is not unlock]
    assert run_ours(ours, unlock)[1].state == states.RETRY  # the header is not done yet
    assert taken(ours) == []  # the retry waits its countdown in the broker
    assert isinstance(ours.clock, ManualClock)
    ours.clock.advance(app.conf.result_chord_retry_interval + 1)
    [retry] = taken(ours)
    assert decode_task(retry, accept=["json"]).retries == 1
    for message in members:
        run_ours(ours, message)
    assert taken(ours) == []  # no saved header here: the members leave the join to it
    run_ours(ours, retry)
    [body] = run_ours_until_idle(ours)
    assert (body.id, list(body.args)) == (result.id, [[2, 4]])
    assert value(ours, result.id) == 6


def test_celery_chord_unlock_fails_the_body_when_a_member_failed(
    theirs_unlocking: Any, ours: celeriac.Celery
) -> None:
    app = theirs_unlocking
    header = [app.tasks["tasks.add"].s(1, 1), app.tasks["tasks.boom"].s()]
    result = celery.chord(header, app.tasks["tasks.tsum"].s()).apply_async(queue="q")
    messages = drain(app, "q")
    unlock = next(m for m in messages if m.headers["task"] == "celery.chord_unlock")
    for message in messages:
        if message is not unlock:
            run_ours(ours, message)
    run_ours(ours, unlock)
    failure = value(ours, result.id)
    assert isinstance(failure, ChordError) and "KeyError('boom')" in str(failure)


# -- Celeriac's workflows on Celery ----------------------------------------------------------


def test_celeriac_embeds_rebuild_with_celery(theirs: Any, ours: celeriac.Celery) -> None:
    add_, tsum_ = ours.tasks["tasks.add"], ours.tasks["tasks.tsum"]
    flows = {
        "chain": celeriac.chain(
            add_.s(1, 1), celeriac.group(add_.s(1), add_.s(2)), tsum_.s(), add_.si(1, 1)
        ),
        "link": add_.s(1, 1).set(link=[tsum_.s()], link_error=[add_.si(0, 0)]),
        "chord": celeriac.chord([add_.s(1, 1), add_.s(2, 2)], tsum_.s() | add_.s(1)),
    }
    for flow in flows.values():
        flow.apply_async(queue="inspect")
    for message in taken(ours, "inspect"):
        embed = kombu_loads(  # type: ignore[no-untyped-call]
            message.body,
            message.content_type,
            message.content_encoding,
            accept={"application/json"},
        )[2]
        signatures = [*(embed["chain"] or []), *(embed["callbacks"] or [])]
        signatures += [*(embed["errbacks"] or []), *([embed["chord"]] if embed["chord"] else [])]
        assert signatures
        for d in signatures:
            rebuilt = CelerySignature.from_dict(d, app=theirs)
            assert (rebuilt.task, rebuilt.subtask_type) == (d["task"], d["subtask_type"])
            assert rebuilt.id == d["options"].get("task_id")
            assert calls_in(dict(rebuilt)) == calls_in(d)
            assert calls_in(celeriac.signature(dict(rebuilt), app=ours).to_dict()) == calls_in(d)


def test_a_celeriac_chain_runs_on_celery(theirs: Any, ours: celeriac.Celery) -> None:
    add_, tsum_ = ours.tasks["tasks.add"], ours.tasks["tasks.tsum"]
    flow = celeriac.chain(add_.s(1, 2), add_.s(3), celeriac.group(add_.s(1), add_.s(2)), tsum_.s())
    result = flow.apply_async()
    [first] = taken(ours)
    run_theirs(theirs, first)
    ran = run_theirs_until_idle(theirs)
    assert {m.headers["task"] for m in ran} == {"tasks.add", "tasks.tsum"}
    assert ran[-1].headers["id"] == result.id
    assert theirs.AsyncResult(result.id).get(timeout=1) == 15


def test_a_celeriac_chord_joins_on_celery(theirs: Any, ours: celeriac.Celery) -> None:
    add_, tsum_ = ours.tasks["tasks.add"], ours.tasks["tasks.tsum"]
    result = celeriac.chord([add_.s(i, i) for i in range(4)], tsum_.s()).apply_async()
    members = taken(ours)
    group_id = members[0].headers["group"]
    saved = ours.results.backend.fetch_group(group_id)
    assert saved is not None
    # One shared store: the group meta Celeriac saved, and the counter Celery's client sets.
    theirs.backend.set(theirs.backend.get_key_for_group(group_id), saved)
    theirs.backend.client.set(theirs.backend.get_key_for_chord(group_id), 0)
    for message in members:
        run_theirs(theirs, message)
    [body] = run_theirs_until_idle(theirs)
    assert body.headers["id"] == result.id
    assert theirs.AsyncResult(result.id).get(timeout=1) == 12
