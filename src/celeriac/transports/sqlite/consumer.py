"""The SQLite broker's consumer: claims, acknowledgements and leases (see ``sqlite``)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac.transports.base import Consumer, Delivery
from celeriac.transports.sqlite.db import (
    _FIRST_PAUSE,
    _HELD,
    _LEASE,
    _NEXT_DUE,
    _PROMOTE,
    _RECOVERY_INTERVAL,
    _RETURN,
    _SELECT_DUE,
    _UNLEASE,
    _bury,
    _Database,
    _message,
    _poison_reason,
    _process_exists,
)

if TYPE_CHECKING:
    from celeriac.transports.sqlite import SQLiteTransport

__all__ = ["SQLiteConsumer"]


class SQLiteConsumer(Consumer):
    """Claims deliveries from a SQLite broker's queues over its own connection."""

    def __init__(self, transport: SQLiteTransport, queues: list[str], owner: str) -> None:
        self._transport = transport
        self._clock = transport.clock
        self._queues = queues
        self._owner = owner
        self._id = f"{owner}/{uuid.uuid4().hex}"
        self._lock = threading.Lock()  # guards _closed and orders use of the connection
        self._closed = False
        self._wakeup = threading.Event()
        self._rotation = 0
        self._next_recovery = float("-inf")
        self._db = _Database(transport.path)

    def wake(self) -> None:
        """Make a waiting ``fetch`` look again now (this transport just published)."""
        self._wakeup.set()

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._wakeup.clear()
            self._recover_if_due()
            with self._lock:
                if self._closed:
                    return []
                version = self._data_version()
                deliveries, next_due = self._claim(max_count)
            if deliveries or time.monotonic() >= deadline:
                return deliveries
            self._wait_for_change(version, next_due, deadline)

    def _data_version(self) -> int:
        return int(self._db.query("check for changes", "PRAGMA data_version")[0][0])

    def _wait_for_change(self, version: int, next_due: float | None, deadline: float) -> None:
        """Pause until a commit elsewhere, ``next_due``, ``deadline`` or a dead owner's release."""
        pause = _FIRST_PAUSE
        while True:
            wait = min(pause, deadline - time.monotonic())
            if next_due is not None:
                wait = min(wait, next_due - self._clock.time())
            if wait <= 0 or self._wakeup.wait(wait):
                return
            with self._lock:
                if self._closed or self._data_version() != version:
                    return
            if self._recover_if_due():
                return
            pause = min(pause * 1.5, self._transport.poll_interval)

    def _claim(self, max_count: int) -> tuple[list[Delivery], float | None]:
        """Claim up to ``max_count`` due messages in one transaction; else say when one is due."""
        self._rotation = (self._rotation + 1) % len(self._queues) if self._queues else 0
        queues = self._queues[self._rotation :] + self._queues[: self._rotation]
        with self._db.transaction("claim messages") as conn:
            now = self._clock.time()
            conn.executemany(_PROMOTE, [(queue, now) for queue in queues])
            deliveries: list[Delivery] = []
            while len(deliveries) < max_count:
                taken, poisoned = self._take(conn, queues, max_count - len(deliveries), now)
                deliveries.extend(taken)
                if not poisoned:
                    break
            if deliveries:
                return deliveries, None
            due = [
                row[0]
                for queue in queues
                for row in conn.execute(_NEXT_DUE, (queue, queue))
                if row[0] is not None and row[0] > now
            ]
            return [], min(due, default=None)

    def _take(
        self, conn: sqlite3.Connection, queues: list[str], wanted: int, now: float
    ) -> tuple[list[Delivery], bool]:
        """Lease the ``wanted`` best ready rows, queues in turn; dead-letter poisoned ones.

        Returns the deliveries and whether any row was dead-lettered (then look again).
        """
        transport = self._transport
        ranked: list[tuple[int, int, sqlite3.Row]] = []
        for turn, queue in enumerate(queues):
            rows = conn.execute(_SELECT_DUE, (queue, now, wanted)).fetchall()
            ranked.extend((rank, turn, row) for rank, row in enumerate(rows))
        ranked.sort(key=lambda r: (r[0], r[1]))
        chosen = [row for _, _, row in ranked[:wanted]]
        poisoned = [r for r in chosen if _failed(r) >= transport.max_deliveries]
        for row in poisoned:
            reason = _poison_reason(_failed(row))
            conn.execute(_bury("id = ?"), (reason, now, row["id"]))
            conn.execute("DELETE FROM celeriac_messages WHERE id = ?", (row["id"],))
            transport.dead_store.rejects.note(row["queue"], reason)
        deliveries: dict[int, Delivery] = {}
        for row in chosen:
            if _failed(row) >= transport.max_deliveries:
                continue
            try:
                deliveries[row["id"]] = _delivery(row)
            except ValueError as exc:  # written by another program: set aside, say why
                poisoned.append(row)
                reason = f"not a Celeriac message row: {exc}"
                conn.execute(_bury("id = ?"), (reason, now, row["id"]))
                conn.execute("DELETE FROM celeriac_messages WHERE id = ?", (row["id"],))
                transport.dead_store.rejects.note(row["queue"], reason)
        if poisoned:
            transport.dead_store.trim(conn, now)
        lease = (self._id, self._owner, transport.holder, os.getpid())
        expires = now + transport.lease_timeout
        conn.executemany(_LEASE, [(*lease, expires, row_id) for row_id in deliveries])
        return list(deliveries.values()), bool(poisoned)

    def _recover_if_due(self) -> bool:
        """Release the leases of this host's dead processes (every 2 s); say if any were.

        Only holders with our identity (hostname, boot id, pid namespace) are judged by pid;
        any other holder's leases are left to expire (see ``holder_identity``).
        """
        if os.name != "posix" or self._clock.monotonic() < self._next_recovery:
            return False
        self._next_recovery = self._clock.monotonic() + _RECOVERY_INTERVAL
        host, me = self._transport.holder, os.getpid()
        with self._lock:
            if self._closed:
                return False
            rows = self._db.query(
                "look for leases of dead processes",
                "SELECT DISTINCT lease_pid FROM celeriac_messages"
                " WHERE lease_consumer IS NOT NULL AND lease_host = ?",
                (host,),
            )
            dead = [r[0] for r in rows if r[0] not in (None, me) and not _process_exists(r[0])]
            if not dead:
                return False
            with self._db.transaction("release the leases of dead processes") as conn:
                conn.executemany(
                    f"UPDATE celeriac_messages SET {_UNLEASE}"
                    " WHERE lease_consumer IS NOT NULL AND lease_host = ? AND lease_pid = ?",
                    [(host, pid) for pid in dead],
                )
        return True

    def _on_held(self, what: str, sql: str, delivery: Delivery, *values: Any) -> None:
        """Run ``sql`` (ending in ``_HELD``) on the delivery's row if this claim still holds it."""
        key = _claim_key(delivery)
        if key is None:
            return
        with self._lock:
            if not self._closed:
                self._db.change(what, sql, (*values, *key, self._id))

    def ack(self, delivery: Delivery) -> None:
        self._on_held("acknowledge", f"DELETE FROM celeriac_messages WHERE {_HELD}", delivery)

    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        if not requeue:
            self.dead_letter(delivery, "rejected")
            return
        returned = "" if failed else f", {_RETURN}"
        sql = f"UPDATE celeriac_messages SET {_UNLEASE}{returned} WHERE {_HELD}"
        self._on_held("requeue", sql, delivery)
        self._wakeup.set()  # our own commits don't change our data_version

    def defer(self, delivery: Delivery, until: float) -> None:
        sql = (
            f"UPDATE celeriac_messages SET {_UNLEASE}, {_RETURN}, available_at = ?, delayed = 1"
            f" WHERE {_HELD}"
        )
        self._on_held("defer", sql, delivery, until)
        self._wakeup.set()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        key = _claim_key(delivery)
        if key is None:
            return
        with self._lock:
            if self._closed:
                return
            with self._db.transaction("dead-letter a message") as conn:
                now = self._clock.time()
                conn.execute(_bury(_HELD), (reason, now, *key, self._id))
                conn.execute(f"DELETE FROM celeriac_messages WHERE {_HELD}", (*key, self._id))
                self._transport.dead_store.trim(conn, now)

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        keys = [key for key in map(_claim_key, deliveries) if key is not None]
        with self._lock:
            if self._closed or not keys:
                return
            with self._db.transaction("renew leases") as conn:
                expires = self._clock.time() + self._transport.lease_timeout
                conn.executemany(
                    f"UPDATE celeriac_messages SET lease_expires = ? WHERE {_HELD}",
                    [(expires, *key, self._id) for key in keys],
                )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.change(
                    "give back held messages",
                    f"UPDATE celeriac_messages SET {_UNLEASE}, {_RETURN} WHERE lease_consumer = ?",
                    (self._id,),
                )
            finally:
                self._db.close()
        self._wakeup.set()
        self._transport._forget(self)


def _claim_key(delivery: Delivery) -> tuple[int, int] | None:
    """(row id, delivery count) from a tag ``"<id>.<count>"``; None for a foreign tag."""
    row_id, _, count = delivery.delivery_tag.partition(".")
    if not (row_id.isdigit() and count.isdigit()):
        return None
    return int(row_id), int(count)


def _failed(row: sqlite3.Row) -> int:
    """Earlier claims of the row that count toward max_deliveries (not given back)."""
    return int(row["delivery_count"]) - int(row["returns"])


def _delivery(row: sqlite3.Row) -> Delivery:
    count = row["delivery_count"] + 1
    return Delivery(
        message=_message(row),
        delivery_tag=f"{row['id']}.{count}",
        queue=row["queue"],
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        redelivered=count > 1,
        delivery_count=_failed(row) + 1,
    )
