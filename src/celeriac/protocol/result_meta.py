"""Stored result meta (wire.md §3.2) and task exceptions in it (§5.2).

A result is stored as the bare serialized meta, with no content type beside it (as Celery's
Redis backend does), keys in this order::

    {"status": "SUCCESS", "result": 4, "traceback": null, "children": [],
     "date_done": "2026-11-21T19:09:44.515344+00:00",
     "group_id": "...", "parent_id": "...",                   # only when set
     "name": ..., "args": ..., "kwargs": ..., "worker": ...,  # only with result_extended
     "retries": ..., "queue": ...,
     "task_id": "ad8da3b8-..."}

For FAILURE, RETRY and REVOKED the ``result`` is an encoded exception::

    {"exc_type": "KeyError", "exc_message": ["missing-7"], "exc_module": "builtins"}

Celeriac's own exceptions travel under the module names Celery defines them in
(``celery.exceptions``, ``billiard.exceptions``, ``kombu.exceptions``) so Celery clients can
rebuild them, and those names decode back to ``celeriac.exceptions`` without importing Celery.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Collection, Mapping
from typing import Any

from celeriac import exceptions, states
from celeriac.exceptions import (
    ContentDisallowed,
    DecodeError,
    RemoteError,
    SecurityError,
    SerializationError,
)
from celeriac.protocol.serializers import content_type_of, dumps, loads

__all__ = ["build_meta", "decode_exception", "decode_meta", "encode_exception", "encode_meta"]

# Where Celery 5.7 defines each of the names celeriac.exceptions shares with it.
_CELERY_MODULES: dict[str, frozenset[str]] = {
    "celery.exceptions": frozenset(
        {
            "AlreadyRegistered",
            "BackendError",
            "BackendGetMetaError",
            "BackendStoreError",
            "CeleryError",
            "ChordError",
            "Ignore",
            "ImproperlyConfigured",
            "InvalidTaskError",
            "MaxRetriesExceededError",
            "NotRegistered",
            "QueueNotFound",
            "Reject",
            "Retry",
            "SecurityError",
            "TaskError",
            "TaskPredicate",
            "TaskRevokedError",
            "TimeoutError",
            "WorkerShutdown",
            "WorkerTerminate",
        }
    ),
    "billiard.exceptions": frozenset(
        {"SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError"}
    ),
    "kombu.exceptions": frozenset(
        {
            "ContentDisallowed",
            "DecodeError",
            "EncodeError",
            "OperationalError",
            "SerializationError",
        }
    ),
}
_WIRE_MODULE = {name: module for module, names in _CELERY_MODULES.items() for name in names}


def _wire_safe(value: Any, serializer: str) -> Any:
    try:
        dumps(value, serializer)
    except SerializationError:
        return repr(value)
    return value


def encode_exception(exc: BaseException, *, serializer: str = "json") -> dict[str, Any]:
    """``exc`` as ``{"exc_type", "exc_message", "exc_module"}``.

    Each argument the result ``serializer`` cannot encode is replaced by its ``repr``. A
    ``RemoteError`` is encoded as the exception it stands for.
    """
    if isinstance(exc, RemoteError):
        return {
            "exc_type": exc.exc_type,
            "exc_message": exc.exc_message,
            "exc_module": exc.exc_module,
        }
    cls = type(exc)
    name = cls.__qualname__
    module = cls.__module__
    if module == exceptions.__name__:
        module = _WIRE_MODULE.get(name, module)
    return {
        "exc_type": name,
        "exc_message": [_wire_safe(arg, serializer) for arg in exc.args],
        "exc_module": module,
    }


def _find_class(exc_type: str, exc_module: str) -> Any:
    """The object named by ``exc_module`` + dotted ``exc_type``, or None when there is none."""
    if exc_module in _CELERY_MODULES:
        if exc_type not in _CELERY_MODULES[exc_module]:
            return None
        return getattr(exceptions, exc_type)
    # Only modules already imported here: importing a module named by whoever can write to
    # the result store would run its import-time code.
    found: Any = sys.modules.get(exc_module)
    if found is None:
        return None
    for part in exc_type.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def decode_exception(
    data: Mapping[str, Any] | BaseException, traceback: str | None = None
) -> BaseException:
    """Rebuild the exception ``encode_exception`` (or Celery) stored.

    Falls back to ``RemoteError`` when the type cannot be found or built here. Raises
    ``SecurityError`` when the name resolves to something that is not an exception class,
    ``DecodeError`` when ``data`` carries no ``exc_type``. The traceback text is attached as
    ``remote_traceback``. An exception object (from the pickle serializer) is returned as is.
    """
    exc = data if isinstance(data, BaseException) else _rebuild(data, traceback)
    with contextlib.suppress(AttributeError, TypeError):
        exc.remote_traceback = traceback  # type: ignore[attr-defined]
    return exc


def _rebuild(data: Mapping[str, Any], traceback: str | None) -> BaseException:
    if not isinstance(data, Mapping) or not isinstance(data.get("exc_type"), str):
        raise DecodeError(
            f"an encoded exception needs a str 'exc_type' (with 'exc_message' and "
            f"'exc_module'), got {data!r:.200}"
        )
    exc_type: str = data["exc_type"]
    exc_module = data.get("exc_module")
    message = data.get("exc_message", [])
    cls = _find_class(exc_type, exc_module) if isinstance(exc_module, str) else None
    if cls is None:
        return RemoteError(exc_type, exc_module, message, traceback)
    if not isinstance(cls, type) or not issubclass(cls, BaseException):
        raise SecurityError(
            f"refusing to rebuild {exc_module}.{exc_type} as a task exception: it is not an "
            f"exception class (payload {message!r:.200})"
        )
    try:
        if isinstance(message, (list, tuple)):
            return cls(*message)
        return cls(message)
    except Exception:
        return RemoteError(exc_type, exc_module, message, traceback)


def _date_done(status: str, date_done: dt.datetime | None) -> str | None:
    if status not in states.READY_STATES:
        return None
    if date_done is None:
        raise ValueError(f"build_meta needs date_done for the ready state {status}")
    if date_done.tzinfo is None:
        date_done = date_done.replace(tzinfo=dt.UTC)
    return date_done.isoformat()


_EXTENDED_KEYS = ("name", "args", "kwargs", "worker", "retries", "queue")


def build_meta(
    *,
    task_id: str,
    status: str,
    result: Any,
    traceback: str | None = None,
    children: list[Any] | None = None,
    date_done: dt.datetime | None = None,
    group_id: str | None = None,
    parent_id: str | None = None,
    extended: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A task's result meta in Celery's key order.

    ``result`` is stored as given: for FAILURE, RETRY and REVOKED pass the exception already
    encoded with ``encode_exception``. ``date_done`` (naive means UTC) is required for ready
    states and written as ISO-8601; other states store null. ``extended`` holds the
    ``result_extended`` fields (name, args, kwargs, worker, retries, queue, then any others
    such as stamps, in their given order).
    """
    meta: dict[str, Any] = {
        "status": status,
        "result": result,
        "traceback": traceback,
        "children": list(children) if children is not None else [],
        "date_done": _date_done(status, date_done),
    }
    if group_id:
        meta["group_id"] = group_id
    if parent_id:
        meta["parent_id"] = parent_id
    if extended is not None:
        meta.update((key, extended.get(key)) for key in _EXTENDED_KEYS)
        meta.update((k, v) for k, v in extended.items() if k not in _EXTENDED_KEYS)
    meta["task_id"] = task_id
    return meta


