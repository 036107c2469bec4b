"""Side by side, in process: ``app.bugreport()`` as Celery 5.7's.

The report has Celery's layout (``software ->``, ``platform ->``, ``loader   ->``,
``settings -> transport:... results:...``, then the settings) under Celeriac's own name;
its results line masks each URL of a multi-server or sentinel list as Celery's does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import celery
import pytest

import celeriac

pytestmark = pytest.mark.compat

BROKER = "redis://:s3cret@localhost:6379/9"

RESULT_BACKENDS = [
    "cache+memcached://172.19.26.240:11211;172.19.26.242:11211/",
    "sentinel://:secret1@h1:26379;sentinel://:secret2@h2:26379/0",
    "redis://:p,ass@word@localhost:6379/0",
    "redis://user:p,a@ss@localhost:6379/0",
]


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery(
        "report", broker=BROKER, backend="redis://localhost/9", set_as_current=False
    )
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    url = f"memory://report-{uuid.uuid4().hex}"
    with celeriac.Celery("report", broker=url, backend=url, set_as_current=False) as app:
        app.conf.broker_url = BROKER  # the report reads the settings; nothing connects
        yield app


def _layout(report: str) -> list[str]:
    """Each line's label and field names, without the values."""
    head = report.strip().split("\n\n", 1)[0]
    return [re.sub(r":\S+", ":", line).split(" ", 3)[:3] for line in head.splitlines()]


def test_the_report_has_celerys_layout_under_our_name(theirs: Any, ours: celeriac.Celery) -> None:
    their_report, our_report = theirs.bugreport(), ours.bugreport()
    assert their_report.startswith("\nsoftware -> celery:")
    assert our_report.startswith(f"\nsoftware -> celeriac:{celeriac.__version__} py:")
    their_layout, our_layout = _layout(their_report), _layout(our_report)
    assert [line[0] for line in our_layout] == [line[0] for line in their_layout]
    assert our_layout[2:] == their_layout[2:]  # platform, loader, settings: the same fields
    their_lines, our_lines = their_report.splitlines(), our_report.splitlines()
    assert our_lines[3:5] == their_lines[3:5]  # the same platform, read the same way
    assert "s3cret" not in our_report and "s3cret" not in their_report
    assert our_report.strip().split("\n\n", 1)[1].startswith("broker_url: ")


@pytest.mark.parametrize("url", RESULT_BACKENDS)
def test_the_results_line_masks_as_celerys(url: str, theirs: Any, ours: celeriac.Celery) -> None:
    lines = []
    for app in (theirs, ours):
        app.conf.result_backend = url
        report = app.bugreport()
        lines.append(next(line for line in report.splitlines() if line.startswith("settings")))
        assert all(secret not in report for secret in ("secret1", "secret2", "p,ass@", "p,a@ss"))
    assert lines[1] == lines[0]
