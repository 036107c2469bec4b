"""Settings that shape queues and connections: task_queue_max_priority, the queue types, the
worker's queue selection (-Q, -X) and the options the app hands its transport and backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from celeriac import Celery, Exchange, Queue
from celeriac.app._connection_options import backend_options, transport_options
from celeriac.cli.main import cli
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.lifecycle import select_queues
from tests.support.apps import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "queues", results=False, set_as_current=False)


def arguments(queue: Queue) -> dict[str, Any]:
    """What the queue is declared with beyond its flags (as the AMQP transport merges them)."""
    args = dict(queue.queue_arguments or {})
    if queue.max_priority is not None:
        args["x-max-priority"] = queue.max_priority
    return args


# -- routing settings ------------------------------------------------------------------------


def test_max_priority_applies_to_classic_queues_that_set_none(app: Celery) -> None:
    app.conf.task_queue_max_priority = 10
    app.conf.task_queues = (
        Queue("plain"),
        Queue("own", max_priority=3),
        Queue("by-arguments", queue_arguments={"x-max-priority": 5}),
        Queue("replicated", queue_arguments={"x-queue-type": "quorum"}),
    )
    router = app.router
    found = {q.name: arguments(q) for q in router.defined}
    assert found == {
        "plain": {"x-max-priority": 10},
        "own": {"x-max-priority": 3},
        "by-arguments": {"x-max-priority": 5},
        "replicated": {"x-queue-type": "quorum"},  # quorum queues have no priorities
    }
    assert arguments(router.queue("made-on-demand")) == {"x-max-priority": 10}


def test_the_default_queue_type(app: Celery) -> None:
    assert arguments(app.router.queue("celery")) == {}
    app.conf.task_default_queue_type = "quorum"
    assert arguments(app.router.queue("celery")) == {"x-queue-type": "quorum"}
    assert arguments(app.router.queue("missing")) == {}  # only the default queue


def test_the_type_of_queues_created_when_missing(app: Celery) -> None:
    app.conf.task_create_missing_queue_type = "quorum"
    app.conf.task_create_missing_queue_exchange_type = "topic"
    queue = app.router.queue("created")
    assert arguments(queue) == {"x-queue-type": "quorum"}
    assert queue.bound_exchange == Exchange("created", "topic")
    assert arguments(app.router.queue("celery")) == {}  # the default queue: classic


def test_an_unknown_queue_type_is_refused(app: Celery) -> None:
    app.conf.task_default_queue_type = "stream"
    with pytest.raises(ImproperlyConfigured, match="task_default_queue_type"):
        app.router  # noqa: B018
    app.conf.task_default_queue_type = "classic"
    app.conf.task_create_missing_queue_type = "lazy"
    with pytest.raises(ImproperlyConfigured, match="task_create_missing_queue_type"):
        app.router  # noqa: B018


# -- the worker's queues ---------------------------------------------------------------------


def names(queues: list[Queue]) -> list[str]:
    return [q.name for q in queues]


def test_without_q_the_worker_consumes_every_defined_queue(app: Celery) -> None:
    assert names(select_queues(app, None)) == ["celery"]
    app.conf.task_default_queue = "default"
    assert names(select_queues(app, None)) == ["default"]
    app.conf.task_queues = (Queue("default"), Queue("videos"), Queue("images"))
    assert names(select_queues(app, None)) == ["default", "videos", "images"]


def test_exclude_queues_removes_them(app: Celery) -> None:
    app.conf.task_queues = (Queue("default"), Queue("videos"), Queue("images"))
    assert names(select_queues(app, None, ["videos"])) == ["default", "images"]
    assert names(select_queues(app, ["videos", "images"], ["images"])) == ["videos"]
    assert select_queues(app, None, ["default", "videos", "images"]) == []


def test_q_creates_a_queue_task_queues_lacks_unless_told_not_to(app: Celery) -> None:
    app.conf.task_queues = (Queue("default"),)
    assert names(select_queues(app, ["default", "extra"])) == ["default", "extra"]
    app.conf.task_create_missing_queues = False
    with pytest.raises(ImproperlyConfigured, match=r"'other'.*task_create_missing_queues"):
        select_queues(app, ["default", "other"])


def test_the_worker_command_names_a_queue_it_cannot_consume(tmp_path: Path) -> None:
    (tmp_path / "proj.py").write_text(
        "from celeriac import Celery, Queue\n"
        "app = Celery('proj', broker='memory://')\n"
        "app.conf.task_queues = (Queue('default'),)\n"
        "app.conf.task_create_missing_queues = False\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-A", "proj", "worker", "-P", "solo", "-Q", "nowhere"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Cannot consume from queue 'nowhere'" in done.stderr
    help_text = CliRunner().invoke(cli, ["worker", "--help"]).output
    assert "--exclude-queues" in help_text and "task_queues" in help_text


# -- options for the transport and the backend --------------------------------------------------


def test_broker_settings_reach_the_transport_options(app: Celery) -> None:
    assert transport_options(app.conf) == {}  # defaults: each transport keeps its own
    app.conf.update(
        broker_login_method="AMQPLAIN",
        broker_heartbeat=30,
        task_queue_max_priority=10,
        broker_native_delayed_delivery_queue_type="classic",
        broker_pool_limit=2,
        broker_transport_options={"confirm_timeout": 3},
    )
    assert transport_options(app.conf) == {
        "broker_login_method": "AMQPLAIN",
        "broker_heartbeat": 30,
        "max_priority": 10,
        "delayed_delivery_queue_type": "classic",
        "broker_pool_limit": 2,
        "confirm_timeout": 3,
    }


def test_broker_transport_options_win_over_settings(app: Celery) -> None:
    app.conf.update(
        task_queue_max_priority=10,
        broker_heartbeat=30,
        broker_transport_options={"max_priority": 5, "broker_heartbeat": 0},
    )
    options = transport_options(app.conf)
    assert (options["max_priority"], options["broker_heartbeat"]) == (5, 0)


def test_the_rpc_backend_gets_the_broker_and_result_settings(app: Celery) -> None:
    broker = "amqp://u:p@rabbit:5672/v"
    app.conf.update(
        broker_url=broker,
        broker_heartbeat=30,
        result_persistent=True,
        result_expires=60,
        broker_transport_options={"confirm_timeout": 3},
    )
    options = backend_options(app.conf, "rpc://", app.broker_url)
    assert options == {
        "broker_url": broker,
        "broker_heartbeat": 30,
        "confirm_timeout": 3,
        "result_serializer": "json",
        "result_persistent": True,
        "result_expires": 60.0,
    }
    app.conf.result_backend_transport_options = {"broker_url": "amqp://other//"}
    assert backend_options(app.conf, "rpc://", app.broker_url)["broker_url"] == "amqp://other//"
    # Backends that keep results get none of it.
    assert backend_options(app.conf, "redis://localhost/0", app.broker_url) == {
        "broker_url": "amqp://other//"
    }


def test_result_expires_as_a_timedelta_default(app: Celery) -> None:
    options = backend_options(app.conf, "rpc://", "amqp://")
    assert options["result_expires"] == 86400.0
    app.conf.result_expires = None
    assert backend_options(app.conf, "rpc://", "amqp://")["result_expires"] is None
