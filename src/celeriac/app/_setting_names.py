"""The table of setting names: every Celery 5.7 setting with its default, and its old name.

Settings are grouped by namespace (``broker``, ``task``, ...) so that the old uppercase
names can be derived by rule from the namespace (``task_acks_late`` -> ``CELERY_ACKS_LATE``,
``worker_pool`` -> ``CELERYD_POOL``); the names that break the rule are listed in
``_IRREGULAR_OLD``. A namespace with no old prefix takes ``upper(new name)``
(``broker_url`` -> ``BROKER_URL``, ``control_queue_ttl`` -> ``CONTROL_QUEUE_TTL``), which is
also what Celery accepts for them.

The functions at the end work on names only: mapping old to new (refusing a setting named
twice or a mix of styles), suggesting close names for a typo, masking secrets for display.
The module is long because the table is; the code in it is short.

Defaults are Celery's, except ``result_backend_always_retry`` (True here: a worker keeps a
task's outcome through a result-store outage instead of failing it). ``broker_url`` and
``result_backend`` are ``None``, which the app reads as "use the embedded store";
class-path defaults (``worker_pool``, ``beat_scheduler``, ...) keep Celery's strings for the
worker and beat to interpret.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from celeriac._masking import mask_value
from celeriac.exceptions import ImproperlyConfigured

__all__ = [
    "CELERIAC_SETTINGS",
    "DEFAULTS",
    "NAMESPACES",
    "NAMESPACE_PREFIXES",
    "NEW_TO_OLD",
    "OLD_PREFIXES",
    "OLD_TO_NEW",
    "canonical_name",
    "censor",
    "did_you_mean",
    "is_unknown_celery_name",
    "normalize",
]

_PROCESS_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
)

#: Settings outside any namespace, with their old names.
_GENERAL: dict[str, tuple[Any, str]] = {
    "accept_content": (("json",), "CELERY_ACCEPT_CONTENT"),
    "result_accept_content": (None, "RESULT_ACCEPT_CONTENT"),
    "enable_utc": (True, "ENABLE_UTC"),
    "imports": ((), "CELERY_IMPORTS"),
    "include": ((), "CELERY_INCLUDE"),
    "timezone": (None, "CELERY_TIMEZONE"),
}

#: Celeriac's own settings, which Celery does not have, with their defaults (their old
#: uppercase names are ``upper(name)``). They bound the broker's dead-letter store
#: (docs/dead-letters.md): at most this many letters, none older than this (None: no bound).
_CELERIAC: dict[str, Any] = {
    "dead_letter_max_entries": 10_000,
    "dead_letter_max_age": timedelta(days=7),
}

#: namespace -> {name without the namespace: default}
_NAMESPACED: dict[str, dict[str, Any]] = {
    "beat": {
        "enable_remote_control": False,
        "remote_control_max_tick_age": None,
        "max_loop_interval": 0,
        "schedule": {},
        "scheduler": "celery.beat:PersistentScheduler",
        "schedule_filename": "celerybeat-schedule",
        "sync_every": 0,
        "cron_starting_deadline": None,
    },
    "broker": {
        "url": None,
        "read_url": None,
        "write_url": None,
        "transport": None,
        "transport_options": {},
        "connection_timeout": 4,
        "connection_retry": True,
        "connection_retry_on_startup": None,
        "connection_max_retries": 100,
        "channel_error_retry": False,
        "failover_strategy": None,
        "heartbeat": 120,
        "heartbeat_checkrate": 3.0,
        "login_method": None,
        "native_delayed_delivery_queue_type": "quorum",
        "pool_limit": 10,
        "pool_acquire_timeout": None,
        "use_ssl": False,
        "host": None,
        "port": None,
        "user": None,
        "password": None,
        "vhost": None,
    },
    "cache": {"backend": None, "backend_options": {}},
    "cassandra": {
        "entry_ttl": None,
        "keyspace": None,
        "port": None,
        "read_consistency": None,
        "servers": None,
        "bundle_path": None,
        "table": None,
        "write_consistency": None,
        "auth_provider": None,
        "auth_kwargs": None,
        "options": {},
    },
    "s3": dict.fromkeys(
        ("access_key_id", "secret_access_key", "bucket", "base_path", "endpoint_url", "region"),
    ),
    "azureblockblob": {
        "container_name": "celery",
        "retry_initial_backoff_sec": 2,
        "retry_increment_base": 2,
        "retry_max_attempts": 3,
        "base_path": "",
        "connection_timeout": 20,
        "read_timeout": 120,
    },
    "gcs": {"bucket": None, "project": None, "base_path": "", "ttl": 0},
    "control": {
        "queue_ttl": 300.0,
        "queue_expires": 10.0,
        "queue_exclusive": True,
        "queue_durable": False,
        "exchange": "celery",
    },
    "couchbase": {"backend_settings": None},
    "arangodb": {"backend_settings": None},
    "mongodb": {"backend_settings": None},
    "cosmosdbsql": {
        "database_name": "celerydb",
        "collection_name": "celerycol",
        "consistency_level": "Session",
        "max_retry_attempts": 9,
        "max_retry_wait_time": 30,
    },
    "event": {
        "queue_expires": 60.0,
        "queue_ttl": 5.0,
        "queue_prefix": "celeryev",
        "queue_exclusive": True,
        "queue_durable": False,
        "serializer": "json",
        "exchange": "celeryev",
    },
    "redis": {
        "backend_use_ssl": None,
        "db": None,
        "host": None,
        "max_connections": None,
        "username": None,
        "password": None,
        "port": None,
        "socket_timeout": 120.0,
        "socket_connect_timeout": None,
        "retry_on_timeout": False,
        "socket_keepalive": False,
    },
    "result": {
        "backend": None,
        "cache_max": -1,
        "compression": None,
        "exchange": "celeryresults",
        "exchange_type": "direct",
        "expires": timedelta(days=1),
        "chord_expires": None,
        "failure_expires": None,
        "persistent": None,
        "extended": False,
        "serializer": "json",
        "backend_transport_options": {},
        "chord_retry_interval": 1.0,
        "chord_join_timeout": 3.0,
        "backend_max_sleep_between_retries_ms": 10000,
        "backend_max_retries": float("inf"),
        "backend_base_sleep_between_retries_ms": 10,
        "backend_always_retry": True,  # Celery: False (see docs/guarantees.md)
    },
    "elasticsearch": {
        "retry_on_timeout": None,
        "max_retries": None,
        "timeout": None,
        "save_meta_as_text": True,
    },
    "security": {
        "certificate": None,
        "cert_store": None,
        "key": None,
        "key_password": None,
        "digest": "sha256",
    },
    "database": {
        "url": None,
        "engine_options": {"pool_pre_ping": True, "pool_recycle": 3600},
        "engine_callback": None,
        "short_lived_sessions": False,
        "table_schemas": None,
        "table_names": None,
        "create_tables_at_setup": True,
    },
    "task": {
        "acks_late": False,
        "acks_on_failure_or_timeout": True,
        "acks_on_failure": None,
        "acks_on_timeout": None,
        "always_eager": False,
        "annotations": None,
        "compression": None,
        "create_missing_queues": True,
        "create_missing_queue_type": "classic",
        "create_missing_queue_exchange_type": None,
        "inherit_parent_priority": False,
        "default_delivery_mode": 2,
        "default_queue": "celery",
        "default_queue_type": "classic",
        "default_exchange": None,
        "default_exchange_type": "direct",
        "default_routing_key": None,
        "default_rate_limit": None,
        "default_priority": None,
        "eager_propagates": False,
        "ignore_result": False,
        "store_eager_result": False,
        "protocol": 2,
        "publish_retry": True,
        "publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0,
            "interval_max": 1,
            "interval_step": 0.2,
        },
        "queues": None,
        "queue_max_priority": None,
        "reject_on_worker_lost": None,
        "retry_on_worker_lost": False,
        "remote_tracebacks": False,
        "repr_maxlevels": 3,
        "routes": None,
        "send_sent_event": False,
        "serializer": "json",
        "soft_time_limit": None,
        "time_limit": None,
        "store_errors_even_if_ignored": False,
        "track_started": False,
        "allow_error_cb_on_chord_header": False,
    },
    "worker": {
        "agent": None,
        "autoscaler": "celery.worker.autoscale:Autoscaler",
        "cancel_long_running_tasks_on_connection_loss": False,
        "soft_shutdown_timeout": 0.0,
        "enable_soft_shutdown_on_idle": False,
        "concurrency": None,
        "consumer": "celery.worker.consumer:Consumer",
        "direct": False,
        "disable_rate_limits": False,
        "deduplicate_successful_tasks": False,
        "enable_remote_control": True,
        "hijack_root_logger": True,
        "log_color": None,
        "log_datefmt": None,
        "log_format": _PROCESS_LOG_FORMAT,
        "lost_wait": 10.0,
        "max_memory_per_child": None,
        "max_tasks_per_child": None,
        "pool": "prefork",
        "pool_putlocks": True,
        "pool_restarts": False,
        "pool_start_method": "fork",
        "proc_alive_timeout": 4.0,
        "prefetch_multiplier": 4,
        "eta_task_limit": None,
        "enable_prefetch_count_reduction": True,
        "disable_prefetch": False,
        "redirect_stdouts": True,
        "redirect_stdouts_level": "WARNING",
        "send_task_events": False,
        "state_db": None,
        "task_log_datefmt": None,
        "task_log_format": _TASK_LOG_FORMAT,
        "timer": None,
        "timer_precision": 1.0,
        "detect_quorum_queues": True,
    },
}

#: namespace -> prefix of its old names; other namespaces' old names are upper(new name).
OLD_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "task": "CELERY_",
        "result": "CELERY_RESULT_",
        "worker": "CELERYD_",
        "beat": "CELERYBEAT_",
        "event": "CELERY_EVENT_",
        "redis": "CELERY_REDIS_",
        "security": "CELERY_SECURITY_",
        "cache": "CELERY_CACHE_",
        "couchbase": "CELERY_COUCHBASE_",
        "arangodb": "CELERY_ARANGODB_",
        "mongodb": "CELERY_MONGODB_",
        "elasticsearch": "CELERY_ELASTICSEARCH_",
    }
)

#: new name -> old name, where the old name does not follow its namespace's rule.
_IRREGULAR_OLD: dict[str, str] = {
    "result_cache_max": "CELERY_MAX_CACHED_RESULTS",
    "result_expires": "CELERY_TASK_RESULT_EXPIRES",
    "task_compression": "CELERY_MESSAGE_COMPRESSION",
    "task_eager_propagates": "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
    "task_protocol": "CELERY_TASK_PROTOCOL",
    "task_publish_retry": "CELERY_TASK_PUBLISH_RETRY",
    "task_publish_retry_policy": "CELERY_TASK_PUBLISH_RETRY_POLICY",
    "task_send_sent_event": "CELERY_SEND_TASK_SENT_EVENT",
    "task_serializer": "CELERY_TASK_SERIALIZER",
    "task_soft_time_limit": "CELERYD_TASK_SOFT_TIME_LIMIT",
    "task_time_limit": "CELERYD_TASK_TIME_LIMIT",
    "worker_direct": "CELERY_WORKER_DIRECT",
    "worker_disable_rate_limits": "CELERY_DISABLE_RATE_LIMITS",
    "worker_enable_remote_control": "CELERY_ENABLE_REMOTE_CONTROL",
    "worker_lost_wait": "CELERYD_WORKER_LOST_WAIT",
    "worker_redirect_stdouts": "CELERY_REDIRECT_STDOUTS",
    "worker_redirect_stdouts_level": "CELERY_REDIRECT_STDOUTS_LEVEL",
    "worker_send_task_events": "CELERY_SEND_EVENTS",
    "database_url": "CELERY_RESULT_DBURI",
    "database_engine_options": "CELERY_RESULT_ENGINE_OPTIONS",
    "database_short_lived_sessions": "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",
    "database_table_names": "CELERY_RESULT_DB_TABLENAMES",
}

#: Old names accepted on top of Celery 5.7's table (Celery 3.x spelled enable_utc so).
_EXTRA_OLD: dict[str, str] = {"CELERY_ENABLE_UTC": "enable_utc"}


def _build() -> tuple[dict[str, Any], dict[str, str]]:
    """Flatten the namespaces into ``{new name: default}`` and ``{new name: old name}``."""
    defaults = {name: default for name, (default, _) in _GENERAL.items()}
    new_to_old = {name: old for name, (_, old) in _GENERAL.items()}
    defaults.update(_CELERIAC)
    new_to_old.update((name, name.upper()) for name in _CELERIAC)
    for namespace, options in _NAMESPACED.items():
        old_prefix = OLD_PREFIXES.get(namespace)
        for short, default in options.items():
            name = f"{namespace}_{short}"
            defaults[name] = default
            regular = f"{old_prefix}{short.upper()}" if old_prefix else name.upper()
            new_to_old[name] = _IRREGULAR_OLD.get(name, regular)
    return defaults, new_to_old


_defaults, _new_to_old = _build()

#: Celeriac's own settings (no Celery counterpart) -> their defaults.
CELERIAC_SETTINGS: Mapping[str, Any] = MappingProxyType(_CELERIAC)
#: Every setting's lowercase name -> its default.
DEFAULTS: Mapping[str, Any] = MappingProxyType(_defaults)
#: Lowercase name -> the old uppercase name Celery 5.7 gives it.
NEW_TO_OLD: Mapping[str, str] = MappingProxyType(_new_to_old)
#: Every accepted old uppercase name -> its lowercase name.
OLD_TO_NEW: Mapping[str, str] = MappingProxyType(
    {**{old: new for new, old in _new_to_old.items()}, **_EXTRA_OLD}
)
#: The namespaces, in the order ``find_option`` searches them for a short name.
NAMESPACES: tuple[str, ...] = tuple(_NAMESPACED)
#: Prefixes that mark a name as meant for Celery, so an unknown one is probably a typo.
NAMESPACE_PREFIXES: tuple[str, ...] = (
    *(f"{ns}_" for ns in ("broker", "task", "result", "worker", "beat", "event", "control")),
    *(f"{ns}_" for ns in ("redis", "database", "security")),
    "CELERY_",
    "CELERYD_",
    "CELERYBEAT_",
    "BROKER_",
)


def canonical_name(name: str) -> str:
    """The new name for an old one; any other name unchanged."""
    return OLD_TO_NEW.get(name, name)


def did_you_mean(name: str) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the known names closest to ``name``, or ``""``."""
    if name.startswith("CELERY_") and name[7:].lower() in DEFAULTS:
        return f"; did you mean {name[7:].lower()!r} (or namespace='CELERY')?"
    pool = list(OLD_TO_NEW) if name.isupper() else list(DEFAULTS)
    matches = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, matches))}?" if matches else ""


