"""Results of many tasks at once: ``ResultSet``, and ``GroupResult`` (a set with the group's id).

``celeriac.result`` is where users import them from; they live here to keep that module
about one task. Reading many results costs one ``fetch_many`` for the members not known to
be ready, not one read each. ``join()`` (and ``get()``) waits for the members in order and
returns their values in order, raising the first failure it meets with ``propagate``.
``GroupResult.save()`` stores the group as Celery does (``{"result": [[group_id, parent],
[member tuples]]}`` under ``celery-taskset-meta-<group_id>`` on Redis), so a Celery client
restores what Celeriac saved and the other way round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from celeriac import _state, states
from celeriac.aio.mixins import AsyncResultMixin, AsyncResultSetMixin
from celeriac.exceptions import TimeoutError
from celeriac.request import assert_will_not_block

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.result import AsyncResult

__all__ = ["GroupResult", "ResultSet", "result_from_tuple"]


def _default_app(app: AppLike | None) -> AppLike:
    if app is not None:
        return app
    return _state.current_app()


def _is_plain(result: Any) -> TypeGuard[AsyncResult[Any]]:
    """A result read from the store (an ``AsyncResult``: not a group, not run in place)."""
    return isinstance(result, AsyncResultMixin) and not result._ran_in_place


class ResultSet(AsyncResultSetMixin):
    """A list of results read, waited for and acted on together."""

    def __init__(
        self, results: Iterable[AsyncResult[Any] | GroupResult], app: AppLike | None = None
    ) -> None:
        self.app = _default_app(app)
        self.results: list[AsyncResult[Any] | GroupResult] = list(results)

    # -- the list ---------------------------------------------------------------------------

    def add(self, result: AsyncResult[Any] | GroupResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: AsyncResult[Any] | GroupResult | str) -> None:
        """Remove ``result`` (or the result of that id); ``KeyError`` when absent."""
        for index, member in enumerate(self.results):
            if member == result or member.id == result:
                del self.results[index]
                return
        raise KeyError(result)

    def discard(self, result: AsyncResult[Any] | GroupResult | str) -> None:
        with contextlib.suppress(KeyError):
            self.remove(result)

    def update(self, results: Iterable[AsyncResult[Any] | GroupResult]) -> None:
        self.results.extend(r for r in results if r not in self.results)

    def clear(self) -> None:
        self.results.clear()

    def __iter__(self) -> Iterator[AsyncResult[Any] | GroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any] | GroupResult:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id or '' for r in self.results)}]>"

    # -- states -----------------------------------------------------------------------------

    def _states(self) -> list[str]:
        """Each member's state, reading the plain ones with one ``fetch_many``; a nested
        group reads SUCCESS, FAILURE (any failed) or PENDING."""
        plain = [r for r in self.results if _is_plain(r)]
        found = self.app.results.backend.fetch_many([r.id for r in plain]) if plain else {}
        known: dict[str, str] = {}
        for member in plain:
            payload = found.get(member.id)
            meta = self.app.results.decode(payload) if payload is not None else None
            known[member.id] = member._remember(meta)
        out = []
        for result in self.results:
            if isinstance(result, GroupResult):
                ready, failed = result.ready(), result.failed()
                out.append(
                    states.FAILURE if failed else states.SUCCESS if ready else states.PENDING
                )
            elif _is_plain(result) and result.id in known:
                out.append(known[result.id])
            else:
                out.append(result.state)
        return out

    def ready(self) -> bool:
        return all(state in states.READY_STATES for state in self._states())

    def successful(self) -> bool:
        return all(state == states.SUCCESS for state in self._states())

    def failed(self) -> bool:
        return any(state == states.FAILURE for state in self._states())

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        return sum(state == states.SUCCESS for state in self._states())

    def maybe_throw(
        self, callback: Callable[..., Any] | None = None, propagate: bool = True
    ) -> None:
        for result in self.results:
            if isinstance(result, GroupResult):
                result.maybe_throw(callback=callback, propagate=propagate)
            else:
                result.maybe_throw(propagate=propagate)

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        for result in self.results:
            result.revoke(terminate=terminate, signal=signal)

    # -- waiting ----------------------------------------------------------------------------

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        no_ack: bool = True,
        on_message: Any = None,
        disable_sync_subtasks: bool = True,
        on_interval: Any = None,
    ) -> list[Any]:
        """Wait for every member, in order; their values in order (with ``callback``, each
        is handed to ``callback(task_id, value)`` instead and the list is empty). As Celery's
        native join, a member's own failure is raised, not its parents'.

        Raises ``celeriac.exceptions.TimeoutError`` when ``timeout`` seconds pass first.
        """
        if disable_sync_subtasks:
            assert_will_not_block()
        clock = self.app.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        self._states()  # one read for all: what is ready already is not waited for
        values: list[Any] = []
        for result in self.results:
            remaining = None if deadline is None else deadline - clock.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("The operation timed out: join() waited too long")
            if isinstance(result, ResultSet):
                value = result.get(
                    timeout=remaining,
                    propagate=propagate,
                    interval=interval,
                    disable_sync_subtasks=False,
                )
            else:  # a native join (Celery's): each member's own state, not its parents'
                value = result.get(
                    timeout=remaining,
                    propagate=propagate,
                    interval=interval,
                    disable_sync_subtasks=False,
                    follow_parents=False,
                )
            if callback is not None:
                callback(result.id or "", value)
            else:
                values.append(value)
        return values

    join_native = join
    get = join

    def iter_native(self, timeout: float | None = None, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """``(task_id, value)`` of each member, in order, once all are ready."""
        for result, value in zip(self.results, self.join(timeout=timeout, **kwargs), strict=True):
            yield result.id or "", value

    @property
    def backend(self) -> Any:
        """The result backend the members are read from (the app's), as Celery's."""
        return self.app.backend

    @property
    def supports_native_join(self) -> bool:
        return True


class GroupResult(ResultSet):
    """The results of a group: its members' in order, under the group's id."""

    def __init__(
        self,
        id: str | None = None,
        results: Iterable[AsyncResult[Any] | GroupResult] | None = None,
        parent: AsyncResult[Any] | GroupResult | None = None,
        app: AppLike | None = None,
    ) -> None:
        super().__init__(results or (), app=app)
        self.id = id
        self.parent = parent

    @property
    def children(self) -> list[AsyncResult[Any] | GroupResult]:
        return self.results

    def as_tuple(self) -> tuple[tuple[str | None, Any], list[Any]]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return ((self.id, parent), [r.as_tuple() for r in self.results])

    def save(self, backend: Any = None) -> GroupResult:
        """Store the group (for ``result_expires``) so ``restore(id)`` finds it."""
        if self.id is None:
            raise ValueError("save(): this GroupResult has no id")
        self.app.results.save_group(self.id, self.as_tuple())
        return self

    def delete(self, backend: Any = None) -> None:
        """Delete what ``save()`` stored (the members' results stay)."""
        if self.id is not None:
            self.app.results.forget_group(self.id)

    @classmethod
    def restore(
        cls, id: str, backend: Any = None, app: AppLike | None = None
    ) -> GroupResult | None:
        """The group saved under ``id``, or None."""
        app = _default_app(app)
        saved = app.results.restore_group(id)
        result = result_from_tuple(saved, app=app) if saved is not None else None
        return result if isinstance(result, GroupResult) else None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id or '' for r in self.results)}]>"


def result_from_tuple(r: Any, app: AppLike | None = None) -> AsyncResult[Any] | GroupResult | None:
    """The result a tuple from ``as_tuple()`` describes (a result given is returned as is)."""
    if isinstance(r, AsyncResultMixin | GroupResult):
        return cast("AsyncResult[Any] | GroupResult", r)
    if isinstance(r, str):
        return _default_app(app).AsyncResult(r)
    if not isinstance(r, (list, tuple)) or len(r) != 2:
        return None
    head, members = r
    task_id, parent_tuple = head if isinstance(head, (list, tuple)) else (head, None)
    parent = result_from_tuple(parent_tuple, app=app) if parent_tuple else None
    if members is not None:
        children = [result_from_tuple(m, app=app) for m in members]
        found = [child for child in children if child is not None]
        return GroupResult(task_id, found, parent=parent, app=app)
    return _default_app(app).AsyncResult(task_id, parent=parent)
