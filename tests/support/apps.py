"""Apps for in-process tests: one factory for every broker kind, each app under names of its own.

``AppFactory`` (the ``make_app`` fixture of tests/conftest.py) makes ``Celery`` apps on

- ``memory``: a memory broker (and result store) under a fresh name;
- ``sqlite``: one SQLite file for broker and results, in the test's tmp_path;
- ``redis``: the machine's Redis, database ``redis_support.TRANSPORT_DB``, under a fresh key
  prefix (broker and results);
- ``amqp``: the machine's RabbitMQ, a fresh vhost, results in memory;

and cleans up when the test ends: every app closed, the memory broker and store reset, the
Redis keys under the prefix deleted, the vhost dropped, the SQLite file removed. A missing
service skips the test locally and fails it in CI, as ``require_redis``/``require_rabbitmq``
say. ``results=False`` makes an app without a result backend setting; ``backend=...``
overrides the one the kind gives; every other keyword goes to ``Celery(...)``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celeriac import Celery
from celeriac.backends.memory import reset_store
from celeriac.transports.memory import MemoryTransport
from tests.support import amqp_support, redis_support

KINDS = ("memory", "sqlite", "redis", "amqp")


class AppFactory:
    """Makes apps (see the module docstring); ``close()`` undoes everything they made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._apps: list[Celery] = []
        self._cleanups: list[Callable[[], None]] = []

    def __call__(
        self, kind: str = "memory", main: str = "proj", *, results: bool = True, **kwargs: Any
    ) -> Celery:
        name = f"{main}-{uuid.uuid4().hex}"
        if kind == "memory":
            broker = backend = f"memory://{name}"
            self._cleanups += [lambda: MemoryTransport.reset(name), lambda: reset_store(name)]
        elif kind == "sqlite":
            path = self.folder / f"{name}.sqlite"
            broker = backend = f"sqlite:///{path}"
            self._cleanups.append(lambda: path.unlink(missing_ok=True))
        elif kind == "redis":
            broker = backend = self._redis(kwargs)
        elif kind == "amqp":
            vhost = amqp_support.take_vhost()
            broker, backend = amqp_support.url(vhost), f"memory://{name}"
            self._cleanups += [lambda: amqp_support.drop_vhost(vhost), lambda: reset_store(name)]
        else:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        if results:
            kwargs.setdefault("backend", backend)
        app = Celery(main, broker=broker, **kwargs)
        self._apps.append(app)
        return app

    def _redis(self, kwargs: dict[str, Any]) -> str:
        """The URL; the fresh key prefix put into both transport options in ``kwargs``."""
        redis_support.require_redis()
        db, prefix = redis_support.TRANSPORT_DB, redis_support.unique_prefix()
        for setting in ("broker_transport_options", "result_backend_transport_options"):
            kwargs[setting] = {"global_keyprefix": prefix, **kwargs.get(setting, {})}
        self._cleanups.append(lambda: redis_support.delete_prefix(db, prefix))
        return f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"

    def close(self) -> None:
        """Close every app, then undo what was made for them (newest first)."""
        for app in reversed(self._apps):
            app.close()
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._apps, self._cleanups = [], []
