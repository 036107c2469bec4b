"""Folding Celery events into rows: which state a task is in, what each event fills in.

Pure functions over plain dicts, so the rules are tested without a database. A task row is
a dict of the store's task columns (see ``store``); ``fold_task_event`` returns the row after
one event and the state the task moved into (None when the state did not change);
``fold_worker_event`` does the same for a worker's row.

Events may arrive out of order (the client's ``task-sent`` after the worker's
``task-received``; a batch from one worker after another's). A new state replaces the
current one when it is at least as strong (``states.precedence``: SUCCESS and FAILURE
beat STARTED, which beats RECEIVED, ...), or when either is RETRY, because a retried task
goes round RECEIVED and STARTED again. A weaker, late event still fills in the fields it
carries (a late ``task-received`` still names the task and its arguments).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from celeriac import states
from celeriac._prometheus import BUCKETS

__all__ = [
    "RUNTIME_BUCKETS",
    "TASK_EVENT_STATES",
    "fold_task_event",
    "fold_worker_event",
    "meta_to_event",
    "new_task_row",
    "runtime_bucket",
]

#: The state each standard task event puts a task in.
TASK_EVENT_STATES: dict[str, str] = {
    "task-sent": states.PENDING,
    "task-received": states.RECEIVED,
    "task-started": states.STARTED,
    "task-succeeded": states.SUCCESS,
    "task-failed": states.FAILURE,
    "task-retried": states.RETRY,
    "task-revoked": states.REVOKED,
    "task-rejected": states.REJECTED,
}

#: Upper bounds (seconds) of the runtime histogram's buckets; a last one counts the rest.
RUNTIME_BUCKETS: tuple[float, ...] = BUCKETS

_WORKER_FIELDS = ("freq", "active", "processed", "pid", "sw_ident", "sw_ver", "sw_sys")

# Fields copied from the event when present: event key -> column.
_DESCRIPTIVE = {
    "name": "name",
    "args": "args",
    "kwargs": "kwargs",
    "eta": "eta",
    "expires": "expires",
    "root_id": "root_id",
    "parent_id": "parent_id",
    "queue": "queue",
}
_TIMESTAMP_COLUMN = {
    "task-sent": "sent_at",
    "task-received": "received_at",
    "task-started": "started_at",
    "task-succeeded": "finished_at",
    "task-failed": "finished_at",
    "task-revoked": "finished_at",
}


def new_task_row(uuid: str, seen_at: float) -> dict[str, Any]:
    """The row of a task seen for the first time, before its first event is folded in."""
    return {
        "uuid": uuid,
        "name": "",
        "state": states.PENDING,
        "worker": "",
        "queue": "",
        "seen_at": seen_at,
        "updated_at": seen_at,
        "sent_at": None,
        "received_at": None,
        "started_at": None,
        "finished_at": None,
        "args": None,
        "kwargs": None,
        "result": None,
        "exception": None,
        "traceback": None,
        "runtime": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "root_id": None,
        "parent_id": None,
        "progress_current": None,
        "progress_total": None,
    }


def _text(value: Any) -> str | None:
    """Event fields as the store keeps them: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def _moves(current: str, new: str) -> bool:
    if new == current:
        return False
    if states.RETRY in (new, current):
        return True
    return states.precedence(new) <= states.precedence(current)


def fold_task_event(
    row: Mapping[str, Any], event: Mapping[str, Any], timestamp: float
) -> tuple[dict[str, Any], str | None]:
    """``row`` after ``event`` (a ``task-*`` event), and the state entered (or None)."""
    kind = str(event.get("type", ""))
    folded = dict(row)
    for key, column in _DESCRIPTIVE.items():
        value = event.get(key)
        if value is not None and value != "":
            folded[column] = value if column == "name" else _text(value)
    if isinstance(event.get("retries"), int):
        folded["retries"] = max(int(folded["retries"] or 0), int(event["retries"]))
    hostname = event.get("hostname")
    if kind != "task-sent" and isinstance(hostname, str) and hostname:
        folded["worker"] = hostname
    stamped = _TIMESTAMP_COLUMN.get(kind)
    if stamped is not None:
        folded[stamped] = timestamp
    if kind == "task-succeeded":
        folded["result"] = _text(event.get("result"))
        runtime = event.get("runtime")
        folded["runtime"] = float(runtime) if isinstance(runtime, int | float) else None
        folded["progress_current"] = folded["progress_total"]  # a finished bar is full
    elif kind in ("task-failed", "task-retried"):
        folded["exception"] = _text(event.get("exception"))
        folded["traceback"] = _text(event.get("traceback"))
    elif kind == "task-revoked":
        folded["exception"] = _revoked_reason(event)
    elif kind == "task-rejected":
        folded["exception"] = "rejected (requeued)" if event.get("requeue") else "rejected"
    folded["updated_at"] = max(float(folded["updated_at"]), timestamp)
    entered = TASK_EVENT_STATES.get(kind)
    if entered is None or not _moves(str(row["state"]), entered):
        return folded, None
    folded["state"] = entered
    return folded, entered


def _revoked_reason(event: Mapping[str, Any]) -> str:
    if event.get("expired"):
        return "revoked: expired"
    if event.get("terminated"):
        return f"revoked: terminated (signal {event.get('signum')})"
    return "revoked"


def meta_to_event(uuid: str, meta: Mapping[str, Any], now: float) -> dict[str, Any] | None:
    """A stand-in event for a result-store meta that shows the task finished; else None.

    Lets the dashboard learn outcomes it missed (it was down, or the worker sends no task
    events): SUCCESS, FAILURE and REVOKED metas become the matching events.
    """
    status = meta.get("status")
    event: dict[str, Any] = {"uuid": uuid, "timestamp": now}
    if status == states.SUCCESS:
        event.update(type="task-succeeded", result=repr(meta.get("result")))
    elif status == states.FAILURE:
        event.update(
            type="task-failed",
            exception=_exception_text(meta.get("result")),
            traceback=meta.get("traceback"),
        )
    elif status == states.REVOKED:
        event.update(type="task-revoked")
    else:
        return None
    return event


def _exception_text(result: Any) -> str:
    if isinstance(result, Mapping) and "exc_type" in result:
        message = result.get("exc_message")
        args = ", ".join(repr(a) for a in message) if isinstance(message, list) else repr(message)
        return f"{result['exc_type']}({args})"
    return repr(result)


def runtime_bucket(runtime: float) -> int:
    """The index of the histogram bucket ``runtime`` falls in (``len(RUNTIME_BUCKETS)``: +Inf)."""
    for index, bound in enumerate(RUNTIME_BUCKETS):
        if runtime <= bound:
            return index
    return len(RUNTIME_BUCKETS)


def fold_worker_event(
    row: Mapping[str, Any] | None, hostname: str, event: Mapping[str, Any], ts: float
) -> dict[str, Any]:
    """A worker's row after a ``worker-*`` event (``online`` is 0 after ``worker-offline``)."""
    folded: dict[str, Any] = dict(row) if row else {"hostname": hostname, "pool": None}
    folded.setdefault("queues", None)
    for key in _WORKER_FIELDS:
        if event.get(key) is not None:
            folded[key] = event[key]
        else:
            folded.setdefault(key, None)
    if folded["freq"] is None:
        folded["freq"] = 2.0
    loadavg = event.get("loadavg")
    folded["loadavg"] = json.dumps(loadavg) if loadavg is not None else folded.get("loadavg")
    offline = event.get("type") == "worker-offline"
    folded["online"] = 0 if offline else 1
    folded["last_heartbeat"] = max(float(folded.get("last_heartbeat") or 0.0), ts)
    return folded
