"""Reading Celery's broker options: positive numbers and the connection-retry pair.

Shared by the transports (``celeriac.transports``) and the client packages below them
(``celeriac._amqp``, ``celeriac._redis``), which is why it lives at the bottom of the package
and not in ``celeriac.transports``, which re-exports both functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["connection_retry", "positive_option"]


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
