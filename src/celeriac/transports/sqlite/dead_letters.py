"""The SQLite broker's dead-letter store: table ``celeriac_dead_letters`` (see ``sqlite``).

A letter's id is its row id. Every step is one SQL transaction: setting a letter aside also
drops the oldest letters past ``dead_letter_max_entries`` and those older than
``dead_letter_max_age`` (``trim``, in the same transaction), so the table stays bounded
however many poison messages arrive; reading the letters trims by age first. Requeueing
moves the row back to ``celeriac_messages`` (delivery count 0) and deletes the letter in one
transaction, so a letter is requeued at most once.
"""

from __future__ import annotations

import sqlite3

from celeriac.protocol.message import Message
from celeriac.transports._dead_letters import DeadLetterLimits, RejectLog, log_dropped
from celeriac.transports.base import DeadLetter
from celeriac.transports.sqlite.db import _PARTS, _Database, _stored_message

__all__ = ["SQLiteDeadLetters"]

_COLUMNS = f"id, queue, reason, dead_lettered_at, {_PARTS}"


class SQLiteDeadLetters:
    """The dead letters of one broker file, bounded by ``limits``."""

    def __init__(self, db: _Database, limits: DeadLetterLimits) -> None:
        self._db = db
        self.limits = limits
        self.rejects = RejectLog()  # letters set aside by the broker, which no worker logs

    def trim(self, conn: sqlite3.Connection, now: float) -> int:
        """Drop the letters past the limits inside the caller's transaction (logged)."""
        dropped = 0
        oldest = self.limits.oldest_kept(now)
        if oldest is not None:
            dropped += conn.execute(
                "DELETE FROM celeriac_dead_letters WHERE dead_lettered_at < ?", (oldest,)
            ).rowcount
        if self.limits.max_entries is not None:
            dropped += conn.execute(
                "DELETE FROM celeriac_dead_letters WHERE id <= (SELECT id FROM"
                " celeriac_dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.limits.max_entries,),
            ).rowcount
        log_dropped(f"SQLite broker {self._db.path}", dropped, self.limits)
        return dropped

    def list(self, now: float, queue: str | None = None) -> list[DeadLetter]:
        with self._db.transaction("read the dead letters") as conn:
            self.trim(conn, now)
            where, params = ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM celeriac_dead_letters {where} ORDER BY id", params
            ).fetchall()
        return [_letter(row) for row in rows]

    def get(self, letter_id: str) -> DeadLetter | None:
        if not letter_id.isdigit():
            return None
        rows = self._db.query(
            f"read dead letter {letter_id}",
            f"SELECT {_COLUMNS} FROM celeriac_dead_letters WHERE id = ?",
            (int(letter_id),),
        )
        return _letter(rows[0]) if rows else None

    def requeue(self, letter_id: str, now: float) -> DeadLetter | None:
        if not letter_id.isdigit():
            return None
        with self._db.transaction(f"requeue dead letter {letter_id}") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM celeriac_dead_letters WHERE id = ?", (int(letter_id),)
            ).fetchall()
            if not rows:
                return None
            letter = _letter(rows[0])
            conn.execute(
                "INSERT INTO celeriac_messages (queue, exchange, routing_key, priority,"
                f" available_at, delayed, {_PARTS}) SELECT queue, '', queue, ?, ?, 0, {_PARTS}"
                " FROM celeriac_dead_letters WHERE id = ?",
                (letter.message.priority or 0, now, int(letter_id)),
            )
            conn.execute("DELETE FROM celeriac_dead_letters WHERE id = ?", (int(letter_id),))
        return letter

    def purge(self, queue: str | None = None) -> int:
        where, params = ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())
        return self._db.change(
            "purge the dead letters", f"DELETE FROM celeriac_dead_letters {where}", params
        )


def _letter(row: sqlite3.Row) -> DeadLetter:
    message: Message = _stored_message(row)
    return DeadLetter(
        message, row["queue"], row["reason"], row["dead_lettered_at"], id=str(row["id"])
    )
