"""Celery's testing import paths exist in Celeriac, and the new modules pin their surface."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("celeriac.contrib.pytest", "celery_app"),
        ("celeriac.contrib.pytest", "celery_worker"),
        ("celeriac.contrib.pytest", "celery_session_app"),
        ("celeriac.contrib.pytest", "celery_session_worker"),
        ("celeriac.contrib.pytest", "depends_on_current_app"),
        ("celeriac.contrib.testing.worker", "start_worker"),
        ("celeriac.contrib.testing.worker", "TestWorkController"),
        ("celeriac.contrib.testing.worker", "test_worker_started"),
        ("celeriac.contrib.testing.app", "TestApp"),
        ("celeriac.contrib.testing.app", "setup_default_app"),
        ("celeriac.contrib.testing.app", "DEFAULT_TEST_CONFIG"),
        ("celeriac.contrib.testing.mocks", "TaskMessage"),
        ("celeriac.contrib.testing.mocks", "TaskMessage1"),
        ("celeriac.contrib.testing.mocks", "task_message_from_sig"),
        ("celeriac.contrib.testing.mocks", "ContextMock"),
        ("celeriac.contrib.testing.tasks", "ping"),
    ],
)
def test_celerys_testing_import_paths(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


def test_new_modules_pin_their_surface() -> None:
    import celeriac.aio
    import celeriac.contrib.opentelemetry
    import celeriac.contrib.testing

    assert sorted(celeriac.aio.__all__) == ["AsyncInspect", "close", "run_blocking", "send_task"]
    assert all(getattr(celeriac.aio, name) for name in celeriac.aio.__all__)
    assert celeriac.contrib.opentelemetry.__all__ == ["CeleriacInstrumentor"]
    assert sorted(celeriac.contrib.testing.__all__) == ["VirtualClock", "start_worker"]


def test_importing_celeriac_does_not_import_asyncio() -> None:
    import subprocess
    import sys

    code = "import sys, celeriac; print('asyncio' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
