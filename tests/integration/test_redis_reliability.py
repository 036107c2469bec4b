"""What the Redis broker guarantees beyond Celery: leases, dead letters, surviving a restart."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import pytest

from celeriac.transports import create_transport
from tests.support import redis_support
from tests.support.redis_project import (  # noqa: F401
    RedisProject,
    open_project,
    redis_project_fixture,
    rtasks_fixture,
)

pytestmark = pytest.mark.integration


def _wait_all(app: Any, ids: list[str], timeout: float) -> dict[str, Any]:
    found = app.results.backend.wait_for(ids, app.results.is_ready_payload, timeout=timeout)
    return {tid: app.results.decode(payload) for tid, payload in found.items()}


def test_kill9_redelivers_within_seconds(redis_project: RedisProject, rtasks: Any) -> None:
    victim = redis_project.celeriac_worker(
        "-P", "prefork", "-c", "2", name="victim", TEST_LEASE="1"
    )
    ids = [rtasks.record_late.delay(0.2).id for _ in range(12)]
    redis_project.wait_for_runs(3)
    redis_project.kill9(victim)  # tasks running, more prefetched: all leased, none acked
    killed_at = time.monotonic()
    redis_project.celeriac_worker("-P", "prefork", "-c", "2", name="rescuer", TEST_LEASE="1")
    # The rescuer gets the victim's messages back once their 1 s leases lapse, not after
    # Celery's one-hour visibility timeout.
    metas = _wait_all(rtasks.app, ids, timeout=15)
    assert time.monotonic() - killed_at < 15
    assert {meta["status"] for meta in metas.values()} == {"SUCCESS"}
    assert {task_id for task_id, _ in redis_project.runs()} == set(ids)


def test_long_task_is_never_redelivered(redis_project: RedisProject, rtasks: Any) -> None:
    redis_project.celeriac_worker("-P", "prefork", "-c", "1", name="w1", TEST_LEASE="0.6")
    redis_project.celeriac_worker("-P", "prefork", "-c", "1", name="w2", TEST_LEASE="0.6")
    long_task = rtasks.record_late.delay(3.0)  # five lease periods, renewed all along
    assert long_task.get(timeout=20) == long_task.id
    assert [task_id for task_id, _ in redis_project.runs()] == [long_task.id]


def test_eta_waits_in_redis_not_in_the_worker(redis_project: RedisProject, rtasks: Any) -> None:
    later = rtasks.record.apply_async(countdown=3)
    conn = redis_support.client(redis_project.db)
    try:
        delayed = f"{redis_project.prefix}_celeriac.delayed.celery"
        assert conn.llen(f"{redis_project.prefix}celery") == 1  # on the list, as Celery's
        redis_project.celeriac_worker("-P", "prefork", "-c", "2", TEST_LEASE="0.6")
        deadline = time.monotonic() + 20
        while conn.zcard(delayed) == 0 and not later.ready():  # the worker gave it back
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert later.get(timeout=20) == later.id
        assert conn.zcard(delayed) == 0
    finally:
        conn.close()
    assert len(redis_project.runs()) == 1  # several lease periods passed: no duplicate


def test_poison_message_is_dead_lettered_after_max_deliveries(
    redis_project: RedisProject, rtasks: Any
) -> None:
    poison = rtasks.crash.delay()
    fine = rtasks.add.delay(1, 1)
    env = {"TEST_LEASE": "0.5", "TEST_MAX_DELIVERIES": "2"}
    for attempt in range(2):  # each delivery kills the worker running it, maybe before "ready."
        worker = redis_project.celeriac_worker("-P", "solo", name=f"w{attempt}", ready=None, **env)
        worker.wait(timeout=20)
    redis_project.celeriac_worker("-P", "solo", name="survivor", **env)
    assert fine.get(timeout=20) == 2
    transport = rtasks.app.transport
    deadline = time.monotonic() + 10
    while not transport.dead_letters("celery") and time.monotonic() < deadline:
        time.sleep(0.05)
    [dead] = transport.dead_letters("celery")
    assert dead.message.headers["id"] == poison.id
    assert "delivered 2 times without being acknowledged" in dead.reason
    assert [task_id for task_id, _ in redis_project.runs()] == [poison.id, poison.id]


def test_several_queues_purge_and_lengths(redis_project: RedisProject, rtasks: Any) -> None:
    first = [rtasks.record.apply_async(queue=q).id for q in ("alpha", "beta", "beta")]
    transport = rtasks.app.transport
    assert (transport.queue_length("alpha"), transport.queue_length("beta")) == (1, 2)
    purged = redis_project.celeriac("purge", "-f", "-Q", "beta")
    assert purged.returncode == 0, purged.stderr
    assert transport.queue_length("beta") == 0
    ids = [rtasks.record.apply_async(queue=q).id for q in ("alpha", "beta", "gamma")]
    redis_project.celeriac_worker("-P", "solo", "-Q", "alpha,beta")
    redis_project.wait_for_runs(3)
    assert {task_id for task_id, _ in redis_project.runs()} == {first[0], ids[0], ids[1]}
    assert transport.queue_length("gamma") == 1


def test_workers_and_clients_survive_a_redis_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_support.RedisServer(tmp_path, appendonly=True) as server:
        root = tmp_path / "project"
        root.mkdir()
        with open_project(root, monkeypatch, server.url, 0, server.port) as project:
            import rtasks as tasks

            project.celeriac_worker("-P", "prefork", "-c", "2", TEST_LEASE="2")
            ids = [tasks.record_late.delay(0.05).id for _ in range(80)]
            project.wait_for_runs(20)
            server.restart(down_for=1.0)  # connections drop; clients and workers reconnect
            ids += [tasks.record_late.delay(0.05).id for _ in range(40)]
            metas = _wait_all(tasks.app, ids, timeout=60)
            assert {meta["status"] for meta in metas.values()} == {"SUCCESS"}
            counts = collections.Counter(task_id for task_id, _ in project.runs())
            assert set(counts) == set(ids)  # none lost (a redelivery may run one twice)
            assert "ready." in project.log("w1")


def test_transport_reports_an_unreachable_redis(tmp_path: Path) -> None:
    port = redis_support.free_port()
    options = {"broker_connection_max_retries": 2, "interval_step": 0.01}
    transport = create_transport(f"redis://:s3cret@127.0.0.1:{port}/0", options=options)
    try:
        from celeriac.exceptions import TransportError

        with pytest.raises(TransportError) as raised:
            transport.queue_length("celery")
        assert "s3cret" not in str(raised.value)
        assert f"127.0.0.1:{port}" in str(raised.value)
    finally:
        transport.close()