def is_unknown_celery_name(name: str) -> bool:
    """An unknown (new) name that looks meant for Celery, so probably a typo."""
    return name not in DEFAULTS and name.startswith(NAMESPACE_PREFIXES)


def normalize(given: Mapping[str, Any]) -> dict[str, Any]:
    """Map old names to new ones; refuse a setting named twice or a mix of both styles."""
    seen: dict[str, str] = {}
    for key in given:
        name = canonical_name(key)
        if name in seen and name in DEFAULTS:
            raise ImproperlyConfigured(
                f"Both {seen[name]!r} and {key!r} are given; they name the same setting "
                f"{name!r}. Keep only {name!r}."
            )
        seen[name] = key
    old = sorted(key for key in given if key in OLD_TO_NEW)
    new = sorted(key for key in given if key in DEFAULTS)
    if old and new:
        raise ImproperlyConfigured(
            f"Cannot mix old and new setting names: {old[0]!r} is an old name (new: "
            f"{OLD_TO_NEW[old[0]]!r}) and {new[0]!r} is a new one (old: {NEW_TO_OLD[new[0]]!r})."
            " Use one style throughout, preferably the new lowercase names."
        )
    return {canonical_name(key): value for key, value in given.items()}


def censor(name: str, value: Any) -> Any:
    """``value`` for display: masked if ``name`` is a secret, URL credentials masked."""
    return mask_value(name, value)
