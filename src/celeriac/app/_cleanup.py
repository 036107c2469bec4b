"""Deleting expired results: the ``celeriac.backend_cleanup`` task and its daily beat entry.

The SQL result stores (``db+...`` and Django's database, ``django-db``) keep expired
entries until ``ResultBackend.cleanup`` deletes them. As Celery does, every app
registers a task that calls it (under Celeriac's name and Celery's, ``celery.backend_cleanup``,
so a Celery beat's entry runs on Celeriac workers too), and beat adds an entry sending it
daily at 04:00 when ``result_expires`` is set and the result backend is one of them, unless
``beat_schedule`` already names it. (The embedded SQLite store is left as it was: its
expired rows already read as absent.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac.app.settings import as_seconds
from celeriac.periodic.schedules import crontab
from celeriac.task import Task

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["CLEANUP_TASK", "default_beat_entries", "register_cleanup"]

CLEANUP_TASK = "celeriac.backend_cleanup"
_CELERY_NAME = "celery.backend_cleanup"
_CLEANED_SCHEMES = ("django-db",)  # and every db+... scheme


def register_cleanup(app: AppLike) -> None:
    """Register the cleanup task, under both names, with ``app``."""

    def backend_cleanup() -> int:
        """Delete the expired results of the app's result store; how many went."""
        return app.results.backend.cleanup()

    for name in (CLEANUP_TASK, _CELERY_NAME):
        # A built-in: a plain Task whatever task_cls says (task_cls may not be importable yet)
        app.task(name=name, base=Task, shared=False, typing=False, ignore_result=True)(
            backend_cleanup
        )


def default_beat_entries(app: AppLike) -> dict[str, Any]:
    """``beat_schedule`` with the daily cleanup entry added where it is needed."""
    entries = dict(app.conf.beat_schedule or {})
    url = app.result_backend_url
    scheme = url.partition("://")[0].lower() if url else ""
    expires = as_seconds(app.conf.result_expires, setting="result_expires")
    named = {spec.get("task") for spec in entries.values() if isinstance(spec, dict)}
    needs = scheme.startswith("db+") or scheme in _CLEANED_SCHEMES
    if not needs or not expires or named & {CLEANUP_TASK, _CELERY_NAME}:
        return entries

    entries[CLEANUP_TASK] = {
        "task": CLEANUP_TASK,
        "schedule": crontab(minute="0", hour="4"),
        "options": {"expires": 12 * 3600},
    }
    return entries
