"""The dashboard's one point of contact with the events and remote-control APIs.

Events are read straight off the broker's broadcast channel (exchange ``event_exchange``,
``celeryev``), in Celery's event format (wire.md §4.4: a JSON event dict, or a list
of them under routing key ``task.multi``), so Celeriac and Celery workers look the same.

Actions and worker details go through Celery's control API on ``app.control``
(``revoke``, ``rate_limit``, ``pool_grow``, ``pool_shrink``, ``shutdown``,
``inspect().stats()`` and ``.active_queues()``). Where an app has no ``control`` (remote
control not built in), ``revoke`` still stores the task REVOKED in the result store, which
every worker checks before it runs a task; the other actions raise ``ControlUnavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import CeleryError, ImproperlyConfigured
from celeriac.protocol.serializers import loads
from celeriac.transports import mask_password
from celeriac.transports.base import Broadcast, Subscription

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["ControlAdapter", "ControlUnavailable", "WorkerInfo", "decode_events", "subscribe"]

logger = logging.getLogger("celeriac.dashboard")

#: What ``ControlAdapter.worker_info`` returns per worker: its pool (implementation,
#: max_concurrency, processes) and the queues it consumes; either may be None.
WorkerInfo = tuple[dict[str, Any] | None, list[str] | None]


class ControlUnavailable(CeleryError):
    """The app has no remote control, so this action cannot reach the workers."""


def subscribe(app: Celery) -> Subscription:
    """Start receiving every event broadcast from now on."""
    transport = app.transport
    if not transport.capabilities.broadcast:
        raise ImproperlyConfigured(
            f"the broker {mask_password(app.broker_url)} has no broadcast channel, so the "
            "dashboard cannot hear the workers' events: use a broker that has one"
        )
    return transport.subscribe(str(app.conf.event_exchange or "celeryev"), ["#"])


def decode_events(app: Celery, broadcast: Broadcast) -> list[dict[str, Any]]:
    """The events in one broadcast (a ``task.multi`` body holds several); [] if undecodable."""
    message = broadcast.message
    accept = {"json", str(app.conf.event_serializer or "json")}
    try:
        body = loads(
            message.body,
            message.content_type,
            message.content_encoding,
            accept=accept,
            accept_setting="event_serializer (events are accepted in it and in json)",
        )
    except CeleryError as exc:
        logger.warning("Dashboard: dropping an event that does not decode: %s", exc)
        return []
    items = body if isinstance(body, list) else [body]
    return [dict(item) for item in items if isinstance(item, Mapping) and "type" in item]


class ControlAdapter:
    """Celery's control API for the dashboard's actions, with a fallback for revoke."""

    def __init__(self, app: Celery, *, timeout: float = 1.0) -> None:
        self.app = app
        self.timeout = timeout

    @property
    def control(self) -> Any | None:
        """``app.control`` when the app has remote control; else None."""
        return getattr(self.app, "control", None)

    @property
    def available(self) -> bool:
        return self.control is not None

    def _need(self, action: str) -> Any:
        control = self.control
        if control is None:
            raise ControlUnavailable(
                f"cannot {action}: this app has no remote control (app.control), so the "
                "workers cannot be reached"
            )
        return control

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke ``task_id`` everywhere; with ``terminate``, also kill it where it runs."""
        control = self.control
        if control is not None:  # also marks it REVOKED in the result store if not started
            control.revoke(task_id, terminate=terminate, signal=signal)
            return
        if terminate:
            self._need("terminate a running task")
        if self.app.results.enabled:
            meta = self.app.results.get_meta(task_id)
            if meta.get("status") in ("PENDING", "RECEIVED", "RETRY", "REJECTED"):
                self.app.results.mark_as_revoked(task_id, "revoked from the dashboard")

    def rate_limit(self, task_name: str, rate: str, worker: str | None = None) -> Any:
        """Set ``task_name``'s rate limit (``'10/m'``; ``''`` or ``'0'`` removes it)."""
        return self._need("set a rate limit").rate_limit(
            task_name,
            rate,
            destination=[worker] if worker else None,
            reply=True,
            timeout=self.timeout,
        )

    def pool_grow(self, worker: str, n: int = 1) -> Any:
        return self._need("grow a pool").pool_grow(
            n, destination=[worker], reply=True, timeout=self.timeout
        )

    def pool_shrink(self, worker: str, n: int = 1) -> Any:
        return self._need("shrink a pool").pool_shrink(
            n, destination=[worker], reply=True, timeout=self.timeout
        )

    def shutdown(self, worker: str) -> None:
        self._need("shut a worker down").shutdown(destination=[worker])

    def worker_info(self) -> dict[str, WorkerInfo]:
        """Pool and queues of every worker that answers within the timeout ({} without control)."""
        control = self.control
        if control is None:
            return {}
        inspect = control.inspect(timeout=self.timeout)
        stats = inspect.stats() or {}
        consumed = inspect.active_queues() or {}
        info: dict[str, WorkerInfo] = {}
        for hostname in set(stats) | set(consumed):
            pool = _pool(stats.get(hostname))
            queues = consumed.get(hostname)
            names = [str(q.get("name")) for q in queues or () if isinstance(q, Mapping)]
            info[str(hostname)] = (pool, names if queues is not None else None)
        return info


def _pool(stats: Any) -> dict[str, Any] | None:
    """The pool part of a worker's ``stats`` reply, in the dashboard's terms."""
    if not isinstance(stats, Mapping) or not isinstance(stats.get("pool"), Mapping):
        return None
    pool = stats["pool"]
    processes = pool.get("processes")
    return {
        "implementation": pool.get("implementation"),
        "max_concurrency": pool.get("max-concurrency"),
        "processes": len(processes) if isinstance(processes, list) else None,
    }
