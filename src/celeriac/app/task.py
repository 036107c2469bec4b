"""Compatibility shim: ``from celeriac.app.task import Task, Context`` as in Celery."""

from celeriac.request import Context
from celeriac.task import Task

__all__ = ["Context", "Task"]
