"""Celery's pytest fixtures for Celeriac: ``-p celeriac.contrib.pytest``.

The fixture names, scopes and meanings are those of ``celery.contrib.pytest``, so a Celery
test suite runs after changing its imports (``pytest_plugins = ("celeriac.contrib.pytest",)``)::

    celery_app / celery_session_app        a TestApp (per test / per session), configured by
                                           celery_config, celery_parameters and the
                                           @pytest.mark.celery(**settings) marker
    celery_worker / celery_session_worker  an in-process worker for it (start_worker), with
                                           celery_includes imported, celery_worker_pool and
                                           celery_worker_parameters; none when NO_WORKER is set
    celery_config, celery_parameters, celery_worker_parameters, celery_includes,
    celery_class_tasks, celery_worker_pool, celery_enable_logging, use_celery_app_trap
                                           session-scoped knobs a conftest overrides
    depends_on_current_app                 makes celery_app the current app

Celeriac's own: the apps use an in-memory broker and result store of their own by default,
and read a ``VirtualClock``; the ``celery_clock`` fixture is the clock of ``celery_app`` and
``celery_session_clock`` that of ``celery_session_app``: ``celery_clock.advance(60)`` runs
due ETA/countdown tasks and retries, refills rate limits and moves beat on, with no sleep.

Like Celery's, the plugin is opt-in: Celeriac's ``pytest11`` entry point
(``celeriac.contrib._pytest_gate``) loads it only when asked (``-p celeriac.contrib.pytest``,
``pytest_plugins``, ``PYTEST_PLUGINS``, or ``celeriac_plugin = true`` in the pytest ini).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from celeriac._imports import import_module
from celeriac.app.base import Celery
from celeriac.contrib.testing import worker
from celeriac.contrib.testing.app import TestApp, setup_default_app
from celeriac.contrib.testing.clock import VirtualClock

__all__ = [
    "celery_app",
    "celery_class_tasks",
    "celery_clock",
    "celery_config",
    "celery_enable_logging",
    "celery_includes",
    "celery_parameters",
    "celery_session_app",
    "celery_session_clock",
    "celery_session_worker",
    "celery_worker",
    "celery_worker_parameters",
    "celery_worker_pool",
    "depends_on_current_app",
    "use_celery_app_trap",
]

NO_WORKER = os.environ.get("NO_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``celery`` marker (per-test settings), as Celery's plugin does."""
    config.addinivalue_line(
        "markers", "celery(**overrides): override celery configuration for a test case"
    )


@contextmanager
def _create_app(
    enable_logging: bool = False,
    use_trap: bool = False,
    parameters: Mapping[str, Any] | None = None,
    **config: Any,
) -> Iterator[Celery]:
    """A TestApp for the block, the current and default apps restored after."""
    app = TestApp(
        set_as_current=False, enable_logging=enable_logging, config=config, **(parameters or {})
    )
    with setup_default_app(app, use_trap=use_trap):
        try:
            yield app
        finally:
            app.close()


def _settings(request: pytest.FixtureRequest, celery_config: Mapping[str, Any]) -> dict[str, Any]:
    mark = request.node.get_closest_marker("celery")
    return {**celery_config, **(mark.kwargs if mark else {})}


def _prepare(app: Celery, includes: Sequence[str], class_tasks: Sequence[Any] = ()) -> None:
    for module in includes:
        import_module(module)
    for class_task in class_tasks:
        app.register_task(class_task)


# -- the knobs a conftest overrides (session scope, as Celery's) -----------------------------


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """True makes any use of the current app (not ``celery_app``) an error."""
    return False


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Modules the worker fixtures import first (where the tasks are defined)."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "solo"


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Settings of the test apps (beside Celeriac's in-memory defaults)."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Keyword arguments of the test apps' constructor."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Keyword arguments of ``start_worker`` for the worker fixtures."""
    return {}


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[Any]:
    """Task classes the session worker registers."""
    return []


# -- apps, workers, clocks -------------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_session_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celery]:
    """One test app for the whole session (the current and default app, unless trapped)."""
    with _create_app(
        enable_logging=celery_enable_logging,
        use_trap=use_celery_app_trap,
        parameters=celery_parameters,
        **_settings(request, celery_config),
    ) as app:
        if not use_celery_app_trap:
            app.set_default()
            app.set_current()
        yield app


@pytest.fixture(scope="session")
def celery_session_worker(
    request: pytest.FixtureRequest,
    celery_session_app: Celery,
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Any],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[worker.TestWorkController | None]:
    """A worker for ``celery_session_app``, running for the whole session."""
    if NO_WORKER:
        yield None
        return
    _prepare(celery_session_app, celery_includes, celery_class_tasks)
    with worker.start_worker(
        celery_session_app, pool=celery_worker_pool, **celery_worker_parameters
    ) as running:
        yield running


@pytest.fixture
def celery_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celery]:
    """A test app for this test, with ``@pytest.mark.celery(...)`` settings applied."""
    with _create_app(
        enable_logging=celery_enable_logging,
        use_trap=use_celery_app_trap,
        parameters=celery_parameters,
        **_settings(request, celery_config),
    ) as app:
        yield app


@pytest.fixture
def celery_worker(
    request: pytest.FixtureRequest,
    celery_app: Celery,
    celery_includes: Sequence[str],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[worker.TestWorkController | None]:
    """A worker for ``celery_app``, for this test."""
    if NO_WORKER:
        yield None
        return
    _prepare(celery_app, celery_includes)
    with worker.start_worker(
        celery_app, pool=celery_worker_pool, **celery_worker_parameters
    ) as running:
        yield running


@pytest.fixture
def depends_on_current_app(celery_app: Celery) -> None:
    """Make ``celery_app`` the current app (for code that reads ``current_app``)."""
    celery_app.set_current()


@pytest.fixture
def celery_clock(celery_app: Celery) -> VirtualClock:
    """The virtual clock of ``celery_app``: ``celery_clock.advance(seconds)``."""
    return _virtual_clock(celery_app)


@pytest.fixture
def celery_session_clock(celery_session_app: Celery) -> VirtualClock:
    """The virtual clock of ``celery_session_app`` (shared by the whole session)."""
    return _virtual_clock(celery_session_app)


def _virtual_clock(app: Celery) -> VirtualClock:
    clock = app.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError(
            f"The test app reads {clock!r}, not a VirtualClock: celery_parameters gave it "
            "another clock=; drop it to move time with this fixture"
        )
    return clock
