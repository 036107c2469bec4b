"""The remote control commands a worker answers, with Celery's names, arguments and replies.

Each command is a function ``(worker, **arguments) -> reply`` registered in ``COMMANDS`` as
``inspect`` (read-only) or ``control``. Replies are plain JSON values in the shapes
Celery's clients parse: ``{"ok": "pong"}`` / ``{"error": "..."}`` for control commands,
data for inspection (``registered`` a list of names, ``active`` a list of request dicts,
``query_task`` ``{id: [state, request]}``, ``stats`` a dict, ...). ``WorkerControl``
(``celeriac.worker.remote.control``) runs them in the worker's pidbox thread.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from celeriac.app.bugreport import bugreport
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import saferepr
from celeriac.routing import Queue
from celeriac.transports.base import Delivery
from celeriac.worker._scheduled import ETA_TIMER_PRIORITY, broker_scheduled
from celeriac.worker.consumer import _waits_for_eta
from celeriac.worker.remote.mingle import revoked_ids

if TYPE_CHECKING:
    from celeriac.worker._worker_protocol import WorkerLike

__all__ = ["COMMANDS", "Command", "nok", "ok", "parse_signal"]

logger = logging.getLogger("celeriac.worker")

DEFAULT_TASK_INFO_ITEMS = ("exchange", "routing_key", "rate_limit")


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    kind: str  # "inspect" or "control"
    fun: Callable[..., Any]


COMMANDS: dict[str, Command] = {}


def _register(kind: str, *aliases: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fun: Callable[..., Any]) -> Callable[..., Any]:
        for name in (fun.__name__.rstrip("_"), *aliases):
            COMMANDS[name] = Command(name, kind, fun)
        return fun

    return register


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value}


def nok(value: Any) -> dict[str, Any]:
    return {"error": value}


def parse_signal(value: str | int | None) -> int:
    """``'SIGKILL'``, ``'KILL'``, ``'9'`` or 9 -> 9; None -> SIGTERM."""
    if value is None or value == "":
        return int(signal.SIGTERM)
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    name = str(value).upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise ValueError(
            f"Unknown signal {value!r}: use a name such as SIGTERM or SIGKILL"
        ) from None


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return saferepr(value)


# -- inspect: the worker -----------------------------------------------------------------------


@_register("inspect")
def ping(worker: WorkerLike, **_: Any) -> Any:
    return ok("pong")


@_register("inspect")
def clock(worker: WorkerLike, **_: Any) -> Any:
    return {"clock": worker.app.lamport_clock.value}


@_register("inspect")
def stats(worker: WorkerLike, **_: Any) -> Any:
    consumer, pool, app = worker.consumer, worker.pool, worker.app
    assert consumer is not None and pool is not None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found: dict[str, Any] = {
        "total": dict(consumer.total),
        "pid": os.getpid(),
        "clock": str(app.lamport_clock.value),
        "uptime": round(app.clock.time() - worker.started_at),
        "pool": pool.info(),
        "broker": _broker_info(app.broker_url, app.conf.broker_transport_options),
        "prefetch_count": consumer.prefetch_limit,
        "rusage": {name[3:]: getattr(usage, name) for name in dir(usage) if name.startswith("ru_")},
    }
    if getattr(pool, "autoscaling", False):
        found["autoscaler"] = {
            "max": pool.concurrency,
            "min": getattr(pool, "min_concurrency", 0),
            "current": len(pool.processes()),
            "qty": len(consumer.jobs),
        }
    return _jsonable(found)


def _broker_info(url: str, options: Any) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "transport": parts.scheme,
        "hostname": parts.hostname,
        "port": parts.port,
        "userid": parts.username,
        "virtual_host": parts.path.lstrip("/") or None,
        "ssl": parts.scheme in ("rediss", "amqps"),
        "transport_options": dict(options or {}),
        "uri_prefix": None,
        "login_method": None,
        "insist": False,
    }


@_register("inspect")
def report(worker: WorkerLike, **_: Any) -> Any:
    return ok(bugreport(worker.app))  # Celery's reply: {"ok": app.bugreport()}


@_register("inspect", "dump_conf")
def conf(worker: WorkerLike, with_defaults: bool = False, **_: Any) -> Any:
    settings = worker.app.conf
    table = settings.table(with_defaults=bool(with_defaults))
    reply = {k: v for k, v in table.items() if not k.startswith("__")}
    reply["deprecated_settings"] = settings.deprecated_settings  # always there, as Celery's
    # Celery's worker widens include at start to every module its tasks come from; the
    # reply says the same (the user's task modules, not Celeriac's built-in ones) without
    # writing into the app's settings.
    modules = {str(getattr(task, "__module__", "") or "") for task in worker.app.tasks.values()}
    given = {str(name) for name in settings.include or ()}
    reply["include"] = sorted(given | {m for m in modules if m and not _is_ours(m)})
    return _jsonable(reply)


@_register("inspect", "dump_tasks")
def registered(
    worker: WorkerLike, taskinfoitems: list[str] | None = None, builtins: bool = False, **_: Any
) -> Any:
    tasks = worker.app.tasks
    items = [i for i in (taskinfoitems or DEFAULT_TASK_INFO_ITEMS) if not i.startswith("_")]
    names = sorted(n for n in tasks if builtins or not n.startswith(("celery.", "celeriac.")))

    def describe(name: str) -> str:
        task = tasks[name]
        fields = {i: _task_attribute(task, i) for i in items}
        shown = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{name} [{shown}]" if shown else name

    return [describe(name) for name in names]


def _task_attribute(task: Any, name: str) -> Any:
    """The task's attribute, or the setting it falls back to (``serializer`` -> json)."""
    try:
        return task.option(name)
    except (AttributeError, KeyError):
        return getattr(task, name, None)