def encode_meta(meta: Mapping[str, Any], serializer: str) -> bytes:
    """The bytes to store for ``meta`` (the serialized mapping, nothing around it)."""
    body, _, _ = dumps(dict(meta), serializer)
    return body


def decode_meta(
    payload: bytes,
    serializer: str,
    *,
    accept: Collection[str] | None = None,
    accept_setting: str = "result_accept_content",
) -> dict[str, Any]:
    """Parse stored meta, refusing a serializer not in ``accept`` (``result_accept_content``).

    Raises ``ContentDisallowed`` (naming ``accept_setting``) when ``serializer`` is not
    accepted, ``DecodeError`` (naming the serializer) when the meta does not decode.
    """
    content_type = content_type_of(serializer)
    encoding = "binary" if serializer in ("msgpack", "pickle") else "utf-8"
    try:
        meta = loads(
            payload,
            content_type,
            encoding,
            accept=[content_type] if accept is None else accept,
            accept_setting=accept_setting,
        )
    except ContentDisallowed:
        raise
    except SerializationError as exc:
        raise DecodeError(f"stored result meta does not decode as {serializer}: {exc}") from exc
    if not isinstance(meta, dict):
        raise DecodeError(
            f"stored result meta decoded as {serializer} must be a dict, got {type(meta).__name__}"
        )
    return meta
