"""Routing: ``task_routes`` (exact, glob and regex keys, lists, router callables),
``task_default_queue``, ``task_queues`` and ``task_create_missing_queues``."""

from __future__ import annotations

import re
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, Exchange, Queue
from celeriac.app.routes import Router
from celeriac.exceptions import ImproperlyConfigured, QueueNotFound
from celeriac.protocol.v2 import decode_task
from tests.support.apps import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "routes", results=False, set_as_current=False)


def queue_of(app: Celery, name: str, **options: Any) -> str:
    """Send task ``name``; return the one queue its message landed in."""
    app.send_task(name, **options)
    return landed(app)


# Every queue a test in this module may route to.
QUEUES = (
    "celery",
    "work",
    "feeds",
    "feed-misc",
    "media",
    "web",
    "vip",
    "billing",
    "routed",
    "by-path",
    "explicit",
    "images",
    "videos",
    "known",
    "objects",
)


def landed(app: Celery) -> str:
    transport = app.transport
    queues = [q for q in QUEUES if transport.queue_length(q)]
    assert len(queues) == 1, f"expected the message in one queue, found {queues}"
    transport.purge(queues[0])
    return queues[0]


def test_without_routes_tasks_go_to_the_default_queue(app: Celery) -> None:
    assert queue_of(app, "any.task") == "celery"


def test_task_default_queue(app: Celery) -> None:
    app.conf.task_default_queue = "work"
    assert queue_of(app, "any.task") == "work"


def test_exact_glob_and_regex_keys(app: Celery) -> None:
    app.conf.task_routes = {
        "feed.tasks.import_feed": {"queue": "feeds"},
        "feed.tasks.*": {"queue": "feed-misc"},
        re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"},
        "web.*": "web",  # a bare queue name
    }
    assert queue_of(app, "feed.tasks.import_feed") == "feeds"
    assert queue_of(app, "feed.tasks.cleanup") == "feed-misc"
    assert queue_of(app, "video.tasks.encode") == "media"
    assert queue_of(app, "image.tasks.resize") == "media"
    assert queue_of(app, "web.render") == "web"
    assert queue_of(app, "other.task") == "celery"


def test_a_list_of_routers_first_match_wins(app: Celery) -> None:
    calls: list[tuple[Any, ...]] = []

    def route_by_argument(
        name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
    ) -> dict[str, Any] | None:
        calls.append((name, tuple(args), dict(kwargs), task))
        if kwargs.get("priority_customer"):
            return {"queue": "vip"}
        return None

    app.conf.task_routes = [route_by_argument, {"billing.*": {"queue": "billing"}}]
    assert queue_of(app, "billing.charge", kwargs={"priority_customer": True}) == "vip"
    assert queue_of(app, "billing.charge", args=(1,)) == "billing"
    assert calls[0] == ("billing.charge", (), {"priority_customer": True}, None)
    assert calls[1] == ("billing.charge", (1,), {}, None)


def test_a_router_callable_receives_the_task(app: Celery) -> None:
    seen: list[Any] = []

    def router(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> str:
        seen.append(task)
        return "routed"

    app.conf.task_routes = router

    @app.task
    def job() -> None: ...

    job.delay()
    assert landed(app) == "routed"
    assert seen == [job]


def test_a_router_named_by_its_import_path(
    app: Celery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"routers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            def route_task(name, args, kwargs, options, task=None, **kw):
                return {"queue": "by-path"} if name.startswith("path.") else None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app.conf.task_routes = [f"{module}.route_task"]
        assert queue_of(app, "path.task") == "by-path"
        assert queue_of(app, "other.task") == "celery"
    finally:
        sys.modules.pop(module, None)


def test_call_options_beat_routes(app: Celery) -> None:
    app.conf.task_routes = {"a.*": {"queue": "routed"}}
    assert queue_of(app, "a.task", queue="explicit") == "explicit"


def test_task_queues_with_a_topic_exchange(app: Celery) -> None:
    media = Exchange("media", type="topic")
    app.conf.task_queues = [
        Queue("celery"),
        Queue("images", media, routing_key="media.image.#"),
        Queue("videos", media, routing_key="media.video.#"),
    ]
    app.conf.task_routes = {"media.*": {"exchange": "media", "routing_key": "media.video.hd"}}
    for queue in app.conf.task_queues:
        app.transport.declare(queue)  # a worker declares its queues when it starts
    assert queue_of(app, "media.encode") == "videos"
    assert queue_of(app, "media.encode", routing_key="media.image.png") == "images"


def test_unknown_queue_with_create_missing_queues_off(app: Celery) -> None:
    app.conf.task_create_missing_queues = False
    assert queue_of(app, "any.task") == "celery"  # the default queue always exists
    with pytest.raises(QueueNotFound, match="nowhere"):
        app.send_task("any.task", queue="nowhere")
    app.conf.task_routes = {"routed.*": {"queue": "missing"}}
    with pytest.raises(QueueNotFound, match="missing"):
        app.send_task("routed.task")
    with pytest.raises(KeyError):  # QueueNotFound is a KeyError, as in Celery
        app.send_task("routed.task")


def test_declared_task_queues_are_used_with_create_missing_queues_off(app: Celery) -> None:
    app.conf.task_create_missing_queues = False
    app.conf.task_queues = [Queue("known")]
    assert queue_of(app, "any.task", queue="known") == "known"
    with pytest.raises(QueueNotFound):
        app.send_task("any.task")  # 'celery' is not among task_queues


def test_a_queue_object_as_the_queue_option(app: Celery) -> None:
    assert queue_of(app, "any.task", queue=Queue("objects")) == "objects"


def test_the_routing_key_reaches_the_message(app: Celery) -> None:
    app.conf.task_routes = {"keyed.*": {"queue": "keyed"}}
    app.send_task("keyed.task")
    consumer = app.transport.consumer(["keyed"], owner="test")
    try:
        [delivery] = consumer.fetch(1, timeout=0)
        consumer.ack(delivery)
    finally:
        consumer.close()
    assert delivery.routing_key == "keyed"
    assert decode_task(delivery.message, accept=["json"]).task == "keyed.task"


def test_invalid_routes_are_refused() -> None:
    with pytest.raises(ImproperlyConfigured):
        Router(42, None, default_queue="celery", create_missing=True)
    router = Router({"x": 42}, None, default_queue="celery", create_missing=True)
    with pytest.raises(ImproperlyConfigured, match="42"):
        router.route("x", (), {}, {})


def test_router_destination_for_direct_queues_uses_the_default_exchange() -> None:
    router = Router(None, None, default_queue="celery", create_missing=True)
    destination = router.destination("jobs", None, None)
    assert (destination.exchange, destination.routing_key) == ("", "jobs")
    assert destination.queue.name == "jobs"
