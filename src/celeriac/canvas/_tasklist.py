"""What ``chain`` and ``group`` share: a signature whose ``kwargs['tasks']`` lists members.

The wire form is Celery's (``{"task": "celery.chain"|"celery.group", "kwargs": {"tasks":
[...]}}``); the app is the one given, else the first member's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from celeriac.canvas.signature import Signature, maybe_signature

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["TaskList"]

R = TypeVar("R")


class TaskList(Signature[R]):
    """A signature made of member signatures (``chain``, ``group``)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: AppLike | None = None) -> Self:
        tasks = [maybe_signature(task, app=app) for task in d["kwargs"].get("tasks") or ()]
        # chain and group take their members first (not Signature's task name)
        sig = cls(tasks, app=app, **dict(d.get("options") or {}))  # type: ignore[arg-type]
        sig.args = tuple(d.get("args") or ())
        sig.immutable = bool(d.get("immutable", False))
        return sig

    @property
    def tasks(self) -> list[Signature[Any]]:
        tasks: list[Signature[Any]] = self.kwargs["tasks"]
        return tasks

    @tasks.setter
    def tasks(self, value: list[Signature[Any]]) -> None:
        self.kwargs["tasks"] = value

    @property
    def app(self) -> AppLike:
        if self._app is None and self.tasks:
            return self.tasks[0].app
        return super().app
