"""Brokers, chosen by the scheme of a broker URL.

``create_transport("sqlite:///celeriac.sqlite")`` imports the module of the scheme's
implementation only then, so a broker's client library is needed only when it is used::

    memory://[name]            celeriac.transports.memory.MemoryTransport (one process)
    sqlite:///relative/path    celeriac.transports.sqlite.SQLiteTransport (one machine)
    sqlite:////absolute/path
    redis://  rediss://        celeriac.transports.redis.RedisTransport (kombu's keys and
    redis+socket://            envelope, so Celery workers and clients share it; no client
    sentinel://                library needed)
    amqp://  pyamqp://         celeriac.transports.amqp.AmqpTransport (RabbitMQ, shares a vhost
    amqps://                   with Celery; needs pip install "celeriac[amqp]")

The interface every implementation follows is ``celeriac.transports.base``. The layout::

    transports/
      base.py          the interface (Transport, Consumer, Delivery, Broadcast, DeadLetter)
      memory.py        the in-process implementation tests and eager mode use
      _broadcast.py    in-process broadcast hub (memory) and the pattern match all share
      _dead_letters.py dead-letter limits, the reject log, records: broker-neutral
      sqlite/          transport, consumer, db (SQL and connections), broadcast, dead_letters
      redis/           transport, consumer, layout (keys, envelope), publish, broadcast,
                       dead_letters, scripts (+ its .lua files)
      amqp/            transport, consumer, buffer, lease, topology, broadcast, dead_letters

Each broker package exports its transport class; its other modules are its own. The clients
the brokers share with result backends and beat live below: ``celeriac._redis`` (RESP
client, connector, retries, TLS and URL options) and ``celeriac._amqp`` (py-amqp driver,
connections, I/O thread, pool).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from celeriac._masking import mask_url
from celeriac._options import connection_retry, positive_option
from celeriac._time import Clock, system_clock
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.base import Transport

__all__ = [
    "available_schemes",
    "connection_retry",
    "create_transport",
    "mask_password",
    "positive_option",
]

# scheme -> (module, class); a module is imported the first time its scheme is asked for.
_IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "memory": ("celeriac.transports.memory", "MemoryTransport"),
    "sqlite": ("celeriac.transports.sqlite", "SQLiteTransport"),
    "redis": ("celeriac.transports.redis", "RedisTransport"),
    "rediss": ("celeriac.transports.redis", "RedisTransport"),
    "redis+socket": ("celeriac.transports.redis", "RedisTransport"),
    "sentinel": ("celeriac.transports.redis", "RedisTransport"),
    "amqp": ("celeriac.transports.amqp", "AmqpTransport"),
    "pyamqp": ("celeriac.transports.amqp", "AmqpTransport"),
    "amqps": ("celeriac.transports.amqp", "AmqpTransport"),
}


class _TransportClass(Protocol):
    def __call__(
        self, url: str, *, options: Mapping[str, Any] | None, clock: Clock
    ) -> Transport: ...


def available_schemes() -> list[str]:
    """The URL schemes ``create_transport`` knows, sorted."""
    return sorted(_IMPLEMENTATIONS)


def create_transport(
    url: str,
    *,
    options: Mapping[str, Any] | None = None,
    clock: Clock = system_clock,
) -> Transport:
    """A transport for the broker at ``url``.

    ``options`` is Celery's ``broker_transport_options``; each implementation reads the keys it
    knows and ignores the others. Raises ``ImproperlyConfigured`` for a URL whose scheme no
    implementation serves, or that its implementation rejects.
    """
    scheme, separator, _ = url.partition("://")
    implementation = _IMPLEMENTATIONS.get(scheme.lower()) if separator else None
    if implementation is None:
        raise ImproperlyConfigured(
            f"No transport for broker URL {mask_password(url)!r}: the available schemes are "
            f"{', '.join(s + '://' for s in available_schemes())}. Set broker_url to one of them."
        )
    module_name, class_name = implementation
    transport_class: _TransportClass = getattr(importlib.import_module(module_name), class_name)
    return transport_class(url, options=options, clock=clock)


def mask_password(url: str) -> str:
    """``url`` with every credential masked (``celeriac._masking.mask_url``; for errors and
    logs): passwords of each URL in a ``;`` list and secret query parameters."""
    return mask_url(url)
