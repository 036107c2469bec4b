"""The Django fixup: a Celery app in a Django project works as Celery's does there.

Installed by the app itself (``celeriac.app._fixups``) when ``DJANGO_SETTINGS_MODULE`` is
set as the app is made, or when it is configured from ``'django.conf:settings'``. Then:

* ``DjangoTask`` (``delay_on_commit``) is the class ``@app.task`` and ``@shared_task`` make
  when no ``base=`` is given;
* before the worker or beat imports the task modules (the ``import_modules`` signal),
  ``django.setup()`` runs, then Django's system checks unless ``CELERY_SKIP_CHECKS`` (or
  ``CELERIAC_SKIP_CHECKS``) is set, so models can be imported by the tasks modules and
  ``autodiscover_tasks()`` finds every installed app's ``tasks`` module;
* before and after each task a worker runs (not eager calls), database connections that are
  unusable or older than ``CONN_MAX_AGE`` are closed (``django.db.close_old_connections``),
  so a long-running worker never meets "server has gone away"; caches are closed after;
* in each forked pool child, the connections inherited from the parent are dropped without
  a word to the server (their sockets are the parent's), so the child opens its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from celeriac import signals

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["DjangoFixup", "install"]

logger = logging.getLogger("celeriac.contrib.django")

_SKIP_CHECKS = ("CELERY_SKIP_CHECKS", "CELERIAC_SKIP_CHECKS")


class DjangoFixup:
    """The fixup of one app (module docstring)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._pid = os.getpid()

    def install(self) -> DjangoFixup:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.task import DjangoTask

        if self.app.uses_default_task_class():  # an explicit task_cls wins, as in Celery
            self.app.Task = DjangoTask
        signals.import_modules.connect(self.on_import_modules, sender=self.app)
        uid = ("celeriac.contrib.django.fixup", id(self.app))
        signals.task_prerun.connect(self.on_task_prerun, dispatch_uid=(*uid, "prerun"))
        signals.task_postrun.connect(self.on_task_postrun, dispatch_uid=(*uid, "postrun"))
        signals.worker_process_init.connect(self.on_worker_process_init, dispatch_uid=uid)
        return self

    # -- set-up -----------------------------------------------------------------------------

    def on_import_modules(self, **_: Any) -> None:
        """``django.setup()`` (once) and the system checks, before task modules import."""
        import django
        from django.apps import apps

        if apps.ready:
            return
        django.setup()
        if not any(os.environ.get(name) for name in _SKIP_CHECKS):
            from django.core.checks import run_checks

            for message in run_checks():
                log = logger.error if message.is_serious() else logger.warning
                log("django system check: %s", message)

    # -- around each task -------------------------------------------------------------------

    def _ours(self, sender: Any) -> bool:
        request = getattr(sender, "request", None)
        return getattr(sender, "app", None) is self.app and not getattr(request, "is_eager", False)

    def on_task_prerun(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            close_old_connections()

    def on_task_postrun(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            close_old_connections()
            close_caches()

    def on_worker_process_init(self, **_: Any) -> None:
        """In a forked child: forget the parent's connections (never close them: that
        would end the parent's session too)."""
        if os.getpid() == self._pid:
            return  # the solo and thread pools: the same process keeps its connections
        from django.apps import apps

        if apps.ready:
            drop_inherited_connections()
            close_caches()


def close_old_connections() -> None:
    """Close the connections that are unusable or past ``CONN_MAX_AGE`` (Django's
    ``close_old_connections``, as a request does), ignoring errors of dead ones."""
    from django.apps import apps

    if not apps.ready:
        return
    from django.db import close_old_connections as close

    try:
        close()
    except Exception as exc:  # a connection already gone: it is closed either way
        logger.debug("closing old database connections: %s", exc)


def drop_inherited_connections() -> None:
    """Make every initialized connection of this (forked) process reconnect on next use,
    closing only this process's copy of its socket."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        dbapi = conn.connection
        if dbapi is None:
            continue
        fd = _fileno(dbapi)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent's socket stays open in the parent
        with contextlib.suppress(Exception):
            conn.close()  # fails on the closed socket, and forgets the connection
        conn.connection = None


def _fileno(dbapi: Any) -> int | None:
    """The socket descriptor of a DB-API connection (psycopg, mysqlclient, PyMySQL)."""
    owners: tuple[Any, ...] = (dbapi, getattr(dbapi, "_sock", None))
    for owner in owners:
        with contextlib.suppress(Exception):
            fd = owner.fileno()
            if isinstance(fd, int) and fd >= 0:
                return fd
    return None


def close_caches() -> None:
    with contextlib.suppress(Exception):
        from django.core.cache import close_caches as close

        close()


def install(app: Celery) -> DjangoFixup | None:
    """Install the fixup on ``app`` once; None when Django is not installed (with a warning,
    as Celery gives)."""
    existing = getattr(app, "_django_fixup", None)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    try:
        import django  # noqa: F401
    except ImportError:
        logger.warning(
            "DJANGO_SETTINGS_MODULE is set but Django is not installed: the Django fixup "
            "is not applied (pip install Django, or unset DJANGO_SETTINGS_MODULE)"
        )
        return None
    fixup = DjangoFixup(app).install()
    app._django_fixup = fixup  # type: ignore[attr-defined]
    return fixup
