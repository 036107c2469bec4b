"""``WorkerLike``: what a worker's parts see of the ``Worker`` that holds them.

``celeriac.worker.lifecycle.Worker`` builds the consumer, the pool, the remote control and
the rest, so those parts may not import it back (the import graph has no cycle). They are
typed against this protocol instead, as the core is typed against ``AppLike``; the members
are read-only here, so ``Worker`` fits by its shape alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.routing import Queue
    from celeriac.worker.consumer import TaskConsumer
    from celeriac.worker.events import WorkerEvents
    from celeriac.worker.pools import Pool

__all__ = ["WorkerLike"]


class WorkerLike(Protocol):
    """The members of ``Worker`` that its consumer, state, mingle and remote control use."""

    @property
    def app(self) -> Celery: ...

    @property
    def hostname(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    @property
    def queues(self) -> list[Queue]: ...

    @property
    def pool(self) -> Pool | None: ...

    @property
    def consumer(self) -> TaskConsumer | None: ...

    @property
    def events(self) -> WorkerEvents | None: ...

    def set_queues(self, queues: Sequence[Queue]) -> None:
        """Consume from ``queues`` from now on (``add_consumer``/``cancel_consumer``)."""

    def resize(self, concurrency: int) -> None:
        """Run ``concurrency`` jobs at once (``pool_grow``/``pool_shrink``/``autoscale``)."""

    def request_stop(self) -> None:
        """Begin a warm shutdown (``shutdown``)."""
