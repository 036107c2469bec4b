"""Celery settings Celeriac has no use for, and those it refuses rather than ignore.

Of the 207 setting names, most are read by the part they configure. The rest fall in two
tables here, each entry with its reason (``tests/unit/test_settings_coverage.py`` fails for a
setting that no code reads and that neither table lists):

* ``NOT_APPLICABLE``: settings whose purpose Celeriac's design already serves, or that
  configure a result backend Celeriac does not ship (its URL scheme is refused, naming the
  supported ones). Any value is accepted; none changes anything, as said.
* ``UNSUPPORTED``: settings Celery acts on and Celeriac does not. Left at Celery's default
  they are harmless; set to anything else, ``validate`` (when the app first connects) raises
  ``ImproperlyConfigured`` with the reason and what to do, rather than accept and ignore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.app._setting_names import DEFAULTS
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["NOT_APPLICABLE", "UNSUPPORTED", "check_unsupported"]

_BACKEND = "configures a result backend Celeriac does not ship; its URL is refused"

_BACKEND_PREFIXES = (
    "cassandra_",
    "s3_",
    "azureblockblob_",
    "gcs_",
    "cosmosdbsql_",
    "elasticsearch_",
    "couchbase_",
    "arangodb_",
    "mongodb_",
)

NOT_APPLICABLE: Mapping[str, str] = {
    **{name: _BACKEND for name in DEFAULTS if name.startswith(_BACKEND_PREFIXES)},
    "cache_backend_options": "options of the memcached cache:// backend; django-cache uses "
    "Django's CACHES and cache+memory:// has none",
    "beat_sync_every": "beat stores each run in its schedule store at once; nothing to batch",
    "broker_heartbeat_checkrate": "the AMQP I/O thread reads every frame as it comes and "
    "answers heartbeats at once; there is no polling rate to set",
    "redis_retry_on_timeout": "the Redis connector retries every failed command on a fresh "
    "connection with its retry policy, timeouts included",
    "redis_max_connections": "the Redis backend keeps one connection per thread, not a pool",
    "result_exchange": "Celery's rpc:// replies through the default exchange as Celeriac's "
    "does; result_exchange applied only to the removed amqp:// backend",
    "result_exchange_type": "see result_exchange",
    "worker_enable_prefetch_count_reduction": "the fetch window is computed at every fetch "
    "from idle pool slots, so nothing prefetched outlives a reconnection",
    "worker_timer_precision": "the worker's timer wakes at each due time, not on a tick",
    "worker_detect_quorum_queues": "Celeriac's AMQP consumer never uses global QoS, which "
    "is what Celery turns off for quorum queues",
}

UNSUPPORTED: Mapping[str, str] = {
    "database_url": "Celery's result_backend='database' alias is not supported; give the "
    "SQLAlchemy URL in result_backend as db+postgresql://... (docs/sql-backend.md)",
    "beat_enable_remote_control": "beat does not answer remote control commands",
    "beat_remote_control_max_tick_age": "beat does not answer remote control commands",
    "broker_read_url": "one broker URL serves reads and writes; set broker_url",
    "broker_write_url": "one broker URL serves reads and writes; set broker_url",
    "broker_transport": "name the transport by the scheme of broker_url",
    "broker_host": "give the host in broker_url",
    "broker_port": "give the port in broker_url",
    "broker_user": "give the user in broker_url",
    "broker_password": "give the password in broker_url",
    "broker_vhost": "give the virtual host in broker_url",
    "broker_channel_error_retry": "channel errors are not retried as connection errors",
    "broker_pool_acquire_timeout": "publishers never wait for a pooled connection",
    "event_queue_expires": "event receivers' queues use Celeriac's fixed settings",
    "event_queue_ttl": "event receivers' queues use Celeriac's fixed settings",
    "event_queue_prefix": "event receivers' queues use Celeriac's fixed names",
    "event_queue_exclusive": "event receivers' queues use Celeriac's fixed settings",
    "event_queue_durable": "event receivers' queues use Celeriac's fixed settings",
    "redis_host": "give the host in result_backend (redis://host:port/db)",
    "redis_port": "give the port in result_backend (redis://host:port/db)",
    "redis_db": "give the database in result_backend (redis://host:port/db)",
    "redis_username": "give the user in result_backend (redis://user:password@host)",
    "redis_password": "give the password in result_backend (redis://user:password@host)",
    "task_protocol": "only task message protocol 2 (Celery 4+) is spoken",
    "task_retry_on_worker_lost": "a task whose worker died is stored as WorkerLostError, or "
    "redelivered with task_reject_on_worker_lost",
    "task_remote_tracebacks": "remote tracebacks (tblib) are not rebuilt; the traceback "
    "text is in AsyncResult.traceback",
    "task_repr_maxlevels": "argument reprs in events and inspect use a fixed depth",
    "worker_agent": "cell actors are not supported",
    "worker_autoscaler": "custom autoscaler classes are not supported (--autoscale works)",
    "worker_consumer": "custom consumer classes are not supported",
    "worker_timer": "custom timer classes are not supported",
    "worker_cancel_long_running_tasks_on_connection_loss": "running tasks are not cancelled "
    "when the broker connection drops; their leases are renewed once it is back",
    "worker_soft_shutdown_timeout": "a warm shutdown waits for running tasks; there is no "
    "soft shutdown phase",
    "worker_enable_soft_shutdown_on_idle": "see worker_soft_shutdown_timeout",
    "worker_direct": "per-worker direct queues (<node>.dq2) are not declared; route to a "
    "queue of the worker's own with -Q",
    "worker_deduplicate_successful_tasks": "redelivered tasks are not checked against "
    "stored successes",
    "worker_lost_wait": "a lost prefork child's job is failed at once",
    "worker_pool_putlocks": "the pool never blocks the consumer; the fetch window does",
    "worker_pool_restarts": "the pool_restart control command is not supported",
    "worker_proc_alive_timeout": "prefork children are not waited for at startup",
    "broker_failover_strategy": "failover URLs (joined by ';') are tried in turn "
    "(round-robin); no other strategy",
}

#: Values besides the default that mean the same thing as it.
_ALSO_FINE: Mapping[str, tuple[Any, ...]] = {
    "broker_failover_strategy": ("round-robin",),
    "task_protocol": (2,),
}


def check_unsupported(settings: Mapping[str, Any]) -> None:
    """Raise ``ImproperlyConfigured`` for an ``UNSUPPORTED`` setting set to a value other
    than Celery's default (module docstring)."""
    for name, reason in UNSUPPORTED.items():
        value = settings.get(name, DEFAULTS.get(name))
        if value == DEFAULTS.get(name) or value in _ALSO_FINE.get(name, ()):
            continue
        raise ImproperlyConfigured(
            f"Setting {name} = {value!r} is not supported by Celeriac: {reason}. Remove the "
            f"setting (or set it back to {DEFAULTS.get(name)!r})."
        )
