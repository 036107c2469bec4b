"""The rpc:// result backend: results as messages to the client's reply queue (Celery's layout),
tested through the backend itself and through a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import amqp  # type: ignore[import-untyped]
import pytest

from celeriac.backends import create_backend
from celeriac.backends.rpc import RpcBackend
from celeriac.exceptions import BackendStoreError, ImproperlyConfigured, TimeoutError
from tests import amqp_support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with amqp_support.vhost() as name:
        yield name


@pytest.fixture
def backends(vhost: str) -> Iterator[list[RpcBackend]]:
    """Backends made by ``make()``-style calls; all closed after the test."""
    made: list[RpcBackend] = []
    yield made
    for backend in made:
        backend.close()


def rpc(vhost: str, made: list[RpcBackend], **options: object) -> RpcBackend:
    backend = create_backend("rpc://", options={"broker_url": amqp_support.url(vhost), **options})
    assert isinstance(backend, RpcBackend)
    made.append(backend)
    return backend


def meta(task_id: str, status: str, result: object) -> bytes:
    return json.dumps({"status": status, "result": result, "task_id": task_id}).encode()


def is_ready(payload: bytes) -> bool:
    return json.loads(payload)["status"] in ("SUCCESS", "FAILURE", "REVOKED")


def test_results_reach_the_client_that_named_its_queue(
    vhost: str, backends: list[RpcBackend]
) -> None:
    client, worker = rpc(vhost, backends), rpc(vhost, backends)
    reply_to = client.reply_to  # declared now, before any task is sent
    worker.store("t1", meta("t1", "STARTED", None), state="STARTED", ttl=None, reply_to=reply_to)
    worker.store("t2", meta("t2", "SUCCESS", 2), state="SUCCESS", ttl=None, reply_to=reply_to)
    worker.store("t1", meta("t1", "SUCCESS", 1), state="SUCCESS", ttl=None, reply_to=reply_to)
    found = client.wait_for(["t1", "t2"], is_ready, timeout=10)
    assert {tid: json.loads(p)["result"] for tid, p in found.items()} == {"t1": 1, "t2": 2}
    assert client.fetch("t1") == meta("t1", "SUCCESS", 1)  # the latest state is kept
    assert worker.fetch("t1") is None  # one-shot: only the named client receives it
    client.forget("t1")
    assert client.fetch_many(["t1", "t2"]) == {"t2": meta("t2", "SUCCESS", 2)}


def test_a_result_with_no_reply_queue_goes_nowhere(vhost: str, backends: list[RpcBackend]) -> None:
    worker = rpc(vhost, backends)
    worker.store("t", meta("t", "SUCCESS", 1), state="SUCCESS", ttl=None)  # no error either
    with pytest.raises(TimeoutError):
        worker.wait_for(["t"], is_ready, timeout=0.2)


def test_results_are_messages_as_celery_sends_them(vhost: str, backends: list[RpcBackend]) -> None:
    worker = rpc(vhost, backends, result_persistent=True)
    connection = amqp.Connection(f"127.0.0.1:{amqp_support.PORT}", virtual_host=vhost)
    connection.connect()
    try:
        channel = connection.channel()
        channel.auto_decode = False
        # Celery 5.7's oid queue: default exchange, durable, auto-delete, x-expires = 1 day.
        channel.queue_declare(
            "oid", durable=True, auto_delete=True, arguments={"x-expires": 86400000}
        )
        worker.store("t", meta("t", "SUCCESS", 4), state="SUCCESS", ttl=None, reply_to="oid")
        got = channel.basic_get("oid", no_ack=True)
        assert got.body == meta("t", "SUCCESS", 4)
        props = got.properties
        assert (props["correlation_id"], props["content_type"], props["delivery_mode"]) == (
            "t", "application/json", 2,
        )  # fmt: skip
        assert got.delivery_info["exchange"] == ""
    finally:
        connection.close()


def test_the_reply_queue_is_declared_as_celery_declares_it(
    vhost: str, backends: list[RpcBackend]
) -> None:
    client = rpc(vhost, backends, result_expires=3600)
    connection = amqp.Connection(f"127.0.0.1:{amqp_support.PORT}", virtual_host=vhost)
    connection.connect()
    try:
        channel = connection.channel()
        # The same flags and arguments: accepted (a difference would be PRECONDITION_FAILED).
        channel.queue_declare(
            client.reply_to, durable=True, auto_delete=True, arguments={"x-expires": 3600000}
        )
    finally:
        connection.close()


def test_groups_and_chords_are_refused_with_a_reason(
    vhost: str, backends: list[RpcBackend]
) -> None:
    backend = rpc(vhost, backends)
    with pytest.raises(NotImplementedError, match="no group results"):
        backend.save_group("g", b"{}", ttl=None)
    with pytest.raises(NotImplementedError, match="chords"):
        backend.incr("chord-counter", ttl=None)
    assert backend.cleanup() == 0


def test_rpc_needs_an_amqp_broker() -> None:
    with pytest.raises(ImproperlyConfigured, match="broker_url"):
        create_backend("rpc://", options={"broker_url": "redis://localhost:6379/0"})
    with pytest.raises(ImproperlyConfigured, match="broker_url"):
        create_backend("rpc://")


def test_storing_without_a_broker_raises_a_backend_error() -> None:
    backend = create_backend(
        "rpc://guest:guest@127.0.0.1:1//", options={"broker_connection_timeout": 0.5}
    )
    try:
        with pytest.raises(BackendStoreError, match="could not send the result"):
            backend.store("t", b"{}", state="SUCCESS", ttl=None, reply_to="somewhere")
    finally:
        backend.close()


WORKER_TASKS = """
import os

from celeriac import Celery
from celeriac.backends import _IMPLEMENTATIONS
from celeriac.backends.rpc import RpcBackend
from celeriac.request import current_request


class ReplyingRpc(RpcBackend):
    # Stands in for the app passing reply_to=request.reply_to to store() (not wired yet).
    def store(self, task_id, payload, *, state, ttl, reply_to=None):
        request = current_request()
        reply_to = reply_to or (request.reply_to if request is not None else None)
        super().store(task_id, payload, state=state, ttl=ttl, reply_to=reply_to)


if os.environ.get("CELERIAC_TEST_WORKER"):  # in the worker's processes only
    _IMPLEMENTATIONS["rpc"] = ("tasks", "ReplyingRpc")
app = Celery("tasks", broker="{broker}", backend="rpc://")
app.conf.result_backend_transport_options = {{"broker_url": "{broker}"}}


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise KeyError("missing")
"""


def test_a_worker_sends_results_back_to_the_caller(vhost: str, tmp_path: Path) -> None:
    project = amqp_support.WorkerProject(
        tmp_path, WORKER_TASKS.format(broker=amqp_support.url(vhost))
    )
    try:
        tasks = project.load_tasks()
        project.start_worker("-c", "2")  # prefork: each child sends results on its own
        reply_to = tasks.app.backend.reply_to  # until the producer uses backend.reply_to itself
        results = [tasks.add.apply_async((i, i), reply_to=reply_to) for i in range(10)]
        failed = tasks.fail.apply_async(reply_to=reply_to)
        assert [r.get(timeout=20) for r in results] == [2 * i for i in range(10)]
        with pytest.raises(KeyError, match="missing"):
            failed.get(timeout=20)
    finally:
        project.stop_all()
