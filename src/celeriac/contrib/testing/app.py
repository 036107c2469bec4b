"""Apps for tests, at Celery's ``celery.contrib.testing.app`` path.

``TestApp()`` is an app on the in-memory broker and result store with Celery's test
defaults (``DEFAULT_TEST_CONFIG``, added with ``app.add_defaults`` so explicit settings win);
``setup_default_app(app)`` puts the current and default apps back as they were when the
block ends (and closes ``app``); ``set_trap()`` makes any use of the current app inside the
block an error, to catch code that forgets to pass its app.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celeriac.app import _current
from celeriac.app.base import Celery

__all__ = ["DEFAULT_TEST_CONFIG", "TestApp", "Trap", "set_trap", "setup_default_app"]

#: Celery's defaults for test apps.
DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "worker_log_color": False,
    "accept_content": {"json"},
    "enable_utc": True,
    "timezone": "UTC",
    "broker_url": "memory://",
    "result_backend": "cache+memory://",
    "broker_heartbeat": 0,
}


class Trap:
    """Stands in for the current app and raises on any use (``set_trap``)."""

    def __getattr__(self, name: str) -> Any:
        if name in ("_is_coroutine", "__func__"):  # looked up by mock and inspect
            return None
        raise RuntimeError(f"Test depends on current_app (it asked for {name!r})")


def TestApp(
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    enable_logging: bool = False,
    set_as_current: bool = False,
    log: Any = None,
    backend: str | None = None,
    broker: str | None = None,
    **kwargs: Any,
) -> Celery:
    """An app for a test: in-memory broker and results unless ``broker``/``backend`` say
    otherwise, Celery's test defaults under ``config``. Logging is never configured by an
    app in Celeriac, so ``enable_logging`` and ``log`` change nothing."""
    defaults = {**copy.deepcopy(DEFAULT_TEST_CONFIG), **(config or {})}
    if broker is not None:
        defaults.pop("broker_url", None)
    if backend is not None:
        defaults.pop("result_backend", None)
    app = Celery(
        name or "celeriac.tests", broker=broker, backend=backend,
        set_as_current=set_as_current, **kwargs,
    )  # fmt: skip
    app.add_defaults(defaults)
    return app


@contextmanager
def set_trap(app: Celery | None = None) -> Iterator[None]:
    """Inside the block, the current and default app is a ``Trap``."""
    saved = _current.snapshot()
    trap: Any = Trap()
    _current.restore((trap, trap, trap))
    try:
        yield
    finally:
        _current.restore(saved)


@contextmanager
def setup_default_app(app: Celery, use_trap: bool = False) -> Iterator[None]:
    """Run the block with ``app`` (optionally behind ``set_trap``); afterwards the current
    and default apps are what they were, and ``app`` is closed unless it was current."""
    saved = _current.snapshot()
    try:
        if use_trap:
            with set_trap(app):
                yield
        else:
            yield
    finally:
        _current.restore(saved)
        if app is not saved[0]:
            app.close()
