"""``TestApp`` and ``setup_default_app``, as Celery's ``celery.contrib.testing.app``.

A test app talks to an in-memory broker and result store of its own (a fresh
``memory://`` name per app, so nothing one test leaves behind reaches the next) and reads a
``VirtualClock``, so a test can move time forward (see ``celeriac.contrib.testing.clock``).
``setup_default_app`` restores the current and default apps when the test is done and, with
``use_trap=True``, makes any use of the current app fail loudly ("Test depends on
current_app"), as Celery's trap does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celeriac import _state
from celeriac.app.base import Celery
from celeriac.contrib.testing.clock import VirtualClock

__all__ = ["DEFAULT_TEST_CONFIG", "TestApp", "Trap", "setup_default_app"]

#: The settings of every test app (Celery's, with the in-memory stores Celeriac has).
DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "worker_log_color": False,
    "accept_content": {"json"},
    "enable_utc": True,
    "timezone": "UTC",
    "broker_url": "memory://",
    "result_backend": "memory://",
    "broker_heartbeat": 0,
}

_app_numbers = itertools.count(1)


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
    """An app for tests: Celery's ``TestApp`` (``enable_logging`` and ``log`` are accepted:
    Celeriac's test apps never reconfigure logging).

    A ``memory://`` broker or result store without a name gets one of its own for this app.
    ``clock=`` may be given; by default the app reads a new ``VirtualClock``.
    """
    # lazy: registers celery.ping only when a test app is made

    settings = {**DEFAULT_TEST_CONFIG, **(config or {})}
    if broker is not None:
        settings.pop("broker_url", None)
    if backend is not None:
        settings.pop("result_backend", None)
    private = f"celeriac-test-{os.getpid()}-{next(_app_numbers)}"
    for key in ("broker_url", "result_backend"):
        if settings.get(key) in ("memory://", "cache+memory://"):
            settings[key] = f"memory://{private}"
    kwargs.setdefault("clock", VirtualClock())
    app = Celery(
        name or "celery.tests",
        broker=broker,
        backend=backend,
        set_as_current=set_as_current,
        **kwargs,
    )
    app.conf.update(settings)
    return app


class Trap:
    """Stands in for the current app while ``use_celery_app_trap`` is on: any use fails."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # copy, pickle, repr probes
            raise AttributeError(name)
        raise RuntimeError(
            f"Test depends on current_app (it read current_app.{name}): request the "
            "depends_on_current_app fixture, or use the app given by the celery_app fixture"
        )


@contextmanager
def setup_default_app(app: Celery, use_trap: bool = False) -> Iterator[None]:
    """Run the block with ``app`` as the one test app; restore the current and default apps
    after. With ``use_trap`` the current app is a ``Trap`` until a test sets one."""
    saved = (
        getattr(_state._state, "current", None),
        _state._default_app,
        _state._last_current,
    )
    if use_trap:
        trap: Any = Trap()
        _state._state.current = _state._default_app = _state._last_current = trap
    try:
        yield
    finally:
        _state._state.current, _state._default_app, _state._last_current = saved
