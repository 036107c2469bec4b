"""The execution-time context of a task: what ``self.request`` shows inside a task.

The context of the running task is kept in a ``ContextVar``, so it is right per thread and per
asyncio task. Outside execution ``Task.request`` shows an empty context with
``called_directly=True``, as Celery does; a task called as a function (``add(7)``) sees a
context with that call's ``args`` and ``kwargs`` (kept apart from the executing request, so
what it sends still has the executing task as parent). A worker that runs a task through a
base class's ``__call__`` marks the call (``worker_call``), so ``Task.__call__`` keeps the
worker's request instead of making a direct-call one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = [
    "Context",
    "allow_join_result",
    "assert_will_not_block",
    "called_directly",
    "current_request",
    "current_task",
    "direct_call",
    "executing",
    "taking_worker_call",
    "worker_call",
]


@dataclass
class Context:
    """Celery's ``Task.request``: the message's fields plus where and how it runs."""

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    is_eager: bool = False
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    group: str | None = None
    group_index: int | None = None
    chord: dict[str, Any] | None = None
    chain: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    origin: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    time_limit: float | None = None
    soft_time_limit: float | None = None
    shadow: str | None = None
    # None: not given by the caller, so the task's ``ignore_result`` option decides; an
    # explicit False stores the result of a task declared ``ignore_result=True``.
    ignore_result: bool | None = None
    replaced_task_nesting: int = 0
    stamped_headers: list[str] | None = None
    stamps: dict[str, Any] = field(default_factory=dict)
    utc: bool = True
    called_directly: bool = True
    loglevel: int | None = None
    logfile: str | None = None
    children: list[Any] = field(default_factory=list)

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        return (self.time_limit, self.soft_time_limit)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_request: ContextVar[Context | None] = ContextVar("celeriac_request", default=None)
_task: ContextVar[Task[Any, Any] | None] = ContextVar("celeriac_task", default=None)
_direct: ContextVar[Context | None] = ContextVar("celeriac_direct_call", default=None)
_worker_call: ContextVar[Context | None] = ContextVar("celeriac_worker_call", default=None)


def current_request() -> Context | None:
    """The context of the task executing in this thread or asyncio task, if any."""
    return _request.get()


def current_task() -> Task[Any, Any] | None:
    """The task executing in this thread or asyncio task, if any."""
    return _task.get()


@contextmanager
def executing(task: Task[Any, Any], request: Context) -> Iterator[Context]:
    """Make ``request`` the current context of ``task`` while the block runs."""
    request_token = _request.set(request)
    task_token = _task.set(task)
    direct_token = _direct.set(None)  # an execution inside a direct call is not one
    try:
        yield request
    finally:
        _direct.reset(direct_token)
        _task.reset(task_token)
        _request.reset(request_token)


def direct_call() -> Context | None:
    """The context of the innermost direct call (``add(7)``) here, if any."""
    return _direct.get()


@contextmanager
def called_directly(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[None]:
    """While the block runs, task ``name`` is being called as a function with these."""
    token = _direct.set(Context(task=name, args=args, kwargs=kwargs, called_directly=True))
    try:
        yield
    finally:
        _direct.reset(token)


@contextmanager
def worker_call(request: Context) -> Iterator[None]:
    """While the block runs, a task's ``__call__`` is the worker running ``request``."""
    token = _worker_call.set(request)
    try:
        yield
    finally:
        _worker_call.reset(token)


def taking_worker_call(task: Task[Any, Any]) -> bool:
    """Whether this ``Task.__call__`` of ``task`` is the worker's call of the executing
    request (then the mark is used up: a call made inside it is a direct call)."""
    marked = _worker_call.get()
    if marked is None or marked is not _request.get() or _task.get() is not task:
        return False
    _worker_call.set(None)
    return True


_join_allowed: ContextVar[bool] = ContextVar("celeriac_join_allowed", default=False)


@contextmanager
def allow_join_result() -> Iterator[None]:
    """Within the block a running task may wait for results (``get()``, ``join()``), at
    the risk of a deadlock when every pool slot waits for a task that cannot start."""
    token = _join_allowed.set(True)
    try:
        yield
    finally:
        _join_allowed.reset(token)


def assert_will_not_block() -> None:
    """Refuse to wait for a result inside a running task (it can deadlock the pool)."""
    request = current_request()
    if request is not None and not request.is_eager and not _join_allowed.get():
        raise RuntimeError(
            "Never call result.get() within a task! It can deadlock the worker when every "
            "pool slot waits for a task that cannot start. Use a chain or a callback instead, "
            "or pass disable_sync_subtasks=False (or wrap it in allow_join_result()) if you "
            "accept the risk."
        )
