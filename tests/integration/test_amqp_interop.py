"""Celery 5.7 and Celeriac on one RabbitMQ vhost: compatible declarations in either order, a
Celery client with a Celeriac worker and a Celeriac client with a Celery worker (routing,
countdowns, rpc:// results and remote control included)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery as CeleryApp
from kombu import Exchange as KombuExchange
from kombu import Queue as KombuQueue
from kombu.transport.native_delayed_delivery import (
    declare_native_delayed_delivery_exchanges_and_queues,
)

from celeriac import Celery
from celeriac.backends.rpc import RpcBackend
from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports.base import Outgoing
from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = [pytest.mark.integration, pytest.mark.compat]

ROUTES = {"media.encode": {"queue": "videos"}}


def celery_queues() -> list[KombuQueue]:
    media = KombuExchange("media", "direct")
    return [
        KombuQueue("default", KombuExchange("default"), routing_key="default"),
        KombuQueue("videos", media, routing_key="media.video"),
        KombuQueue("topical", KombuExchange("tasks", "topic"), routing_key="topic.#"),
        KombuQueue("urgent", KombuExchange("urgent"), routing_key="urgent", max_priority=10),
        KombuQueue("replicated", queue_arguments={"x-queue-type": "quorum"}),
    ]


def celeriac_queues() -> list[Queue]:
    media = Exchange("media", "direct")
    return [
        Queue("default", Exchange("default"), routing_key="default"),
        Queue("videos", media, routing_key="media.video"),
        Queue("topical", Exchange("tasks", "topic"), routing_key="topic.#"),
        Queue("urgent", Exchange("urgent"), routing_key="urgent", max_priority=10),
        Queue("replicated", queue_arguments={"x-queue-type": "quorum"}),
    ]


def celery_client(vhost: str) -> CeleryApp:
    app = CeleryApp("client", broker=amqp_support.url(vhost), backend="rpc://")
    app.conf.update(task_queues=celery_queues(), task_default_queue="default", task_routes=ROUTES)
    return app


def celeriac_client(vhost: str) -> Celery:
    app = Celery("client", broker=amqp_support.url(vhost), backend="rpc://")
    app.conf.update(task_queues=celeriac_queues(), task_default_queue="default", task_routes=ROUTES)
    return app


def declare_as_celery(app: CeleryApp) -> str:
    """Everything a Celery 5.7 client and worker declare for these settings; the oid queue."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
        app.backend.binding(channel).declare()
        declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
    return str(app.backend.oid)


def declare_as_celeriac(app: Celery, reply_queue: str) -> None:
    for queue in celeriac_queues():
        app.transport.declare(queue)
    backend = app.backend
    assert isinstance(backend, RpcBackend)
    backend.reply_to = reply_queue
    assert backend.reply_to == reply_queue  # reading it declares it
    # A delayed message makes the transport declare the 28 delay levels (quorum, as Celery).
    later = Message(b"[]", "application/json", "utf-8")
    app.transport.publish([Outgoing(later, routing_key="default", not_before=time.time() + 60)])


@pytest.mark.parametrize("celery_first", [True, False], ids=["celery-first", "celeriac-first"])
def test_both_declare_the_same_entities_without_conflict(celery_first: bool) -> None:
    with amqp_support.vhost() as vhost:
        celery, celeriac = celery_client(vhost), celeriac_client(vhost)
        try:
            oid = str(celery.backend.oid)
            if celery_first:
                declare_as_celery(celery)
                declare_as_celeriac(celeriac, oid)
            else:
                declare_as_celeriac(celeriac, oid)
                declare_as_celery(celery)  # raises PRECONDITION_FAILED on any difference
        finally:
            celeriac.close()
            celery.close()


