"""Tests of Celery's integration suite that do not apply to Celeriac, each with its reason.

Only two kinds qualify: tests of Celery's internals (private classes, module constants,
kombu/billiard plumbing a Celeriac user never sees) and tests of brokers or backends Celeriac
does not ship. A test of public behaviour is never listed here, however it fails. The list is
data: the runner still runs these tests and reports their outcome beside the reason.

Keys are pytest node ids relative to the suite's root (``t/integration/test_x.py::Class::test``);
a key naming a file or a class covers every test in it.
"""

from __future__ import annotations

NOT_APPLICABLE: dict[str, str] = {}


def reason_for(nodeid: str) -> str | None:
    """The reason a test is not applicable, or ``None``; the most specific key wins."""
    base = nodeid.split("[", 1)[0]
    parts = base.split("::")
    for end in range(len(parts), 0, -1):
        key = "::".join(parts[:end])
        if key in NOT_APPLICABLE:
            return NOT_APPLICABLE[key]
    return NOT_APPLICABLE.get(nodeid)
