"""``app.backend``'s Celery-named methods (``store_result``, ``get_task_meta``, ``get_state``,
``get_result``), Celery 5.7 and Celeriac side by side: code written for Celery (and Celery's
own suite) writes and reads task states through them."""

from __future__ import annotations

import uuid
from typing import Any

import celery
import pytest

import celeriac

pytestmark = [pytest.mark.compat]


def _apps() -> tuple[Any, Any]:
    theirs = celery.Celery("methods", broker="memory://", backend="cache+memory://")
    ours = celeriac.Celery(
        "methods",
        broker=f"memory://{uuid.uuid4().hex}",
        backend=f"memory://{uuid.uuid4().hex}",
        set_as_current=False,
    )
    return theirs, ours


def test_store_result_then_read_it_back_as_celery_does() -> None:
    for app in _apps():
        try:
            backend = app.backend
            done, failed, started = (str(uuid.uuid4()) for _ in range(3))
            assert backend.store_result(done, {"answer": 42}, "SUCCESS") == {"answer": 42}
            backend.store_result(failed, KeyError("x"), "FAILURE", traceback="tb")
            backend.store_result(started, {"pid": 1}, "STARTED")
            meta = backend.get_task_meta(done)
            assert (meta["status"], meta["result"], meta["task_id"]) == (
                "SUCCESS",
                {"answer": 42},
                done,
            )
            assert backend.get_state(failed) == backend.get_status(failed) == "FAILURE"
            error = backend.get_result(failed)
            assert isinstance(error, KeyError) and error.args == ("x",)
            assert backend.get_task_meta(failed)["traceback"] == "tb"
            assert backend.get_state(started) == "STARTED"
            assert app.AsyncResult(done).get(timeout=5) == {"answer": 42}
            assert backend.get_state(str(uuid.uuid4())) == "PENDING"
        finally:
            app.close()
