"""``AppLike``: what the parts below the app use of it (``celeriac.app.base.Celery`` is one).

Tasks, results, signatures, the beat entries and the event dispatcher are handed an app and
type it against this Protocol, so none of them imports the app class: the app is built from
them, not the other way round (the layer table is in docs/design/architecture.md). A member
is here because one of those callers uses it; add one the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from celeriac._lamport import LamportClock
    from celeriac._time import Clock
    from celeriac.app.control import Control
    from celeriac.app.producer import Producer
    from celeriac.app.registry import TaskRegistry
    from celeriac.app.results import ResultStore
    from celeriac.app.routes import Router
    from celeriac.app.settings import Settings
    from celeriac.backends.base import ResultBackend
    from celeriac.canvas.signature import Signature
    from celeriac.events import Events
    from celeriac.result import AsyncResult, GroupResult, ResultSet
    from celeriac.signals import Signal
    from celeriac.task import Task as TaskType
    from celeriac.transports.base import Transport

__all__ = ["AppLike"]

P = ParamSpec("P")
R = TypeVar("R")


class AppLike(Protocol):
    """A Celeriac app as tasks, results, canvas, beat and events see it."""

    main: str | None
    conf: Settings
    clock: Clock
    tasks: TaskRegistry
    producer: Producer
    results: ResultStore
    lamport_clock: LamportClock
    strict_typing: bool
    configured: bool
    on_after_configure: Signal
    on_after_finalize: Signal

    @property
    def control(self) -> Control: ...

    @property
    def events(self) -> Events: ...

    @property
    def broker_url(self) -> str: ...

    @property
    def result_backend_url(self) -> str | None: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def backend(self) -> ResultBackend | None: ...

    @property
    def router(self) -> Router: ...

    @property
    def thread_oid(self) -> str: ...

    @property
    def origin(self) -> str: ...

    @property
    def Task(self) -> type[TaskType[Any, Any]]: ...

    @property
    def ResultSet(self) -> Callable[..., ResultSet]: ...

    def now(self) -> dt.datetime: ...

    @overload
    def task(self, fun: Callable[P, R], /) -> TaskType[P, R]: ...

    @overload
    def task(
        self, *, bind: Literal[True], **options: Any
    ) -> Callable[[Callable[Concatenate[Any, P], R]], TaskType[P, R]]: ...

    @overload
    def task(
        self, *, bind: Literal[False] = False, **options: Any
    ) -> Callable[[Callable[P, R]], TaskType[P, R]]: ...

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]: ...

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult[Any]: ...

    def GroupResult(
        self, id: str | None = None, results: Sequence[Any] | None = None, **kwargs: Any
    ) -> GroupResult: ...

    def signature(self, *args: Any, **kwargs: Any) -> Signature[Any]: ...

    def register_task(
        self, task: TaskType[Any, Any] | type[TaskType[Any, Any]]
    ) -> TaskType[Any, Any]: ...

    def import_default_modules(self) -> list[Any]: ...

    def control_revoke(
        self, task_id: str, *, terminate: bool = False, signal: Any = None
    ) -> None: ...

    def set_current(self) -> None: ...

    def close(self) -> None: ...
