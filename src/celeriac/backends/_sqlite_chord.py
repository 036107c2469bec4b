"""The SQLite backend's chord join: ``celeriac.backends.chord.ChordJoin`` over the
``celeriac_chords`` and ``celeriac_chord_parts`` tables of the result file, each call one
``BEGIN IMMEDIATE`` transaction (``celeriac.backends.sqlite``'s docstring draws the tables and
the steps)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from celeriac._sqlite import immediate
from celeriac.exceptions import BackendError, BackendStoreError

if TYPE_CHECKING:
    from celeriac._time import Clock
    from celeriac.backends.chord import ChordPart

__all__ = ["LIVE", "SQLiteChordJoin"]

#: The rows not expired yet (``expires_at`` bound to now), in the chord and result tables.
LIVE = "(expires_at IS NULL OR expires_at > ?)"


class _ResultFile(Protocol):
    """What the join uses of ``SQLiteBackend``: its file, clock, connection and expiry."""

    path: str
    _clock: Clock

    def _using(
        self, error: type[BackendError], action: str
    ) -> AbstractContextManager[sqlite3.Connection]: ...

    def _expiry(self, ttl: float | None) -> float | None: ...


class SQLiteChordJoin:
    """``celeriac.backends.chord.ChordJoin`` in the backend's file: each call one transaction
    (the module docstring draws the tables and the steps)."""

    def __init__(self, backend: _ResultFile) -> None:
        self._backend = backend

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        backend = self._backend
        chord = (group_id, len(member_ids), backend._expiry(ttl))
        members = [(group_id, position, task_id) for position, task_id in enumerate(member_ids)]
        with (
            backend._using(BackendStoreError, f"record chord {group_id}") as conn,
            immediate(conn),
        ):
            conn.execute("DELETE FROM celeriac_chord_parts WHERE group_id = ?", (group_id,))
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_chords VALUES (?, ?, 0, NULL, 0, ?)", chord
            )
            conn.executemany("INSERT INTO celeriac_chord_parts VALUES (?, ?, ?, NULL)", members)

    def add_member(self, group_id: str, task_id: str, *, ttl: float | None) -> None:
        """``Task.add_to_chord``: one more member to wait for, its result last."""
        backend = self._backend
        with (
            backend._using(BackendStoreError, f"add a member to chord {group_id}") as conn,
            immediate(conn),
        ):
            grown = conn.execute(
                "UPDATE celeriac_chords SET size = size + 1, expires_at = ? "
                "WHERE group_id = ? AND sent = 0",
                (backend._expiry(ttl), group_id),
            ).rowcount
            if not grown:
                raise LookupError(f"chord {group_id} is not waiting in {backend.path}")
            conn.execute(
                "INSERT INTO celeriac_chord_parts SELECT group_id, MAX(position) + 1, ?, NULL "
                "FROM celeriac_chord_parts WHERE group_id = ? GROUP BY group_id",
                (task_id, group_id),
            )

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        backend, group_id, task_id = self._backend, part.group_id, part.task_id
        doing = f"join member {task_id} of chord {group_id}"
        with backend._using(BackendStoreError, doing) as conn, immediate(conn):
            now = backend._clock.time()
            query = "SELECT size, joined, claimer, sent FROM celeriac_chords WHERE group_id = ?"
            chord = conn.execute(f"{query} AND {LIVE}", (group_id, now)).fetchone()
            if chord is None:
                raise LookupError(f"chord {group_id} is not recorded in {backend.path}")
            size, joined, claimer, sent = chord
            if sent:
                return None
            record = "UPDATE celeriac_chord_parts SET entry = ? WHERE group_id = ? AND task_id = ?"
            joined += conn.execute(
                f"{record} AND entry IS NULL", (part.entry, group_id, task_id)
            ).rowcount
            if joined >= size and claimer is None:
                claimer = task_id
            update = "UPDATE celeriac_chords SET joined = ?, claimer = ?, expires_at = ?"
            values = (joined, claimer, backend._expiry(ttl), group_id)
            conn.execute(f"{update} WHERE group_id = ?", values)
            if joined < size or claimer != task_id:
                return None
            read = "SELECT entry FROM celeriac_chord_parts WHERE group_id = ? ORDER BY position"
            entries = conn.execute(read, (group_id,)).fetchall()
        return [bytes(entry) for (entry,) in entries]

    def finish(self, group_id: str) -> None:
        backend = self._backend
        with (
            backend._using(BackendStoreError, f"finish chord {group_id}") as conn,
            immediate(conn),
        ):
            conn.execute("DELETE FROM celeriac_chord_parts WHERE group_id = ?", (group_id,))
            mark = "UPDATE celeriac_chords SET sent = 1, claimer = NULL WHERE group_id = ?"
            conn.execute(mark, (group_id,))
