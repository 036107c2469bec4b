"""The ``rpc://`` result backend: each result is a message to the queue of the client that
sent the task, as Celery's RPC backend does (wire.md §4.5), so the two interoperate.

Nothing is stored on a server: a worker publishes the encoded meta to the default exchange
with routing key = the task message's ``reply_to`` and ``correlation_id`` = the task id
(``delivery_mode`` 1, or 2 with ``result_persistent``); the client consumes its reply queue
(no acks) and keeps the latest meta of every task id in memory. So results are one-shot and
visible only to the client that sent the task; there are no group results and no chords
(its ``capabilities`` say so, and the calls it cannot serve raise ``BackendCapabilityError``).

The reply queue (``reply_to``) is a uuid4 string per backend, declared on first use exactly
as Celery 5.7 declares its oid queue: default exchange, durable, auto-delete (it goes when
its consumer does), ``x-expires`` = ``result_expires`` in ms. Messages sent to a reply queue
that is gone are dropped by RabbitMQ, as in Celery.

Settings (``options``, which the app fills from its configuration): ``broker_url`` (the
AMQP broker; ``rpc://user:password@host:port/vhost`` names one directly), the broker's
connection settings (see ``celeriac._amqp.connection``, whose pool and I/O thread
this backend reuses), ``result_serializer`` (the content type results are labelled with,
``json``), ``result_persistent`` (False), ``result_expires`` (86400 s), ``result_cache_max``
(100 000 task ids kept).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from celeriac._amqp.connection import Connector
from celeriac._amqp.driver import amqp
from celeriac._amqp.io import IOConnection
from celeriac._amqp.pool import ConnectionPool, Session
from celeriac._masking import mask_url
from celeriac._time import Clock, system_clock
from celeriac.backends.base import BackendCapabilities, ResultBackend
from celeriac.exceptions import (
    BackendError,
    BackendGetMetaError,
    BackendStoreError,
    DecodeError,
    ImproperlyConfigured,
    TimeoutError,
    TransportError,
)
from celeriac.protocol.compression import decompress, split_compressed_result
from celeriac.protocol.serializers import content_type_of

__all__ = ["RpcBackend"]

logger = logging.getLogger("celeriac.backends.rpc")

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_INSTEAD = (
    "Results on rpc:// are messages to the client that sent each task, and nothing is kept: "
    "use a result backend that stores them (sqlite:///..., redis://...)."
)


def _broker_url(url: str, options: Mapping[str, Any]) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() != "rpc":
        raise ImproperlyConfigured(f"{mask_url(url)!r} is not an rpc:// result backend URL.")
    if parts.netloc:
        return "amqp" + url[len("rpc") :]
    broker = options.get("broker_url")
    if isinstance(broker, (list, tuple)):
        broker = ";".join(broker)
    if not broker or str(broker).partition("://")[0].lower() not in _AMQP_SCHEMES:
        raise ImproperlyConfigured(
            "The rpc:// result backend sends results through RabbitMQ: set broker_url to an "
            "amqp:// URL (or write rpc://user:password@host:port/vhost)."
        )
    return str(broker)


class RpcBackend(ResultBackend):
    """Results as messages to the sending client's reply queue (module docstring)."""

    capabilities = BackendCapabilities(
        stores_results=False,
        notifies=True,
        expiry=False,
        expires_on_its_own=True,
        groups=False,
        counters=False,
        chords=False,
    )

    def __init__(
        self,
        url: str = "rpc://",
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        opts = dict(options or {})
        self._connector = Connector(_broker_url(url, opts), opts)
        self._pool = ConnectionPool(self._connector)
        self._clock = clock
        serializer = str(opts.get("result_serializer") or "json")
        self._content_type = content_type_of(serializer)
        self._content_encoding = "binary" if serializer in ("msgpack", "pickle") else "utf-8"
        self._delivery_mode = 2 if opts.get("result_persistent") else 1
        expires = opts.get("result_expires", 86400)
        self._expires_ms = int(float(expires) * 1000) if expires else None
        self._cache_max = int(opts.get("result_cache_max") or 100_000)
        self._queue = str(uuid.uuid4())
        self._declared = False
        self._results: OrderedDict[str, bytes] = OrderedDict()
        self._changed = threading.Condition()
        self._io: IOConnection | None = None
        self._channel: Any = None  # the consuming channel (the I/O thread's)
        self._lock = threading.Lock()

    # -- the reply queue ---------------------------------------------------------------------

    @property
    def reply_to(self) -> str:
        """The reply queue, declared on first use so results sent to it are kept."""
        with self._lock:
            if not self._declared:
                with self._errors(BackendError, "declare the reply queue"):
                    self._pool.run("declare the reply queue", self._declare_on_session)
                self._declared = True
        return self._queue

    @reply_to.setter
    def reply_to(self, name: str | None) -> None:
        with self._lock:
            self._queue = name or str(uuid.uuid4())
            self._declared = False

    def _declare(self, channel: amqp.Channel) -> None:
        arguments = {} if self._expires_ms is None else {"x-expires": self._expires_ms}
        channel.queue_declare(self._queue, durable=True, auto_delete=True, arguments=arguments)

    def _declare_on_session(self, session: Session) -> None:
        self._declare(session.channel)

    @contextmanager
    def _errors(self, kind: type[BackendError], what: str) -> Iterator[None]:
        try:
            yield
        except TransportError as exc:
            raise kind(f"rpc:// result backend: could not {what}: {exc}") from exc

    # -- sending results (the worker) -------------------------------------------------------

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,
    ) -> None:
        if not reply_to:
            return  # the sender asked for no replies (Celery does the same)
        # result_compression: the body compressed, named by kombu's ``compression`` header
        # (which Celery's rpc client undoes), not Celery's in-band marker of stored results.
        body, headers = bytes(payload), {}
        compressed = split_compressed_result(body)
        if compressed is not None:
            body, headers["compression"] = compressed
        message = amqp.Message(
            body,
            content_type=self._content_type,
            content_encoding=self._content_encoding,
            correlation_id=task_id,
            delivery_mode=self._delivery_mode,
            application_headers=headers,
        )
        with self._errors(BackendStoreError, f"send the result of task {task_id}"):
            self._pool.run(
                f"send the result of task {task_id}",
                lambda session: session.publish([(message, "", reply_to)]),
            )

    # -- receiving results (the client) -----------------------------------------------------

    def _consuming(self) -> IOConnection:
        with self._lock:
            if self._io is None or not self._io.alive:
                self._io = IOConnection(
                    self._connector,
                    name=f"celeriac rpc results {self._queue}",
                    on_connect=self._subscribe,
                    on_disconnect=lambda: None,
                )
                self._io.start()
            return self._io

    def _subscribe(self, connection: amqp.Connection, generation: int) -> None:
        channel = connection.channel()
        channel.auto_decode = False
        self._declare(channel)
        channel.basic_consume(self._queue, callback=self._on_result, no_ack=True)
        self._channel = channel
        self._declared = True

    def _waiting(self, connection: amqp.Connection) -> int:
        """Results still in the queue; one more round trip on the consuming channel brings in
        those the broker already sent."""
        _, count, _ = self._channel.queue_declare(self._queue, passive=True)
        self._channel.basic_qos(0, 0, False)
        return int(count)

    def _on_result(self, message: amqp.Message) -> None:
        task_id = message.properties.get("correlation_id")
        if not task_id:
            return  # not a result (Celery < 4 sent the id in the body only)
        content_type = message.properties.get("content_type")
        if content_type and content_type != self._content_type:
            # Decoding it as result_serializer would be wrong, and decoding it as what it says
            # it is must not happen unasked: result_accept_content holds result_serializer.
            logger.error(
                "rpc:// result backend: refusing the result of task %s: its content type %r "
                "is not %r (result_serializer); send results with the same result_serializer",
                task_id,
                content_type,
                self._content_type,
            )
            return
        body = message.body or b""  # py-amqp hands an empty body over as ""
        compression = (message.properties.get("application_headers") or {}).get("compression")
        if isinstance(compression, str) and compression:
            with contextlib.suppress(DecodeError):  # else kept: reading it says it is broken
                body = decompress(bytes(body), compression)
        with self._changed:
            self._results.pop(task_id, None)
            self._results[task_id] = body if isinstance(body, bytes) else bytes(body)
            while len(self._results) > self._cache_max:
                self._results.popitem(last=False)
            self._changed.notify_all()

    def _settle(self) -> None:
        """Wait until the results already in the reply queue have been received."""
        io = self._consuming()
        timeout = self._connector.confirm_timeout
        if not io.connected.wait(self._connector.connect_timeout):
            raise BackendGetMetaError(
                f"rpc:// result backend: cannot reach RabbitMQ at {self._connector.shown}."
            )
        with self._errors(BackendGetMetaError, "read results"):
            while io.call(self._waiting, timeout):
                pass  # messages still waiting in the queue are on their way to us

    def fetch(self, task_id: str) -> bytes | None:
        return self.fetch_many([task_id]).get(task_id)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        self._settle()
        with self._changed:
            return {tid: self._results[tid] for tid in task_ids if tid in self._results}

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(task_ids))
        self._consuming()
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        while True:
            with self._changed:
                found = {tid: self._results[tid] for tid in wanted if tid in self._results}
            ready = {tid: payload for tid, payload in found.items() if is_ready(payload)}
            if len(ready) == len(wanted):
                return {tid: ready[tid] for tid in wanted}
            if self._io is not None and self._io.failure is not None:
                raise BackendGetMetaError(f"rpc:// result backend: {self._io.failure}")
            wait = interval if deadline is None else deadline - self._clock.monotonic()
            if wait <= 0:
                raise TimeoutError(
                    f"{len(wanted) - len(ready)} of {len(wanted)} results were not ready "
                    f"within {timeout} s"
                )
            with self._changed:
                self._changed.wait(min(wait, interval))

    def forget(self, task_id: str) -> None:
        with self._changed:
            self._results.pop(task_id, None)

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        raise self.lacks("groups", f"save group {group_id}", _INSTEAD)

    def fetch_group(self, group_id: str) -> bytes | None:
        raise self.lacks("groups", f"read group {group_id}", _INSTEAD)

    def forget_group(self, group_id: str) -> None:
        raise self.lacks("groups", f"forget group {group_id}", _INSTEAD)

    def incr(self, key: str, *, ttl: float | None) -> int:
        raise self.lacks("counters", f"count {key}", _INSTEAD)

    def cleanup(self) -> int:
        return 0  # nothing is stored: unread results expire with their queue

    def close(self) -> None:
        with self._lock:
            io, self._io = self._io, None
        if io is not None:
            io.stop()
        self._pool.close()
