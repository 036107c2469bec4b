"""Which class an app's tasks are made of: ``Celery(task_cls=...)`` and ``app.Task``.

Celery lets an app name the base class of every task it makes (``task_cls``, a class or a
``'module:Class'`` string), so a base class can wrap each run in a context (Flask's
``celery_init_app`` wraps ``__call__`` in ``app.app_context()``). ``resolve_task_class`` is
the one place that turns what was given into that class, checked; the app resolves it on
first use, so a string may name a module that imports the app.
"""

from __future__ import annotations

from typing import Any

from celeriac._imports import symbol_by_name
from celeriac.exceptions import ImproperlyConfigured
from celeriac.task import Task

__all__ = ["TaskClassSpec", "resolve_task_class"]

#: What ``task_cls`` takes: a Task subclass, its ``'module:Class'`` path, or None (Task).
TaskClassSpec = type[Task[Any, Any]] | str | None


def resolve_task_class(spec: TaskClassSpec) -> type[Task[Any, Any]]:
    """The task class ``spec`` names; ImproperlyConfigured when it is not a Task subclass."""
    if spec is None:
        return Task
    found = symbol_by_name(spec) if isinstance(spec, str) else spec
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise ImproperlyConfigured(
            f"task_cls={spec!r} is not a task class: give a subclass of celeriac.Task "
            "(or its 'module:Class' path)"
        )
    return found
