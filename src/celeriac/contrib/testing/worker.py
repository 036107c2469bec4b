"""``start_worker``: a worker running in this process for the length of a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celeriac.app.base import Celery
from celeriac.worker.controller import Worker

__all__ = ["start_worker"]


@contextmanager
def start_worker(
    app: Celery,
    concurrency: int = 1,
    pool: str = "solo",
    queues: Sequence[str] | None = None,
    hostname: str | None = None,
    shutdown_timeout: float = 10.0,
    **kwargs: object,
) -> Iterator[Worker]:
    """Run a worker for ``app`` in a thread of this process; stop it warmly on exit.

    ``pool`` is ``solo`` or ``threads`` (``prefork`` works too, but forks the test process).
    """
    worker = Worker(
        app, hostname=hostname or "testworker@%h", concurrency=concurrency, pool=pool,
        queues=queues,
    )  # fmt: skip
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(warm=True)
