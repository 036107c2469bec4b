"""Fixtures every tier shares; the helpers behind them live in tests/support/.

- ``make_app``: ``make_app(kind="memory", main="proj", **settings)`` makes a Celeriac app on
  a memory, SQLite, Redis or RabbitMQ broker under names of its own, cleaned up after the
  test (tests/support/apps.py).
- ``vhost``: a RabbitMQ vhost for the test module, dropped after it.

A service a test needs that is missing skips it locally and fails it in CI (``CI=true``):
the ``require_*`` functions of tests/support/*_support.py decide, and nothing here changes
that. Worker subprocesses: tests/support/workers.py; waiting: tests/support/polling.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import amqp_support
from tests.support.apps import AppFactory


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    factory = AppFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with amqp_support.vhost() as name:
        yield name
