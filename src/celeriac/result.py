"""Reading results: ``AsyncResult`` for a sent task, ``EagerResult`` for one run in place,
``ResultSet`` and ``GroupResult`` for many.

``AsyncResult.get()`` waits through the result backend's ``wait_for``: by notification where
the store notifies (memory, Redis) and by bounded polling elsewhere (SQLite). A failure is
re-raised as the task's own exception type when it can be imported here, otherwise as a
``RemoteError`` carrying the type's name, message and the remote traceback.

A workflow's results link up: ``parent`` is the result of the step before (a chain's last
result leads back to its first; a chord body's parent is its header's ``GroupResult``), and
``children`` are the tasks a task sent while it ran, read from its stored meta. Results
travel as Celery's tuples: ``[[id, parent], None]`` for a task, ``[[group_id, parent],
[member tuples]]`` for a group (``as_tuple()``/``result_from_tuple()``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from celeriac import _state, states
from celeriac._result_set import GroupResult, ResultSet, result_from_tuple
from celeriac.aio.mixins import AsyncResultMixin
from celeriac.exceptions import TaskError, TimeoutError
from celeriac.request import allow_join_result, assert_will_not_block

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "ResultSet",
    "allow_join_result",
    "assert_will_not_block",
    "result_from_tuple",
]

R = TypeVar("R")

#: How often ``get()`` looks at a result's parents while it waits (Celery: each interval).
_PARENT_CHECK_SECONDS = 1.0


class AsyncResult(AsyncResultMixin[R], Generic[R]):
    """The state and result of a task, read from the result backend."""

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: AppLike | None = None,
        parent: AsyncResult[Any] | GroupResult | None = None,
    ) -> None:
        if app is None:
            app = _state.current_app()
        self.app = app
        self.id = id
        self.task_id = id
        self._backend = backend
        self.task_name = task_name
        self.parent: AsyncResult[Any] | GroupResult | None = parent
        self._cache: dict[str, Any] | None = None
        #: Sent with ``ignore_result``: nothing will be stored, so ``get()`` returns None.
        self.ignored = False

    # -- meta -------------------------------------------------------------------------------

    def _get_meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self.app.results.get_meta(self.id)
        if meta["status"] in states.READY_STATES:
            self._cache = meta
        return meta

    def _remember(self, meta: dict[str, Any] | None) -> str:
        """Keep ``meta`` (read by someone else, None: nothing stored) if ready; its state."""
        if meta is None:
            return states.PENDING
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
        return str(meta.get("status"))

    @property
    def state(self) -> str:
        """PENDING, STARTED, SUCCESS, FAILURE, RETRY, REVOKED or a custom state."""
        return str(self._get_meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception for failed states (not raised)."""
        return self.app.results.value_of(self._get_meta())

    info = result

    @property
    def traceback(self) -> str | None:
        value = self._get_meta().get("traceback")
        return value if isinstance(value, str) else None

    @property
    def date_done(self) -> dt.datetime | None:
        value = self._get_meta().get("date_done")
        if isinstance(value, dt.datetime):
            return value
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None

    @property
    def children(self) -> list[AsyncResult[Any] | GroupResult]:
        """Results of the tasks (and groups) this task sent while it ran, stored once it is
        ready."""
        found: list[AsyncResult[Any] | GroupResult] = []
        for child in self._get_meta().get("children") or []:
            result = result_from_tuple(child, app=self.app)
            if result is not None:
                if result.parent is None:
                    result.parent = self
                found.append(result)
        return found

    def iterdeps(
        self, intermediate: bool = False
    ) -> Iterator[tuple[AsyncResult[Any] | GroupResult | None, AsyncResult[Any] | GroupResult]]:
        """``(parent, node)`` for this result and every descendant, breadth first.

        A node's children are read once it is ready; with ``intermediate=False`` a node that
        is not ready yet raises ``TaskError`` (the graph is not complete).
        """
        pending: deque[tuple[Any, Any]] = deque([(None, self)])
        while pending:
            parent, node = pending.popleft()
            yield parent, node
            if node.ready():
                children = node.results if isinstance(node, GroupResult) else node.children
                pending.extend((node, child) for child in children)
            elif not intermediate:
                raise TaskError(
                    f"result {node.id} is not ready, so the graph below it is incomplete: "
                    "wait for it first, or pass intermediate=True"
                )

    def collect(
        self, intermediate: bool = False, **kwargs: Any
    ) -> Iterator[tuple[AsyncResult[Any] | GroupResult, Any]]:
        """``(result, value)`` for this result and every task it led to, waiting for each
        (``kwargs`` go to ``get``): e.g. a task that sent a group, and the group's members."""
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**kwargs)

    def get_leaf(self) -> Any:
        """The value of the last result in this graph (the deepest child)."""
        values = [value for _, value in self.collect()]
        return values[-1] if values else None

    @property
    def name(self) -> str | None:
        return self._get_meta().get("name") or self.task_name

    @property
    def args(self) -> Any:
        return self._get_meta().get("args")

    @property
    def kwargs(self) -> Any:
        return self._get_meta().get("kwargs")

    @property
    def worker(self) -> str | None:
        return self._get_meta().get("worker")

    @property
    def retries(self) -> int | None:
        return self._get_meta().get("retries")

    @property
    def queue(self) -> str | None:
        return self._get_meta().get("queue")

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    # -- waiting ----------------------------------------------------------------------------

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Any = None,
        on_message: Any = None,
        on_interval: Any = None,
        disable_sync_subtasks: bool = True,
    ) -> R:
        """Wait until the task is ready and return its value (or raise its exception).

        Raises ``celeriac.exceptions.TimeoutError`` after ``timeout`` seconds. With
        ``follow_parents`` (and ``propagate``), a failed parent's exception is raised as soon
        as it is seen, as Celery does (a chord's body re-raises its header's failure).
        Returns None at once for a task sent with ``ignore_result``.
        """
        if self.ignored:
            return None  # type: ignore[return-value]  # Celery's: nothing will be stored
        if disable_sync_subtasks:
            assert_will_not_block()
        if self._cache is None:
            if follow_parents and propagate and self.parent is not None:
                self._cache = self._wait_watching_parents(timeout, interval)
            else:
                self._cache = self.app.results.wait_for(self.id, timeout=timeout, interval=interval)
        meta = self._cache
        if propagate and meta["status"] in states.PROPAGATE_STATES:
            raise self.app.results.value_of(meta)
        value: R = self.app.results.value_of(meta)
        if callback is not None:
            callback(self.id, value)
        return value

    wait = get

    def _wait_watching_parents(self, timeout: float | None, interval: float) -> dict[str, Any]:
        """Wait for this result in slices, raising a parent's failure between them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._maybe_reraise_parent_error()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = _PARENT_CHECK_SECONDS if left is None else min(left, _PARENT_CHECK_SECONDS)
            try:
                meta = self.app.results.wait_for(self.id, timeout=step, interval=interval)
            except TimeoutError:
                if left is not None and left <= step:
                    raise
                continue
            if meta["status"] in states.PROPAGATE_STATES:  # a parent's failure comes first
                self._maybe_reraise_parent_error()
            return meta

    def _maybe_reraise_parent_error(self) -> None:
        """Raise the exception of the earliest failed parent (root first), if any."""
        parents: list[Any] = []
        node = self.parent
        while node is not None:
            parents.append(node)
            node = node.parent
        for node in reversed(parents):
            node.maybe_throw()

    def maybe_throw(self, propagate: bool = True) -> None:
        meta = self._get_meta()
        if propagate and meta["status"] in states.PROPAGATE_STATES:
            raise self.app.results.value_of(meta)

    def forget(self) -> None:
        """Delete the stored result."""
        self._cache = None
        self.app.results.forget(self.id)

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Mark the task revoked: a worker that has not started it will not run it."""
        self.app.control_revoke(self.id, terminate=terminate, signal=signal)

    @property
    def backend(self) -> Any:
        """The result backend this result reads (the app's unless one was given), as Celery's
        ``AsyncResult.backend``: ``result.backend.get_task_meta(result.id)``."""
        return self._backend if self._backend is not None else self.app.backend

    @backend.setter
    def backend(self, value: Any) -> None:
        self._backend = value

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any],
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every task stamped with one of ``headers``' values (not only this one), as
        Celery's method: ``app.control.revoke_by_stamped_headers``, which waits for the
        workers' replies (``timeout``, 1 s by default) so the revocation is in place before
        the next task is sent; ``wait`` is accepted for Celery's signature."""
        self.app.control.revoke_by_stamped_headers(
            headers, terminate=terminate, signal=signal, timeout=timeout or 1.0
        )

    def as_tuple(self) -> tuple[tuple[str, Any], None]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return ((self.id, parent), None)

    def as_list(self) -> list[str]:
        """This id, then the ids of its parents."""
        ids = [self.id]
        node = self.parent
        while node is not None:
            ids.append(node.id or "")
            node = node.parent
        return ids

    @property
    def supports_native_join(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id


class EagerResult(AsyncResult[R]):
    """The result of a task run in this process (``apply()`` or ``task_always_eager``)."""

    _ran_in_place = True

    def __init__(
        self,
        id: str,
        ret_value: Any,
        state: str,
        traceback: str | None = None,
        name: str | None = None,
        app: AppLike | None = None,
    ) -> None:
        super().__init__(id, app=app, task_name=name)
        self._value = ret_value
        self._state = state
        self._traceback = traceback
        self._date_done = self.app.now() if state in states.READY_STATES else None

    def _get_meta(self) -> dict[str, Any]:
        return {
            "status": self._state,
            "result": self._value,
            "traceback": self._traceback,
            "children": [],
            "date_done": self._date_done,
            "task_id": self.id,
        }

    @property
    def result(self) -> Any:
        return self._value

    info = result

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Any = None,
        on_message: Any = None,
        on_interval: Any = None,
        disable_sync_subtasks: bool = True,
    ) -> R:
        if propagate and self._state in states.PROPAGATE_STATES:
            raise self._value
        value: R = self._value
        return value

    wait = get

    def forget(self) -> None:
        """Eager results are not stored; nothing to forget."""

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        self._state = states.REVOKED
