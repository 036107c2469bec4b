"""Broadcast through the SQLite file (remote control, events), for processes on one machine.

One table of recent broadcasts::

    celeriac_broadcasts(id INTEGER PRIMARY KEY AUTOINCREMENT, exchange, routing_key,
                        body, content_type, content_encoding, headers, properties, sent_at)

A subscription remembers the highest id it has seen (the table's maximum when it was made)
and reads newer rows of its exchange, waiting on ``PRAGMA data_version`` between looks, as the
SQLite consumer does. Rows older than ``RETENTION`` seconds are deleted by senders, so the
table stays small: a broadcast is for whoever listens now.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from celeriac._time import Clock
from celeriac.protocol.message import Message
from celeriac.transports._broadcast import wanted
from celeriac.transports.base import Broadcast, Subscription
from celeriac.transports.sqlite.db import _Database, _message, _parts

__all__ = ["RETENTION", "SQLiteBroadcaster", "SQLiteSubscription"]

RETENTION = 60.0
_SCHEMA = """CREATE TABLE IF NOT EXISTS celeriac_broadcasts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, exchange TEXT NOT NULL, routing_key TEXT NOT NULL,
    body BLOB NOT NULL, content_type TEXT NOT NULL, content_encoding TEXT NOT NULL,
    headers TEXT NOT NULL, properties TEXT NOT NULL, sent_at REAL NOT NULL)"""


class SQLiteBroadcaster:
    """Sends broadcasts into the SQLite file and makes subscriptions on it."""

    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._db = _Database(path)
        self._db.change("create the broadcast table", _SCHEMA)
        self._next_trim = 0.0

    def broadcast(self, exchange: str, routing_key: str, message: Message) -> None:
        now = self.clock.time()
        with self._db.transaction("broadcast a message") as conn:
            conn.execute(
                "INSERT INTO celeriac_broadcasts (exchange, routing_key, body, content_type, "
                "content_encoding, headers, properties, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (exchange, routing_key, *_parts(message), now),
            )
            if now >= self._next_trim:
                conn.execute(
                    "DELETE FROM celeriac_broadcasts WHERE sent_at < ?", (now - RETENTION,)
                )
                self._next_trim = now + 5.0

    def subscribe(self, exchange: str, patterns: Sequence[str]) -> Subscription:
        return SQLiteSubscription(self.path, exchange, patterns)

    def close(self) -> None:
        self._db.close()


class SQLiteSubscription(Subscription):
    """Reads broadcasts newer than the ones that existed when it was made."""

    def __init__(self, path: str, exchange: str, patterns: Sequence[str]) -> None:
        self._db = _Database(path)
        self._db.change("create the broadcast table", _SCHEMA)
        self.exchange = exchange
        self.patterns = tuple(patterns)
        rows = self._db.query("start a subscription", "SELECT MAX(id) FROM celeriac_broadcasts")
        self._last = int(rows[0][0] or 0)
        self._closed = False

    def _read(self) -> list[Broadcast]:
        rows = self._db.query(
            "read broadcasts",
            "SELECT * FROM celeriac_broadcasts WHERE id > ? AND exchange = ? ORDER BY id",
            (self._last, self.exchange),
        )
        found = []
        for row in rows:
            self._last = max(self._last, int(row["id"]))
            if wanted(self.patterns, row["routing_key"]):
                found.append(Broadcast(self.exchange, row["routing_key"], _message(row)))
        return found

    def receive(self, timeout: float) -> list[Broadcast]:
        deadline = time.monotonic() + max(timeout, 0.0)
        pause = 0.001
        version = None
        while not self._closed:
            current = self._db.query("check for broadcasts", "PRAGMA data_version")[0][0]
            if current != version:
                version = current
                found = self._read()
                if found:
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(pause, remaining))
            pause = min(pause * 1.5, 0.05)
        return []

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
