"""Which app is current: the app of the task running here, the app set current in this
thread, the default, the last set anywhere; and the factory of the app made when none is.

``Celery.set_current`` and ``Celery.set_default`` write here; ``current_app()`` reads it.
The app layer registers ``set_app_factory`` when ``celeriac.app.base`` is imported (which
``import celeriac`` does), so a task, result or signature made before any app asks for the
current one without importing the app class.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from celeriac.request import current_task

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = [
    "current_app",
    "current_or_none",
    "restore",
    "set_app_factory",
    "set_current",
    "set_default",
    "snapshot",
]

_state = threading.local()  # .current: the app set as current in this thread
_default_app: AppLike | None = None  # set_default(): the app of threads that set none
_last_current: AppLike | None = None  # the app set as current last, in any thread
_app_factory: Callable[[], AppLike] | None = None  # makes the app named "default"


def current_or_none() -> AppLike | None:
    """The app of the task running here; else this thread's current app; else the default
    (``set_default``), else the app set current last in any thread; else None."""
    task = current_task()
    if task is not None and task.bound_app is not None:
        return task.bound_app
    app: AppLike | None = getattr(_state, "current", None) or _default_app or _last_current
    return app


def current_app() -> AppLike:
    """``current_or_none()``, else a new app made by the registered factory (``default``)."""
    app = current_or_none()
    if app is None:
        if _app_factory is None:
            raise RuntimeError("no app factory: celeriac.app.base was never imported")
        app = _app_factory()
    return app


def set_app_factory(factory: Callable[[], AppLike]) -> None:
    """Register how ``current_app()`` makes an app when there is none (the app layer)."""
    global _app_factory
    _app_factory = factory


def set_current(app: AppLike) -> None:
    """Make ``app`` the current app of this thread (and of threads that set none)."""
    global _last_current
    _state.current = app
    _last_current = app


def set_default(app: AppLike) -> None:
    """Make ``app`` the app of every thread that sets no current app of its own."""
    global _default_app
    _default_app = app


def snapshot() -> tuple[AppLike | None, AppLike | None, AppLike | None]:
    """(this thread's current, the default, the last set) apps, for ``restore`` (tests)."""
    return getattr(_state, "current", None), _default_app, _last_current


def restore(saved: tuple[AppLike | None, AppLike | None, AppLike | None]) -> None:
    """Put back what ``snapshot`` saw."""
    global _default_app, _last_current
    _state.current, _default_app, _last_current = saved
