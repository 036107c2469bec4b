"""Making task instances from decorated functions, and the tasks shared by every app.

``make_task`` turns a function and its decorator options into a ``Task`` (``@app.task``
and ``@shared_task`` both use it) and warns of options Celeriac does not know. A
``shared_task`` is kept here and registered as a copy bound to each app, those made before
it and after it (``adopt_shared_tasks``), so every app runs it as its own.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, overload

from celeriac import _state
from celeriac._app_protocol import AppLike
from celeriac.exceptions import UnknownSettingWarning
from celeriac.task import TASK_OPTIONS, Task

__all__ = ["adopt_shared_tasks", "make_task", "shared_task"]

P = ParamSpec("P")
R = TypeVar("R")


class _SharingApp(AppLike, Protocol):
    """An app that takes its copies of the shared tasks (``Celery``)."""

    def _add_shared(self, task: Task[Any, Any]) -> None: ...


_all_apps: weakref.WeakSet[_SharingApp] = weakref.WeakSet()
_shared_tasks: list[Task[Any, Any]] = []


def adopt_shared_tasks(app: _SharingApp) -> None:
    """Give a new ``app`` its copies of the shared tasks, now and as more are defined."""
    for task in _shared_tasks:
        app._add_shared(task)
    _all_apps.add(app)


@overload
def shared_task(fun: Callable[P, R], /) -> Task[P, R]: ...


@overload
def shared_task(
    *, bind: Literal[True], **options: Any
) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...


@overload
def shared_task(
    *, bind: Literal[False] = False, **options: Any
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(*args: Any, bind: bool = False, **options: Any) -> Any:
    """A task not tied to one app: every app gets its own copy; calling it uses the current."""

    def create(function: Callable[..., Any], stacklevel: int = 3) -> Task[Any, Any]:
        default_name = f"{function.__module__}.{function.__name__}"
        opts = {**options, "bind": bind}
        # The object returned is made of the current app's task class (DjangoTask under the
        # Django fixup), so methods that class adds (delay_on_commit) are there, as on
        # Celery's proxy to the current app's task.
        current = _state.current_or_none()
        base = getattr(current, "_task_cls", None) or Task  # not resolved here
        task = make_task(
            function,
            opts,
            app=None,
            default_name=default_name,
            stacklevel=stacklevel,
            default_base=base,
        )
        if "base" not in opts:  # each app makes its copy of its own task class (task_cls)
            task._shared_recipe = (function, opts, default_name)  # type: ignore[attr-defined]
        _shared_tasks.append(task)
        for app in list(_all_apps):
            app._add_shared(task)
        return task

    if len(args) == 1 and callable(args[0]):
        return create(args[0], stacklevel=4)
    if args:
        raise TypeError("@shared_task takes the function, or keyword options only")
    return create


def make_task(
    fun: Callable[..., Any],
    options: dict[str, Any],
    *,
    app: AppLike | None,
    default_name: str,
    stacklevel: int,
    default_base: type[Task[Any, Any]] = Task,
    warn: bool = True,
) -> Task[Any, Any]:
    """A task instance for ``fun`` with decorator ``options``; warns of unknown options.

    Its class is ``base=`` if given, else ``default_base`` (the app's ``task_cls``).
    """
    options = dict(options)
    base: type[Task[Any, Any]] = options.pop("base", None) or default_base
    name = options.pop("name", None) or default_name
    bind = bool(options.pop("bind", False))
    for flag in ("shared", "lazy", "abstract"):
        options.pop(flag, None)
    unknown = [k for k in options if k not in TASK_OPTIONS and not hasattr(base, k)]
    if unknown and warn:
        warnings.warn(
            f"Unknown task option(s) for {name}: {', '.join(sorted(unknown))}. They are "
            "set as attributes, but Celeriac does not act on them (a typo?).",
            UnknownSettingWarning,
            stacklevel=stacklevel,
        )
    return base(fun, app=app, name=name, bind=bind, **options)
