"""Broadcast on Redis as kombu does it: Pub/Sub on ``/<db>.<exchange>[/<routing key>]``.

Celery workers listen for remote control on ``PSUBSCRIBE /<db>.celery.pidbox`` and send
events on ``PUBLISH /<db>.celeryev/<event.type>`` (wire.md §2.4), with the message in
kombu's envelope; Celeriac uses the same channels and envelope, so control commands and events
cross between the two. A subscription to topic patterns (``worker.#``) becomes PSUBSCRIBE
globs (``#`` -> ``*``, as kombu); since a Redis glob is looser than an AMQP topic, what arrives
is filtered again with ``routing.matches``. Pub/Sub keeps nothing: a subscriber that is not
connected misses what is sent meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from celeriac._redis.client import Connection, RedisError, pack
from celeriac._redis.connection import RedisConnector
from celeriac.exceptions import TransportError
from celeriac.routing import matches
from celeriac.transports.base import Broadcast, Subscription
from celeriac.transports.redis.layout import Keys, decode_envelope

__all__ = ["RedisSubscription", "channel_patterns"]


def channel_patterns(keys: Keys, exchange: str, patterns: Sequence[str]) -> list[str]:
    """The PSUBSCRIBE globs for topic ``patterns`` of ``exchange`` (kombu's, plus the bare
    channel of an empty routing key, which ``#`` also matches)."""
    globs: list[str] = []
    for pattern in patterns:
        if pattern in ("", "#"):
            globs.append(keys.topic(exchange, ""))
        if pattern:
            globs.append(keys.topic(exchange, pattern.replace("#", "*")))
    return list(dict.fromkeys(globs))


class RedisSubscription(Subscription):
    """One PSUBSCRIBE connection, for one exchange and its patterns."""

    def __init__(
        self, connector: RedisConnector, keys: Keys, exchange: str, patterns: Sequence[str]
    ) -> None:
        self._connector = connector
        self._exchange = exchange
        self._patterns = list(patterns)
        self._channel_prefix = keys.topic(exchange, "")
        self._conn: Connection | None = None
        globs = channel_patterns(keys, exchange, self._patterns)

        def listen() -> Connection:
            conn = connector.dedicated()
            try:
                conn.send(pack(("PSUBSCRIBE", *globs)))
                for _ in globs:  # subscribed once the server says so, not before
                    reply = conn.read()
                    if not isinstance(reply, list):
                        raise TransportError(f"Redis refused PSUBSCRIBE: {reply!r}")
            except BaseException:
                conn.disconnect()
                raise
            return conn

        self._conn = connector.run(f"subscribe to exchange {exchange!r}", listen)

    def receive(self, timeout: float) -> list[Broadcast]:
        conn = self._conn
        if conn is None:
            return []
        got: list[Broadcast] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while not got:
                if not conn.can_read(max(deadline - time.monotonic(), 0.0)):
                    return got
                while True:  # everything already waiting
                    self._take(conn.read(), got)
                    if not conn.can_read(0):
                        break
        except RedisError as exc:
            self.close()
            raise self._connector.describe(
                exc, f"receive from exchange {self._exchange!r}"
            ) from exc
        return got

    def _take(self, reply: object, got: list[Broadcast]) -> None:
        if not (isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage"):
            return  # a subscription confirmation
        channel = reply[2].decode("utf-8", "replace")
        if not channel.startswith(self._channel_prefix):
            return
        routing_key = channel[len(self._channel_prefix) :].removeprefix("/")
        if not any(matches("topic", p or "#", routing_key) for p in self._patterns):
            return
        try:
            envelope = decode_envelope(reply[3])
        except ValueError:
            return  # not a kombu envelope: nothing a subscriber could use
        got.append(Broadcast(self._exchange, routing_key, envelope.message))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
