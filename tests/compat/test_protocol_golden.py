"""Golden tests: celeriac's protocol layer against real Celery 5.7, with no network service.

Celery publishes to kombu's in-memory transport and stores results in its in-memory cache
backend; messages are taken off the in-memory queue exactly as Celery would put them on the
wire, and Celery's own worker ``Request`` reads the messages celeriac builds.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import celery.exceptions  # re-exports billiard's WorkerLostError and time-limit errors
import pytest
from celery.app.task import Context
from celery.canvas import Signature, chain, chord
from celery.worker.request import Request
from kombu.message import Message as KombuMessage
from kombu.serialization import loads as kombu_loads
from kombu.serialization import prepare_accept_content

from celeriac import exceptions as exc_mod
from celeriac.protocol.message import Embed, Message, TaskMessage
from celeriac.protocol.result_meta import (
    build_meta,
    decode_exception,
    decode_meta,
    encode_exception,
    encode_meta,
)
from celeriac.protocol.v2 import decode_task, encode_task

pytestmark = pytest.mark.compat

WIRE_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "priority", "expiration")
ALL_CONTENT = ["json", "msgpack", "yaml", "pickle"]
COMPRESSION = {
    "gzip": "application/x-gzip",
    "bzip2": "application/x-bz2",
    "lzma": "application/x-lzma",
}


def add(x: Any = 0, y: Any = 0) -> Any:
    return x + y


def echo(*args: Any, **kwargs: Any) -> Any:
    return [args, kwargs]


def boom(key: str) -> None:
    raise KeyError(key)


@pytest.fixture
def app() -> Iterator[Any]:
    app = celery.Celery(
        "golden", broker="memory://", backend="cache+memory://", set_as_current=False
    )
    app.conf.result_extended = True

    app.task(name="tasks.add", shared=False)(add)
    app.task(name="tasks.echo", shared=False)(echo)
    app.task(name="tasks.boom", shared=False)(boom)
    yield app
    app.close()


def capture(app: Any, send: Callable[[str], Any]) -> Message:
    """Run ``send(queue)`` and return the first message it put on ``queue``, as stored."""
    queue = f"golden-{uuid.uuid4()}"
    send(queue)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # The stored envelope itself (kombu.Message would already have decompressed the body).
        envelope = channel._get(queue)
        channel.queue_purge(queue)
        channel.queue_delete(queue)
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    props = envelope["properties"]
    return Message(
        body,
        envelope["content-type"],
        envelope["content-encoding"],
        dict(envelope["headers"]),
        {k: props[k] for k in WIRE_PROPERTIES if k in props},
    )


def celery_request(app: Any, message: Message) -> Any:
    """What Celery's worker builds from ``message`` (it decompresses and decodes it too)."""
    kombu_message = KombuMessage(  # type: ignore[no-untyped-call]
        body=message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=dict(message.headers),
        properties=dict(message.properties),
        delivery_info={"exchange": "", "routing_key": "celery"},
        accept=prepare_accept_content(ALL_CONTENT),  # type: ignore[no-untyped-call]
    )
    return Request(kombu_message, app=app, task=app.tasks[message.headers["task"]])


# -- (1) Celery's message, read by celeriac --------------------------------------------------


def test_celery_task_message_decodes_with_celeriac(app: Any) -> None:
    sent: list[Any] = []
    message = capture(
        app,
        lambda queue: sent.append(
            app.tasks["tasks.add"].apply_async(
                (2, 2), countdown=5, expires=60, priority=3, headers={"custom": "x"}, queue=queue
            )
        ),
    )
    task = decode_task(message, accept=["json"])
    assert (task.task, task.id, task.args, task.kwargs) == ("tasks.add", sent[0].id, (2, 2), {})
    assert task.eta == dt.datetime.fromisoformat(message.headers["eta"])
    assert task.expires == dt.datetime.fromisoformat(message.headers["expires"])
    assert task.eta.utcoffset() == dt.timedelta(0)
    assert abs((task.expires - task.eta) - dt.timedelta(seconds=55)) < dt.timedelta(seconds=1)
    assert task.priority == 3
    assert task.extra_headers == {"custom": "x"}
    assert (task.root_id, task.correlation_id, task.argsrepr) == (task.id, task.id, "(2, 2)")

    # Re-encoding gives Celery's exact headers (same order), body bytes and properties.
    again = encode_task(task, now=task.expires - dt.timedelta(seconds=60))
    assert list(again.headers.items()) == list(message.headers.items())
    assert again.body == message.body
    assert again.properties == message.properties


