"""Testing helpers, as Celery's ``celery.contrib.testing``."""

from celeriac.contrib.testing.worker import start_worker

__all__ = ["start_worker"]
