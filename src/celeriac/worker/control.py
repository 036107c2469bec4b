"""Celery's module name for custom remote-control commands: ``control_command`` and
``inspect_command`` register a command the worker answers.

The worker's remote control lives in ``celeriac.worker.remote``; this module keeps
``from celery.worker.control import control_command`` working with ``celeriac`` in its place.
"""

from __future__ import annotations

from celeriac.worker.remote.control import WorkerControl, control_command, inspect_command

__all__ = ["WorkerControl", "control_command", "inspect_command"]
