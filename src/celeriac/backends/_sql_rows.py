"""Result meta to and from the columns of Celery's SQL tables (``celeriac.backends.database``).

The app hands backends the serialized meta (wire.md §3.2). Celery's SQL backend keeps
it spread over columns instead, each value serialized on its own with the result
serializer: ``result`` (the value, or the encoded exception), ``children``, and with
``result_extended`` ``args`` and ``kwargs``; ``status``, ``traceback``, ``name``, ``worker``,
``retries`` and ``queue`` as plain columns and ``date_done`` as a naive UTC timestamp. These
functions translate one way and the other, so rows written by either side read the same.
Celery keeps neither ``group_id`` nor ``parent_id`` in these tables, so neither does this.

A payload that is not a meta in the result serializer (the backend interface takes any
bytes) is kept verbatim in ``celeriac_payload`` and handed back as it came.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import RowMapping

from celeriac.exceptions import DecodeError
from celeriac.protocol.result_meta import decode_meta, encode_meta
from celeriac.protocol.serializers import content_type_of, dumps, loads

__all__ = ["RowCodec"]

_EXTENDED_PLAIN = ("name", "worker", "retries", "queue")


class RowCodec:
    """Translates meta payloads of one result serializer to rows and back."""

    def __init__(self, serializer: str) -> None:
        self.serializer = serializer
        self._content_type = content_type_of(serializer)
        self._encoding = "binary" if serializer in ("msgpack", "pickle") else "utf-8"

    def _dump(self, value: Any) -> bytes:
        return dumps(value, self.serializer)[0]

    def _load(self, blob: bytes | None) -> Any:
        if blob is None:
            return None
        return loads(bytes(blob), self._content_type, self._encoding, accept=[self._content_type])

    def _meta(self, payload: bytes, required: str) -> dict[str, Any] | None:
        try:
            meta = decode_meta(payload, self.serializer)
        except DecodeError:
            return None
        return meta if required in meta else None

    def task_row(self, payload: bytes, state: str) -> dict[str, Any]:
        """The task table's columns (but ``task_id`` and the expiry) for ``payload``."""
        meta = self._meta(payload, "status")
        if meta is None:
            return {**_EMPTY_TASK, "status": state, "celeriac_payload": payload}
        row: dict[str, Any] = {
            "status": meta["status"],
            "result": self._dump(meta.get("result")),
            "date_done": _naive_utc(meta.get("date_done")),
            "traceback": meta.get("traceback"),
            "children": self._dump(meta["children"]) if meta.get("children") else None,
            "celeriac_payload": None,
        }
        extended = "name" in meta or "args" in meta
        for key in _EXTENDED_PLAIN:
            row[key] = meta.get(key)
        for key in ("args", "kwargs"):
            row[key] = self._dump(meta.get(key)) if extended else None
        return row

    def task_payload(self, row: RowMapping) -> bytes:
        """The meta payload of a task row, whichever side wrote it."""
        if row["celeriac_payload"] is not None:
            return bytes(row["celeriac_payload"])
        date_done = row["date_done"]
        meta: dict[str, Any] = {
            "status": row["status"],
            "result": self._load(row["result"]),
            "traceback": row["traceback"],
            "children": self._load(row["children"]) or [],
            "date_done": None if date_done is None else _aware(date_done).isoformat(),
        }
        if row["name"] is not None or row["args"] is not None:
            meta.update(
                name=row["name"],
                args=self._load(row["args"]),
                kwargs=self._load(row["kwargs"]),
                worker=row["worker"],
                retries=row["retries"],
                queue=row["queue"],
            )
        meta["task_id"] = row["task_id"]
        return encode_meta(meta, self.serializer)

    def group_row(self, payload: bytes) -> dict[str, Any]:
        """The group table's ``result`` and ``celeriac_payload`` for a group's payload."""
        meta = self._meta(payload, "result")
        if meta is None:
            return {"result": None, "celeriac_payload": payload}
        return {"result": self._dump(meta["result"]), "celeriac_payload": None}

    def group_payload(self, row: RowMapping) -> bytes:
        if row["celeriac_payload"] is not None:
            return bytes(row["celeriac_payload"])
        return encode_meta({"result": self._load(row["result"])}, self.serializer)


_EMPTY_TASK: dict[str, Any] = {
    "result": None,
    "date_done": None,
    "traceback": None,
    "children": None,
    "name": None,
    "args": None,
    "kwargs": None,
    "worker": None,
    "retries": None,
    "queue": None,
}


def _naive_utc(value: Any) -> dt.datetime | None:
    """``date_done`` as the naive UTC timestamp Celery's column holds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):  # the serializer may hand back a datetime
        raise DecodeError(f"date_done must be an ISO-8601 time, got {value!r:.100}")
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