SETTINGS = {
    "priorities": {"task_queue_max_priority": 10},
    "quorum": {"task_default_queue_type": "quorum", "task_create_missing_queue_type": "quorum"},
}


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_queues_made_from_settings_are_declared_alike(kind: str) -> None:
    """The default queue and a missing queue, under the settings that shape them, declared
    by Celery 5.7 and by Celeriac in either order (a difference: PRECONDITION_FAILED)."""
    settings = {"task_default_queue": "default", **SETTINGS[kind]}
    with amqp_support.vhost() as vhost:
        celery = CeleryApp("client", broker=amqp_support.url(vhost), **settings)
        celeriac = Celery("client", broker=amqp_support.url(vhost), **settings)
        try:
            with celery.connection_for_write() as connection:
                channel = connection.default_channel
                for name in ("default", "extra"):
                    celery.amqp.queues[name](channel).declare()
            for name in ("default", "extra"):
                celeriac.transport.declare(celeriac.router.queue(name))
            for name in ("another", "other"):  # Celeriac first this time
                celeriac.transport.declare(celeriac.router.queue(name))
            with celery.connection_for_write() as connection:
                for name in ("another", "other"):
                    celery.amqp.queues[name](connection.default_channel).declare()
            rows = amqp_support.list_queues(vhost, "name", "arguments")
            arguments = {name: args for name, args in rows}
            wanted = "x-max-priority" if kind == "priorities" else "quorum"
            assert all(wanted in arguments[q] for q in ("default", "extra", "another", "other"))
        finally:
            celeriac.close()
            celery.close()


CELERIAC_WORKER = """
from celeriac import Celery
from celeriac.routing import Exchange, Queue

app = Celery("tasks", broker="{broker}", backend="rpc://")
app.conf.task_queues = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", Exchange("media", "direct"), routing_key="media.video"),
)
app.conf.task_default_queue = "default"


@app.task(name="media.encode")
def encode(name):
    return "encoded " + name


@app.task(name="plain.add")
def add(x, y):
    return x + y
"""

CELERY_WORKER = """
from celery import Celery
from kombu import Exchange, Queue

app = Celery("tasks", broker="{broker}", backend="rpc://")
app.conf.task_queues = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", Exchange("media", "direct"), routing_key="media.video"),
)
app.conf.task_default_queue = "default"


@app.task(name="media.encode")
def encode(name):
    return "encoded " + name


@app.task(name="plain.add")
def add(x, y):
    return x + y
"""


def test_a_celery_client_uses_a_celeriac_worker(vhost: str, tmp_path: Path) -> None:
    project = WorkerProject(tmp_path, CELERIAC_WORKER.format(broker=amqp_support.url(vhost)))
    client = celery_client(vhost)
    try:
        project.start_worker("-c", "2")  # no -Q: every queue of task_queues, as Celery
        routed = client.send_task("media.encode", args=["cat.mp4"])  # to queue videos
        plain = client.send_task("plain.add", args=[2, 3])
        started = time.monotonic()
        later = client.send_task("plain.add", args=[1, 1], countdown=2)
        assert routed.get(timeout=20) == "encoded cat.mp4"
        assert plain.get(timeout=20) == 5
        assert later.get(timeout=20) == 2
        assert time.monotonic() - started >= 1.9  # run at its ETA, not before
        log = project.log("w1")
        assert "media.encode" in log and "plain.add" in log
        # Remote control: Celery's pidbox request, answered by the Celeriac worker.
        assert client.control.ping(timeout=1.0) == [{next(iter(_nodes(log))): {"ok": "pong"}}]
    finally:
        close_celery(client)
        project.stop_all()


def close_celery(app: CeleryApp) -> None:
    """Close what a Celery client opened (app.close() leaves the rpc result consumer's)."""
    consumer = app.backend.result_consumer
    if consumer._consumer is not None:
        consumer.stop()
    app.close()


def test_a_celeriac_client_uses_a_celery_worker(vhost: str, tmp_path: Path) -> None:
    project = WorkerProject(tmp_path, CELERY_WORKER.format(broker=amqp_support.url(vhost)))
    client = celeriac_client(vhost)
    try:
        project.start_celery_worker("-Q", "default,videos")
        routed = client.send_task("media.encode", args=["dog.mp4"])
        plain = client.send_task("plain.add", args=[20, 22])
        started = time.monotonic()
        later = client.send_task("plain.add", args=[1, 2], countdown=2)
        assert routed.get(timeout=20) == "encoded dog.mp4"
        assert plain.get(timeout=20) == 42
        assert later.get(timeout=20) == 3
        assert time.monotonic() - started >= 1.9
        assert "media.encode" in project.log("celery")
        replies = client.control.inspect(timeout=1.0).registered()
        assert list(replies.values()) == [["media.encode", "plain.add"]]
    finally:
        client.close()
        project.stop_all()


def _nodes(log: str) -> list[str]:
    """Node names a worker log announces as ready."""
    return [
        line.split("] ")[-1].removesuffix(" ready.")
        for line in log.splitlines()
        if " ready." in line
    ]
