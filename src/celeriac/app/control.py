"""``app.control``: steer and inspect running workers, as Celery's ``app.control``.

``Control`` sends commands to every worker (or the ones named by ``destination``, or matched
by ``pattern``/``matcher``) over the broker's broadcast channel and, when asked to, gathers
their replies for ``timeout`` seconds: ``app.control.ping()``, ``revoke(id, terminate=True)``,
``rate_limit('tasks.add', '10/m')``, ``pool_grow(2)``, ``shutdown()``, ...
``app.control.inspect()`` returns an ``Inspect`` whose methods ask read-only questions and
return ``{nodename: reply}``: ``active()``, ``stats()``, ``registered()``, ...

Revoking also marks a task REVOKED in the result store when it has not started (PENDING,
RECEIVED, RETRY, REJECTED), so the revocation holds for workers that are offline now, start
later, or restart. The wire format is in ``celeriac.app._pidbox``; the commands run in
``celeriac.worker.remote.commands``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac import _state, states
from celeriac.aio.mixins import AsyncControlMixin
from celeriac.app._pidbox import Mailbox, ReplyCallback, node_matches
from celeriac.exceptions import CeleryWarning

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["REVOCABLE_STATES", "Control", "Inspect", "flatten_reply", "mark_revoked"]

#: States a revoke may overwrite in the result store (the task has not started anywhere).
REVOCABLE_STATES = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


def flatten_reply(replies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``[{node: reply}, ...]`` as one ``{node: reply}``; warns of duplicate node names."""
    nodes: dict[str, Any] = {}
    dupes: set[str] = set()
    for item in replies:
        dupes.update(name for name in item if name in nodes)
        nodes.update(item)
    if dupes:
        warnings.warn(
            f"Received multiple replies from node name(s) {', '.join(sorted(dupes))}: give "
            "each worker a unique name with -n.",
            CeleryWarning,
            stacklevel=3,
        )
    return nodes


def mark_revoked(app: AppLike, task_ids: Sequence[str]) -> list[str]:
    """Store REVOKED for the tasks that have not started (``REVOCABLE_STATES``); which."""
    results = app.results
    if not results.enabled:
        return []
    marked = []
    for task_id in task_ids:
        if results.get_meta(task_id)["status"] in REVOCABLE_STATES:
            results.mark_as_revoked(task_id, "revoked")
            marked.append(task_id)
    if marked:
        results.log_revoked(marked)
    return marked


