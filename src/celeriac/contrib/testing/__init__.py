"""Testing helpers, as Celery's ``celery.contrib.testing``: ``start_worker``, ``TestApp``,
hand-made task messages (``mocks``) and, Celeriac's own, a ``VirtualClock``."""

from celeriac.contrib.testing.clock import VirtualClock
from celeriac.contrib.testing.worker import start_worker

__all__ = ["VirtualClock", "start_worker"]
