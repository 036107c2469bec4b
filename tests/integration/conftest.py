"""Real worker subprocesses started through the CLI, on a SQLite file of the test's own.

The project and its tasks live in tests/support/sqlite_project.py; ``Project`` is imported
here too, so ``from .conftest import Project`` keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sqlite_project import Project

__all__ = ["Project"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    proj = Project(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TEST_BROKER", proj.env["TEST_BROKER"])
    monkeypatch.setenv("TEST_RUNLOG", proj.env["TEST_RUNLOG"])
    sys.modules.pop("tasks", None)
    try:
        yield proj
    finally:
        proj.stop_all()
        mod = sys.modules.pop("tasks", None)
        if mod is not None:
            mod.app.close()


@pytest.fixture
def tasks(project: Project):  # type: ignore[no-untyped-def]
    import tasks as module

    return module