@_register("inspect")
def active_queues(worker: WorkerLike, **_: Any) -> Any:
    return [_queue_info(queue) for queue in worker.queues]


def _queue_info(queue: Queue) -> Any:
    exchange = queue.bound_exchange
    return _jsonable(
        {
            "name": queue.name,
            "exchange": {
                "name": exchange.name,
                "type": exchange.type,
                "arguments": exchange.arguments,
                "durable": exchange.durable,
                "passive": False,
                "auto_delete": exchange.auto_delete,
                "delivery_mode": None,
                "no_declare": False,
            },
            "routing_key": queue.routing_key,
            "queue_arguments": queue.queue_arguments,
            "binding_arguments": None,
            "consumer_arguments": None,
            "durable": queue.durable,
            "exclusive": queue.exclusive,
            "auto_delete": queue.auto_delete,
            "no_ack": False,
            "alias": None,
            "bindings": [],
            "no_declare": None,
            "expires": None,
            "message_ttl": None,
            "max_length": None,
            "max_length_bytes": None,
            "max_priority": queue.max_priority,
        }
    )


# -- inspect: tasks ----------------------------------------------------------------------------


def _message_info(worker: WorkerLike, message: TaskMessage, delivery: Delivery) -> dict[str, Any]:
    """A request dict for a message waiting in the timer (it has no job yet)."""
    return {
        "id": message.id,
        "name": message.task,
        "type": message.task,
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "hostname": worker.hostname,
        "time_start": None,
        "acknowledged": False,
        "delivery_info": {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "priority": delivery.message.priority,
            "redelivered": delivery.redelivered,
        },
        "worker_pid": None,
    }


def _requests(
    worker: WorkerLike, safe: bool = False, *, broker: bool = False
) -> dict[str, list[tuple[str, Any]]]:
    """``{"active"|"reserved"|"scheduled": [(task id, info)]}``; with ``broker``, the
    scheduled tasks include those the broker holds for the worker's queues."""
    assert worker.consumer is not None
    jobs, timer = worker.consumer.snapshot()
    found: dict[str, list[tuple[str, Any]]] = {"active": [], "reserved": [], "scheduled": []}
    for job, acknowledged in jobs:
        kind = "active" if job.started_at is not None else "reserved"
        found[kind].append((job.id, job.info_dict(safe=safe, acknowledged=acknowledged)))
    for due, message, delivery in timer:
        info = _message_info(worker, message, delivery)
        if _waits_for_eta(message, due) and message.eta is not None:
            entry = {
                "eta": message.eta.isoformat(),
                "priority": ETA_TIMER_PRIORITY,
                "request": info,
            }
            found["scheduled"].append((message.id, entry))
        else:  # waiting for its rate limit
            found["reserved"].append((message.id, info))
    if broker:
        found["scheduled"] += broker_scheduled(worker, _message_info)
    return found


@_register("inspect", "dump_active")
def active(worker: WorkerLike, safe: bool | None = False, **_: Any) -> Any:
    return _jsonable([info for _, info in _requests(worker, bool(safe))["active"]])


@_register("inspect", "dump_reserved")
def reserved(worker: WorkerLike, **_: Any) -> Any:
    return _jsonable([info for _, info in _requests(worker)["reserved"]])


@_register("inspect", "dump_schedule")
def scheduled(worker: WorkerLike, **_: Any) -> Any:
    return _jsonable([info for _, info in _requests(worker, broker=True)["scheduled"]])


@_register("inspect", "dump_revoked")
def revoked(worker: WorkerLike, **_: Any) -> Any:
    assert worker.consumer is not None
    return list(worker.consumer.revoked)


@_register("inspect")
def query_task(worker: WorkerLike, ids: list[str] | str | None = None, **_: Any) -> Any:
    wanted = {ids} if isinstance(ids, str) else set(ids or ())
    found: dict[str, Any] = {}
    for kind, requests in _requests(worker, broker=True).items():
        for task_id, info in requests:
            if task_id in wanted:
                found[task_id] = [kind, info["request"] if kind == "scheduled" else info]
    return _jsonable(found)


@_register("inspect")
def hello(worker: WorkerLike, from_node: str = "", revoked: Any = None, **_: Any) -> Any:
    """A starting worker's mingle (``worker.remote.mingle``): merge its revoked ids, answer
    with ours (ids only, oldest first, expired ones left out) and our clock, as Celery."""
    if from_node == worker.hostname:
        return None
    consumer = worker.consumer
    assert consumer is not None
    logger.info("sync with %s", from_node)
    consumer.revoked.update(revoked_ids(revoked))
    return {"revoked": list(consumer.revoked), "clock": worker.app.lamport_clock.forward()}


def _is_ours(module: str) -> bool:
    return module == "celeriac" or module.startswith("celeriac.")
