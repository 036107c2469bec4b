"""``task_annotations``: task attributes rewritten from the settings, as Celery applies them.

The setting is a dict (``{"tasks.add": {"rate_limit": "10/s"}, "*": {"acks_late": True}}``),
an object with an ``annotate(task)`` method returning such a dict (or None), a
``"module:Class"`` string naming one, or a list of any of these. For each task, every
annotation in order gives first its ``"*"`` entry, then the task's own; each key is set on
the task. Celery's ``"@method"`` keys (wrapping a method) are refused with the reason. The
worker applies them once its task modules are imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from celeriac._imports import symbol_by_name
from celeriac.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["annotate_tasks"]


def _annotations(setting: Any) -> list[Any]:
    if setting is None:
        return []
    items = list(setting) if isinstance(setting, (list, tuple)) else [setting]
    return [symbol_by_name(item) if isinstance(item, str) else item for item in items]


def _entries(annotation: Any, task: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(annotation, Mapping):
        for key in ("*", task.name):
            found = annotation.get(key)
            if found:
                yield found
        return
    annotate = getattr(annotation, "annotate", None)
    if annotate is None:
        raise ImproperlyConfigured(
            f"task_annotations: {annotation!r} is neither a dict nor an object with an "
            "annotate(task) method"
        )
    found = annotate(task)
    if found:
        yield found


def annotate_tasks(app: AppLike) -> None:
    """Set the attributes ``task_annotations`` gives on each registered task."""
    annotations = _annotations(app.conf.task_annotations)
    if not annotations:
        return
    for task in list(app.tasks.values()):
        for annotation in annotations:
            for entry in _entries(annotation, task):
                for key, value in entry.items():
                    if key.startswith("@"):
                        raise ImproperlyConfigured(
                            f"task_annotations: {key!r} for {task.name}: wrapping task "
                            "methods ('@' keys) is not supported; subclass Task instead"
                        )
                    setattr(task, key, value)
