"""Which settings reach the broker transport and the result backend, and under which names.

Transports and backends take one ``options`` mapping. The app fills it from its settings:

* the transport gets ``broker_transport_options``, plus the broker connection settings set
  explicitly (each transport keeps its own defaults otherwise), plus two settings under the
  transport option names the AMQP transport reads: ``task_queue_max_priority`` as
  ``max_priority`` and ``broker_native_delayed_delivery_queue_type`` as
  ``delayed_delivery_queue_type``; and Celeriac's ``dead_letter_max_entries`` and
  ``dead_letter_max_age`` when set (None included). A key given in ``broker_transport_options``
  wins.
* the result backend gets ``result_backend_transport_options`` plus the backend settings set
  explicitly; ``rpc://``, which sends results through the broker, also gets what it reads
  (celeriac.backends.rpc): the app's ``broker_url``, the broker's connection settings and
  transport options, ``result_serializer``, ``result_persistent`` and ``result_expires``.
  A key given in ``result_backend_transport_options`` wins. The SQL backend (``db+...``)
  gets ``result_serializer``, ``result_expires`` and the ``database_*`` settings it reads
  (celeriac.backends.database); ``django-db``/``django-cache`` get ``result_serializer``,
  ``result_expires`` and ``cache_backend``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.app.settings import Settings, as_seconds

__all__ = ["BROKER_SETTINGS", "backend_options", "transport_options"]

#: Broker connection settings passed by their own names when set explicitly.
BROKER_SETTINGS = (
    "broker_use_ssl",
    "broker_connection_retry",
    "broker_connection_retry_on_startup",
    "broker_connection_max_retries",
    "broker_connection_timeout",
    "broker_heartbeat",
    "broker_pool_limit",
    "broker_login_method",
)
#: Settings passed under another (transport option) name when set explicitly.
_RENAMED_BROKER_SETTINGS = (
    ("task_queue_max_priority", "max_priority"),
    ("broker_native_delayed_delivery_queue_type", "delayed_delivery_queue_type"),
)
#: Celeriac's dead-letter bounds, passed when set (even to None, which lifts a bound; the
#: transports' defaults are the settings' defaults).
_DEAD_LETTER_SETTINGS = ("dead_letter_max_entries", "dead_letter_max_age")
_BACKEND_SETTINGS = ("redis_backend_use_ssl", "redis_max_connections")
#: Celery's redis_* backend settings, passed under the option names the Redis backend reads.
_RENAMED_BACKEND_SETTINGS = (
    ("redis_socket_timeout", "socket_timeout"),
    ("redis_socket_connect_timeout", "socket_connect_timeout"),
    ("redis_socket_keepalive", "socket_keepalive"),
)
#: Result settings the rpc:// backend reads, passed with their values (defaults included).
_RPC_RESULT_SETTINGS = ("result_serializer", "result_persistent")
#: Settings the SQL backend (db+...) reads, passed with their values (defaults included).
_DATABASE_SETTINGS = (
    "result_serializer",
    "database_engine_options",
    "database_short_lived_sessions",
    "database_table_names",
    "database_table_schemas",
    "database_create_tables_at_setup",
    "database_engine_callback",
)


def transport_options(conf: Settings) -> dict[str, Any]:
    """The options of the broker transport (module docstring)."""
    options = dict(conf.broker_transport_options or {})
    _add_explicit(options, conf, BROKER_SETTINGS)
    changes = conf.changes
    for setting, option in _RENAMED_BROKER_SETTINGS:
        value = changes.get(setting)
        if value is not None:
            options.setdefault(option, value)
    for name in _DEAD_LETTER_SETTINGS:
        if name in changes:  # None too: it lifts the bound
            options.setdefault(name, changes[name])
    return options


def backend_options(conf: Settings, url: str, broker_url: str) -> dict[str, Any]:
    """The options of the result backend at ``url`` (module docstring)."""
    options = dict(conf.result_backend_transport_options or {})
    _add_explicit(options, conf, _BACKEND_SETTINGS)
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "redis+socket", "sentinel"):
        for setting, option in _RENAMED_BACKEND_SETTINGS:
            value = conf.changes.get(setting)
            if value is not None:
                options.setdefault(option, value)
    if scheme in ("django-db", "django-cache"):
        options.setdefault("result_serializer", conf.result_serializer)
        options.setdefault("cache_backend", conf.get("cache_backend"))
        options.setdefault(
            "result_expires", as_seconds(conf.result_expires, setting="result_expires")
        )
        return options
    if scheme.startswith("db+"):
        for name in _DATABASE_SETTINGS:
            options.setdefault(name, conf[name])
        expires = as_seconds(conf.result_expires, setting="result_expires")
        options.setdefault("result_expires", expires)
        return options
    if scheme != "rpc":
        return options
    options.setdefault("broker_url", broker_url)
    for name in _RPC_RESULT_SETTINGS:
        options.setdefault(name, conf[name])
    options.setdefault("result_expires", as_seconds(conf.result_expires, setting="result_expires"))
    for key, value in transport_options(conf).items():
        options.setdefault(key, value)
    return options


def _add_explicit(options: dict[str, Any], conf: Settings, names: tuple[str, ...]) -> None:
    changes: Mapping[str, Any] = conf.changes
    for name in names:
        if changes.get(name) is not None:
            options.setdefault(name, changes[name])
