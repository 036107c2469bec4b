"""Routing on RabbitMQ: Celery's routing tutorial (direct, topic, fanout exchanges), task_routes,
apply_async(queue=, exchange=, routing_key=), missing queues, priorities and quorum queues."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports.base import Outgoing
from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

MEDIA = Exchange("media", "direct")
TOPICS = Exchange("tasks", "topic")
EVERYONE = Exchange("broadcast_tasks", "fanout")
TUTORIAL_QUEUES = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", MEDIA, routing_key="media.video"),
    Queue("images", MEDIA, routing_key="media.image"),
    Queue("topical", TOPICS, routing_key="topic.#"),
    Queue("everyone_a", EVERYONE),
    Queue("everyone_b", EVERYONE),
)


@pytest.fixture
def app(vhost: str) -> Iterator[Celery]:
    app = Celery("routing", broker=amqp_support.url(vhost), backend="memory://")
    app.conf.task_queues = TUTORIAL_QUEUES
    app.conf.task_default_queue = "default"
    app.conf.task_default_exchange = "default"
    app.conf.task_default_routing_key = "default"
    app.conf.task_routes = {
        "media.encode": {"queue": "videos"},
        "media.resize": {"queue": "images"},
        "feeds.*": {"exchange": "tasks", "routing_key": "topic.feeds"},
    }
    for queue in TUTORIAL_QUEUES:  # what the workers of each queue do when they start
        app.transport.declare(queue)
    yield app
    for queue in TUTORIAL_QUEUES:
        app.transport.purge(queue.name)
    app.close()


def waiting(app: Celery) -> dict[str, list[str]]:
    """Task names waiting in every tutorial queue (taken and given back)."""
    found: dict[str, list[str]] = {}
    for queue in TUTORIAL_QUEUES:
        consumer = app.transport.consumer([queue.name], owner="inspector")
        try:
            found[queue.name] = sorted(d.message.headers["task"] for d in consumer.fetch(50, 0))
        finally:
            consumer.close()
    return {name: tasks for name, tasks in found.items() if tasks}


def test_the_routing_tutorial_sends_each_task_where_it_belongs(app: Celery) -> None:
    app.send_task("media.encode")  # task_routes: queue videos (direct exchange media)
    app.send_task("media.resize")  # task_routes: queue images
    app.send_task("feeds.refresh")  # task_routes: topic exchange, key topic.feeds
    app.send_task("plain.job")  # no route: task_default_queue
    app.send_task("explicit.video", exchange="media", routing_key="media.video")
    app.send_task("explicit.image", queue="images")
    app.send_task("broadcast.me", queue="everyone_a")  # fanout: every bound queue gets one
    assert waiting(app) == {
        "default": ["plain.job"],
        "videos": ["explicit.video", "media.encode"],
        "images": ["explicit.image", "media.resize"],
        "topical": ["feeds.refresh"],
        "everyone_a": ["broadcast.me"],
        "everyone_b": ["broadcast.me"],
    }


def test_the_default_queue_follows_the_default_exchange_settings(vhost: str) -> None:
    app = Celery("defaults", broker=amqp_support.url(vhost), backend="memory://")
    app.conf.update(
        task_default_queue="jobs",
        task_default_exchange="jobs_topic",
        task_default_exchange_type="topic",
        task_default_routing_key="jobs.default",
    )
    try:
        app.send_task("anything")
        consumer = app.transport.consumer(["jobs"], owner="w1")
        [delivery] = consumer.fetch(1, 0)
        consumer.close()
        assert (delivery.exchange, delivery.routing_key) == ("jobs_topic", "jobs.default")
    finally:
        app.transport.purge("jobs")
        app.close()


def test_direct_queues_are_published_through_the_default_exchange(app: Celery) -> None:
    app.send_task("media.encode")
    consumer = app.transport.consumer(["videos"], owner="w1")
    [delivery] = consumer.fetch(1, 0)
    consumer.close()
    # As Celery: exchange "" and routing key = queue name for queues of direct exchanges.
    assert (delivery.exchange, delivery.routing_key) == ("", "videos")


def test_missing_queues_are_created_unless_forbidden(app: Celery) -> None:
    app.send_task("anything", queue="made.on.demand")
    assert app.transport.queue_length("made.on.demand") == 1
    app.transport.purge("made.on.demand")
    app.conf.task_create_missing_queues = False
    with pytest.raises(KeyError, match=r"never\.declared"):
        app.send_task("anything", queue="never.declared")


def test_a_worker_consumes_the_queues_it_is_given(vhost: str, tmp_path: Path) -> None:
    source = WORKER_TASKS.format(broker=amqp_support.url(vhost), results=tmp_path / "r.sqlite")
    project = WorkerProject(tmp_path, source)
    try:
        client = project.load_tasks().app
        project.start_worker("-Q", "videos,topical", "-P", "threads", "-c", "2")
        video = client.send_task("media.encode", args=["cat.mp4"])
        feed = client.send_task("feeds.refresh", args=["news"])
        assert video.get(timeout=20) == "encoded cat.mp4"
        assert feed.get(timeout=20) == "refreshed news"
    finally:
        project.stop_all()


WORKER_TASKS = """
from celeriac import Celery
from celeriac.routing import Exchange, Queue

