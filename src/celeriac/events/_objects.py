"""What the cluster state is made of: a ``Worker`` and a ``Task`` as events describe them.

Both are folded from events by ``State`` (``celeriac.events.state``), which re-exports them.
A worker is alive while its last heartbeat (any event from it counts) is younger than twice
its heartbeat interval (``freq``). A task takes the state of its latest event, except that an
event which logically happened before the current state (a ``task-received`` arriving after
``task-succeeded``) only fills in the fields that belong to it (name, args, ...), as Celery
merges out-of-order events.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from celeriac import states

__all__ = ["HEARTBEAT_EXPIRE_WINDOW", "TASK_EVENT_TO_STATE", "Task", "Worker", "heartbeat_expires"]


class _ClusterTasks(Protocol):
    """What a task needs of the cluster ``State`` it belongs to: its tasks by id."""

    @property
    def tasks(self) -> _TaskLookup: ...


class _TaskLookup(Protocol):
    def get(self, key: str, /) -> Task | None: ...


#: A worker is offline after this percentage of its heartbeat interval without news.
HEARTBEAT_EXPIRE_WINDOW = 200

#: Task event subject -> the state it puts the task in.
TASK_EVENT_TO_STATE = {
    "sent": states.PENDING,
    "received": states.RECEIVED,
    "started": states.STARTED,
    "failed": states.FAILURE,
    "retried": states.RETRY,
    "succeeded": states.SUCCESS,
    "revoked": states.REVOKED,
    "rejected": states.REJECTED,
}


def heartbeat_expires(
    timestamp: float, freq: float = 60, expire_window: float = HEARTBEAT_EXPIRE_WINDOW
) -> float:
    """When a worker whose last heartbeat came at ``timestamp`` is considered gone."""
    return float(timestamp) + float(freq) * (expire_window / 100.0)


class Worker:
    """A worker as its events describe it."""

    heartbeat_max = 4
    expire_window = HEARTBEAT_EXPIRE_WINDOW
    _fields = (
        "hostname",
        "pid",
        "freq",
        "heartbeats",
        "clock",
        "active",
        "processed",
        "loadavg",
        "sw_ident",
        "sw_ver",
        "sw_sys",
    )

    def __init__(
        self,
        hostname: str | None = None,
        pid: int | None = None,
        freq: float = 60,
        heartbeats: list[float] | None = None,
        clock: int = 0,
        active: int | None = None,
        processed: int | None = None,
        loadavg: list[float] | None = None,
        sw_ident: str | None = None,
        sw_ver: str | None = None,
        sw_sys: str | None = None,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.hostname = hostname
        self.pid = pid
        self.freq = freq
        self.heartbeats: list[float] = [] if heartbeats is None else heartbeats
        self.clock = clock or 0
        self.active = active
        self.processed = processed
        self.loadavg = loadavg
        self.sw_ident = sw_ident
        self.sw_ver = sw_ver
        self.sw_sys = sw_sys
        self._now = now

    def event(
        self,
        type_: str | None,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Apply one event about this worker (``type_`` None: a task event from it)."""
        for key, value in (fields or {}).items():
            if key in self._fields and key != "heartbeats":
                setattr(self, key, value)
        if type_ == "offline":
            self.heartbeats.clear()
            return
        if not local_received or not timestamp:
            return
        if len(self.heartbeats) >= self.heartbeat_max:
            del self.heartbeats[0]
        bisect.insort(self.heartbeats, float(local_received))

    def update(self, fields: dict[str, Any], **more: Any) -> None:
        for key, value in dict(fields, **more).items():
            setattr(self, key, value)

    @property
    def heartbeat_expires(self) -> float:
        return heartbeat_expires(self.heartbeats[-1], self.freq, self.expire_window)

    @property
    def alive(self) -> bool:
        return bool(self.heartbeats) and self._now() < self.heartbeat_expires

    @property
    def status_string(self) -> str:
        return "ONLINE" if self.alive else "OFFLINE"

    @property
    def id(self) -> str:
        return f"{self.hostname}.{self.pid}"

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Worker) and other.hostname == self.hostname

    def __hash__(self) -> int:
        return hash(self.hostname)

    def __repr__(self) -> str:
        return f"<Worker: {self.hostname} ({self.status_string} clock:{self.clock})>"


