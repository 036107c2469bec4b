"""The rpc:// result backend: results as messages to the client's reply queue (Celery's layout),
tested through the backend itself and through a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import amqp  # type: ignore[import-untyped]
import pytest

from celeriac import Celery, chain
from celeriac.backends import create_backend
from celeriac.backends.rpc import RpcBackend
from celeriac.exceptions import BackendStoreError, ImproperlyConfigured, TimeoutError
from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration


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
            "t",
            "application/json",
            2,
        )
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
    with pytest.raises(NotImplementedError, match="lacks the 'groups' capability"):
        backend.save_group("g", b"{}", ttl=None)
    with pytest.raises(NotImplementedError, match="lacks the 'counters' capability"):
        backend.incr("chord-counter", ttl=None)
    with pytest.raises(NotImplementedError, match="lacks the 'chords' capability"):
        backend.ensure_chords_allowed()
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
from celeriac import Celery, chain

app = Celery("tasks", broker="{broker}", backend="rpc://")


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise KeyError("missing")


@app.task(bind=True, max_retries=2, default_retry_delay=0)
def flaky(self):
    if self.request.retries < 2:
        raise self.retry()
    return "retried " + str(self.request.retries)
"""


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_plain_app_gets_results_from_a_worker(vhost: str, tmp_path: Path, pool: str) -> None:
    """``Celery(broker='amqp://...', backend='rpc://')``, nothing else: ``delay().get()``."""
    project = WorkerProject(tmp_path, WORKER_TASKS.format(broker=amqp_support.url(vhost)))
    try:
        tasks = project.load_tasks()
        project.start_worker("-P", pool, "-c", "2")  # each process sends results on its own
        results = [tasks.add.delay(i, i) for i in range(10)]
        failed = tasks.fail.delay()
        retried = tasks.flaky.delay()  # the retry is sent by the worker: same reply queue
        assert [r.get(timeout=20) for r in results] == [2 * i for i in range(10)]
        with pytest.raises(KeyError, match="missing"):
            failed.get(timeout=20)
        assert retried.get(timeout=20) == "retried 2"
        # The last step of a chain is sent by the worker, to this client's queue too.
        assert chain(tasks.add.s(1, 1), tasks.add.s(3)).delay().get(timeout=20) == 5
        # The message named the client's reply queue, as Celery's client does.
        backend = tasks.app.backend
        assert isinstance(backend, RpcBackend)
        sent = tasks.add.apply_async((1, 2))
        assert sent.get(timeout=20) == 3
        assert tasks.app.producer.reply_to() == backend.reply_to
    finally:
        project.stop_all()


def test_the_app_hands_the_rpc_backend_its_settings(vhost: str) -> None:
    broker = amqp_support.url(vhost)
    app = Celery(
        "settings",
        broker=broker,
        backend="rpc://",
        set_as_current=False,
        result_persistent=True,
        result_expires=120,
        result_serializer="json",
        broker_connection_timeout=3,
    )
    connection = amqp.Connection(f"127.0.0.1:{amqp_support.PORT}", virtual_host=vhost)
    connection.connect()
    try:
        backend = app.backend
        assert isinstance(backend, RpcBackend)
        # Its reply queue expires after result_expires, as Celery declares it.
        connection.channel().queue_declare(
            backend.reply_to, durable=True, auto_delete=True, arguments={"x-expires": 120000}
        )
        channel = connection.channel()
        channel.queue_declare("mine", auto_delete=True)
        backend.store("t", meta("t", "SUCCESS", 1), state="SUCCESS", ttl=None, reply_to="mine")
        got = channel.basic_get("mine", no_ack=True)
        assert got.properties["delivery_mode"] == 2  # result_persistent
    finally:
        connection.close()
        app.close()


def test_explicit_backend_transport_options_win(vhost: str) -> None:
    app = Celery(
        "explicit",
        broker="amqp://guest:guest@127.0.0.1:1//",
        backend="rpc://",
        set_as_current=False,
    )
    app.conf.result_backend_transport_options = {"broker_url": amqp_support.url(vhost)}
    try:
        backend = app.backend
        assert isinstance(backend, RpcBackend)
        assert backend.reply_to  # declared on the broker the options name
    finally:
        app.close()