app = Celery("tasks", broker="{broker}", backend="sqlite:///{results}")
media = Exchange("media", "direct")
app.conf.task_queues = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", media, routing_key="media.video"),
    Queue("topical", Exchange("tasks", "topic"), routing_key="topic.#"),
)
app.conf.task_default_queue = "default"
app.conf.task_routes = {{
    "media.encode": {{"queue": "videos"}},
    "feeds.*": {{"exchange": "tasks", "routing_key": "topic.feeds"}},
}}


@app.task(name="media.encode")
def encode(name):
    return f"encoded {{name}}"


@app.task(name="feeds.refresh")
def refresh(name):
    return f"refreshed {{name}}"
"""


def test_priorities_need_max_priority_and_then_highest_goes_first(app: Celery) -> None:
    queue = Queue("urgent", Exchange("urgent"), routing_key="urgent", max_priority=10)
    app.transport.declare(queue)
    for name, priority in [("low", 0), ("high", 9), ("mid", 5), ("high2", 9)]:
        app.send_task(name, queue=queue, priority=priority)
    consumer = app.transport.consumer(["urgent"], owner="w1")
    try:
        got = [d.message.headers["task"] for d in consumer.fetch(10, 0)]
    finally:
        consumer.close()
        app.transport.purge("urgent")
    assert got == ["high", "high2", "mid", "low"]


def test_quorum_queues_are_declared_and_consumed(app: Celery) -> None:
    queue = Queue("replicated", queue_arguments={"x-queue-type": "quorum"})
    app.transport.declare(queue)
    app.transport.declare(queue)  # the same declaration again is accepted
    app.send_task("q.job", queue=queue)
    consumer = app.transport.consumer(["replicated"], owner="w1")
    try:
        [delivery] = consumer.fetch(1, 0)
        consumer.reject(delivery, requeue=True)  # a give-back: not counted
        # Quorum queues hand messages over asynchronously (Raft): wait for it, don't poll.
        [again] = consumer.fetch(1, 5)
        assert (again.redelivered, again.delivery_count) == (True, 1)
        consumer.reject(again, requeue=True, failed=True)  # its worker died: counted
        [third] = consumer.fetch(1, 5)  # by x-delivery-count
        assert (third.redelivered, third.delivery_count) == (True, 2)
        assert "x-delivery-count" not in third.message.headers
        consumer.ack(third)
    finally:
        consumer.close()


def test_a_conflicting_declaration_names_the_problem(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"x-max-priority|arguments"):
        app.transport.declare(Queue("videos", MEDIA, routing_key="media.video", max_priority=5))
    with pytest.raises(ImproperlyConfigured, match="quorum"):
        app.transport.declare(
            Queue("qa", queue_arguments={"x-queue-type": "quorum"}, auto_delete=True)
        )


def test_headers_exchange_queues_are_declared(app: Celery) -> None:
    queue = Queue("by_headers", Exchange("matching", "headers"))
    app.transport.declare(queue)
    message = Message(b"{}", "application/json", "utf-8", {"kind": "x"}, {})
    assert app.transport.publish([Outgoing(message, exchange="matching", routing_key="")]) == [1]
    deadline = time.monotonic() + 5
    while app.transport.queue_length("by_headers") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.transport.purge("by_headers") == 1
