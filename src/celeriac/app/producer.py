"""Sending tasks: merge options, route, build a protocol v2 message, publish with retries.

Options are merged in Celery's precedence: call > task > route > setting > default (the
task's ``queue``, ``priority``, ``serializer``, ``expires``, time limits, ... count as task
options). The message is published to the app's transport; an ETA is handed to the broker
as ``not_before`` so it waits there, not in a worker. A failed publish is retried on the
same transport per ``retry_policy`` (``_publish_retry``: the only retry loop around a
publish), sleeping on the app's clock between attempts.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac import signals
from celeriac.app._message_options import as_dict, as_dicts, aware, delivery_mode, eta_and_expires
from celeriac.app._publish_retry import PublishRetry
from celeriac.app.producer_options import ProducerOptions
from celeriac.canvas.stamping import stamps_of
from celeriac.exceptions import UnknownSettingWarning
from celeriac.protocol.message import Embed, TaskMessage
from celeriac.protocol.v2 import MESSAGE_PROPERTIES, body_of, encode_task
from celeriac.request import Context, current_request
from celeriac.result import AsyncResult
from celeriac.routing import Queue
from celeriac.transports.base import Outgoing, Transport

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.app.settings import Settings
    from celeriac.result import AsyncResult
    from celeriac.task import Task

__all__ = [
    "CALL_OPTIONS",
    "TASK_EXEC_OPTIONS",
    "Producer",
    "ProducerOptions",
    "Sending",
    "hold_publishes",
]

logger = logging.getLogger("celeriac.producer")

# Where ``send`` puts its publishing while ``hold_publishes`` is on (None: publish at once).
_held_publishes: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "celeriac_held_publishes", default=None
)


@contextmanager
def hold_publishes() -> Iterator[list[Callable[[], None]]]:
    """Within the block, ``send`` builds each message (its id given, its parent's children
    recorded) but does not publish it: the yielded list gets one call per message that
    publishes it, for the caller to run later (a task's callbacks, once its success is
    stored). Nested holds are not supported: the inner block holds its own."""
    held: list[Callable[[], None]] = []
    token = _held_publishes.set(held)
    try:
        yield held
    finally:
        _held_publishes.reset(token)


#: Options ``apply_async``/``send_task`` know (Celery's names, including kombu's publish ones).
CALL_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "task_id",
        "shadow",
        "link",
        "link_error",
        "queue",
        "exchange",
        "routing_key",
        "exchange_type",
        "priority",
        "serializer",
        "compression",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "headers",
        "retry",
        "retry_policy",
        "producer",
        "publisher",
        "connection",
        "add_to_parent",
        "route_name",
        "reply_to",
        "group_id",
        "group_index",
        "root_id",
        "parent_id",
        "chord",
        "chain",
        "retries",
        "stamped_headers",
        "stamps",
        "delivery_mode",
        "mandatory",
        "immediate",
        "expiration",
        "declare",
        "timeout",
        "confirm_timeout",
        "result_cls",
        "router",
        "task_type",
        "replaced_task_nesting",
        *MESSAGE_PROPERTIES,
    }
)


#: Task attributes that act as calling options when the call leaves them out.
TASK_EXEC_OPTIONS = (
    "queue",
    "routing_key",
    "exchange",
    "priority",
    "expires",
    "serializer",
    "delivery_mode",
    "compression",
    "time_limit",
    "soft_time_limit",
)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` at which a warning raised by our caller names the user's line."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and _is_ours(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        level += 1
    return level


def _is_ours(module: str) -> bool:
    return module == "celeriac" or module.startswith("celeriac.")


@dataclass(frozen=True, slots=True)
class Sending:
    """A task message on its way: built and routed, not yet published."""

    name: str
    task: Task[Any, Any] | None
    message: TaskMessage
    outgoing: Outgoing
    queue: Queue
    options: Mapping[str, Any]


class Producer:
    """Builds and publishes task messages for one app.

    Given ``options``, it sends with them; without, it follows the app's settings, building
    its ``ProducerOptions`` once per settings generation (``conf.generation``).
    """

    def __init__(self, app: AppLike, *, options: ProducerOptions | None = None) -> None:
        self._app = app
        self._fixed = options
        # (the settings, their generation, the options built from them)
        self._options: tuple[Settings, int, ProducerOptions] | None = None
        self._declared: weakref.WeakKeyDictionary[Transport, set[str]] = weakref.WeakKeyDictionary()

    @property
    def options(self) -> ProducerOptions:
        """The options sending reads (see the class docstring)."""
        if self._fixed is not None:
            return self._fixed
        conf = self._app.conf
        cached = self._options
        if cached is None or cached[0] is not conf or cached[1] != conf.generation:
            cached = self._options = (conf, conf.generation, ProducerOptions.from_settings(conf))
        return cached[2]

    def send(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task: Task[Any, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Publish task ``name``; return its AsyncResult. Inside ``hold_publishes`` the
        publishing waits until the block releases it (callbacks after a stored outcome)."""
        sending = self.prepare(name, args, kwargs, task=task, **options)

        def publish() -> None:
            self._publish(sending.outgoing, sending.queue, sending.options)
            self._announce(sending)

        held = _held_publishes.get()
        if held is None:
            publish()
        else:
            held.append(publish)
        return self._result(sending)

    def prepare(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task: Task[Any, Any] | None = None,
        **options: Any,
    ) -> Sending:
        """Everything ``send`` does before publishing: the message, where it goes, and
        ``before_task_publish``. (``celeriac.aio`` publishes it asynchronously.)"""
        unknown = set(options) - CALL_OPTIONS - set(options.get("stamped_headers") or ())
        if unknown:
            warnings.warn(
                f"Unknown calling option(s) for {name}: {', '.join(sorted(unknown))}; they are "
                "ignored. See apply_async's documented options.",
                UnknownSettingWarning,
                stacklevel=_caller_stacklevel(),
            )
        app = self._app
        settings = self.options
        merged = self._merge_options(name, args, kwargs, task, options)
        message = self._build(name, args, kwargs, task, merged)
        serializer = merged.get("serializer") or settings.serializer
        compression = merged.get("compression") or settings.compression
        wire = encode_task(message, serializer=serializer, compression=compression, now=app.now())
        dest = app.router.destination(
            merged.get("queue"), merged.get("exchange"), merged.get("routing_key")
        )
        not_before = message.eta.timestamp() if message.eta else None
        signals.before_task_publish.send(
            sender=name,
            body=body_of(message),  # Celery's handlers get (args, kwargs, embed), not bytes
            exchange=dest.exchange,
            routing_key=dest.routing_key,
            headers=wire.headers,
            properties=wire.properties,
            declare=[dest.queue],
            retry_policy=merged.get("retry_policy"),
        )
        outgoing = Outgoing(wire, dest.exchange, dest.routing_key, not_before)
        return Sending(name, task, message, outgoing, dest.queue, merged)

    def finish(self, sending: Sending) -> AsyncResult[Any]:
        """Everything ``send`` does once the message is published; its AsyncResult."""
        self._announce(sending)
        return self._result(sending)

    def _announce(self, sending: Sending) -> None:
        """``after_task_publish`` and the task-sent event of a published message."""
        app, wire = self._app, sending.outgoing.message
        exchange, routing_key = sending.outgoing.exchange, sending.outgoing.routing_key
        signals.after_task_publish.send(
            sender=sending.name,
            body=body_of(sending.message),
            headers=wire.headers,
            exchange=exchange,
            routing_key=routing_key,
        )
        if self.options.send_sent_event:  # a task-sent event for monitors (celeriac.events)
            app.events.task_sent(
                sending.message,
                queue=sending.queue.name,
                exchange=exchange,
                routing_key=routing_key,
            )

    def _result(self, sending: Sending) -> AsyncResult[Any]:
        """The AsyncResult of a sent message (a child of the running task, if any)."""
        message, task = sending.message, sending.task
        parent = current_request()
        trail = task.trail if task is not None else True
        if (
            parent is not None
            and parent.id
            and trail
            and sending.options.get("add_to_parent", True)
        ):
            parent.children.append(message.id)
        result: AsyncResult[Any] = AsyncResult(message.id, app=self._app, task_name=sending.name)
        result.ignored = bool(message.ignore_result)  # get() returns None at once, as in Celery
        return result

    def _merge_options(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        task: Task[Any, Any] | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Call options over the task's options over the matching route's."""
        given = {k: v for k, v in options.items() if v is not None}
        if task is not None:
            for key in TASK_EXEC_OPTIONS:
                value = getattr(task, key, None)
                if value is not None:
                    given.setdefault(key, value)
        # A map/chunks message is routed as the task it runs (``route_name``).
        route = self._app.router.route(
            given.get("route_name") or name,
            tuple(args or ()),
            dict(kwargs or {}),
            given,
            task=task,
        )
        return {**route, **given}

    def _build(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        task: Task[Any, Any] | None,
        opts: dict[str, Any],
    ) -> TaskMessage:
        app = self._app
        settings = self.options
        task_id = opts.get("task_id") or str(uuid.uuid4())
        eta, expires = eta_and_expires(opts, app.now())
        parent = current_request()
        parent_id = opts.get("parent_id") or (parent.id if parent is not None else None)
        root_id = opts.get("root_id") or (
            (parent.root_id or parent.id) if parent is not None else None
        )
        priority = opts.get("priority")
        if priority is None and parent is not None and settings.inherit_parent_priority:
            priority = (parent.delivery_info or {}).get("priority")
        if priority is None:
            priority = settings.default_priority
        ignore_result = opts.get("ignore_result")
        if ignore_result is None and task is not None:
            ignore_result = bool(task.option("ignore_result"))
        # send_task() of a name not given ignore_result sends null, as Celery: the worker's
        # task decides.
        return TaskMessage(
            task=name,
            id=task_id,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            embed=Embed(
                callbacks=as_dicts(opts.get("link")),
                errbacks=as_dicts(opts.get("link_error")),
                chain=as_dicts(opts.get("chain")),
                chord=as_dict(opts.get("chord")),
            ),
            eta=aware(eta) if isinstance(eta, dt.datetime) else None,
            expires=aware(expires) if isinstance(expires, dt.datetime) else None,
            retries=int(opts.get("retries") or 0),
            group=opts.get("group_id"),
            group_index=opts.get("group_index"),
            root_id=root_id or task_id,
            parent_id=parent_id,
            time_limit=opts.get("time_limit"),
            soft_time_limit=opts.get("soft_time_limit"),
            shadow=opts.get("shadow"),
            origin=app.origin,
            ignore_result=ignore_result,
            replaced_task_nesting=int(opts.get("replaced_task_nesting") or 0),
            stamped_headers=opts.get("stamped_headers"),
            stamps={**dict(opts.get("stamps") or {}), **stamps_of(opts)},  # sig.stamp(...)
            extra_headers=dict(opts.get("headers") or {}),
            extra_properties={k: opts[k] for k in MESSAGE_PROPERTIES if opts.get(k) is not None},
            correlation_id=task_id,
            reply_to=opts.get("reply_to") or self.reply_to(),
            priority=priority,
            delivery_mode=delivery_mode(
                opts.get("delivery_mode") or settings.default_delivery_mode
            ),
        )

    def reply_to(self) -> str:
        """The ``reply_to`` of tasks sent from this thread: the reply queue of a message-based
        result backend (rpc://; declared now, so no result sent to it is lost), else the
        thread's oid, as Celery does (its rpc backend's queue is named so)."""
        app = self._app
        if app.result_backend_url is not None:  # never make a backend that is not configured
            backend = app.backend
            queue = backend.reply_to if backend is not None else None
            if queue:
                return queue
        return app.thread_oid

    def resend(
        self,
        task: Task[Any, Any],
        request: Context,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        *,
        eta: dt.datetime,
        **options: Any,
    ) -> None:
        """Publish a retry of the running ``request``: same id, ``retries + 1``.

        The request's own options are kept; ``options`` (from ``Task.retry``) override them.
        """
        resent: dict[str, Any] = {
            "task_id": request.id,
            "retries": request.retries + 1,
            "eta": eta,
            "expires": request.expires,
            "link": request.callbacks,
            "link_error": request.errbacks,
            "chain": request.chain,
            "chord": request.chord,
            "group_id": request.group,
            "group_index": request.group_index,
            "root_id": request.root_id,
            "parent_id": request.parent_id or request.id,
            "time_limit": request.time_limit,
            "soft_time_limit": request.soft_time_limit,
            "headers": request.headers,
            "ignore_result": request.ignore_result,  # the caller's False is kept too
            "stamped_headers": request.stamped_headers,
            "stamps": request.stamps or None,
            "queue": request.delivery_info.get("routing_key") or None,
            "priority": request.delivery_info.get("priority"),
            "add_to_parent": False,
            "reply_to": request.reply_to,
        }
        resent.update(options)
        self.send(
            task.name,
            request.args if args is None else args,
            request.kwargs if kwargs is None else kwargs,
            task=task,
            **resent,
        )

    def _declare(self, queue: Queue) -> None:
        transport = self._app.transport
        declared = self._declared.setdefault(transport, set())
        if queue.name not in declared:
            transport.declare(queue)
            declared.add(queue.name)

    def _publish(self, outgoing: Outgoing, queue: Queue, opts: Mapping[str, Any]) -> None:
        """Declare ``queue`` and publish, retrying ``TransportError`` per the retry policy."""
        settings = self.options
        retry = opts.get("retry", settings.publish_retry)
        policy = {**settings.publish_retry_policy, **(opts.get("retry_policy") or {})}

        def attempt() -> None:
            self._declare(queue)
            self._app.transport.publish([outgoing])

        PublishRetry.from_policy(bool(retry), policy).run(attempt, self._app.clock.sleep)