class Task:
    """A task as its events describe it."""

    name: str | None = None
    state: str = states.PENDING
    received = sent = started = succeeded = failed = retried = revoked = rejected = None
    args: str | None = None
    kwargs: str | None = None
    eta: str | None = None
    expires: str | None = None
    retries: int | None = None
    worker: Worker | None = None
    result: Any = None
    exception: str | None = None
    timestamp: float | None = None
    runtime: float | None = None
    traceback: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    clock: int = 0
    client: str | None = None
    root_id: str | None = None
    parent_id: str | None = None

    _fields = (
        "uuid",
        "name",
        "state",
        "received",
        "sent",
        "started",
        "rejected",
        "succeeded",
        "failed",
        "retried",
        "revoked",
        "args",
        "kwargs",
        "eta",
        "expires",
        "retries",
        "worker",
        "result",
        "exception",
        "timestamp",
        "runtime",
        "traceback",
        "exchange",
        "routing_key",
        "clock",
        "client",
        "root",
        "root_id",
        "parent",
        "parent_id",
        "children",
    )
    #: Fields an event that happened before the current state may still fill in.
    merge_rules: dict[str, tuple[str, ...]] = {
        states.RECEIVED: (
            "name",
            "args",
            "kwargs",
            "parent_id",
            "root_id",
            "retries",
            "eta",
            "expires",
        ),
    }
    _info_fields = (
        "args",
        "kwargs",
        "retries",
        "result",
        "eta",
        "runtime",
        "expires",
        "exception",
        "exchange",
        "routing_key",
        "root_id",
        "parent_id",
    )

    def __init__(
        self, uuid: str | None = None, cluster_state: _ClusterTasks | None = None, **fields: Any
    ) -> None:
        self.uuid = uuid
        self.cluster_state = cluster_state
        self.child_ids: list[str] = []
        for key, value in fields.items():
            setattr(self, key, value)

    def event(
        self,
        type_: str,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Apply one event about this task; ``type_`` is the subject (``succeeded``)."""
        fields = dict(fields or {})
        state = TASK_EVENT_TO_STATE.get(type_)
        if state is not None:
            setattr(self, type_, timestamp)  # e.g. self.succeeded = when
        else:
            state = type_.upper()  # a custom state
        happened_before = (
            state != states.RETRY
            and self.state != states.RETRY
            and states.precedence(state) > states.precedence(self.state)
        )
        if happened_before:
            keep = self.merge_rules.get(state)
            if keep is not None:
                fields = {k: v for k, v in fields.items() if k in keep}
            else:
                fields = {k: v for k, v in fields.items() if k != "state"}
        else:
            fields.update(state=state, timestamp=timestamp)
        for key, value in fields.items():
            if key not in ("worker", "children", "parent", "root", "uuid"):
                setattr(self, key, value)

    def info(
        self, fields: Iterable[str] | None = None, extra: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The set fields worth showing, for display."""
        wanted = [*(self._info_fields if fields is None else fields), *extra]
        found = {key: getattr(self, key, None) for key in wanted}
        return {key: value for key, value in found.items() if value is not None}

    def as_dict(self) -> dict[str, Any]:
        found = {key: getattr(self, key, None) for key in self._fields}
        found.update(
            worker=self.worker.hostname if self.worker else None,
            children=list(self.child_ids),
            root=self.root_id,
            parent=self.parent_id,
        )
        return found

    @property
    def id(self) -> str | None:
        return self.uuid

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES

    @property
    def origin(self) -> str | None:
        return self.client if self.worker is None else self.worker.id

    def _lookup(self, task_id: str | None) -> Task | None:
        if task_id is None or self.cluster_state is None:
            return None
        return self.cluster_state.tasks.get(task_id)

    @property
    def parent(self) -> Task | None:
        return self._lookup(self.parent_id)

    @property
    def root(self) -> Task | None:
        return self._lookup(self.root_id)

    @property
    def children(self) -> list[Task]:
        found = (self._lookup(child) for child in self.child_ids)
        return [task for task in found if task is not None]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.uuid == self.uuid

    def __hash__(self) -> int:
        return hash(self.uuid)

    def __repr__(self) -> str:
        return f"<Task: {self.name}({self.uuid}) {self.state} clock:{self.clock}>"
