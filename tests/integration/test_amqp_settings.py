"""Celery's settings take effect on RabbitMQ: priorities, the delay queues' type, heartbeats
and the login method reach the AMQP transport; a worker consumes every queue of
``task_queues`` but those excluded with ``-X``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.protocol.message import Message
from celeriac.transports.base import Outgoing
from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration


@pytest.fixture
def vhost() -> Iterator[str]:
    with amqp_support.vhost() as name:
        yield name


def test_broker_settings_reach_rabbitmq(vhost: str) -> None:
    app = Celery(
        "settings",
        broker=amqp_support.url(vhost),
        set_as_current=False,
        task_queue_max_priority=10,
        broker_native_delayed_delivery_queue_type="classic",
        broker_heartbeat=30,
        broker_login_method="AMQPLAIN",
    )
    try:
        app.send_task("any.task", countdown=600)  # queue celery, and the delay levels
        raw = Message(b"[]", "application/json", "utf-8")
        app.transport.publish([Outgoing(raw, routing_key="raw")])  # a queue nobody declared
        consumer = app.transport.consumer(["celery"], owner="test")
        try:
            consumer.fetch(1, 0.5)  # the consuming connection is open
            connections = amqp_support.rabbitmqctl(
                "list_connections",
                "--silent",
                "--no-table-headers",
                "vhost",
                "auth_mechanism",
                "timeout",
            )
        finally:
            consumer.close()
        queues = {
            name: (kind, arguments)
            for name, kind, arguments in amqp_support.list_queues(
                vhost, "name", "type", "arguments"
            )
        }
    finally:
        app.close()
    assert "x-max-priority" in queues["celery"][1] and "10" in queues["celery"][1]
    assert "x-max-priority" in queues["raw"][1] and "10" in queues["raw"][1]
    delay_levels = [
        kind for name, (kind, _) in queues.items() if name.startswith("celery_delayed_")
    ]
    assert delay_levels and set(delay_levels) == {"classic"}
    ours = [line.split("\t")[1:] for line in connections.splitlines() if line.startswith(vhost)]
    assert ours and {mechanism for mechanism, _ in ours} == {"AMQPLAIN"}
    assert "30" in {timeout for _, timeout in ours}  # the consuming connection's heartbeat


QUEUE_TASKS = """
from celeriac import Celery, Queue

app = Celery("tasks", broker="{broker}", backend="rpc://")
app.conf.task_queues = (Queue("alpha"), Queue("beta"), Queue("gamma"))
app.conf.task_default_queue = "alpha"


@app.task
def where(name):
    return name
"""


def test_a_worker_consumes_every_defined_queue_but_the_excluded(vhost: str, tmp_path: Path) -> None:
    project = WorkerProject(tmp_path, QUEUE_TASKS.format(broker=amqp_support.url(vhost)))
    try:
        tasks = project.load_tasks()
        project.start_worker("-X", "gamma", "-P", "threads", "-c", "2")
        results = {q: tasks.where.apply_async((q,), queue=q) for q in ("alpha", "beta", "gamma")}
        assert results["alpha"].get(timeout=20) == "alpha"
        assert results["beta"].get(timeout=20) == "beta"
        # gamma's message waits: nobody consumes that queue.
        assert tasks.app.transport.queue_length("gamma") == 1
        assert not results["gamma"].ready()
        banner = _banner_queues(project.log("w1"))
        assert "alpha" in banner and "beta" in banner and "gamma" not in banner
    finally:
        project.stop_all()


def _banner_queues(log: str) -> str:
    """The queue lines of the worker's banner (``.> name exchange=... key=...``)."""
    return "\n".join(line for line in log.splitlines() if "exchange=" in line)
