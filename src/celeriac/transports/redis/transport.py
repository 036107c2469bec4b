"""The Redis broker, wire-compatible with kombu's Redis transport (Celery's workers and clients).

URLs: ``redis://``, ``rediss://``, ``redis+socket://``, ``sentinel://`` (see
``celeriac._redis.connection``). Options (``broker_transport_options``, Celery's names where
Celery has one): ``global_keyprefix``, ``sep``, ``priority_steps`` ([0, 3, 6, 9]),
``queue_order_strategy`` (round_robin | priority | sorted), ``visibility_timeout`` (3600 s),
``fanout_prefix``, ``fanout_patterns``, ``unacked_key``, ``unacked_index_key``,
``socket_timeout``, ``socket_connect_timeout``, ``socket_keepalive``, ``client_name``,
``master_name``, ``sentinel_kwargs``, ``max_retries``/``interval_*``; and Celeriac's own:
``lease_timeout`` (s, the smaller of 30 and visibility_timeout), ``max_deliveries`` (10),
``delayed_delivery`` (True), ``restore_visible`` (True), ``recover_interval`` (1 s),
``polling_interval`` (0.1 s, only without CLIENT TRACKING), ``broker_use_ssl``,
``broker_connection_retry`` (False: an operation whose connection was lost fails at once),
``broker_connection_retry_on_startup`` (the same for the first connection; follows
``broker_connection_retry`` when unset), ``broker_connection_max_retries`` (the retries of
``max_retries`` when that is not given: 10; 0 retries for ever, as Celery). Publishing is
retried by the producer instead (docs/connection-retry.md).

Keys (every one behind ``global_keyprefix``; ``␆␖`` is ``sep``)::

    <queue>, <queue>␆␖3, ␆␖6, ␆␖9   LIST  kombu's: one per priority step, LPUSH in / RPOP out;
                                         step 0 is taken first (on Redis, 0 is the highest)
    _kombu.binding.<exchange>        SET   kombu's: "<routing key>␆␖<pattern>␆␖<queue>"
    _kombu.binding_permanent.<ex>    SET   the same members (kombu 5.7 keeps them alive)
    unacked                          HASH  kombu's: tag -> [envelope, "", queue] while leased
    unacked_index                    ZSET  kombu's: tag -> delivery time, renewed with the lease
    _celeriac.leases                 ZSET  "<tag>\t<claim>" -> lease expiry (Celeriac's only)
    _celeriac.claims                 HASH  tag -> delivery count, envelope size, step, queue
    _celeriac.deliveries             HASH  tag -> deliveries so far (only while it waits again)
    _celeriac.delayed.<queue>        ZSET  "<step><envelope>" -> not-before time (ETA, defer)
    _celeriac.dead_letters           LIST  {"queue", "reason", "at", "envelope_encoding",
                                           "envelope"} oldest first, bounded
    _celeriac.dead_letters.limits    HASH  max_entries, dropped, unseen (dead_letters)
    _celeriac.exchanges              HASH  exchange -> type (kombu keeps types in memory only)
    _celeriac.fanout.<exchange>      SET   queues Celeriac bound to a fanout exchange
    _celeriac.sent.<publisher>       STR   the last publish of one thread (``publish``)
    /<db>.<exchange>[/<routing key>] Pub/Sub channel of kombu's fanout, and of ``broadcast``
                                     (remote control, events; see ``broadcast``)

Atomic steps, each one Lua script (``scripts``) or one MULTI:

    publish      LPUSH of the envelope to each routed queue's step list, ETA tasks too (their
                 ``eta`` header says when, as Celery's); ZADD to the delayed set only for a
                 ``not_before`` ahead without an ``eta`` header; PUBLISH for fanout; a batch is
                 one MULTI, with a marker that keeps a retry from pushing it twice
                 (``publish``)
    defer        a Celeriac worker that takes a task whose ETA is ahead gives it back into the
                 delayed set (GIVE_BACK, from its lease: no crash point loses it), so it waits
                 in Redis, not in worker memory; TAKE moves it back to its list when due
    take         promote due delayed messages; RPOP from the lists (best step first, queues in
                 turn); for each message HSET unacked + ZADD unacked_index + ZADD leases + HSET
                 claims, or move it to the dead letters when it was delivered max_deliveries
                 times already - so no crash point loses a message between list and lease
    ack, renew, give back (requeue, defer, dead letter)   one script each, acting only while the
                 caller's claim still holds the message
    recover      put back the messages whose leases expired (their worker died) and those a
                 Celery worker left unacknowledged past visibility_timeout
    declare, queue_length, purge   one MULTI each

A waiting consumer never polls: Redis client-side tracking (``CLIENT TRACKING ... REDIRECT``)
sends it an invalidation when a list or delayed set it read changes (``consumer``).
Celery workers consume the same lists with BRPOP and restore ``unacked`` after their
visibility timeout; since a lease renewal also moves the ``unacked_index`` score, neither side
restores a message whose task is still running.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac._redis.connection import PUBLISH_RETRY, RedisConnector, RetryPolicy
from celeriac._time import Clock, system_clock
from celeriac.exceptions import ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.routing import Queue, matches
from celeriac.transports import connection_retry
from celeriac.transports._dead_letters import DeadLetterLimits
from celeriac.transports.base import Capabilities, DeadLetter, Outgoing, Transport
from celeriac.transports.redis.broadcast import RedisSubscription
from celeriac.transports.redis.consumer import RedisConsumer
from celeriac.transports.redis.dead_letters import RedisDeadLetters, letter_of
from celeriac.transports.redis.layout import (
    BrokerOptions,
    Keys,
    decode_envelope,
    encode_envelope,
    topic_pattern,
)
from celeriac.transports.redis.publish import IdempotentPublish

__all__ = ["RedisTransport"]

_EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")


class RedisTransport(Transport):
    """A broker in Redis that Celery's workers and clients share (module docstring)."""

    capabilities = Capabilities(
        delayed_delivery=True,
        leases=True,
        priorities=True,
        cross_process=True,
        persistent=True,
        broadcast=True,
    )
    #: kombu's order on Redis: priority 0 is taken first, 9 last (the opposite of AMQP).
    lower_priority_first = True

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        opts = dict(options or {})
        self.options = BrokerOptions.parse(opts)
        retries = opts.get("broker_connection_max_retries")
        if retries == 0:  # Celery's 0: retry for ever
            retries = sys.maxsize
        defaults = RetryPolicy(max_retries=10 if retries is None else int(retries))
        on_startup, after_loss = connection_retry(opts)
        self.connector = RedisConnector(
            url,
            opts,
            what="broker",
            error=TransportError,
            retry=RetryPolicy.from_options(opts, defaults),
            ssl_options=opts.get("broker_use_ssl"),
            retry_on_startup=on_startup,
            retry_after_loss=after_loss,
        )
        self.keys = Keys(self.options, self.connector.address.db)
        self.clock = clock
        if not self.options.delayed_delivery:
            self.capabilities = Capabilities(
                leases=True, priorities=True, cross_process=True, persistent=True, broadcast=True
            )
        self.dead_store = RedisDeadLetters(self, DeadLetterLimits.from_options(opts))
        self._exchange_types: dict[str, str] = {}
        self._publishes = IdempotentPublish(self.keys.prefix + "_celeriac.sent.")
        self._consumers: set[RedisConsumer] = set()
        self._lock = threading.Lock()

    @property
    def lease_renew_interval(self) -> float:
        return self.options.lease_timeout / 3

    # -- publishing -----------------------------------------------------------------------

    def declare(self, queue: Queue) -> None:
        exchange = queue.bound_exchange
        if not exchange.name:
            return  # the default exchange routes by queue name; nothing to bind
        if exchange.type not in _EXCHANGE_TYPES:
            raise ImproperlyConfigured(f"Unknown exchange type {exchange.type!r}")
        keys = self.keys
        pattern = topic_pattern(queue.binding_key) if exchange.type == "topic" else ""
        member = keys.binding_member(queue.binding_key, pattern, queue.name)
        self._exchange_types[exchange.name] = exchange.type

        commands: list[tuple[Any, ...]] = [
            ("SADD", keys.binding(exchange.name), member),
            ("SADD", keys.binding_permanent(exchange.name), member),
            ("HSET", keys.exchange_types, exchange.name, exchange.type),
        ]
        if exchange.type == "fanout":
            commands.append(("SADD", keys.fanout_queues(exchange.name), queue.name))
        self.connector.run(
            f"bind queue {queue.name!r} to exchange {exchange.name!r}",
            lambda: self.connector.execute(commands, transaction=True),
            retry=PUBLISH_RETRY,  # the producer retries a declare with its publish
        )

    def _routes(self, exchanges: set[str]) -> dict[str, tuple[str, list[str], set[str]]]:
        """For each named exchange: its type, its binding members and its fanout queues."""
        if not exchanges:
            return {}
        commands = self.route_commands(exchanges)
        replies = self.connector.run(
            "read exchange bindings", lambda: self.connector.execute(commands), retry=PUBLISH_RETRY
        )
        return self.parse_routes(exchanges, replies)

    def route_commands(self, exchanges: set[str]) -> list[tuple[Any, ...]]:
        """The reads ``parse_routes`` needs for these exchanges (three per exchange)."""
        keys = self.keys
        return [
            command
            for name in sorted(exchanges)
            for command in (
                ("SMEMBERS", keys.binding(name)),
                ("HGET", keys.exchange_types, name),
                ("SMEMBERS", keys.fanout_queues(name)),
            )
        ]

    def parse_routes(
        self, exchanges: set[str], replies: list[Any]
    ) -> dict[str, tuple[str, list[str], set[str]]]:
        """The routes of ``exchanges`` from the replies to ``route_commands``."""
        keys = self.keys
        routes: dict[str, tuple[str, list[str], set[str]]] = {}
        for i, name in enumerate(sorted(exchanges)):
            members = [m.decode() for m in replies[3 * i]]
            stored = replies[3 * i + 1]
            kind = self._exchange_types.get(name) or (stored.decode() if stored else "")
            if not kind:  # bound by a Celery client: patterns only exist for topic bindings
                kind = "topic" if any(m.split(keys.sep)[1:2] != [""] for m in members) else "direct"
            routes[name] = (kind, members, {q.decode() for q in replies[3 * i + 2]})
        return routes

    def _destinations(
        self, item: Outgoing, routes: dict[str, tuple[str, list[str], set[str]]]
    ) -> tuple[list[str], list[str]]:
        """The queues ``item`` goes to, and the fanout channels it is published on."""
        if not item.exchange:
            return [item.routing_key], []
        kind, members, fanout_queues = routes[item.exchange]
        if kind == "fanout":
            return sorted(fanout_queues), [self.keys.topic(item.exchange, item.routing_key)]
        queues = set()
        for member in members:
            binding_key, _, queue = member.split(self.keys.sep, 2)
            if matches(kind, binding_key, item.routing_key):
                queues.add(queue)
        return sorted(queues), []

    def publish(self, items: Sequence[Outgoing]) -> list[int]:
        commands, plan = self.publish_commands(items)
        if not commands:
            return [0] * len(items)
        once = self._publishes.operation(commands, self._execute)
        replies = self.connector.run("publish messages", once, retry=PUBLISH_RETRY)
        if replies is None:  # a retry found the lost attempt had run: subscribers unknown
            return [listed for listed, _, _ in plan]
        return [listed + sum(int(r) for r in replies[a:b]) for listed, a, b in plan]

    def publish_commands(
        self,
        items: Sequence[Outgoing],
        routes: dict[str, tuple[str, list[str], set[str]]] | None = None,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, int]]]:
        """The commands that publish ``items`` (run as one MULTI when there are several)
        and, per item, how to count its deliveries from their replies (``publish``).
        ``routes`` (``parse_routes``) are read here when not given."""
        if routes is None:
            routes = self._routes({item.exchange for item in items if item.exchange})
        now = self.clock.time()
        commands: list[tuple[Any, ...]] = []
        plan: list[tuple[int, int, int]] = []  # per item: list deliveries, its PUBLISH replies
        for item in items:
            queues, channels = self._destinations(item, routes)
            step = self.options.step_of(item.message.priority)
            # An ETA message goes on the list with its ``eta`` header, as Celery's client puts
            # it, so Celery workers run it; only a bare ``not_before`` (no task header to say
            # when) needs the delayed set. A Celeriac worker moves an early message there.
            delayed = self._delays(item, now)
            for queue in queues:
                envelope, _ = encode_envelope(item.message, item.exchange, item.routing_key)
                if delayed:
                    score = repr(item.not_before)
                    commands.append(("ZADD", self.keys.delayed(queue), score, f"{step}{envelope}"))
                else:
                    commands.append(("LPUSH", self.keys.queue(queue, step), envelope))
            start = len(commands)
            for channel in channels:
                envelope, _ = encode_envelope(item.message, item.exchange, item.routing_key)
                commands.append(("PUBLISH", channel, envelope))
            plan.append((len(queues), start, len(commands)))
        return commands, plan

    def _delays(self, item: Outgoing, now: float) -> bool:
        """Whether ``item`` waits in the delayed set: a ``not_before`` ahead on a message whose
        headers carry no ``eta`` (a task message with one goes on the list, as Celery's)."""
        if not self.options.delayed_delivery or (item.not_before or 0) <= now:
            return False
        return not item.message.headers.get("eta")

    def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        return self.connector.execute(commands, transaction=len(commands) > 1)

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        envelope, _ = encode_envelope(message, exchange, routing_key)
        channel = self.keys.topic(exchange, routing_key)
        command = ("PUBLISH", channel, envelope)
        self.connector.run(
            f"broadcast on exchange {exchange!r}", lambda: self.connector.execute([command])
        )

    def subscribe(self, exchange: str, patterns: Sequence[str] = ("#",)) -> RedisSubscription:
        return RedisSubscription(self.connector, self.keys, exchange, patterns)

    # -- consuming ------------------------------------------------------------------------

    def consumer(self, queues: Sequence[str], *, owner: str) -> RedisConsumer:
        # The scripts that set letters aside read the cap this writes; a Redis that is down
        # now is left for the consumer's fetches to report (and the watch to run again).
        self.dead_store.watch_if_due(deadline=time.monotonic())
        consumer = RedisConsumer(self, list(dict.fromkeys(queues)), owner)
        with self._lock:
            self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: RedisConsumer) -> None:
        with self._lock:
            self._consumers.discard(consumer)

    # -- inspection -----------------------------------------------------------------------

    def _queue_keys(self, queue: str) -> list[str]:
        return [self.keys.queue(queue, step) for step in self.options.priority_steps]

    def queue_length(self, queue: str) -> int:
        commands: list[tuple[Any, ...]] = [("LLEN", key) for key in self._queue_keys(queue)]
        commands.append(("ZCARD", self.keys.delayed(queue)))
        replies = self.connector.run(
            f"count the messages of queue {queue!r}",
            lambda: self.connector.execute(commands, transaction=True),
        )
        return sum(int(n) for n in replies)

    def purge(self, queue: str) -> int:
        keys = [*self._queue_keys(queue), self.keys.delayed(queue)]
        commands: list[tuple[Any, ...]] = [("LLEN", key) for key in keys[:-1]]
        commands += [("ZCARD", keys[-1]), ("DEL", *keys)]
        replies = self.connector.run(
            f"purge queue {queue!r}", lambda: self.connector.execute(commands, transaction=True)
        )
        return sum(int(n) for n in replies[:-1])

    def delayed_messages(self, queue: str, limit: int = 1000) -> list[tuple[float, Message]]:
        [raw] = self.connector.run(
            f"read the delayed messages of queue {queue!r}",
            lambda: self.connector.execute(
                [("ZRANGE", self.keys.delayed(queue), 0, limit - 1, "WITHSCORES")]
            ),
        )
        found = []
        for member, score in zip(raw[::2], raw[1::2], strict=True):
            try:  # a member is "<priority step><envelope>"
                found.append((float(score), decode_envelope(member[1:]).message))
            except ValueError:
                continue  # not readable: TAKE dead-letters it when it is due
        return found

    def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        letters = [letter_of(entry) for entry in self.dead_store.entries()]
        return [letter for letter in letters if queue is None or letter.queue == queue]

    def requeue_dead_letter(self, letter_id: str) -> DeadLetter | None:
        return self.dead_store.requeue(letter_id)

    def purge_dead_letters(self, queue: str | None = None) -> int:
        return self.dead_store.purge(queue)

    def close(self) -> None:
        with self._lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            consumer.close()
        self.connector.close()
