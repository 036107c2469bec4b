"""Tests of Celery's integration suite that do not apply to Celeriac, each with its reason.

Only three kinds qualify: tests of Celery's internals (private classes, module constants,
kombu/billiard plumbing a Celeriac user never sees), tests of brokers or backends Celeriac
does not ship, and tests that assert the product name "celery" where Celeriac says its own
(to pass, it would have to claim to be Celery). A test of public behaviour is never listed
here, however it fails. The list is
data: the runner still runs these tests and reports their outcome beside the reason.

Keys are pytest node ids relative to the suite's root (``t/integration/test_x.py::Class::test``);
a key naming a file or a class covers every test in it, and a key with ``*`` in its
parameters (``test_x[*-1]``) covers the parametrized cases it matches (``fnmatch``).
"""

from __future__ import annotations

import fnmatch

NOT_APPLICABLE: dict[str, str] = {
    # -- backends and features Celeriac does not ship -----------------------------------------
    "t/integration/test_backend.py": (
        "Celery's Azure Block Blob result backend (`celery.backends.azureblockblob`), "
        "which Celeriac does not ship"
    ),
    "t/integration/test_cache_backend.py": (
        "the memcached result backend (`cache+memcached://`), which Celeriac does not ship"
    ),
    "t/integration/test_beat.py::test_beat_remote_control": (
        "beat answering remote-control pings (`beat_enable_remote_control`, "
        "`beat.Service._pidbox`), a feature Celeriac does not ship"
    ),
    # -- Celery's internals -------------------------------------------------------------------
    "t/integration/test_backend_leak_in_fixture_teardown.py": (
        "counts the sockets of redis-py's connection pool inside Celery's Redis backend "
        "(`backend.client.connection_pool`); Celeriac's backend has no redis-py pool"
    ),
    "t/integration/test_beat.py::test_beat_tick_heap_top_changed": (
        "rewrites Celery's scheduler heap (`Scheduler._heap`, `beat.event_t`, `_when`, "
        "`old_schedulers`)"
    ),
    "t/integration/test_beat.py::test_beat_failing_entry": (
        "reads Celery's scheduler heap (`populate_heap`, `Scheduler._heap`, `_when`)"
    ),
    "t/integration/test_connection_recovery.py": (
        "Celery's worker-consumer and kombu channel teardown internals "
        "(`celery.utils.threads.bound_open_broker_sockets`, `WorkerConsumer`, "
        "`COLLECT_SOCKET_TIMEOUT`, `SHUTDOWN_SOCKET_TIMEOUT`)"
    ),
    "t/integration/test_events_state_memory_leak.py": (
        "asserts on Celery's private `State._tasks_to_resolve` mapping"
    ),
    "t/integration/test_request_backend_down.py": (
        "builds Celery's internal `celery.worker.request.Request` from mocks"
    ),
    "t/integration/test_redis_backend.py::test_decode_responses_disables_compression": (
        "reads Celery's Redis backend internals (`backend.client`, `get_key_for_task`, "
        "`backend.compression`)"
    ),
    "t/integration/test_redis_backend.py::test_failure_expires": (
        "reads key TTLs through Celery's Redis backend internals (`backend.client`, "
        "`get_key_for_task`)"
    ),
    "t/integration/test_redis_backend.py::test_pubsub_subscribe_churn_while_draining": (
        "drives Celery's `celery.backends.redis.ResultConsumer` (`result_consumer`, "
        "`_get_key_for_task`)"
    ),
    "t/integration/test_redis_backend.py::test_pubsub_reentrant_cancel_from_finalizer": (
        "drives Celery's `celery.backends.redis.ResultConsumer` and its redis-py `_pubsub`"
    ),
    "t/integration/test_redis_backend.py::test_chord_expires": (
        "calls Celery's Redis backend chord internals (`apply_chord`, `set_chord_size`, "
        "`on_chord_part_return`, `get_key_for_group`, `backend.client`)"
    ),
    "t/integration/test_redis_backend.py::test_chord_part_return_records_each_header_task_once": (
        "calls Celery's Redis backend chord internals (`on_chord_part_return`, "
        "`set_chord_size`, `get_key_for_group`, `backend.encode`, `backend.client`)"
    ),
    "t/integration/test_canvas.py::test_chord::test_simple_chord_with_a_delay_in_group_save": (
        "patches Celery's `BaseKeyValueStoreBackend._apply_chord_incr`"
    ),
    "t/integration/test_canvas.py::test_chord::test_redis_subscribed_channels_leak": (
        "calls Celery's `backend.result_consumer.on_after_fork()` (`ResultConsumer`)"
    ),
    "t/integration/test_canvas.py::test_result_set::"
    "test_join_native_timeout_zero_returns_results_that_are_ready": (
        "clears Celery's backend result cache (`backend._cache`)"
    ),
    "t/integration/test_canvas.py::test_chord::test_chord_on_error": (
        "reads Celery's result meta and chord keys directly (`AsyncResult._get_task_meta`, "
        "`backend.get_key_for_group`)"
    ),
    "t/integration/test_canvas.py::test_stamping_mechanism::test_linking_stamped_sig": (
        "reads the message body through Celery's private `Request._Request__payload`"
    ),
    "t/integration/test_logfile_format.py": (
        "its script imports Celery's internal `celery.apps.multi.Node` (for every case) to "
        "build the argv of `celery multi`"
    ),
    "t/integration/test_database_backend.py": (
        "injects failures by patching SQLAlchemy's ORM `Session` (`commit`, `query`), which "
        "Celeriac's database backend does not use (it runs SQLAlchemy Core statements)"
    ),
    "t/integration/test_worker.py": (
        "the file imports Celery's internal `celery.utils.sysinfo.cpu_budget` at module level, "
        "so none of its tests can be collected; its Django tests drive Celery's internal "
        "`celery.fixups.django.DjangoFixup`/`DjangoWorkerFixup` and `celery._state`"
    ),
    "t/integration/test_group_chains.py::test_group_chains::"
    "test_group_results_reach_the_next_group[*-1]": (
        "sends with task message protocol 1 (`task_protocol=1`, Celery 3), which Celeriac "
        "does not speak (protocol 2 only, refused at configuration)"
    ),
    "t/integration/test_group_chains.py::test_group_chains::"
    "test_pending_chord_keeps_header_errback[*-1]": (
        "sends with task message protocol 1 (`task_protocol=1`, Celery 3), which Celeriac "
        "does not speak (protocol 2 only, refused at configuration)"
    ),
    "t/integration/test_tasks.py::test_task_redis_result_backend::"
    "test_asyncresult_forget_cancels_subscription": (
        "counts the Redis Pub/Sub subscriptions of Celery's `ResultConsumer`, which subscribes "
        "when a task is sent (`PUBSUB CHANNELS` right after `delay()`); Celeriac's backend "
        "subscribes only while `get()` waits"
    ),
    "t/integration/test_tasks.py::test_task_redis_result_backend::"
    "test_asyncresult_get_cancels_subscription": (
        "counts the Redis Pub/Sub subscriptions of Celery's `ResultConsumer`, which subscribes "
        "when a task is sent (`PUBSUB CHANNELS` right after `delay()`); Celeriac's backend "
        "subscribes only while `get()` waits"
    ),
    "t/integration/test_inspect.py::test_Inspect::test_hello_stamps_received_revoked_ids_locally": (
        "asserts that Celery's `LimitedSet` stamps revoked ids with `time.monotonic()` "
        "(`worker_state.revoked.as_dict()`); Celeriac's revoked set keeps the times of the "
        "app's clock"
    ),
    "t/integration/test_tasks.py::test_tasks::test_task_sent_event_respects_publish_retry_limit": (
        "patches kombu's `producer.channel.basic_publish` and reads Celery's "
        "`app.amqp._event_dispatcher._outbound_buffer`"
    ),
    # -- Celery's own name ---------------------------------------------------------------------
    "t/integration/test_inspect.py::test_Inspect::test_report": (
        "asserts the product name 'celery' in the report text (`software -> celery:`); "
        "Celeriac's report has Celery's layout under its own name (`software -> celeriac:`)"
    ),
}


def reason_for(nodeid: str) -> str | None:
    """The reason a test is not applicable, or ``None``; the most specific key wins."""
    for key, reason in NOT_APPLICABLE.items():
        if "[" in key and fnmatch.fnmatchcase(nodeid, key.replace("[", "[[]")):
            return reason
    base = nodeid.split("[", 1)[0]
    parts = base.split("::")
    for end in range(len(parts), 0, -1):
        key = "::".join(parts[:end])
        if key in NOT_APPLICABLE:
            return NOT_APPLICABLE[key]
    return None
