"""The ``a``-prefixed methods of tasks, results, result sets and control (``celeriac.aio``).

Kept apart from the classes they join (``Task``, ``AsyncResult``, ``ResultSet``,
``Control``) so the sync code stays as it is; each class only names its mixin::

    await add.adelay(2, 2)                         await add.aapply_async((2, 2), countdown=5)
    await result.aget(timeout=10)                  await result.aready() / .astate()
    async for done in group_result: done.result    await group_result.aget(timeout=10)
    await app.control.ainspect().active()          (any Inspect method)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, cast

from celeriac import states

if TYPE_CHECKING:
    from celeriac._result_set import ResultSet
    from celeriac.app.control import Control, Inspect
    from celeriac.result import AsyncResult
    from celeriac.task import Task

__all__ = [
    "AsyncControlMixin",
    "AsyncInspect",
    "AsyncResultMixin",
    "AsyncResultSetMixin",
    "AsyncTaskMixin",
]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncTaskMixin(Generic[P, R]):
    """``adelay`` and ``aapply_async``: send from an event loop without blocking it."""

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``await task.adelay(*args, **kwargs)``: ``delay`` for an event loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """``apply_async`` for an event loop: the same options, message and signals."""
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio.client import send_task

        task = cast("Task[P, R]", self)
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        task.check_arguments(args, kwargs)
        if task.app.conf.task_always_eager:
            return task.apply(args, kwargs, **options)
        sent = await send_task(task.app, task.name, args, kwargs, task=task, **options)
        return cast("AsyncResult[R]", sent)


class AsyncResultMixin(Generic[R]):
    """``aget`` and ``aready`` on ``AsyncResult``."""

    #: True on ``EagerResult``: run in this process, so its state and value are here.
    _ran_in_place: ClassVar[bool] = False

    async def aget(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5
    ) -> R:
        """``get()`` for an event loop: wait for the value (or raise the task's exception).

        Raises ``celeriac.exceptions.TimeoutError`` after ``timeout`` seconds.
        """
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio.client import wait_result

        result = cast("AsyncResult[R]", self)
        value: R = await wait_result(
            result, timeout=timeout, propagate=propagate, interval=interval
        )
        return value

    async def astate(self) -> str:
        """The task's state (``state``), read without blocking the loop; once ready, the
        meta is kept, so ``result``/``traceback`` read no further."""
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio.client import run_blocking

        result = cast("AsyncResult[R]", self)
        if result._ran_in_place:
            return result.state
        if result._cache is not None:
            return str(result._cache["status"])
        meta = await run_blocking(result.app, result.app.results.get_meta, result.id)
        return result._remember(meta)

    async def aready(self) -> bool:
        """Whether the task is ready, read without blocking the loop."""
        return await self.astate() in states.READY_STATES


class AsyncResultSetMixin:
    """``async for`` (members as they finish) and ``aget``/``ajoin`` on result sets."""

    def __aiter__(self) -> AsyncIterator[AsyncResult[Any]]:
        return self.as_completed()

    async def as_completed(
        self, timeout: float | None = None, interval: float = 0.5
    ) -> AsyncIterator[AsyncResult[Any]]:
        """Each member result once it is ready, in the order they finish (its meta is
        kept, so ``.result``/``.state`` read no further)."""
        # lazy: asyncio and the async client load only when an async method is awaited
        from celeriac.aio.client import wait_ready

        results = cast("ResultSet", self)
        members = {r.id: r for r in results.results if r.id is not None}
        async for task_id, meta in wait_ready(
            results.app, list(members), timeout=timeout, interval=interval
        ):
            member = cast("AsyncResult[Any]", members[task_id])
            member._remember(meta)
            yield member

    async def aget(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5
    ) -> list[Any]:
        """``join()`` for an event loop: every member's value, in the members' order."""
        results = cast("ResultSet", self)
        async for member in self.as_completed(timeout=timeout, interval=interval):
            if propagate and member.state in states.PROPAGATE_STATES:
                raise cast(BaseException, member.result)
        return [cast("AsyncResult[Any]", member).result for member in results.results]

    ajoin = aget


class AsyncInspect:
    """``Inspect`` whose methods are awaited: ``await app.control.ainspect().active()``.

    Each question is a broadcast and a wait for replies (``timeout``), run in the app's
    bounded executor, so the event loop goes on meanwhile.
    """

    def __init__(self, inspect: Inspect) -> None:
        self._inspect = inspect

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._inspect, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(f"Inspect has no question {name!r}")

        async def ask(*args: Any, **kwargs: Any) -> Any:
            # lazy: asyncio and the async client load only when an async method is awaited
            from celeriac.aio.client import run_blocking

            return await run_blocking(self._inspect.app, method, *args, **kwargs)

        return ask


class AsyncControlMixin:
    """``ainspect`` on ``app.control``."""

    def ainspect(self, *args: Any, **kwargs: Any) -> AsyncInspect:
        """``inspect(...)`` whose questions are awaited."""
        return AsyncInspect(cast("Control", self).inspect(*args, **kwargs))
