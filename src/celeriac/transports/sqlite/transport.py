"""The embedded default broker: one SQLite file that the processes of one machine share.

URLs (SQLAlchemy style): ``sqlite:///relative/path.sqlite`` (relative to the working
directory when the transport is created) and ``sqlite:////absolute/path.sqlite``. Options
(from ``broker_transport_options``; other keys are ignored): ``lease_timeout`` (s, 30),
``max_deliveries`` (10), ``poll_interval`` (s, 0.1: the longest pause between checks for
new messages).

Schema (prefixed ``celeriac_``: the result backend may keep its tables in the same file)::

    celeriac_messages             one row per message per queue it was routed to
      id              INTEGER PRIMARY KEY AUTOINCREMENT   never reused, so tags stay unique
      queue, exchange, routing_key                 TEXT
      priority        INTEGER                      9 is delivered first (AMQP's meaning)
      available_at    REAL                         not delivered before (ETA, defer)
      delayed         INTEGER                      1: kept out of the ready index until due
      body BLOB, content_type TEXT, content_encoding TEXT, headers TEXT, properties TEXT
                                                   the message's parts (headers as JSON)
      delivery_count  INTEGER                      times claimed so far
      returns         INTEGER                      claims given back (requeue, defer, close);
                                                   delivery_count - returns count toward
                                                   max_deliveries (added to older files)
      lease_consumer  TEXT NULL                    the claiming consumer; NULL while waiting
      lease_owner, lease_host TEXT, lease_pid INTEGER, lease_expires REAL
                                                   lease_host: "<hostname>|<boot id>|<pid ns>"
      INDEX (queue, priority DESC, id) WHERE delayed = 0    the ready rows, in delivery order
      INDEX (queue, available_at) WHERE delayed = 1        the delayed rows, by due time
    celeriac_bindings             exchange, exchange_type, binding_key, queue (together the key)
    celeriac_dead_letters         id, queue, exchange, routing_key, the message's five parts,
                                  reason, dead_lettered_at; bounded by dead_letter_max_entries
                                  and dead_letter_max_age (``dead_letters``)

Atomic steps, each one SQL transaction (``BEGIN IMMEDIATE`` takes the write lock first, so
two consumers never claim the same row):

    publish      insert a row per (item, queue routed to), for the whole batch
    claim        mark the consumer's delayed rows that are due as ready; select its ready
                 rows (waiting, or leased with an expired lease), highest priority then
                 oldest, queues in rotation; move rows already claimed max_deliveries times
                 (not counting give-backs) to dead letters; on the others set lease_*
                 (expiring now + lease_timeout, with this pid and holder identity) and
                 delivery_count + 1
    ack          delete the row if this claim still holds it (id, delivery_count, consumer:
                 the delivery tag is "<id>.<delivery_count>")
    reject, defer   clear the held row's lease, returns + 1 (defer also sets available_at,
                 delayed = 1; a requeue after its worker process died is not a return)
    dead_letter  copy the held row to celeriac_dead_letters, delete it, drop the oldest
                 letters past the dead-letter limits
    renew        push lease_expires of the held rows
    close        clear the lease of every row the consumer holds, returns + 1
    recover      clear the leases held by processes of this host that no longer exist
                 (checked at most every 2 s while fetching), so the messages of a worker
                 killed with SIGKILL come back long before their leases expire; "this host"
                 means the same hostname, boot id and pid namespace (``holder_identity``):
                 a holder in another container or on another kernel that happens to share
                 the hostname cannot be judged by pid and keeps its lease until it expires

Keeping delayed rows out of the ready index keeps a claim cheap however many ETA messages
wait. A fetch's timeout is real time; due times are read from the injected clock. A fetch
with nothing to take waits in pauses of 1 ms growing by half up to ``poll_interval``; after each
it reads ``PRAGMA data_version``, which changes when another connection commits, and
stops waiting early when that changes or the next ``not_before`` or lease expiry comes due.

Threads and processes: the file runs in WAL mode (readers never block the one writer) with
a 10 s busy timeout. A transport and each of its consumers own one connection apiece, used
under a lock, so any method may be called from any thread. Not fork-safe: a forked child must
create its own transport. Pids are told apart by hostname, boot id and pid namespace, so
containers sharing the file (a volume) never release each other's live leases; two hosts
sharing the file over a network file system are not supported (SQLite's locking is
unreliable there anyway).

The SQL and the connection live in ``db``, the consumer in ``consumer``.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac._time import Clock, system_clock
from celeriac.protocol.message import Message
from celeriac.routing import Queue, matches
from celeriac.transports import positive_option
from celeriac.transports._dead_letters import DeadLetterLimits
from celeriac.transports.base import (
    Capabilities,
    DeadLetter,
    Outgoing,
    Subscription,
    Transport,
)
from celeriac.transports.sqlite.broadcast import SQLiteBroadcaster
from celeriac.transports.sqlite.consumer import SQLiteConsumer
from celeriac.transports.sqlite.db import (
    _PARTS,
    _SCHEMA,
    _WAITING_ROWS,
    _add_missing_columns,
    _Database,
    _database_path,
    _message,
    _parts,
    holder_identity,
)
from celeriac.transports.sqlite.dead_letters import SQLiteDeadLetters

__all__ = ["SQLiteConsumer", "SQLiteTransport"]


class SQLiteTransport(Transport):
    """A broker in a SQLite file shared by the processes of one machine (module docstring)."""

    capabilities = Capabilities(
        delayed_delivery=True,
        leases=True,
        priorities=True,
        cross_process=True,
        persistent=True,
        broadcast=True,
    )

    def __init__(
        self,
        url: str,
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.path = _database_path(url)
        self.lease_timeout = positive_option(options, "lease_timeout", 30.0)
        self.max_deliveries = int(positive_option(options, "max_deliveries", 10, integer=True))
        self.poll_interval = positive_option(options, "poll_interval", 0.1)
        self.clock = clock
        self.hostname = socket.gethostname()
        self.holder = holder_identity(self.hostname)  # lease_host: who can judge our pids
        self._consumers: set[SQLiteConsumer] = set()
        self._consumers_lock = threading.Lock()
        self._broadcasts: SQLiteBroadcaster | None = None
        self._db = _Database(self.path)
        self.dead_store = SQLiteDeadLetters(self._db, DeadLetterLimits.from_options(options))
        try:
            with self._db.transaction("create the broker's tables") as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                _add_missing_columns(conn)
        except BaseException:
            self._db.close()
            raise

    @property
    def lease_renew_interval(self) -> float:
        return self.lease_timeout / 3

    def declare(self, queue: Queue) -> None:
        exchange = queue.bound_exchange
        if not exchange.name:
            return  # the default exchange routes by queue name; nothing to bind
        self._db.change(
            f"bind queue {queue.name!r} to exchange {exchange.name!r}",
            "INSERT INTO celeriac_bindings (exchange, exchange_type, binding_key, queue)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (exchange, binding_key, queue)"
            " DO UPDATE SET exchange_type = excluded.exchange_type",
            (exchange.name, exchange.type, queue.binding_key, queue.name),
        )

    def publish(self, items: Sequence[Outgoing]) -> list[int]:
        encoded = [(item, _parts(item.message)) for item in items]
        counts: list[int] = []
        with self._db.transaction("publish messages") as conn:
            now = self.clock.time()
            bindings: dict[str, list[sqlite3.Row]] = {}
            for item, parts in encoded:
                queues = self._route(conn, bindings, item)
                available_at = now if item.not_before is None else item.not_before
                route = (item.exchange, item.routing_key, item.message.priority)
                conn.executemany(
                    f"INSERT INTO celeriac_messages (queue, exchange, routing_key, priority,"
                    f" available_at, delayed, {_PARTS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(q, *route, available_at, available_at > now, *parts) for q in queues],
                )
                counts.append(len(queues))
        with self._consumers_lock:
            for consumer in self._consumers:
                consumer.wake()  # other connections notice through PRAGMA data_version
        return counts

    @staticmethod
    def _route(
        conn: sqlite3.Connection, bindings: dict[str, list[sqlite3.Row]], item: Outgoing
    ) -> list[str]:
        if not item.exchange:
            return [item.routing_key]
        if item.exchange not in bindings:
            bindings[item.exchange] = conn.execute(
                "SELECT exchange_type, binding_key, queue FROM celeriac_bindings"
                " WHERE exchange = ?",
                (item.exchange,),
            ).fetchall()
        return sorted(
            {
                row["queue"]
                for row in bindings[item.exchange]
                if matches(row["exchange_type"], row["binding_key"], item.routing_key)
            }
        )

    def consumer(self, queues: Sequence[str], *, owner: str) -> SQLiteConsumer:
        consumer = SQLiteConsumer(self, list(dict.fromkeys(queues)), owner)
        with self._consumers_lock:
            self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: SQLiteConsumer) -> None:
        with self._consumers_lock:
            self._consumers.discard(consumer)

    def queue_length(self, queue: str) -> int:
        ready, delayed = _WAITING_ROWS
        rows = self._db.query(
            f"count the messages of queue {queue!r}",
            f"SELECT (SELECT COUNT(*) {ready}) + (SELECT COUNT(*) {delayed})",
            (queue, self.clock.time(), queue),
        )
        return int(rows[0][0])

    def purge(self, queue: str) -> int:
        ready, delayed = _WAITING_ROWS
        with self._db.transaction(f"purge queue {queue!r}") as conn:
            purged = conn.execute(f"DELETE {ready}", (queue, self.clock.time())).rowcount
            return purged + conn.execute(f"DELETE {delayed}", (queue,)).rowcount

    def delayed_messages(self, queue: str, limit: int = 1000) -> list[tuple[float, Message]]:
        rows = self._db.query(
            f"read the delayed messages of queue {queue!r}",
            f"SELECT available_at, {_PARTS} FROM celeriac_messages"
            " WHERE queue = ? AND delayed = 1 ORDER BY available_at, id LIMIT ?",
            (queue, limit),
        )
        return [(float(row["available_at"]), _message(row)) for row in rows]

    def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        return self.dead_store.list(self.clock.time(), queue)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        return self.dead_store.get(letter_id)

    def requeue_dead_letter(self, letter_id: str) -> DeadLetter | None:
        letter = self.dead_store.requeue(letter_id, self.clock.time())
        if letter is not None:
            with self._consumers_lock:
                for consumer in self._consumers:
                    consumer.wake()
        return letter

    def purge_dead_letters(self, queue: str | None = None) -> int:
        return self.dead_store.purge(queue)

    def _broadcaster(self) -> SQLiteBroadcaster:
        with self._consumers_lock:
            if self._broadcasts is None:
                self._broadcasts = SQLiteBroadcaster(self.path, self.clock)
            return self._broadcasts

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        self._broadcaster().broadcast(exchange, routing_key, message)

    def subscribe(self, exchange: str, patterns: Sequence[str] = ("#",)) -> Subscription:
        return self._broadcaster().subscribe(exchange, patterns)

    def close(self) -> None:
        with self._consumers_lock:
            consumers = list(self._consumers)
            broadcasts, self._broadcasts = self._broadcasts, None
        for consumer in consumers:
            consumer.close()
        if broadcasts is not None:
            broadcasts.close()
        self._db.close()
