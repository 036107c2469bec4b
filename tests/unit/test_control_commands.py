"""``app.control`` commands that change a running worker (in this process, ``memory://``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import signals, states
from celeriac.exceptions import TaskRevokedError
from tests.support.control_support import NODE, Project
from tests.support.polling import eventually


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project()
    yield project
    project.close()


def revoked_signals() -> tuple[list[dict[str, Any]], Any]:
    seen: list[dict[str, Any]] = []

    def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        seen.append({"id": request.id, **kwargs})

    signals.task_revoked.connect(on_revoked)
    return seen, on_revoked


def test_revoke_reaches_a_message_waiting_for_its_rate_limit(project: Project) -> None:
    limited = project.tasks["limited"]
    seen, handler = revoked_signals()
    try:
        with project.worker():
            first, second = limited.delay("first"), limited.delay("second")
            assert first.get(timeout=10) == "first"
            inspect = project.app.control.inspect(destination=NODE, timeout=5)
            eventually(lambda: [r["id"] for r in inspect.reserved()] == [second.id])
            reply = project.app.control.revoke(second.id, destination=[NODE], reply=True)
            assert reply == [{NODE: {"ok": f"tasks {second.id} flagged as revoked"}}]
            assert inspect.reserved() == []
            with pytest.raises(TaskRevokedError):
                second.get(timeout=10)
    finally:
        signals.task_revoked.disconnect(handler)
    assert project.ran == ["first"]
    assert [(s["id"], s["terminated"], s["expired"]) for s in seen] == [(second.id, False, False)]


def test_revoke_takes_back_a_job_queued_in_the_pool(project: Project) -> None:
    hold = project.tasks["hold"]
    with project.worker(fair=False):
        running, queued = hold.delay("a"), hold.delay("b")
        eventually(lambda: project.ran == ["a"])
        project.app.control.revoke(queued.id, destination=[NODE], reply=True)
        project.gate("a").set()
        assert running.get(timeout=10) == "a"
        with pytest.raises(TaskRevokedError):
            queued.get(timeout=10)
        assert project.tasks["add"].delay(1, 1).get(timeout=10) == 2
    assert project.ran == ["a"]


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_terminate_stops_a_running_task_in_a_thread(project: Project, pool: str) -> None:
    hold = project.tasks["hold"]
    with project.worker(pool=pool):
        running = hold.delay("forever")
        eventually(lambda: project.ran == ["forever"])
        reply = project.app.control.terminate(running.id, destination=[NODE], reply=True)
        assert reply == [{NODE: {"ok": f"terminate: {running.id}"}}]
        eventually(lambda: project.app.AsyncResult(running.id).result.args == ("terminated",))
        assert running.state == states.REVOKED
        assert project.tasks["add"].delay(2, 2).get(timeout=10) == 4  # the worker goes on


def test_revoke_by_stamped_headers_replies_as_celery(project: Project) -> None:
    hold = project.tasks["hold"]
    with project.worker(pool="threads"):
        running = hold.s("stamped").stamp(mon="x").apply_async()
        eventually(lambda: project.ran == ["stamped"])
        assert project.ask("revoke_by_stamped_headers", headers={"mon": "y"}) == {
            "ok": "headers {'mon': 'y'} flagged as revoked, but not terminated"
        }
        assert project.ask("revoke_by_stamped_headers", headers={"mon": "z"}, terminate=True) == {
            "ok": "headers {'mon': 'z'} were not terminated"
        }
        assert project.ask("revoke_by_stamped_headers", headers={"mon": "x"}, terminate=True) == {
            "ok": "headers defaultdict(<class 'set'>, {'mon': {'x'}}) revoked"
        }
        eventually(lambda: running.state == states.REVOKED)
        # AsyncResult's method, as Celery's: it revokes by stamp whichever result it is on,
        # in place before the next task is sent.
        running.revoke_by_stamped_headers({"mon": "later"})
        late = hold.s("late").stamp(mon="later").apply_async()
        with pytest.raises(TaskRevokedError):
            late.get(timeout=10)


def test_terminate_cancels_a_coroutine_in_the_asyncio_pool(project: Project) -> None:
    sleeper = project.tasks["sleep_async"]
    with project.worker(pool="asyncio", concurrency=4) as worker:
        running = sleeper.delay(60)
        inspect = project.app.control.inspect(destination=NODE, timeout=5)
        eventually(inspect.active)
        eventually(lambda: worker.pool is not None and worker.pool._coroutines)  # type: ignore[attr-defined]
        project.app.control.revoke(
            running.id, terminate=True, signal="SIGKILL", destination=[NODE], reply=True
        )
        eventually(lambda: project.app.AsyncResult(running.id).result.args == ("terminated",))
        assert isinstance(project.app.AsyncResult(running.id).result, TaskRevokedError)
        assert sleeper.delay(0).get(timeout=10) == "awake"


def test_terminate_of_an_unknown_task_says_so(project: Project) -> None:
    with project.worker():
        assert project.ask("revoke", task_id="nope", terminate=True) == {
            "ok": "terminate: tasks unknown"
        }


def test_a_revoke_from_a_celery_client_marks_the_store_too(project: Project) -> None:
    task_id = "f00d"  # a task nobody has run: PENDING
    with project.worker():
        project.ask("revoke", task_id=[task_id])  # what Celery's client sends; it stores nothing
    assert project.app.AsyncResult(task_id).state == states.REVOKED


def test_rate_limit_changes_the_limit_or_says_what_is_wrong(project: Project) -> None:
    limited = project.tasks["limited"]
    with project.worker():
        first, second = limited.delay("1"), limited.delay("2")
        assert first.get(timeout=10) == "1"
        assert project.ask("rate_limit", task_name="t.limited", rate_limit="") == {
            "ok": "rate limit disabled successfully"
        }
        assert second.get(timeout=10) == "2"  # it was waiting for the hourly token
        assert project.ask("rate_limit", task_name="t.limited", rate_limit="10/m") == {
            "ok": "new rate limit set successfully"
        }
        assert limited.rate_limit == "10/m"
        assert "error" in project.ask("rate_limit", task_name="t.limited", rate_limit="x/y")
        assert project.ask("rate_limit", task_name="t.nope", rate_limit="1/s") == {
            "error": "unknown task"
        }


def test_time_limit_applies_to_the_next_runs(project: Project) -> None:
    slow = project.tasks["slow"]
    with project.worker():
        reply = project.app.control.time_limit(
            "t.slow", soft=0.2, hard=5, reply=True, destination=[NODE]
        )
        assert reply == [{NODE: {"ok": "time limits set successfully"}}]
        assert (slow.soft_time_limit, slow.time_limit) == (0.2, 5.0)
        assert slow.delay(30).get(timeout=10) == "soft limit"


def test_add_and_cancel_consumer(project: Project) -> None:
    add = project.tasks["add"]
    transport = project.app.transport
    with project.worker() as worker:
        early = add.apply_async((1, 1), queue="extra")
        reply = project.app.control.add_consumer("extra", destination=[NODE], reply=True)
        assert reply == [{NODE: {"ok": "add consumer extra"}}]
        assert early.get(timeout=10) == 2
        names = [q["name"] for q in project.app.control.inspect(destination=NODE).active_queues()]
        assert names == ["celery", "extra"]
        assert project.ask("add_consumer", queue="extra") == {"ok": "already consuming from extra"}
        assert project.ask("cancel_consumer", queue="extra") == {
            "ok": "no longer consuming from extra"
        }
        assert [q.name for q in worker.queues] == ["celery"]
        add.apply_async((2, 2), queue="extra")
        assert add.delay(3, 3).get(timeout=10) == 6  # the worker still takes from celery
        assert transport.queue_length("extra") == 1


def test_pool_grow_and_shrink(project: Project) -> None:
    def size() -> int:
        stats = project.app.control.inspect(destination=NODE, timeout=5).stats()
        return int(stats["pool"]["max-concurrency"])

    with project.worker(concurrency=2) as worker:
        assert project.ask("pool_grow", n=2) == {"ok": "pool will grow"}
        assert size() == 4 and worker.consumer is not None and worker.consumer.concurrency == 4
        assert project.ask("pool_shrink", n=3) == {"ok": "pool will shrink"}
        assert size() == 1
        assert "error" in project.ask("pool_shrink", n=1)  # never below one
        assert project.tasks["add"].delay(1, 2).get(timeout=10) == 3
        assert project.ask("autoscale", max=4, min=1) == {
            "error": "ValueError('Autoscale not enabled')"
        }
    with project.worker(pool="solo"):
        assert project.ask("pool_grow", n=1) == {"error": "the solo pool cannot grow"}


def test_shutdown_stops_the_worker(project: Project) -> None:
    with project.worker() as worker:
        assert project.ask("shutdown") == {"ok": "shutting down"}
        eventually(lambda: worker.stopping)


def test_revoke_without_any_worker_is_kept_in_the_result_store(project: Project) -> None:
    record = project.tasks["limited"]
    revoked = record.delay("never")
    revoked.revoke()  # nobody listens: the store carries it
    assert revoked.state == states.REVOKED
    with project.worker():
        record.delay("runs").get(timeout=10)
    assert project.ran == ["runs"] and revoked.state == states.REVOKED
