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

The interface every implementation follows is ``celeriac.transports.base``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from celeriac._masking import mask_url
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


def positive_option(
    options: Mapping[str, Any] | None, name: str, default: float, *, integer: bool = False
) -> float:
    """``options[name]`` as a positive number (``default`` when absent).

    Raises ``ImproperlyConfigured`` naming the option when the value is not a positive number
    (an integer when ``integer``).
    """
    value = (options or {}).get(name, default)
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if number <= 0 or (integer and number != int(number)):
            raise ValueError(value)
    except (TypeError, ValueError):
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ImproperlyConfigured(
            f"broker_transport_options[{name!r}] must be {kind}, not {value!r}."
        ) from None
    return number


def connection_retry(options: Mapping[str, Any] | None) -> tuple[bool, bool]:
    """Whether to retry connecting (at startup, after a loss), as Celery decides.

    ``broker_connection_retry`` (True) covers a connection that was lost;
    ``broker_connection_retry_on_startup`` the first one, and follows
    ``broker_connection_retry`` when it is not set (None).
    """
    opts = options or {}
    after_loss = opts.get("broker_connection_retry") is not False
    on_startup = opts.get("broker_connection_retry_on_startup")
    return (after_loss if on_startup is None else on_startup is not False), after_loss
