"""The ``celery.ping`` task ``start_worker`` sends to know the worker runs (Celery's name)."""

from __future__ import annotations

from celeriac.app.base import shared_task

__all__ = ["ping"]


@shared_task(name="celery.ping")
def ping() -> str:
    """Answer ``'pong'``: proof that a worker took a message and stored a result."""
    return "pong"
