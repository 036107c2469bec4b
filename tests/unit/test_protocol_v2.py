"""Protocol v2 task messages: the emitted form, roundtrips, v1 bodies and malformed messages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from celeriac.exceptions import ContentDisallowed, DecodeError, InvalidTaskError
from celeriac.protocol.message import Embed, Message, TaskMessage
from celeriac.protocol.serializers import dumps
from celeriac.protocol.v2 import PROTOCOL_HEADERS, decode_task, encode_task, saferepr

NOW = dt.datetime(2026, 11, 21, 19, 0, 0, tzinfo=dt.UTC)
HEADER_ORDER = [
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
]
SIG: dict[str, Any] = {
    "task": "tasks.add",
    "args": [10],
    "kwargs": {},
    "options": {},
    "subtask_type": None,
    "immutable": False,
}


def full_task() -> TaskMessage:
    """A task with every field set, so decode(encode(t)) must give it back unchanged."""
    return TaskMessage(
        task="tasks.add",
        id="id-1",
        args=(2, "two"),
        kwargs={"k": [1, 2]},
        embed=Embed(callbacks=[SIG], errbacks=[SIG], chain=[SIG, SIG], chord=SIG),
        eta=NOW + dt.timedelta(seconds=5),
        expires=NOW + dt.timedelta(seconds=60),
        retries=2,
        group="g-1",
        group_index=1,
        root_id="root-1",
        parent_id="parent-1",
        time_limit=30,
        soft_time_limit=20.5,
        shadow="shadowed",
        argsrepr="(2, 'two')",
        kwargsrepr="{'k': [1, 2]}",
        origin="gen1@host",
        ignore_result=True,
        replaced_task_nesting=1,
        stamped_headers=["mark"],
        stamps={"mark": "x"},
        extra_headers={"custom": "x", "redelivered": True},
        correlation_id="corr-1",
        reply_to="reply-1",
        priority=3,
        delivery_mode=1,
    )


def msg(body: Any, headers: dict[str, Any] | None = None, **props: Any) -> Message:
    raw, content_type, encoding = dumps(body, "json")
    return Message(raw, content_type, encoding, headers=headers or {}, properties=props)


def v2_headers(**overrides: Any) -> dict[str, Any]:
    return {"lang": "py", "task": "tasks.add", "id": "id-1", **overrides}


def test_encode_emits_every_protocol_header_in_order_and_the_body_layout() -> None:
    message = encode_task(TaskMessage(task="tasks.add", id="id-1", args=(2, 2)), now=NOW)
    assert list(message.headers) == HEADER_ORDER
    assert message.headers["root_id"] == "id-1"
    assert message.headers["timelimit"] == [None, None]
    assert message.headers["argsrepr"] == "(2, 2)"
    assert message.headers["kwargsrepr"] == "{}"
    assert message.headers["origin"].startswith("gen")
    assert message.headers["stamps"] == {}
    assert message.body == (
        b'[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
    )
    assert message.properties == {
        "correlation_id": "id-1",
        "reply_to": "",
        "delivery_mode": 2,
        "priority": 0,
    }
    assert (message.content_type, message.content_encoding) == ("application/json", "utf-8")


def test_encode_formats_times_and_expiration() -> None:
    task = TaskMessage(
        task="t",
        id="i",
        eta=dt.datetime(2026, 11, 21, 19, 0, 5),  # naive: taken as UTC
        expires=dt.datetime(2026, 11, 21, 20, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    )
    message = encode_task(task, now=NOW - dt.timedelta(seconds=60))
    assert message.headers["eta"] == "2026-11-21T19:00:05+00:00"
    assert message.headers["expires"] == "2026-11-21T20:00:00+01:00"
    assert message.properties["expiration"] == "60000"


def test_expiration_in_the_past_is_clamped_to_zero() -> None:
    task = TaskMessage(task="t", id="i", expires=NOW - dt.timedelta(seconds=10))
    assert encode_task(task, now=NOW).properties["expiration"] == "0"


def test_extra_headers_are_merged_after_the_protocol_headers() -> None:
    task = TaskMessage(task="t", id="i", extra_headers={"custom": "x"})
    message = encode_task(task, compression="gzip")
    assert list(message.headers)[-2:] == ["custom", "compression"]
    assert message.headers["compression"] == "application/x-gzip"


def test_saferepr_truncates_and_never_raises() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    long = saferepr(list(range(1000)))
    assert len(long) == 1024
    assert long.endswith("...")
    assert saferepr(Broken()) == "<unrepresentable Broken: RuntimeError>"
    assert saferepr("abc", maxlen=4) == "'..."


def test_encode_rejects_args_and_kwargs_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="task args must be a list or tuple, got str"):
        encode_task(TaskMessage(task="t", id="i", args="ab"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="task kwargs must be a mapping, got list"):
        encode_task(TaskMessage(task="t", id="i", kwargs=[]))  # type: ignore[arg-type]


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml", "pickle"])
@pytest.mark.parametrize("compression", [None, "zlib", "bzip2", "lzma"])
def test_roundtrip_gives_the_same_task(serializer: str, compression: str | None) -> None:
    task = full_task()
    message = encode_task(task, serializer=serializer, compression=compression, now=NOW)
    assert decode_task(message, accept=[serializer]) == task


def test_decode_fills_nothing_in_for_a_minimal_v2_message() -> None:
    task = decode_task(msg([[], {}, None], v2_headers()), accept=["json"])
    assert task == TaskMessage(task="tasks.add", id="id-1")


def test_decode_parses_iso_strings_z_suffix_and_datetimes() -> None:
    headers = v2_headers(eta="2026-11-21T19:00:05Z", expires="2026-11-21T19:01:00")
    task = decode_task(msg([[], {}, {}], headers), accept=["json"])
    assert task.eta == dt.datetime(2026, 11, 21, 19, 0, 5, tzinfo=dt.UTC)
    assert task.expires == dt.datetime(2026, 11, 21, 19, 1, tzinfo=dt.UTC)
    raw, content_type, encoding = dumps([[], {}, {}], "pickle")
    naive = Message(raw, content_type, encoding, headers=v2_headers(eta=dt.datetime(2026, 1, 1)))
    assert decode_task(naive, accept=["pickle"]).eta == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_decode_puts_only_non_protocol_headers_in_extra_headers() -> None:
    headers = v2_headers(custom="x", celery_beat_task=True, compression=None, argsrepr="()")
    task = decode_task(msg([[], {}, {}], headers), accept=["json"])
    assert task.extra_headers == {"custom": "x", "celery_beat_task": True}
    assert "custom" not in PROTOCOL_HEADERS


def test_decode_takes_bytes_header_values_as_text() -> None:
    task = decode_task(msg([[], {}, {}], v2_headers(task=b"tasks.add")), accept=["json"])
    assert task.task == "tasks.add"


def test_decode_enforces_accept() -> None:
    message = encode_task(TaskMessage(task="t", id="i"), serializer="pickle")
    with pytest.raises(ContentDisallowed, match="application/x-python-serialize"):
        decode_task(message, accept=["json"])


def test_decode_rejects_an_unknown_compression_header() -> None:
    message = msg([[], {}, {}], v2_headers(compression="application/x-snappy"))
    with pytest.raises(DecodeError, match="application/x-snappy"):
        decode_task(message, accept=["json"])


def test_decode_protocol_v1_body() -> None:
    body = {
        "task": "tasks.add",
        "id": "id-1",
        "args": [2, 2],
        "kwargs": {"x": 1},
        "eta": "2026-11-21T19:00:05+00:00",
        "expires": None,
        "retries": 1,
        "timelimit": [10, 5],
        "taskset": "g-1",
        "group": None,
        "utc": True,
        "callbacks": [SIG],
        "errbacks": None,
        "chord": SIG,
    }
    task = decode_task(msg(body, {"custom": "x"}, priority=4), accept=["json"])
    assert (task.task, task.id, task.args, task.kwargs) == ("tasks.add", "id-1", (2, 2), {"x": 1})
    assert task.eta == NOW + dt.timedelta(seconds=5)
    assert (task.retries, task.group, task.time_limit, task.soft_time_limit) == (1, "g-1", 10, 5)
    assert task.embed == Embed(callbacks=[SIG], errbacks=None, chain=None, chord=SIG)
    assert (task.argsrepr, task.kwargsrepr) == ("(2, 2)", "{'x': 1}")
    assert task.extra_headers == {"custom": "x"}
    assert task.priority == 4


def test_decode_hybrid_message_lets_headers_win_over_the_v1_body() -> None:
    body = {"args": [1], "kwargs": {}, "id": "body-id", "retries": 0}
    task = decode_task(msg(body, v2_headers(retries=3, meth="run")), accept=["json"])
    assert (task.task, task.id, task.args, task.retries) == ("tasks.add", "id-1", (1,), 3)
    assert task.extra_headers == {"meth": "run"}


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        ([[], {}], v2_headers(), r"body must be \[args, kwargs, embed\], got a list of 2 items"),
        ("text", v2_headers(), r"body must be \[args, kwargs, embed\].*got str"),
        ({"args": []}, {}, r"or a protocol v1 dict with 'task'\), got dict"),
        ([[], {}, {}], {"id": "i"}, "header 'task' missing"),
        ([[], {}, {}], {"task": "t"}, "header 'id' missing"),
        ([[], {}, {}], v2_headers(id=None), "header 'id' must be str, got NoneType"),
        ([[], {}, {}], v2_headers(id=7), "header 'id' must be str, got int"),
        ([[], {}, {}], v2_headers(id=b"\xff"), "header 'id' is not utf-8 text"),
        (["ab", {}, {}], v2_headers(), "args must be a list, got str"),
        ([[], [], {}], v2_headers(), "kwargs must be a dict, got list"),
        ([[], {}, []], v2_headers(), "embed must be a dict, got list"),
        ([[], {}, {"callbacks": {}}], v2_headers(), "embed 'callbacks' must be a list of"),
        ([[], {}, {"chain": [1]}], v2_headers(), "embed 'chain' must be a list of signature"),
        ([[], {}, {"chord": []}], v2_headers(), "embed 'chord' must be a signature dict"),
        ([[], {}, {}], v2_headers(eta="soon"), "header 'eta' is not an ISO-8601 datetime"),
        ([[], {}, {}], v2_headers(expires=5), "header 'expires' must be str or datetime"),
        ([[], {}, {}], v2_headers(retries="1"), "header 'retries' must be int, got str"),
        ([[], {}, {}], v2_headers(retries=True), "header 'retries' must be int, got bool"),
        ([[], {}, {}], v2_headers(timelimit=[1]), r"'timelimit' must be \[hard, soft\]"),
        ([[], {}, {}], v2_headers(timelimit=[1, "x"]), r"'timelimit' must be \[hard, soft\]"),
        ([[], {}, {}], v2_headers(ignore_result="y"), "'ignore_result' must be bool, got str"),
        ([[], {}, {}], v2_headers(stamps=[]), "header 'stamps' must be dict, got list"),
        ([[], {}, {}], v2_headers(stamped_headers=[1]), "'stamped_headers' must be a list of str"),
        ({"task": "t", "args": []}, {}, "protocol v1 body field 'id' missing"),
        ({"x": 1}, v2_headers(), r"headers name task 'tasks.add' \(protocol v2\).*without 'args'"),
        ({"kwargs": {"x": 1}}, v2_headers(), r"got a dict without 'args'.*\['kwargs'\]"),
        ({}, v2_headers(), "so the body must be \\[args, kwargs, embed\\], got a dict"),
        ({"task": "t", "id": "i", "args": "x"}, {}, "args must be a list, got str"),
    ],
)
def test_malformed_messages_name_what_is_wrong(
    body: Any, headers: dict[str, Any], error: str
) -> None:
    with pytest.raises(InvalidTaskError, match=error):
        decode_task(msg(body, headers), accept=["json"])


def test_malformed_properties_are_named() -> None:
    with pytest.raises(InvalidTaskError, match="property 'priority' must be int, got str"):
        decode_task(msg([[], {}, {}], v2_headers(), priority="high"), accept=["json"])


def test_json_type_wrappers_survive_in_args() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    task = TaskMessage(task="t", id="i", args=(when, b"\xff"), kwargs={"raw": b"ok"})
    message = encode_task(task)
    assert json.loads(message.body)[0][0] == {"__type__": "datetime", "__value__": when.isoformat()}
    decoded = decode_task(message, accept=["json"])
    assert decoded.args == (when, b"\xff")
    assert decoded.kwargs == {"raw": b"ok"}
