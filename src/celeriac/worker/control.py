"""Celery's module name for the worker's remote control: ``control_command`` and
``inspect_command`` register a command the worker answers, and the built-in control commands
(``revoke``, ``add_consumer``, ``cancel_consumer``, ``pool_grow``...) are importable by the
names Celery's ``celery.worker.control`` gives them.

The worker's remote control lives in ``celeriac.worker.remote``; this module keeps
``from celery.worker.control import ...`` working with ``celeriac`` in its place.
"""

from __future__ import annotations

from celeriac.worker.remote.control import (
    WorkerControl,
    add_consumer,
    autoscale,
    cancel_consumer,
    control_command,
    disable_events,
    enable_events,
    heartbeat,
    inspect_command,
    pool_grow,
    pool_shrink,
    rate_limit,
    revoke,
    revoke_by_stamped_headers,
    shutdown,
    terminate,
    time_limit,
)

__all__ = [
    "WorkerControl",
    "add_consumer",
    "autoscale",
    "cancel_consumer",
    "control_command",
    "disable_events",
    "enable_events",
    "heartbeat",
    "inspect_command",
    "pool_grow",
    "pool_shrink",
    "rate_limit",
    "revoke",
    "revoke_by_stamped_headers",
    "shutdown",
    "terminate",
    "time_limit",
]
