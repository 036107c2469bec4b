"""Celery 5.7's database backend and Celeriac's on one PostgreSQL / MariaDB database: each
reads what the other stored (values, failures, extended fields, groups), whichever made
the tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery as Celeriac
from celeriac import states
from celeriac.request import Context
from celeriac.result import GroupResult
from tests.support import sql_support

pytestmark = pytest.mark.compat


@pytest.fixture(params=sql_support.KINDS)
def db(request: pytest.FixtureRequest) -> Iterator[sql_support.Database]:
    with sql_support.database(request.param) as database:
        yield database


def _apps(db: sql_support.Database, *, extended: bool = False) -> tuple[Any, Celeriac]:
    import celery

    theirs = celery.Celery("theirs", backend=f"db+{db.url()}", set_as_current=False)
    ours = Celeriac("ours", broker="memory://", backend=f"db+{db.url()}", set_as_current=False)
    for app in (theirs, ours):
        app.conf.result_extended = extended
    return theirs, ours


def _close(theirs: Any, ours: Celeriac) -> None:
    ours.close()
    for engine in theirs.backend.session_manager._engines.values():
        engine.dispose()


@pytest.mark.parametrize("first", ["celery", "celeriac"])
def test_each_side_reads_the_others_values_and_failures(
    db: sql_support.Database, first: str
) -> None:
    theirs, ours = _apps(db)
    try:
        if first == "celeriac":  # Celeriac makes the tables, Celery uses them
            ours.backend.fetch("nothing")
        celery_ok, celery_bad = str(uuid.uuid4()), str(uuid.uuid4())
        theirs.backend.store_result(celery_ok, {"n": [1, 2]}, states.SUCCESS)
        theirs.backend.store_result(celery_bad, KeyError("missing"), states.FAILURE)

        assert ours.AsyncResult(celery_ok).get(timeout=5) == {"n": [1, 2]}
        failed = ours.AsyncResult(celery_bad)
        assert failed.state == states.FAILURE
        assert isinstance(failed.result, KeyError)
        assert failed.date_done is not None

        ours_ok, ours_bad = str(uuid.uuid4()), str(uuid.uuid4())
        ours.results.store(ours_ok, states.SUCCESS, [3, "x"])
        ours.results.store(ours_bad, states.FAILURE, ValueError("bad input"))

        assert theirs.AsyncResult(ours_ok).get(timeout=5) == [3, "x"]
        theirs_view = theirs.AsyncResult(ours_bad)
        assert theirs_view.state == states.FAILURE
        assert isinstance(theirs_view.result, ValueError)
        assert theirs_view.result.args == ("bad input",)
        assert theirs_view.date_done is not None
        # A state stored again replaces the row, on either side.
        ours.results.store(celery_ok, states.SUCCESS, "again")
        assert theirs.AsyncResult(celery_ok).get(timeout=5) == "again"
    finally:
        _close(theirs, ours)


def test_extended_results_and_groups_cross_both_ways(db: sql_support.Database) -> None:
    theirs, ours = _apps(db, extended=True)
    try:
        task_id = str(uuid.uuid4())
        request = Context(
            id=task_id,
            task="proj.add",
            args=[2, 3],
            kwargs={"z": 1},
            hostname="w1@host",
            retries=2,
            delivery_info={"routing_key": "math"},
        )
        ours.results.store(task_id, states.SUCCESS, 5, request=request)
        meta = theirs.backend.get_task_meta(task_id)
        assert (meta["name"], meta["args"], meta["kwargs"]) == ("proj.add", [2, 3], {"z": 1})
        assert (meta["worker"], meta["retries"], meta["queue"]) == ("w1@host", 2, "math")

        ids = [str(uuid.uuid4()) for _ in range(2)]
        for member in ids:
            theirs.backend.store_result(member, member[:4], states.SUCCESS)
        celery_group = theirs.GroupResult(str(uuid.uuid4()), [theirs.AsyncResult(i) for i in ids])
        celery_group.save()
        restored = GroupResult.restore(celery_group.id, app=ours)
        assert restored is not None
        assert [r.id for r in restored.results] == ids
        assert restored.get(timeout=5) == [member[:4] for member in ids]

        ours_group = GroupResult(str(uuid.uuid4()), [ours.AsyncResult(i) for i in ids], app=ours)
        ours_group.save()
        seen = theirs.GroupResult.restore(ours_group.id)
        assert [r.id for r in seen.results] == ids
        assert seen.get(timeout=5) == [member[:4] for member in ids]
    finally:
        _close(theirs, ours)
