"""Pooled connections to RabbitMQ, each lent to one thread at a time, and publishing on them.

A ``Session`` is one connection (no heartbeats, as Celery's producer connections) and one
channel, in confirm mode unless ``confirm_publish`` is off. ``publish`` sends a batch with
``mandatory`` set and waits for the broker's confirms, so a publish that returns is on the
broker, and a message that reached no queue is known (RabbitMQ returns it, in publish order).
``ConnectionPool`` keeps up to ``broker_pool_limit`` sessions (LIFO) and lends each to one
thread at a time, so no connection is ever used by two threads at once. A session whose
connection broke is closed instead of returned; one whose channel the broker closed (a
channel error such as NOT_FOUND) gets a new channel. ``run`` retries an operation once on a
new connection when the lent one turns out to be broken (the app retries above that).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from celeriac._amqp.connection import RECOVERABLE, Connector, close_quietly, translate
from celeriac._amqp.driver import amqp, amqp_errors
from celeriac.exceptions import TransportError

__all__ = ["ConnectionPool", "Session"]

logger = logging.getLogger("celeriac.amqp")

T = TypeVar("T")


class Session:
    """One connection and a channel on it (in confirm mode when confirms are on).

    Used by one thread at a time. ``publish`` sends a batch and waits for the broker's
    confirms, telling which messages came back unroutable (they are sent ``mandatory``).
    """

    def __init__(self, connector: Connector, connection: amqp.Connection | None = None) -> None:
        self.connector = connector
        self.connection = connection or connector.connect(heartbeat=False)
        self.last_used = time.monotonic()
        self._pending: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[int] = set()  # indexes in the batch being published
        self._routes: list[tuple[str, str]] = []
        self._return_cursor = 0
        self._next_seq = 1
        self.channel = self._open_channel()

    def _open_channel(self) -> amqp.Channel:
        channel = self.connection.channel()
        channel.auto_decode = False
        channel.events["basic_return"].add(self._on_return)
        if self.connector.confirm_publish:
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._next_seq = 1
        return channel

    def fresh_channel(self) -> amqp.Channel:
        """A new channel, after the broker closed the last one over a channel error."""
        self.channel = self._open_channel()
        return self.channel

    def _settle(self, tag: int, multiple: bool, into: set[int] | None) -> None:
        done = {seq for seq in self._pending if seq <= tag} if multiple else {tag}
        self._pending -= done
        if into is not None:
            into |= done

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, None)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, self._nacked)

    def _on_return(self, _error: Any, exchange: str, routing_key: str, *_: Any) -> None:
        # Returns come in publish order (but may overtake the confirms of earlier, routed
        # messages): the next batch item sent to the same place is the one returned.
        for index in range(self._return_cursor, len(self._routes)):
            if self._routes[index] == (exchange, routing_key):
                self._returned.add(index)
                self._return_cursor = index + 1
                return

    def publish(self, batch: list[tuple[amqp.Message, str, str]]) -> list[bool]:
        """Publish ``(message, exchange, routing key)`` items; say which came back unroutable.

        Raises ``TransportError`` when the broker refuses one (nack) or does not confirm
        in ``confirm_timeout``; connection errors propagate as the driver's.
        """
        self._returned.clear()
        self._nacked.clear()
        self._routes = [(exchange, routing_key) for _, exchange, routing_key in batch]
        self._return_cursor = 0
        for message, exchange, routing_key in batch:
            self.channel.basic_publish(message, exchange, routing_key, mandatory=True)
            if self.connector.confirm_publish:
                self._pending.add(self._next_seq)
                self._next_seq += 1
        deadline = time.monotonic() + self.connector.confirm_timeout
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no publisher confirm within {self.connector.confirm_timeout:g} s"
                )
            self.connection.drain_events(timeout=remaining)
        if self._nacked:
            raise TransportError(
                f"RabbitMQ at {self.connector.shown} refused {len(self._nacked)} message(s) "
                "(a negative publisher confirm): the broker may be out of disk or memory, or a "
                "queue's overflow setting rejects publishes. See the broker's log."
            )
        self.last_used = time.monotonic()
        return [index in self._returned for index in range(len(batch))]

    def close(self) -> None:
        close_quietly(self.connection)


class ConnectionPool:
    """Up to ``broker_pool_limit`` sessions, each lent to one thread at a time (LIFO)."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._idle: list[Session] = []
        self._lent = 0
        self._closed = False
        self._available = threading.Condition()

    @contextmanager
    def session(self, what: str) -> Iterator[Session]:
        """Lend a session; a failed one is closed instead of returned to the pool."""
        session = self._acquire(what)
        healthy = False
        try:
            yield session
            healthy = True
        except amqp_errors.ChannelError:
            # The broker closed the channel, not the connection: carry on with a new channel.
            try:
                session.fresh_channel()
                healthy = True
            except (*RECOVERABLE, amqp_errors.AMQPError):
                pass
            raise
        finally:
            self._release(session, healthy)

    def _acquire(self, what: str) -> Session:
        limit = self.connector.pool_limit
        with self._available:
            while True:
                if self._closed:
                    raise TransportError(
                        f"The AMQP transport for {self.connector.shown} is closed; cannot "
                        f"{what}. Create another (app.close() reopens on next use)."
                    )
                if self._idle:
                    self._lent += 1
                    return self._idle.pop()
                if limit is None or self._lent < limit:
                    self._lent += 1
                    break
                if not self._available.wait(timeout=self.connector.confirm_timeout * 3):
                    raise TransportError(
                        f"All {limit} pooled connections to {self.connector.shown} stayed in "
                        f"use too long to {what}: raise broker_pool_limit."
                    )
        try:
            return Session(self.connector)
        except BaseException:
            with self._available:
                self._lent -= 1
                self._available.notify()
            raise

    def _release(self, session: Session, healthy: bool) -> None:
        with self._available:
            self._lent -= 1
            keep = healthy and self.connector.pool_limit is not None and not self._closed
            if keep:
                self._idle.append(session)
            self._available.notify()
        if not keep:
            session.close()

    def run(self, what: str, operation: Callable[[Session], T], *, attempts: int = 2) -> T:
        """``operation(session)``, on a fresh connection again when the one lent was broken.

        Driver errors become ours; ``attempts`` bounds the tries (the app retries above us).
        """
        for attempt in range(attempts):
            try:
                with self.session(what) as session:
                    return operation(session)
            except RECOVERABLE as exc:
                if attempt + 1 >= attempts:
                    raise translate(exc, what, self.connector.shown) from exc
                logger.info("RabbitMQ connection lost (%s); reconnecting to %s", exc, what)
                time.sleep(self.connector.backoff.interval(attempt))
            except amqp_errors.AMQPError as exc:
                raise translate(exc, what, self.connector.shown) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._available:
            self._closed = True
            idle, self._idle = self._idle, []
            self._available.notify_all()
        for session in idle:
            session.close()
