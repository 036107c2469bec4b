"""Result meta and exception encoding: Celery's layout, module mapping, safe decoding."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from celeriac import exceptions as exc_mod
from celeriac.protocol.result_meta import (
    build_meta,
    decode_exception,
    decode_meta,
    encode_exception,
    encode_meta,
)

DONE = dt.datetime(2026, 11, 21, 19, 9, 44, 515344, tzinfo=dt.UTC)


class Outer:
    class InnerError(Exception):
        pass


class NeedsTwo(Exception):
    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(a, b)


NOT_AN_EXCEPTION = "a module attribute that is not a class"


def test_encode_builtin_exception() -> None:
    assert encode_exception(KeyError("missing-7")) == {
        "exc_type": "KeyError",
        "exc_message": ["missing-7"],
        "exc_module": "builtins",
    }


def test_encode_replaces_unserializable_args_by_repr() -> None:
    marker = object()
    encoded = encode_exception(ValueError("x", marker, {1, 2}))
    assert encoded["exc_message"] == ["x", repr(marker), repr({1, 2})]
    assert encode_exception(ValueError({1, 2}), serializer="pickle")["exc_message"] == [{1, 2}]


@pytest.mark.parametrize(
    ("exc", "module"),
    [
        (exc_mod.TaskRevokedError("expired"), "celery.exceptions"),
        (exc_mod.TimeoutError("late"), "celery.exceptions"),
        (exc_mod.MaxRetriesExceededError("too many"), "celery.exceptions"),
        (exc_mod.ChordError("member failed"), "celery.exceptions"),
        (exc_mod.NotRegistered("tasks.nope"), "celery.exceptions"),
        (exc_mod.Retry("again", None, 5), "celery.exceptions"),
        (exc_mod.Reject("bad", True), "celery.exceptions"),
        (exc_mod.Ignore(), "celery.exceptions"),
        (exc_mod.InvalidTaskError("bad body"), "celery.exceptions"),
        (exc_mod.WorkerLostError("signal 9"), "billiard.exceptions"),
        (exc_mod.TimeLimitExceeded(30), "billiard.exceptions"),
        (exc_mod.SoftTimeLimitExceeded(), "billiard.exceptions"),
        (exc_mod.EncodeError("no"), "kombu.exceptions"),
        (exc_mod.ContentDisallowed("no"), "kombu.exceptions"),
        (exc_mod.TransportError("down"), "celeriac.exceptions"),
    ],
)
def test_celeriac_exceptions_travel_under_celerys_module_names(
    exc: BaseException, module: str
) -> None:
    encoded = encode_exception(exc)
    assert encoded["exc_module"] == module
    assert encoded["exc_type"] == type(exc).__name__
    decoded = decode_exception(encoded)
    assert type(decoded) is type(exc)
    assert decoded.args == exc.args


def test_nested_class_roundtrips_by_qualname() -> None:
    encoded = encode_exception(Outer.InnerError("deep"))
    assert encoded["exc_type"] == "Outer.InnerError"
    assert encoded["exc_module"] == __name__
    decoded = decode_exception(encoded)
    assert type(decoded) is Outer.InnerError
    assert decoded.args == ("deep",)


def test_decode_attaches_the_remote_traceback() -> None:
    decoded = decode_exception(encode_exception(KeyError("k")), "Traceback (most recent...)")
    assert decoded.remote_traceback == "Traceback (most recent...)"  # type: ignore[attr-defined]


def test_decode_takes_a_plain_string_message_as_one_argument() -> None:
    decoded = decode_exception(
        {"exc_type": "ValueError", "exc_message": "bad", "exc_module": "builtins"}
    )
    assert type(decoded) is ValueError
    assert decoded.args == ("bad",)


def test_decode_passes_an_exception_object_through() -> None:
    original = ValueError("pickled")
    assert decode_exception(original, "tb") is original
    assert original.remote_traceback == "tb"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "data",
    [
        {"exc_type": "Gone", "exc_message": ["x"], "exc_module": "no_such_module_xyz"},
        {"exc_type": "Gone", "exc_message": ["x"], "exc_module": "builtins"},
        {"exc_type": "Outer.Gone", "exc_message": ["x"], "exc_module": __name__},
        {"exc_type": "Terminated", "exc_message": ["x"], "exc_module": "billiard.exceptions"},
        {"exc_type": "annotations", "exc_message": ["x"], "exc_module": "celery.exceptions"},
        {"exc_type": "Gone", "exc_message": ["x"], "exc_module": None},
        {"exc_type": "NeedsTwo", "exc_message": ["only one"], "exc_module": __name__},
    ],
)
def test_decode_falls_back_to_remote_error(data: dict[str, Any]) -> None:
    decoded = decode_exception(data, "remote tb")
    assert isinstance(decoded, exc_mod.RemoteError)
    assert (decoded.exc_type, decoded.exc_module) == (data["exc_type"], data["exc_module"])
    assert decoded.exc_message == data["exc_message"]
    assert decoded.remote_traceback == "remote tb"


def test_remote_error_encodes_as_the_exception_it_stands_for() -> None:
    data = {"exc_type": "Gone", "exc_message": ["x", 1], "exc_module": "elsewhere.errors"}
    assert encode_exception(decode_exception(data)) == data


@pytest.mark.parametrize(
    ("exc_type", "exc_module"),
    [("system", "os"), ("print", "builtins"), ("NOT_AN_EXCEPTION", __name__), ("Outer", __name__)],
)
def test_decode_refuses_non_exception_objects(exc_type: str, exc_module: str) -> None:
    data = {"exc_type": exc_type, "exc_message": ["rm -rf /"], "exc_module": exc_module}
    with pytest.raises(exc_mod.SecurityError, match=f"refusing to rebuild {exc_module}.{exc_type}"):
        decode_exception(data)


def test_decode_needs_an_exc_type() -> None:
    with pytest.raises(exc_mod.DecodeError, match="needs a str 'exc_type'"):
        decode_exception({"exc_message": ["x"], "exc_module": "builtins"})


def test_build_meta_minimal_success_in_celery_key_order() -> None:
    meta = build_meta(task_id="t-1", status="SUCCESS", result=4, date_done=DONE)
    assert json.dumps(meta) == (
        '{"status": "SUCCESS", "result": 4, "traceback": null, "children": [], '
        '"date_done": "2026-11-21T19:09:44.515344+00:00", "task_id": "t-1"}'
    )


def test_build_meta_with_group_parent_and_extended_fields() -> None:
    meta = build_meta(
        task_id="t-1",
        status="FAILURE",
        result=encode_exception(KeyError("k")),
        traceback="Traceback...",
        children=[[["c-1", None], None]],
        date_done=dt.datetime(2026, 1, 1),  # naive: taken as UTC
        group_id="g-1",
        parent_id="p-1",
        extended={
            "queue": "celery",
            "mark": "x",
            "name": "tasks.add",
            "args": [1],
            "kwargs": {},
            "worker": "w1@vm",
            "retries": 0,
        },
    )
    assert list(meta) == [
        "status",
        "result",
        "traceback",
        "children",
        "date_done",
        "group_id",
        "parent_id",
        "name",
        "args",
        "kwargs",
        "worker",
        "retries",
        "queue",
        "mark",
        "task_id",
    ]
    assert meta["date_done"] == "2026-01-01T00:00:00+00:00"
    assert meta["children"] == [[["c-1", None], None]]
    assert meta["result"]["exc_type"] == "KeyError"


@pytest.mark.parametrize("status", ["PENDING", "STARTED", "RETRY", "PROGRESS"])
def test_date_done_is_null_for_unready_states(status: str) -> None:
    meta = build_meta(task_id="t", status=status, result=None, date_done=DONE)
    assert meta["date_done"] is None


def test_ready_state_needs_date_done() -> None:
    with pytest.raises(ValueError, match="build_meta needs date_done for the ready state REVOKED"):
        build_meta(task_id="t", status="REVOKED", result=None)


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml", "pickle"])
def test_meta_roundtrip(serializer: str) -> None:
    meta = build_meta(
        task_id="t-1",
        status="FAILURE",
        result=encode_exception(exc_mod.TaskRevokedError("expired")),
        date_done=DONE,
        group_id="g",
    )
    payload = encode_meta(meta, serializer)
    assert isinstance(payload, bytes)
    assert decode_meta(payload, serializer) == meta


def test_meta_is_stored_as_the_bare_serialized_mapping() -> None:
    meta = build_meta(task_id="t-1", status="STARTED", result={"pid": 1, "hostname": "w@h"})
    assert json.loads(encode_meta(meta, "json")) == meta


@pytest.mark.parametrize(
    ("payload", "serializer", "error"),
    [
        (b"{not json", "json", "stored result meta does not decode as json"),
        (b"\xc1", "msgpack", "stored result meta does not decode as msgpack"),
        (b"[1, 2]", "json", "stored result meta decoded as json must be a dict, got list"),
    ],
)
def test_decode_meta_errors_name_the_serializer(
    payload: bytes, serializer: str, error: str
) -> None:
    with pytest.raises(exc_mod.DecodeError, match=error):
        decode_meta(payload, serializer)