@pytest.mark.parametrize(
    ("serializer", "compression"),
    [("json", "gzip"), ("msgpack", "bzip2"), ("yaml", "lzma"), ("pickle", None)],
)
def test_celery_serializers_and_compression_decode(
    app: Any, serializer: str, compression: str | None
) -> None:
    message = capture(
        app,
        lambda queue: app.tasks["tasks.echo"].apply_async(
            (1, "b"), {"k": [1.5]}, serializer=serializer, compression=compression, queue=queue
        ),
    )
    assert message.headers.get("compression") == (compression and COMPRESSION[compression])
    task = decode_task(message, accept=[serializer])
    assert (task.args, task.kwargs) == ((1, "b"), {"k": [1.5]})


def test_celery_json_type_wrappers_decode(app: Any) -> None:
    values = (
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.date(2026, 1, 2),
        decimal.Decimal("1.10"),
        uuid.UUID("8174b083-0000-4000-8000-000000000001"),
        b"text",
        b"\xff\x00",
    )
    message = capture(app, lambda queue: app.tasks["tasks.echo"].apply_async(values, queue=queue))
    assert decode_task(message, accept=["json"]).args == values


# -- (2) celeriac's message, read by Celery's worker -----------------------------------------


def test_celeriac_task_message_is_read_by_celery_worker_request(app: Any) -> None:
    now = dt.datetime(2026, 11, 21, 19, 0, tzinfo=dt.UTC)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    task = TaskMessage(
        task="tasks.add",
        id=str(uuid.uuid4()),
        args=(when, decimal.Decimal("2.5")),
        kwargs={"raw": b"\xff"},
        eta=now + dt.timedelta(seconds=5),
        expires=now + dt.timedelta(seconds=60),
        group="g-1",
        parent_id="p-1",
        time_limit=30,
        soft_time_limit=20,
        priority=3,
        extra_headers={"custom": "x"},
    )
    message = encode_task(task, compression="gzip", now=now)
    request = celery_request(app, message)
    assert (request.name, request.id) == ("tasks.add", task.id)
    assert request.args == [when, decimal.Decimal("2.5")]
    assert request.kwargs == {"raw": b"\xff"}
    assert (request.eta, request.expires) == (task.eta, task.expires)
    assert request.delivery_info["priority"] == 3
    assert request.time_limits == [30, 20]
    assert (request.root_id, request.parent_id) == (task.id, "p-1")
    assert request.request_dict["group"] == "g-1"
    assert Context(request.request_dict).headers == {"custom": "x"}
    assert message.properties["expiration"] == "60000"


# -- (3) result meta both ways ---------------------------------------------------------------


def run_in_celery(app: Any, task: TaskMessage) -> tuple[Any, bytes]:
    """Execute ``task`` with Celery's worker code; return its value and the stored bytes."""
    value = celery_request(app, encode_task(task)).execute()
    stored = app.backend.get(app.backend.get_key_for_task(task.id))
    return value, stored.encode() if isinstance(stored, str) else stored


def test_celery_stored_success_matches_celeriac_meta_byte_for_byte(app: Any) -> None:
    task = TaskMessage(task="tasks.add", id=str(uuid.uuid4()), args=(2, 3))
    value, stored = run_in_celery(app, task)
    assert value == 5
    meta = decode_meta(stored, "json")
    ours = build_meta(
        task_id=task.id,
        status="SUCCESS",
        result=5,
        children=[],
        date_done=dt.datetime.fromisoformat(meta["date_done"]),
        extended={
            "name": "tasks.add",
            "args": [2, 3],
            "kwargs": {},
            "worker": meta["worker"],
            "retries": 0,
            "queue": "celery",
        },
    )
    assert encode_meta(ours, "json") == stored


