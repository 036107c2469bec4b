"""The worker's end of remote control: a thread answering the pidbox, and the commands that
change the worker (revoke, rate and time limits, queues, pool size, events, shutdown).

``WorkerControl.start`` subscribes to the control exchange (before the worker says it is
ready, so a ``ping`` right after start is answered) and starts the ``Pidbox`` thread. For
each request meant for this node (``destination``, or ``pattern``/``matcher``) it runs the
command from ``COMMANDS`` and, when the request carries ``reply_to``, publishes
``{nodename: reply}`` back. A command that raises is answered ``{"error": repr(exc)}``; a
request that does not decode is logged and skipped. Commands run one at a time, in the
order the requests came. Read-only commands live in ``celeriac.worker.remote.commands``.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac.app._pidbox import Mailbox, node_matches
from celeriac.app.control import mark_revoked
from celeriac.exceptions import CeleryError, EncodeError, ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.routing import Exchange, Queue
from celeriac.transports.base import Subscription
from celeriac.worker.ratelimit import parse_rate
from celeriac.worker.remote.commands import COMMANDS, Command, _register, nok, ok, parse_signal
from celeriac.worker.revoked import RevokedStamps, stamp_values

if TYPE_CHECKING:
    from celeriac.worker._worker_protocol import WorkerLike

__all__ = ["WorkerControl", "control_command", "inspect_command"]

logger = logging.getLogger("celeriac.worker")


class WorkerControl:
    """Answers remote control requests for one worker."""

    def __init__(self, worker: WorkerLike) -> None:
        self.worker = worker
        self.mailbox = Mailbox(worker.app)
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> bool:
        """Listen; False when the broker has no broadcast channel (remote control is off)."""
        transport = self.worker.app.transport
        if not transport.capabilities.broadcast:
            logger.info(
                "Remote control is off: %s has no broadcast channel", type(transport).__name__
            )
            return False
        self._subscription = transport.subscribe(self.mailbox.exchange, ["#"])
        self._thread = threading.Thread(target=self._loop, name="Pidbox", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._subscription is not None:
            self._subscription.close()

    def _loop(self) -> None:
        assert self._subscription is not None
        while not self._stopping.is_set():
            try:
                received = self._subscription.receive(0.5)
            except CeleryError as exc:
                logger.warning("Remote control: cannot read requests: %s; retrying", exc)
                self._stopping.wait(1.0)
                continue
            for broadcast in received:
                if self._stopping.is_set():
                    return
                try:
                    self.handle(broadcast.message)
                except Exception:  # one bad request must not end remote control
                    logger.exception("Remote control: a request failed")

    def handle(self, message: Message) -> Any:
        """Run the request in ``message`` if it is for this worker, and reply; the reply."""
        hostname = self.worker.hostname
        try:
            request = self.mailbox.decode_request(message)
            if not node_matches(hostname, request.destination, request.pattern, request.matcher):
                return None
        except (CeleryError, ValueError) as exc:
            logger.warning("Remote control: skipping a request that does not decode: %s", exc)
            return None
        reply = self.dispatch(request.method, request.arguments)
        try:
            self.mailbox.send_reply(request, hostname, reply)
        except EncodeError as exc:
            self.mailbox.send_reply(request, hostname, nok(f"reply does not encode: {exc}"))
        except CeleryError as exc:
            logger.warning("Remote control: could not reply to %s: %s", request.method, exc)
        return reply

    def dispatch(self, method: str, arguments: dict[str, Any]) -> Any:
        """Run command ``method``; its reply, or ``{"error": ...}``."""
        command = COMMANDS.get(method)
        if command is None:
            return nok(f"unknown command {method!r}")
        logger.debug("Remote control: %s(%s)", method, arguments)
        try:
            return command.fun(self.worker, **arguments)
        except (ValueError, NotImplementedError) as exc:  # refused: say why, no traceback
            logger.warning("Remote control: %s refused: %s", method, exc)
            return nok(repr(exc))
        except Exception as exc:
            logger.exception("Remote control: %s failed", method)
            return nok(repr(exc))


# -- custom commands (Celery's decorators) ---------------------------------------------------


def _custom(kind: str, name: str | None, alias: str | None) -> Callable[[Any], Any]:
    def register(fun: Callable[..., Any]) -> Callable[..., Any]:
        names = [name or fun.__name__, *([alias] if alias else [])]
        for each in names:
            COMMANDS[each] = Command(each, kind, fun)
        return fun

    return register


def control_command(
    fun: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    alias: str | None = None,
    **_celery_options: Any,
) -> Any:
    """Register a custom remote control command, as Celery's decorator of that name::

        @control_command(args=[("n", int)], signature="[N=1]")
        def bump(worker, n=1):
            return {"ok": f"bumped by {n}"}

    The function gets the worker (``.app``, ``.hostname``, ``.consumer``, ``.pool``; Celery
    passes its ``state``, which has the same ``app``/``hostname``/``consumer``) and the
    request's arguments, and returns the reply. Celery's ``args``, ``signature``,
    ``variadic`` and ``help`` (for its CLI's help text) are accepted. Import the module in
    the worker (``include``/``imports``, or the app module) so the worker knows it.
    """
    register = _custom("control", name, alias)
    return register(fun) if fun is not None else register


def inspect_command(
    fun: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    alias: str | None = None,
    **_celery_options: Any,
) -> Any:
    """Register a custom read-only (``inspect``) command; see ``control_command``."""
    register = _custom("inspect", name, alias)
    return register(fun) if fun is not None else register


# -- control commands ------------------------------------------------------------------------


@_register("control")
def revoke(
    worker: WorkerLike, task_id: Any = None, terminate: bool = False, signal: Any = None, **_: Any
) -> Any:
    consumer = worker.consumer
    assert consumer is not None
    ids = [task_id] if isinstance(task_id, str) else [str(t) for t in task_id or ()]
    running = {job.id for job, _ in consumer.snapshot()[0] if job.started_at is not None}
    mark_revoked(worker.app, [t for t in ids if t not in running])  # Celery clients don't
    terminated = consumer.revoke(ids, terminate=bool(terminate), signum=parse_signal(signal))
    if terminate:
        return ok(
            f"terminate: {', '.join(terminated)}" if terminated else "terminate: tasks unknown"
        )
    logger.info("Tasks flagged as revoked: %s", ", ".join(ids))
    return ok(f"tasks {', '.join(ids)} flagged as revoked")


@_register("control")
def revoke_by_stamped_headers(
    worker: WorkerLike, headers: Any = None, terminate: bool = False, signal: Any = None, **_: Any
) -> Any:
    """Revoke the tasks here whose stamps have one of ``headers``' values, and those that
    arrive with them later (Celery's command). Replies as Celery's: that the headers are
    flagged, or (``terminate``) which stamp values of running tasks were terminated."""
    consumer = worker.consumer
    assert consumer is not None
    if not isinstance(headers, dict) or not headers:
        return nok("revoke_by_stamped_headers needs headers: {stamp name: value(s)}")
    wanted = RevokedStamps()
    wanted.update(headers)
    consumer.revoked_stamps.update(headers)
    jobs, timer = consumer.snapshot()
    messages = [job.message for job, _ in jobs] + [message for _, message, _ in timer]
    ids = [message.id for message in messages if wanted.matches(message.stamps)]
    if ids:
        revoke(worker, ids, terminate=terminate, signal=signal)
    logger.info("Tasks stamped with %r flagged as revoked: %s", headers, ", ".join(ids))
    if not terminate:
        return ok(f"headers {headers} flagged as revoked, but not terminated")
    terminated: defaultdict[str, set[Any]] = defaultdict(set)  # Celery's reply shows its repr
    for job, _started in jobs:
        if job.started_at is None or job.message.id not in ids:
            continue
        for name, values in headers.items():
            if name in job.message.stamps:
                found = set(stamp_values(job.message.stamps[name]))
                terminated[name].update(found & set(stamp_values(values)))
    if not terminated:
        return ok(f"headers {headers} were not terminated")
    return ok(f"headers {terminated} revoked")


@_register("control")
def terminate(worker: WorkerLike, signal: Any = None, task_id: Any = None, **_: Any) -> Any:
    return revoke(worker, task_id, terminate=True, signal=signal)


@_register("control")
def rate_limit(worker: WorkerLike, task_name: str = "", rate_limit: Any = None, **_: Any) -> Any:
    try:
        parse_rate(rate_limit)
    except ImproperlyConfigured as exc:
        return nok(f"Invalid rate limit string: {exc}")
    task = worker.app.tasks.get(task_name)
    if task is None:
        return nok("unknown task")
    task.rate_limit = rate_limit or None
    assert worker.consumer is not None
    worker.consumer.reset_rate_limit(task_name)
    if not rate_limit:
        logger.info("Rate limits disabled for tasks of type %s", task_name)
        return ok("rate limit disabled successfully")
    logger.info("New rate limit for tasks of type %s: %s.", task_name, rate_limit)
    return ok("new rate limit set successfully")


@_register("control")
def time_limit(
    worker: WorkerLike,
    task_name: str = "",
    soft: float | None = None,
    hard: float | None = None,
    **_: Any,
) -> Any:
    task = worker.app.tasks.get(task_name)
    if task is None:
        return nok("unknown task")
    task.soft_time_limit = float(soft) if soft else None
    task.time_limit = float(hard) if hard else None
    logger.info("New time limits for tasks of type %s: soft=%s hard=%s", task_name, soft, hard)
    return ok("time limits set successfully")


@_register("control")
def add_consumer(
    worker: WorkerLike,
    queue: str = "",
    exchange: str | None = None,
    exchange_type: str | None = None,
    routing_key: str | None = None,
    **_: Any,
) -> Any:
    if any(q.name == queue for q in worker.queues):
        return ok(f"already consuming from {queue}")
    if exchange is None and routing_key is None:
        new = worker.app.router.queue(queue)
    else:
        kind: Any = exchange_type or "direct"
        new = Queue(queue, Exchange(exchange or queue, kind), routing_key=routing_key or queue)
    worker.app.transport.declare(new)
    worker.set_queues([*worker.queues, new])
    logger.info("Started consuming from %s", queue)
    return ok(f"add consumer {queue}")


@_register("control")
def cancel_consumer(worker: WorkerLike, queue: str = "", **_: Any) -> Any:
    worker.set_queues([q for q in worker.queues if q.name != queue])
    logger.info("No longer consuming from %s", queue)
    return ok(f"no longer consuming from {queue}")


@_register("control")
def pool_grow(worker: WorkerLike, n: int = 1, **_: Any) -> Any:
    assert worker.pool is not None
    try:
        worker.pool.grow(int(n))
    except (NotImplementedError, ValueError) as exc:
        return nok(str(exc))
    worker.resize(worker.pool.concurrency)
    return ok("pool will grow")


@_register("control")
def pool_shrink(worker: WorkerLike, n: int = 1, **_: Any) -> Any:
    assert worker.pool is not None
    try:
        worker.pool.shrink(int(n))
    except (NotImplementedError, ValueError) as exc:
        return nok(str(exc))
    worker.resize(worker.pool.concurrency)
    return ok("pool will shrink")


@_register("control")
def autoscale(worker: WorkerLike, max: int | None = None, min: int | None = None, **_: Any) -> Any:
    pool = worker.pool
    set_autoscale = getattr(pool, "set_autoscale", None)
    if pool is None or set_autoscale is None:
        raise ValueError("Autoscale not enabled")
    high = int(max) if max is not None else pool.concurrency
    low = int(min) if min is not None else getattr(pool, "min_concurrency", 0)
    set_autoscale(high, low)
    worker.resize(high)
    return ok(f"autoscale now max={high} min={low}")


@_register("control")
def enable_events(worker: WorkerLike, **_: Any) -> Any:
    events = worker.events
    if events is None or not events.available:
        return nok("event dispatcher unavailable")
    if events.task_events:
        return ok("task events already enabled")
    events.task_events = True
    logger.info("Events of group {task} enabled by remote.")
    return ok("task events enabled")


@_register("control")
def disable_events(worker: WorkerLike, **_: Any) -> Any:
    events = worker.events
    if events is None:
        return nok("event dispatcher unavailable")
    if not events.task_events:
        return ok("task events already disabled")
    events.task_events = False
    logger.info("Events of group {task} disabled by remote.")
    return ok("task events disabled")


@_register("control")
def heartbeat(worker: WorkerLike, **_: Any) -> Any:
    if worker.events is not None and worker.events.heartbeat:
        worker.events.send_heartbeat()
    return ok("heartbeat sent")


@_register("control")
def shutdown(worker: WorkerLike, msg: str = "Got shutdown from remote", **_: Any) -> Any:
    logger.warning(msg)
    worker.request_stop()
    return ok("shutting down")
