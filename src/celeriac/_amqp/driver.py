"""py-amqp, the AMQP 0-9-1 client (Celery's own), imported once with a helpful error.

Every AMQP module imports the driver from here, so a missing package is reported as
``ImproperlyConfigured`` naming the extra to install, not as a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

from celeriac.exceptions import ImproperlyConfigured

try:
    import amqp  # type: ignore[import-untyped]
    from amqp import exceptions as amqp_errors
except ImportError as exc:  # the optional dependency is missing
    raise ImproperlyConfigured(
        "The RabbitMQ (amqp://) transport and the rpc:// result backend need py-amqp: "
        'pip install "celeriac[amqp]".'
    ) from exc

__all__ = ["amqp", "amqp_errors"]
