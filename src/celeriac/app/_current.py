"""Which app is current: the app set current in this thread, the default, the last set anywhere.

``Celery.set_current`` and ``Celery.set_default`` write here; ``current_app``
(``celeriac.app.base``) reads ``current_or_none`` and makes an app named ``default`` when
there is none.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from celeriac.request import current_task

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["current_or_none", "restore", "set_current", "set_default", "snapshot"]

_state = threading.local()  # .current: the app set as current in this thread
_default_app: Celery | None = None  # set_default(): the app of threads that set none
_last_current: Celery | None = None  # the app set as current last, in any thread


def current_or_none() -> Celery | None:
    """The app of the task running here; else this thread's current app; else the default
    (``set_default``), else the app set current last in any thread; else None."""
    task = current_task()
    if task is not None and task.bound_app is not None:
        return task.bound_app
    app: Celery | None = getattr(_state, "current", None) or _default_app or _last_current
    return app


def set_current(app: Celery) -> None:
    """Make ``app`` the current app of this thread (and of threads that set none)."""
    global _last_current
    _state.current = app
    _last_current = app


def set_default(app: Celery) -> None:
    """Make ``app`` the app of every thread that sets no current app of its own."""
    global _default_app
    _default_app = app


def snapshot() -> tuple[Celery | None, Celery | None, Celery | None]:
    """(this thread's current, the default, the last set) apps, for ``restore`` (tests)."""
    return getattr(_state, "current", None), _default_app, _last_current


def restore(saved: tuple[Celery | None, Celery | None, Celery | None]) -> None:
    """Put back what ``snapshot`` saw."""
    global _default_app, _last_current
    _state.current, _default_app, _last_current = saved
