"""The task registry: task name -> Task, with Celery's ``NotRegistered`` on a miss."""

from __future__ import annotations

from typing import Any

from celeriac.exceptions import NotRegistered
from celeriac.task import Task

__all__ = ["TaskRegistry"]


class TaskRegistry(dict[str, Task[Any, Any]]):
    """A dict of tasks by name; a missing name raises ``NotRegistered``."""

    def __missing__(self, key: str) -> Task[Any, Any]:
        raise NotRegistered(key)

    def register(self, task: Task[Any, Any]) -> None:
        self[task.name] = task

    def unregister(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise NotRegistered(name) from None

    def regular(self) -> dict[str, Task[Any, Any]]:
        """Tasks defined by users (not the ``celery.*`` and ``celeriac.*`` built-ins)."""
        builtin = ("celery.", "celeriac.")
        return {name: task for name, task in self.items() if not name.startswith(builtin)}