class Inspect:
    """Read-only questions to workers; each method returns ``{nodename: reply}`` or None."""

    def __init__(
        self,
        destination: str | Sequence[str] | None = None,
        timeout: float = 1.0,
        callback: ReplyCallback | None = None,
        connection: Any = None,
        app: AppLike | None = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> None:
        if app is None:
            app = _state.current_app()
        self.app = app
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit
        self.pattern = pattern
        self.matcher = matcher

    def _request(self, command: str, **arguments: Any) -> Any:
        destination = self.destination
        if isinstance(destination, str):
            destination = [destination]
        replies = self.app.control.broadcast(
            command,
            arguments=arguments,
            destination=destination,
            reply=True,
            timeout=self.timeout,
            limit=self.limit,
            callback=self.callback,
            pattern=self.pattern,
            matcher=self.matcher,
        )
        if not replies:
            return None
        by_node = flatten_reply(replies)
        if isinstance(self.destination, str):
            return by_node.get(self.destination)
        if self.pattern:
            return {
                node: reply
                for node, reply in by_node.items()
                if node_matches(node, None, self.pattern, self.matcher)
            }
        return by_node

    def ping(self, destination: Sequence[str] | None = None) -> Any:
        if destination:
            self.destination = destination
        return self._request("ping")

    def stats(self) -> Any:
        return self._request("stats")

    def active(self, safe: bool | None = None) -> Any:
        return self._request("active", safe=safe)

    def scheduled(self, safe: bool | None = None) -> Any:
        return self._request("scheduled")

    def reserved(self, safe: bool | None = None) -> Any:
        return self._request("reserved")

    def revoked(self) -> Any:
        return self._request("revoked")

    def registered(self, *taskinfoitems: str) -> Any:
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def active_queues(self) -> Any:
        return self._request("active_queues")

    def query_task(self, *ids: str | Sequence[str]) -> Any:
        flat: list[str] = []
        for item in ids:
            flat.extend([item] if isinstance(item, str) else item)
        return self._request("query_task", ids=flat)

    def conf(self, with_defaults: bool = False) -> Any:
        return self._request("conf", with_defaults=with_defaults)

    def report(self) -> Any:
        return self._request("report")

    def clock(self) -> Any:
        return self._request("clock")

    def hello(self, from_node: str, revoked: Any = None) -> Any:
        return self._request("hello", from_node=from_node, revoked=revoked)


class Control(AsyncControlMixin):
    """Commands to workers over the broker (see the module docstring)."""

    def __init__(self, app: AppLike) -> None:
        self.app = app
        self.mailbox = Mailbox(app)

    def inspect(
        self,
        destination: str | Sequence[str] | None = None,
        timeout: float = 1.0,
        callback: ReplyCallback | None = None,
        connection: Any = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect:
        """An ``Inspect`` for these workers and this reply timeout."""
        return Inspect(
            destination,
            timeout,
            callback,
            connection,
            app=self.app,
            limit=limit,
            pattern=pattern,
            matcher=matcher,
        )

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: ReplyCallback | None = None,
        channel: Any = None,
        pattern: str | None = None,
        matcher: str | None = None,
        **extra_kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Send ``command`` with ``arguments``; with ``reply``, the ``[{node: reply}]`` list."""
        return self.mailbox.broadcast(
            command,
            dict(arguments or {}, **extra_kwargs),
            destination=destination,
            pattern=pattern,
            matcher=matcher,
            reply=reply,
            timeout=timeout,
            limit=limit,
            callback=callback,
        )

    def _cast(self, command: str, destination: Sequence[str] | None, **kwargs: Any) -> Any:
        arguments = kwargs.pop("arguments", {})
        return self.broadcast(command, arguments=arguments, destination=destination, **kwargs)

    # -- tasks --------------------------------------------------------------------------------

    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | None = "SIGTERM",
        **kwargs: Any,
    ) -> Any:
        """Revoke tasks: marked REVOKED if not started, skipped by every worker, and with
        ``terminate`` the process (or thread, or coroutine) running one is stopped."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        mark_revoked(self.app, ids)
        if not self.app.transport.capabilities.broadcast:
            return None  # no worker can hear it; the result store carries the revocation
        arguments = {
            "task_id": ids if len(ids) != 1 else ids[0],
            "terminate": terminate,
            "signal": signal or "SIGTERM",
        }
        return self._cast("revoke", destination, arguments=arguments, **kwargs)

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | None = "SIGTERM",
        **kwargs: Any,
    ) -> Any:
        """Revoke the tasks stamped (``sig.stamp``) with one of ``headers``' values, on the
        workers now and as they arrive later; each worker revokes (and marks REVOKED in the
        result store) the tasks it holds. Replies as Celery's workers do. It waits for the
        replies by default (``reply=True``, up to ``timeout``): a Celeriac worker takes
        control messages and tasks on separate connections, so waiting is what makes the
        revocation be in place before the next task is sent, as it is in Celery."""
        arguments = {"headers": headers, "terminate": terminate, "signal": signal or "SIGTERM"}
        kwargs.setdefault("reply", True)
        return self._cast("revoke_by_stamped_headers", destination, arguments=arguments, **kwargs)

    def terminate(
        self,
        task_id: str | Sequence[str],
        destination: Sequence[str] | None = None,
        signal: str = "SIGTERM",
        **kwargs: Any,
    ) -> Any:
        return self.revoke(task_id, destination, terminate=True, signal=signal, **kwargs)

    def rate_limit(
        self,
        task_name: str,
        rate_limit: str | float | None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        arguments = {"task_name": task_name, "rate_limit": rate_limit}
        return self._cast("rate_limit", destination, arguments=arguments, **kwargs)

    def time_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        arguments = {"task_name": task_name, "hard": hard, "soft": soft}
        return self._cast("time_limit", destination, arguments=arguments, **kwargs)

    def ping(
        self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any
    ) -> Any:
        return self._cast("ping", destination, reply=True, timeout=timeout, **kwargs)

    def purge(self, connection: Any = None) -> int:
        """Delete the waiting messages of the default queue; how many."""
        return self.app.transport.purge(self.app.conf.task_default_queue)

    discard_all = purge

    # -- queues, pool, events, lifecycle --------------------------------------------------------

    def add_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        options: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        arguments = dict(
            {
                "queue": queue,
                "exchange": exchange,
                "exchange_type": exchange_type,
                "routing_key": routing_key,
            },
            **(options or {}),
        )
        return self._cast("add_consumer", destination, arguments=arguments, **kwargs)

    def cancel_consumer(
        self, queue: str, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        return self._cast("cancel_consumer", destination, arguments={"queue": queue}, **kwargs)

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None, **kw: Any) -> Any:
        return self._cast("pool_grow", destination, arguments={"n": n}, **kw)

    def pool_shrink(self, n: int = 1, destination: Sequence[str] | None = None, **kw: Any) -> Any:
        return self._cast("pool_shrink", destination, arguments={"n": n}, **kw)

    def autoscale(
        self, max: int, min: int, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        return self._cast("autoscale", destination, arguments={"max": max, "min": min}, **kwargs)

    def enable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self._cast("enable_events", destination, **kwargs)

    def disable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self._cast("disable_events", destination, **kwargs)

    def heartbeat(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self._cast("heartbeat", destination, **kwargs)

    def shutdown(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self._cast("shutdown", destination, **kwargs)