def test_celery_stored_failure_decodes_to_the_exception(app: Any) -> None:
    task = TaskMessage(task="tasks.boom", id=str(uuid.uuid4()), args=("missing-7",))
    _, stored = run_in_celery(app, task)
    meta = decode_meta(stored, "json")
    assert meta["status"] == "FAILURE"
    exc = decode_exception(meta["result"], meta["traceback"])
    assert type(exc) is KeyError
    assert exc.args == ("missing-7",)
    assert "KeyError: 'missing-7'" in exc.remote_traceback  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("SUCCESS", {"sum": [1, 2]}, {"sum": [1, 2]}),
        ("FAILURE", exc_mod.TaskRevokedError("expired"), celery.exceptions.TaskRevokedError),
        ("FAILURE", exc_mod.WorkerLostError("signal 9"), celery.exceptions.WorkerLostError),
        ("FAILURE", ValueError("bad", 1), ValueError),
    ],
)
def test_celeriac_stored_meta_is_read_by_celery_async_result(
    app: Any, status: str, result: Any, expected: Any
) -> None:
    task_id = str(uuid.uuid4())
    done = dt.datetime(2026, 11, 21, 19, 9, 44, tzinfo=dt.UTC)
    is_exc = isinstance(result, BaseException)
    meta = build_meta(
        task_id=task_id,
        status=status,
        result=encode_exception(result) if is_exc else result,
        traceback="Traceback (remote)" if is_exc else None,
        date_done=done,
        parent_id="p-1",
    )
    app.backend.set(app.backend.get_key_for_task(task_id), encode_meta(meta, "json"))
    async_result = app.AsyncResult(task_id)
    assert async_result.state == status
    assert async_result.date_done == done
    if is_exc:
        assert type(async_result.result) is expected
        assert async_result.result.args == result.args
        assert async_result.traceback == "Traceback (remote)"
    else:
        assert async_result.result == expected


@pytest.mark.parametrize(
    ("celery_exc", "ours"),
    [
        (celery.exceptions.TaskRevokedError("revoked"), exc_mod.TaskRevokedError("revoked")),
        (celery.exceptions.NotRegistered("tasks.x"), exc_mod.NotRegistered("tasks.x")),
        (celery.exceptions.MaxRetriesExceededError("x"), exc_mod.MaxRetriesExceededError("x")),
        (celery.exceptions.Reject("r", requeue=True), exc_mod.Reject("r", requeue=True)),
        (celery.exceptions.ChordError("c"), exc_mod.ChordError("c")),
        (celery.exceptions.TimeLimitExceeded(30), exc_mod.TimeLimitExceeded(30)),
        (celery.exceptions.SoftTimeLimitExceeded(), exc_mod.SoftTimeLimitExceeded()),
        (KeyError("k"), KeyError("k")),
    ],
)
def test_exception_encoding_matches_celery_both_ways(
    app: Any, celery_exc: BaseException, ours: BaseException
) -> None:
    celery_encoded = app.backend.prepare_exception(celery_exc)
    assert encode_exception(ours) == {**celery_encoded, "exc_message": list(celery_exc.args)}
    decoded = decode_exception(celery_encoded)
    assert (type(decoded), decoded.args) == (type(ours), ours.args)
    rebuilt = app.backend.exception_to_python(encode_exception(ours))
    assert (type(rebuilt), rebuilt.args) == (type(celery_exc), celery_exc.args)


# -- (4) workflow embeds survive -------------------------------------------------------------


def workflows(app: Any) -> dict[str, Callable[[str], Any]]:
    add, boom = app.tasks["tasks.add"], app.tasks["tasks.boom"]
    return {
        "chain": lambda q: chain(add.s(1, 2), add.s(3), add.si(5, 5).set(countdown=1)).apply_async(
            queue=q
        ),
        "link": lambda q: add.apply_async((1, 1), link=add.s(10), link_error=boom.s(), queue=q),
        "chord": lambda q: chord([add.s(1, 1), add.s(2, 2)], add.s()).apply_async(queue=q),
    }


@pytest.mark.parametrize("kind", ["chain", "link", "chord"])
def test_workflow_embeds_roundtrip(app: Any, kind: str) -> None:
    message = capture(app, workflows(app)[kind])
    celery_embed = kombu_loads(  # type: ignore[no-untyped-call]
        message.body, message.content_type, message.content_encoding, accept={"application/json"}
    )[2]
    task = decode_task(message, accept=["json"])
    assert task.embed == Embed(**celery_embed)
    assert any(value is not None for value in celery_embed.values())
    assert encode_task(task).body == message.body
    for name in ("callbacks", "errbacks", "chain"):
        for ours, theirs in zip(
            getattr(task.embed, name) or [], celery_embed[name] or [], strict=True
        ):
            rebuilt = Signature.from_dict(ours, app=app)
            assert (rebuilt.task, list(rebuilt.args), rebuilt.options) == (
                theirs["task"],
                theirs["args"],
                theirs["options"],
            )
    if kind == "chord":
        assert task.group is not None
        assert task.group_index == 0
        assert task.embed.chord is not None
        assert task.embed.chord["options"]["group_id"] == task.group
