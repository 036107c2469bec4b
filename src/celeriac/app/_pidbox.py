"""Remote control on the wire (Celery's "pidbox"): requests out, replies back.

A request is a broadcast on exchange ``<control_exchange>.pidbox`` (``celery.pidbox``),
routing key ``""``, headers ``{"clock": N, "expires": <deadline or 0>}``, body (serialized
with ``task_serializer``)::

    {"method": "ping", "arguments": {}, "destination": ["w1@host"] | null,
     "pattern": null, "matcher": null,
     "ticket": "<uuid>", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": <oid>}}

``ticket`` and ``reply_to`` are there only when replies are wanted. Every worker subscribed
to the exchange sees the request and runs it when it is for it (``node_matches``). A reply is
published as an ordinary message to exchange ``reply.<control_exchange>.pidbox`` (direct)
with the asker's ``oid`` as routing key, so it lands in the asker's queue
``<oid>.reply.celery.pidbox``; headers ``{"ticket": <ticket>, "clock": N}``, body
``{"<nodename>": <reply>}``. The asker declares that queue before sending, collects replies
carrying its ticket until the timeout or the limit, and purges the queue afterwards (a late
reply is of no use to anyone).
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import DecodeError, ImproperlyConfigured, OperationalError
from celeriac.protocol.message import Message
from celeriac.protocol.serializers import dumps, loads
from celeriac.routing import Exchange, Queue
from celeriac.transports.base import Outgoing, Transport

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["Mailbox", "Request", "node_matches"]

ReplyCallback = Callable[[dict[str, Any]], None]


def node_matches(
    hostname: str,
    destination: Sequence[str] | None,
    pattern: str | None = None,
    matcher: str | None = None,
) -> bool:
    """Whether a request for ``destination`` (or ``pattern``) is meant for ``hostname``.

    No destination and no pattern means every node. ``matcher`` is ``glob`` (the default) or
    ``pcre`` (a regular expression matched at the start of the name), as in kombu.
    """
    if destination:
        return hostname in destination
    if pattern:
        if matcher in (None, "glob"):
            return fnmatch.fnmatchcase(hostname, pattern)
        if matcher == "pcre":
            return re.match(pattern, hostname) is not None
        raise ImproperlyConfigured(f"Unknown matcher {matcher!r}: use 'glob' or 'pcre'")
    return True


@dataclass(frozen=True, slots=True)
class Request:
    """A control request as a worker reads it."""

    method: str
    arguments: dict[str, Any]
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None
    ticket: str | None = None
    reply_to: dict[str, str] | None = None
    clock: int = 0


class Mailbox:
    """The app's end of remote control: sends requests, collects replies, encodes both."""

    def __init__(self, app: AppLike) -> None:
        self.app = app
        exchange = str(app.conf.control_exchange or "celery")
        self.exchange = f"{exchange}.pidbox"
        self.reply_exchange = f"reply.{exchange}.pidbox"

    @property
    def transport(self) -> Transport:
        transport = self.app.transport
        if not transport.capabilities.broadcast:
            raise ImproperlyConfigured(
                f"Remote control needs a broker with a broadcast channel; "
                f"{type(transport).__name__} has none yet. Use sqlite://, memory:// (or a "
                "transport that lists broadcast in its capabilities)."
            )
        return transport

    # -- the asking side ----------------------------------------------------------------------

    def reply_queue(self, oid: str) -> Queue:
        conf = self.app.conf
        durable = bool(conf.control_queue_durable)
        return Queue(
            f"{oid}.{self.reply_exchange}",
            Exchange(self.reply_exchange, "direct", durable=False, auto_delete=False),
            routing_key=oid,
            durable=durable,
            exclusive=bool(conf.control_queue_exclusive) and not durable,
            auto_delete=not durable,
            queue_arguments={
                "x-expires": int(float(conf.control_queue_expires) * 1000),
                "x-message-ttl": int(float(conf.control_queue_ttl) * 1000),
            },
        )

    def broadcast(
        self,
        method: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: Sequence[str] | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: ReplyCallback | None = None,
    ) -> list[dict[str, Any]] | None:
        """Send ``method`` to the matching workers; with ``reply``, their replies in order."""
        if destination is not None and not isinstance(destination, (list, tuple)):
            raise ValueError(f"destination must be a list or tuple, not {type(destination)}")
        transport = self.transport
        body: dict[str, Any] = {
            "method": method,
            "arguments": dict(arguments or {}),
            "destination": list(destination) if destination else None,
            "pattern": pattern,
            "matcher": matcher,
        }
        queue = None
        if reply:
            oid = self.app.thread_oid
            queue = self.reply_queue(oid)
            transport.declare(queue)
            body["ticket"] = str(uuid.uuid4())
            body["reply_to"] = {"exchange": self.reply_exchange, "routing_key": oid}
            if limit is None and destination:
                limit = len(destination)
        headers = {
            "clock": self.app.lamport_clock.forward(),
            "expires": time.time() + timeout if timeout else 0,
        }
        transport.broadcast(self.exchange, "", self._message(body, headers))
        if queue is None:
            return None
        return self._collect(transport, queue, body["ticket"], timeout, limit, callback)

    def _collect(
        self,
        transport: Transport,
        queue: Queue,
        ticket: str,
        timeout: float,
        limit: int | None,
        callback: ReplyCallback | None,
    ) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        consumer = transport.consumer([queue.name], owner=queue.name)
        try:
            while limit is None or len(replies) < limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for delivery in consumer.fetch(100, remaining):
                    consumer.ack(delivery)
                    body = self._reply_body(delivery.message, ticket)
                    if body is not None:
                        replies.append(body)
                        if callback is not None:
                            callback(body)
        finally:
            consumer.close()
            with contextlib.suppress(OperationalError):  # best effort: late replies only
                transport.purge(queue.name)
        return replies if limit is None else replies[:limit]

    def _reply_body(self, message: Message, ticket: str) -> dict[str, Any] | None:
        self.app.lamport_clock.adjust(message.headers.get("clock"))
        if message.headers.get("ticket", ticket) != ticket:
            return None  # a late reply to an earlier request
        try:
            body = self._decode(message)
        except Exception:
            return None
        return body if isinstance(body, dict) else None

    # -- the worker's side --------------------------------------------------------------------

    def decode_request(self, message: Message) -> Request:
        """Read a request; raises ``DecodeError``/``ContentDisallowed`` for a bad one."""
        self.app.lamport_clock.adjust(message.headers.get("clock"))
        body = self._decode(message)
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            raise DecodeError(f"not a control request: {body!r:.200}")
        destination = body.get("destination")
        return Request(
            method=body["method"],
            arguments=dict(body.get("arguments") or {}),
            destination=list(destination) if destination else None,
            pattern=body.get("pattern"),
            matcher=body.get("matcher"),
            ticket=body.get("ticket"),
            reply_to=body.get("reply_to"),
            clock=int(message.headers.get("clock") or 0),
        )

    def send_reply(self, request: Request, hostname: str, reply: Any) -> None:
        """Publish ``{hostname: reply}`` where ``request`` asked for it."""
        if not request.reply_to or not request.ticket:
            return
        headers = {"ticket": request.ticket, "clock": self.app.lamport_clock.forward()}
        message = self._message({hostname: reply}, headers)
        self.app.transport.publish(
            [
                Outgoing(
                    message,
                    exchange=str(request.reply_to.get("exchange") or self.reply_exchange),
                    routing_key=str(request.reply_to.get("routing_key") or ""),
                )
            ]
        )

    # -- encoding -----------------------------------------------------------------------------

    def _message(self, body: Any, headers: dict[str, Any]) -> Message:
        data, content_type, encoding = dumps(body, str(self.app.conf.task_serializer))
        return Message(data, content_type, encoding, headers, {"delivery_mode": 1})

    def _decode(self, message: Message) -> Any:
        return loads(
            message.body,
            message.content_type,
            message.content_encoding,
            accept=self.app.conf.accept_content,
        )
