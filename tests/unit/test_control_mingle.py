"""Mingle: a starting worker learns the revoked ids and clock of the running ones (``memory://``).

The workers run in this process on one memory broker, each with an app of its own (so each
has its own Lamport clock), as two worker processes would.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.lifecycle import Worker
from celeriac.worker.remote.mingle import revoked_ids
from tests.support.control_support import NODE, Project

NEWCOMER = "w2@test"


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project()
    yield project
    project.close()


def newcomer(project: Project, **options: Any) -> Worker:
    """A second worker, with an app of its own on the project's broker; not started."""
    url = f"memory://{project.name}"
    app = Celery("newcomer", broker=url, backend=url, set_as_current=False)
    settings: dict[str, Any] = {
        "pool": "threads",
        "concurrency": 1,
        "mingle": True,
        "mingle_timeout": 0.5,
        **options,
    }
    return Worker(app, hostname=NEWCOMER, **settings)


def hello(project: Project, from_node: str, revoked: Any) -> Any:
    arguments = {"from_node": from_node, "revoked": revoked}
    return project.ask("hello", **arguments)


def test_hello_merges_the_askers_ids_and_answers_with_ours_and_the_clock(
    project: Project,
) -> None:
    with project.worker() as worker:
        assert worker.consumer is not None
        worker.consumer.revoked.update(["old"])
        before = worker.app.lamport_clock.value
        reply = hello(project, "other@test", ["a", "b"])
        assert reply["revoked"] == ["old", "a", "b"]  # ids only, oldest first, as Celery 5.7
        assert isinstance(reply["clock"], int) and reply["clock"] > before
        # Celery <= 5.6 sent its set's {id: stamp} mapping: the ids are its keys.
        assert hello(project, "other@test", {"c": 12.5})["revoked"] == ["old", "a", "b", "c"]
        assert project.ask("revoked") == ["old", "a", "b", "c"]
        assert hello(project, NODE, ["d"]) is None  # our own hello: nothing to learn
        assert "d" not in worker.consumer.revoked


def test_a_starting_worker_learns_revoked_ids_and_the_clock(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = str(uuid.uuid4())
    with project.worker() as running:
        project.app.lamport_clock.adjust(10_000)  # the revoke carries it to the running worker
        assert project.app.control.revoke(task_id, destination=[NODE], reply=True, timeout=5)
        assert task_id in project.ask("revoked")
        running_clock = running.app.lamport_clock.value
        assert running_clock > 10_000
        worker = newcomer(project)
        with caplog.at_level(logging.INFO, logger="celeriac.worker"):
            worker.start()
        try:
            assert worker.consumer is not None
            assert task_id in worker.consumer.revoked
            assert worker.app.lamport_clock.value > running_clock
        finally:
            worker.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert "mingle: searching for neighbors" in messages
    assert "mingle: sync with 1 nodes" in messages
    assert f"sync with {NEWCOMER}" in messages  # the running worker's side
    assert messages.index("mingle: sync complete") < messages.index(f"{NEWCOMER} ready.")


def test_alone_or_without_mingle(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="celeriac.worker"):
        alone = newcomer(project)
        alone.start()
        alone.stop()
        assert "mingle: all alone" in [record.getMessage() for record in caplog.records]
        caplog.clear()
        with project.worker():
            quiet = newcomer(project, mingle=False)
            quiet.start()
            quiet.stop()
    assert not [r for r in caplog.records if "mingle" in r.getMessage()]
    assert not [r for r in caplog.records if r.getMessage() == f"sync with {NEWCOMER}"]


@pytest.mark.parametrize(
    ("payload", "ids"),
    [
        (["a", "b"], ["a", "b"]),
        (("a",), ["a"]),
        ({"a": 1.5, "b": [2.5, 0, "b"]}, ["a", "b"]),
        (None, []),
        ("abc", []),
        (["a", 3, None], ["a"]),
    ],
)
def test_revoked_ids_reads_both_wire_formats(payload: Any, ids: list[str]) -> None:
    assert revoked_ids(payload) == ids
