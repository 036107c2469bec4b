"""The options objects built at the edge: WorkerOptions, BeatOptions, ProducerOptions.

Each value comes from the argument (flag or keyword), else the setting, else the default; a
value that cannot be right is refused naming the flag or the setting it came from.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.app.producer import Producer, ProducerOptions
from celeriac.app.settings import Settings
from celeriac.backends.memory import reset_store
from celeriac.beat.lease import DEFAULT_LEASE_TTL
from celeriac.beat.options import DEFAULT_SCHEDULER, BeatOptions
from celeriac.beat.scheduler import DEFAULT_MAX_INTERVAL
from celeriac.beat.service import Beat
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker
from celeriac.worker.options import WorkerOptions


def options(settings: dict[str, Any] | None = None, **arguments: Any) -> WorkerOptions:
    return WorkerOptions.from_settings(Settings(settings or {}), **arguments)


# -- WorkerOptions: precedence --------------------------------------------------------------


def test_defaults_when_neither_argument_nor_setting() -> None:
    opts = options()
    assert opts.pool == "prefork"
    assert opts.concurrency == (os.cpu_count() or 1)
    assert opts.prefetch_multiplier == 4
    assert opts.prefetch_limit == 4 * opts.concurrency
    assert opts.hostname == f"celeriac@{socket.gethostname()}"
    assert (opts.task_events, opts.remote_control, opts.fair) == (False, True, True)
    assert (opts.time_limit, opts.soft_time_limit, opts.state_db) == (None, None, None)
    assert opts.heartbeat_interval == 2.0 and opts.autoscale_keepalive == 30.0


@pytest.mark.parametrize(
    ("field", "setting", "value", "argument", "given"),
    [
        ("pool", "worker_pool", "threads", "pool", "solo"),
        ("concurrency", "worker_concurrency", 3, "concurrency", 7),
        ("prefetch_multiplier", "worker_prefetch_multiplier", 2, "prefetch_multiplier", 0),
        ("max_tasks_per_child", "worker_max_tasks_per_child", 10, "max_tasks_per_child", 5),
        ("max_memory_per_child", "worker_max_memory_per_child", 9000, "max_memory_per_child", 100),
        ("task_events", "worker_send_task_events", True, "task_events", False),
        ("remote_control", "worker_enable_remote_control", False, "remote_control", True),
        ("state_db", "worker_state_db", "/tmp/from-setting", "state_db", "/tmp/from-flag"),
        ("time_limit", "task_time_limit", 30, "time_limit", 5.0),
        ("soft_time_limit", "task_soft_time_limit", 20, "soft_time_limit", 4.0),
    ],
)
def test_argument_wins_over_setting_wins_over_default(
    field: str, setting: str, value: Any, argument: str, given: Any
) -> None:
    default = getattr(options(), field)
    assert getattr(options({setting: value}), field) == value != default
    assert getattr(options({setting: value}, **{argument: given}), field) == given


def test_zero_counts_mean_not_given_and_prefetch_zero_is_a_value() -> None:
    # As the worker always read them: ``-c 0`` is "the setting, else the default".
    conf = {"worker_concurrency": 3, "worker_max_tasks_per_child": 10}
    assert options(conf, concurrency=0).concurrency == 3
    assert options(conf, max_tasks_per_child=0).max_tasks_per_child == 10
    assert options({"worker_prefetch_multiplier": 2}, prefetch_multiplier=0).prefetch_limit == 0


def test_default_concurrency_follows_the_pool() -> None:
    assert options(pool="solo").concurrency == 1
    assert options({"worker_pool": "asyncio"}).concurrency == 100
    assert options({"worker_concurrency": "auto"}, pool="threads").concurrency == (
        os.cpu_count() or 1
    )


def test_autoscale_sets_both_bounds_over_concurrency() -> None:
    opts = options({"worker_concurrency": 2}, concurrency=4, autoscale=(10, 3))
    assert (opts.concurrency, opts.min_concurrency) == (10, 3)


def test_disable_prefetch_setting_forces_fair() -> None:
    assert options(fair=False).fair is False
    assert options({"worker_disable_prefetch": True}, fair=False).fair is True


def test_time_limit_setting_as_timedelta_and_zero_as_none() -> None:
    import datetime as dt

    assert options({"task_time_limit": dt.timedelta(minutes=2)}).time_limit == 120.0
    assert options({"task_time_limit": 30}, time_limit=0).time_limit is None


def test_hostname_expands_and_include_keeps_order() -> None:
    short = socket.gethostname().partition(".")[0]
    opts = options(hostname="w1@%n", include=["b", "a"], queues=["q1"], exclude_queues=["q2"])
    assert opts.hostname == f"w1@{short}"
    assert (opts.include, opts.queues, opts.exclude_queues) == (("b", "a"), ("q1",), ("q2",))


def test_at_start_reads_the_start_time_settings_again_unless_a_flag_decided() -> None:
    conf = Settings({"task_time_limit": 30})
    made = WorkerOptions.from_settings(conf, soft_time_limit=4.0)
    conf.update(task_time_limit=60, task_soft_time_limit=50, worker_eta_task_limit=7)
    conf.worker_disable_rate_limits = True  # as a celeryd_init handler may set them
    started = made.at_start(conf)
    assert (made.time_limit, started.time_limit) == (30.0, 60.0)
    assert started.soft_time_limit == 4.0  # the argument still wins
    assert (started.eta_task_limit, started.rate_limits) == (7, False)
    direct = WorkerOptions(hostname="w@h", time_limit=5.0)
    assert direct.at_start(conf) is direct


def test_worker_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        options().concurrency = 2  # type: ignore[misc]


# -- WorkerOptions: validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "arguments", "named"),
    [
        ({}, {"pool": "eventlet"}, r"-P/--pool \(pool='eventlet'\)"),
        ({"worker_pool": "eventlet"}, {}, "Setting worker_pool = 'eventlet'"),
        ({}, {"concurrency": -1}, r"-c/--concurrency \(concurrency=-1\)"),
        ({"worker_concurrency": "four"}, {}, "Setting worker_concurrency = 'four'"),
        ({}, {"autoscale": (2, 5)}, r"--autoscale \(autoscale=\(2, 5\)\)"),
        ({}, {"prefetch_multiplier": -2}, "--prefetch-multiplier"),
        ({"worker_max_tasks_per_child": "10"}, {}, "Setting worker_max_tasks_per_child"),
        ({}, {"max_memory_per_child": -5}, "--max-memory-per-child"),
        ({}, {"heartbeat_interval": -1.0}, "--heartbeat-interval"),
        ({}, {"metrics_port": 70000}, "--metrics-port"),
        ({}, {"time_limit": -1.0}, "--time-limit"),
        ({"task_soft_time_limit": "soon"}, {}, "task_soft_time_limit"),
        ({}, {"autoscale_keepalive": -1}, "CELERIAC_AUTOSCALE_KEEPALIVE"),
        ({"worker_eta_task_limit": -1}, {}, "Setting worker_eta_task_limit"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_flag_or_setting(
    settings: dict[str, Any], arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        options(settings, **arguments)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="concurrancy"):
        options(concurrancy=2)


# -- Worker(app, ...) builds its options --------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Celery]:
    name = f"test-options-{uuid.uuid4().hex}"
    with Celery("options", broker=f"memory://{name}", set_as_current=False) as app:
        yield app
    MemoryTransport.reset(name)
    reset_store(name)


def test_worker_keywords_build_options_from_the_apps_settings(app: Celery) -> None:
    app.conf.worker_prefetch_multiplier = 3
    worker = Worker(app, concurrency=2, pool="threads")
    assert (worker.options.pool, worker.options.concurrency) == ("threads", 2)
    assert worker.prefetch_limit == 6
    given = WorkerOptions.from_settings(app.conf, pool="solo")
    assert Worker(app, options=given).options is given
    with pytest.raises(TypeError, match="not both"):
        Worker(app, options=given, pool="threads")


# -- BeatOptions --------------------------------------------------------------------------------


def test_beat_options_precedence() -> None:
    assert BeatOptions.from_settings(Settings()) == BeatOptions(
        scheduler=DEFAULT_SCHEDULER, max_interval=DEFAULT_MAX_INTERVAL, lease_ttl=DEFAULT_LEASE_TTL
    )
    conf = Settings({"beat_scheduler": "django", "beat_max_loop_interval": 60})
    assert BeatOptions.from_settings(conf).scheduler == "django"
    assert BeatOptions.from_settings(conf).max_interval == 60.0
    given = BeatOptions.from_settings(conf, scheduler=DEFAULT_SCHEDULER, max_interval=5)
    assert (given.scheduler, given.max_interval) == (DEFAULT_SCHEDULER, 5.0)


def test_beat_options_refuse_a_wrong_interval() -> None:
    with pytest.raises(ImproperlyConfigured, match="--max-interval"):
        BeatOptions.from_settings(Settings(), max_interval=-1)
    with pytest.raises(ImproperlyConfigured, match="beat_max_loop_interval"):
        BeatOptions.from_settings(Settings({"beat_max_loop_interval": "often"}))


def test_beat_takes_its_options(app: Celery) -> None:
    opts = BeatOptions.from_settings(app.conf, max_interval=7, lease_ttl=3, import_modules=False)
    service = Beat(app, options=opts)
    try:
        assert service.scheduler.max_interval == 7.0 and service.lease.ttl == 3.0
    finally:
        service.close()


# -- ProducerOptions ----------------------------------------------------------------------------


def test_producer_options_follow_the_settings_generation(app: Celery) -> None:
    producer = app.producer
    first = producer.options
    assert first is producer.options  # built once while the settings stay as they are
    assert first.serializer == "json" and first.default_priority is None
    app.conf.task_serializer = "pickle"
    app.conf.task_default_priority = 5
    assert (producer.options.serializer, producer.options.default_priority) == ("pickle", 5)


def test_producer_given_options_ignores_the_settings(app: Celery) -> None:
    fixed = ProducerOptions(serializer="pickle")
    producer = Producer(app, options=fixed)
    app.conf.task_serializer = "json"
    assert producer.options is fixed
