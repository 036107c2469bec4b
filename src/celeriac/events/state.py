"""The cluster's state folded from events: ``state.event(e)`` for each event received.

``State`` keeps the workers (``state.workers``, by hostname) and the latest tasks
(``state.tasks``, by id, at most ``max_tasks_in_memory``: the oldest are forgotten first), with
indexes by task name and by worker, as Celery's ``celery.events.state.State`` (a monitor
written for Celery's reads the same attributes). Folding is pure: no I/O, and the time that
decides whether a worker is alive comes from the injected clock, so tests use a
``ManualClock``. ``event`` is thread-safe; a reader in another thread may use
``freeze_while`` to read a consistent picture.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any, TypeVar

from celeriac._time import Clock, system_clock
from celeriac.events import _objects
from celeriac.events._objects import (
    HEARTBEAT_EXPIRE_WINDOW,
    TASK_EVENT_TO_STATE,
    Task,
    Worker,
    heartbeat_expires,
)

__all__ = [
    "HEARTBEAT_EXPIRE_WINDOW",
    "TASK_EVENT_TO_STATE",
    "State",
    "Task",
    "Worker",
    "heartbeat_expires",
]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class LRUCache(OrderedDict[K, V]):
    """A dict that forgets its least recently stored items past ``limit``."""

    def __init__(self, limit: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.on_evict = on_evict

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            old_key, old_value = self.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old_value)


class TaskIndex(Mapping[str, list[Task]]):
    """Tasks grouped by a key (name or worker): ``index[key]`` lists them, oldest first;
    ``index(key, limit=None, reverse=True)`` yields ``(uuid, task)`` by time."""

    def __init__(self, state: State, key: Callable[[Task], str | None]) -> None:
        self._state = state
        self._key = key
        self._groups: dict[str, dict[str, Task]] = {}

    def add(self, task: Task) -> None:
        key = self._key(task)
        if key is not None and task.uuid is not None:
            self._groups.setdefault(key, {})[task.uuid] = task

    def discard(self, task: Task) -> None:
        for group in self._groups.values():
            if task.uuid is not None:
                group.pop(task.uuid, None)

    def clear(self) -> None:
        self._groups.clear()

    def __getitem__(self, key: str) -> list[Task]:
        return list(self._groups.get(key, {}).values())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._groups))

    def __len__(self) -> int:
        return len(self._groups)

    def __call__(
        self, key: str, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, Task]]:
        wanted = self._groups.get(key, {})
        found = ((uid, t) for uid, t in self._state.tasks_by_time(reverse=reverse) if uid in wanted)
        return islice(found, limit)


class State:
    """Records the cluster's state (see the module docstring)."""

    Worker = _objects.Worker
    Task = _objects.Task

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], None] | None = None,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        on_node_join: Callable[[_objects.Worker], None] | None = None,
        on_node_leave: Callable[[_objects.Worker], None] | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.event_callback = callback
        self.max_workers_in_memory = max_workers_in_memory
        self.max_tasks_in_memory = max_tasks_in_memory
        self.on_node_join = on_node_join
        self.on_node_leave = on_node_leave
        self.clock = clock
        self.workers: LRUCache[str, _objects.Worker] = LRUCache(max_workers_in_memory)
        self.tasks: LRUCache[str, _objects.Task] = LRUCache(max_tasks_in_memory, self._forget)
        self.tasks_by_type = TaskIndex(self, lambda task: task.name)
        self.tasks_by_worker = TaskIndex(self, lambda t: t.worker.hostname if t.worker else None)
        self.event_count = 0
        self.task_count = 0
        self._seen_types: set[str] = set()
        self._mutex = threading.RLock()

    def __repr__(self) -> str:
        return f"<State: events={self.event_count} tasks={self.task_count}>"

    def _forget(self, _uuid: str, task: _objects.Task) -> None:
        self.tasks_by_type.discard(task)
        self.tasks_by_worker.discard(task)

    # -- folding ------------------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> tuple[tuple[Any, bool], str] | None:
        """Fold one event in; ``((worker or task, created), subject)``, None if ignored."""
        with self._mutex:
            return self._event(event)

    def _event(self, event: dict[str, Any]) -> tuple[tuple[Any, bool], str] | None:
        self.event_count += 1
        if self.event_callback is not None:
            self.event_callback(self, event)
        group, _, subject = str(event.get("type", "")).partition("-")
        event.setdefault("local_received", self.clock.time())
        if group == "worker":
            return self._worker_event(subject, event)
        if group == "task" and event.get("uuid"):
            return self._task_event(subject, event)
        return None

    def _worker_event(self, subject: str, event: dict[str, Any]) -> tuple[tuple[Any, bool], str]:
        hostname = str(event.get("hostname"))
        offline = subject == "offline"
        worker = self.workers.get(hostname)
        created = worker is None
        if worker is None:
            worker = self.Worker(hostname, now=self.clock.time)
            if not offline:
                self.workers[hostname] = worker
            created = not offline
        worker.event(subject, event.get("timestamp"), event.get("local_received"), event)
        if self.on_node_join is not None and (created or subject == "online"):
            self.on_node_join(worker)
        if offline and self.on_node_leave is not None:
            self.on_node_leave(worker)
        return (worker, created), subject

    def _task_event(self, subject: str, event: dict[str, Any]) -> tuple[tuple[Any, bool], str]:
        uuid = str(event["uuid"])
        hostname = event.get("hostname")
        task = self.tasks.get(uuid)
        created = task is None
        if task is None:
            task = self.Task(uuid, cluster_state=self)
            self.tasks[uuid] = task
        if subject == "sent":  # sent by a client, not a worker
            task.client = hostname
        elif hostname is not None:
            worker = self.workers.get(str(hostname))
            if worker is None:
                worker = self.workers[str(hostname)] = self.Worker(hostname, now=self.clock.time)
            if task.worker is not worker:
                self.tasks_by_worker.discard(task)
                task.worker = worker
                self.tasks_by_worker.add(task)
            worker.event(None, event.get("timestamp"), event.get("local_received"))
        if subject == "received":
            self.task_count += 1
        task.event(subject, event.get("timestamp"), event.get("local_received"), event)
        if task.name is not None:
            self._seen_types.add(task.name)
            self.tasks_by_type.add(task)
        self._link_family(task)
        return (task, created), subject

    def _link_family(self, task: _objects.Task) -> None:
        parent = self.tasks.get(task.parent_id) if task.parent_id else None
        if parent is not None and task.uuid and task.uuid not in parent.child_ids:
            parent.child_ids.append(task.uuid)

    # -- reading ------------------------------------------------------------------------------

    def freeze_while(self, fun: Callable[..., T], *args: Any, clear_after: bool = False) -> T:
        """Call ``fun`` with no event folded in meanwhile."""
        with self._mutex:
            try:
                return fun(*args)
            finally:
                if clear_after:
                    self.clear()

    def get_or_create_worker(self, hostname: str, **fields: Any) -> tuple[_objects.Worker, bool]:
        with self._mutex:
            worker = self.workers.get(hostname)
            if worker is not None:
                if fields:
                    worker.update(fields)
                return worker, False
            worker = self.workers[hostname] = self.Worker(hostname, now=self.clock.time, **fields)
            return worker, True

    def get_or_create_task(self, uuid: str) -> tuple[_objects.Task, bool]:
        with self._mutex:
            task = self.tasks.get(uuid)
            if task is not None:
                return task, False
            task = self.tasks[uuid] = self.Task(uuid, cluster_state=self)
            return task, True

    def itertasks(self, limit: int | None = None) -> Iterator[tuple[str, _objects.Task]]:
        return islice(list(self.tasks.items()), limit)

    def tasks_by_time(
        self, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, _objects.Task]]:
        """``(uuid, task)`` ordered by their latest event, newest first unless ``reverse``."""
        with self._mutex:
            ordered = sorted(
                self.tasks.items(),
                key=lambda item: (item[1].timestamp or 0.0, item[1].clock or 0),
                reverse=reverse,
            )
        return islice(ordered, limit)

    tasks_by_timestamp = tasks_by_time

    def task_types(self) -> list[str]:
        """Every task name seen, sorted."""
        return sorted(self._seen_types)

    def alive_workers(self) -> list[_objects.Worker]:
        """Workers heard from within twice their heartbeat interval."""
        return [worker for worker in list(self.workers.values()) if worker.alive]

    def clear_tasks(self, ready: bool = True) -> None:
        """Forget tasks: only the finished ones with ``ready``, else all."""
        with self._mutex:
            kept = [(u, t) for u, t in self.tasks.items() if ready and not t.ready]
            self.tasks.clear()
            self.tasks_by_type.clear()
            self.tasks_by_worker.clear()
            for uuid, task in kept:
                self.tasks[uuid] = task
                self.tasks_by_type.add(task)
                self.tasks_by_worker.add(task)

    def clear(self, ready: bool = True) -> None:
        """Forget workers and tasks (unfinished tasks stay with ``ready``); reset counts."""
        with self._mutex:
            self.workers.clear()
            self.clear_tasks(ready)
            self.event_count = 0
            self.task_count = 0
