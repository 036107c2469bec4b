"""Celeriac's ``pytest11`` entry point: it loads ``celeriac.contrib.pytest`` only when asked.

Celery ships its pytest plugin disabled (its fixtures load with ``-p celery.contrib.pytest``,
``pytest_plugins`` or ``PYTEST_PLUGINS``, or when the separate ``pytest-celery`` package is
installed). Installing Celeriac must not put fixtures named ``celery_app`` into every test
run of the machine either, so this entry point only adds one ini option,
``celeriac_plugin = true``, that loads the fixtures for a project that wants them always on.
"""

from __future__ import annotations

import pytest

PLUGIN = "celeriac.contrib.pytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "celeriac_plugin",
        type="bool",
        default=False,
        help=f"load {PLUGIN} (Celery's pytest fixtures for Celeriac) in every run",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getini("celeriac_plugin") and not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
