"""Compatibility shim: ``from celeriac.app.task import Task`` as in Celery."""

from celeriac.task import Task

__all__ = ["Task"]
