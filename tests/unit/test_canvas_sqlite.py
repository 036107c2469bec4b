"""Workflows on the embedded default: an in-process worker on a SQLite file (broker and
results), so every step goes through the database as it does between processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, chain, chord, group, states
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import ChordError
from celeriac.result import GroupResult

T = 20


class Flows:
    """An app on a SQLite file with the tasks the tests combine."""

    def __init__(self, path: Path) -> None:
        self.app = app = Celery("sqliteflows", broker=f"sqlite:///{path}", set_as_current=False)

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        @app.task
        def tsum(numbers: list[int]) -> int:
            return sum(numbers)

        @app.task
        def fail(*args: Any) -> None:
            raise KeyError("broken")

        self.add, self.tsum, self.fail = add, tsum, fail


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flows]:
    flows = Flows(tmp_path_factory.mktemp("canvas") / "celeriac.sqlite")
    try:
        with start_worker(flows.app, pool="threads", concurrency=4):
            yield flows
    finally:
        flows.app.close()


def test_chain(flows: Flows) -> None:
    add = flows.add
    result = chain(add.s(1, 1), add.s(2), add.si(10, 10), add.s(1)).apply_async()
    assert result.get(timeout=T) == 21
    assert result.parent.parent.get(timeout=T) == 4


def test_group_saved_and_restored(flows: Flows) -> None:
    result = group(flows.add.s(i, i) for i in range(6)).apply_async()
    assert result.get(timeout=T) == [0, 2, 4, 6, 8, 10]
    result.save()
    restored = GroupResult.restore(str(result.id), app=flows.app)
    assert restored is not None and restored.completed_count() == 6


def test_chord(flows: Flows) -> None:
    add, tsum = flows.add, flows.tsum
    assert chord([add.s(i, i) for i in range(20)], tsum.s()).delay().get(timeout=T) == 380


def test_a_generator_header_is_sent_as_it_is_read(flows: Flows) -> None:
    add, tsum = flows.add, flows.tsum
    header = (add.s(i, i) for i in range(5))
    sig = chord(header, tsum.s())
    assert not sig.kwargs["header"].tasks  # nothing read yet
    result = sig.delay()
    assert result.get(timeout=T) == 20
    assert [r.get(timeout=T) for r in result.parent.results] == [0, 2, 4, 6, 8]
    assert chord((x for x in ()), tsum.s()).delay().get(timeout=T) == 0
    assert len(chord((add.s(i, i) for i in range(3)), tsum.s())) == 3  # read when asked


def test_nested_workflow(flows: Flows) -> None:
    add, tsum = flows.add, flows.tsum
    header = [
        add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s(),  # 7
        chord([add.s(1, 1), add.s(2, 2)], tsum.s()),  # 6
        group(add.s(3, 3), add.s(4, 4)),  # 6, 8
    ]
    result = (chord(header, tsum.s()) | add.s(100)).apply_async()
    assert result.get(timeout=T) == 127


def test_chord_failure(flows: Flows) -> None:
    add, tsum, fail = flows.add, flows.tsum, flows.fail
    result = chord([add.s(1, 1), fail.s(), add.s(2, 2)], tsum.s()).apply_async()
    with pytest.raises(KeyError):  # as in Celery: the failed member's own error first
        result.get(timeout=T)
    with pytest.raises(ChordError, match="KeyError"):
        result.get(timeout=T, follow_parents=False)
    assert result.state == states.FAILURE
