"""Failures the worker records itself (time limit, lost child, revoke) reach chords and chains."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import chain, chord
from celeriac.exceptions import ChordError, TimeLimitExceeded

from .conftest import Project

pytestmark = pytest.mark.integration


def test_hard_time_limit_fails_the_rest_of_a_chain(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "2")
    result = chain(tasks.hard_limited.s(5), tasks.add.s(1)).apply_async()
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=20)


def test_hard_time_limit_of_a_member_fails_the_chord(project: Project, tasks: Any) -> None:
    project.start_worker("-P", "prefork", "-c", "2")
    result = chord([tasks.hard_limited.s(5), tasks.add.si(1, 1)])(tasks.count.s())
    with pytest.raises(ChordError):  # the body's own failure (get() would raise the member's)
        result.get(timeout=20, follow_parents=False)
