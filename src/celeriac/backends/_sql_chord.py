"""The SQL backend's chord join: ``celeriac.backends.chord.ChordJoin`` over the
``celeriac_chords`` and ``celeriac_chord_parts`` tables (``celeriac.backends.database``
draws them).

Each call is one transaction. ``prepare`` replaces the chord's row and its members' rows.
``member_done`` locks the chord's live row (``SELECT ... FOR UPDATE``; none: ``LookupError``,
this store has no record of the chord; ``sent``: nothing to do), sets the entry of the
member's rows still waiting (``joined`` + that many), and once ``joined`` reaches ``size``
sets ``claimer`` to this task id if it is NULL, returning the entries in ``position`` order
when ``claimer`` is this task id. ``finish`` deletes the parts and sets ``sent`` (the row
stays until it expires). Reports to one chord serialize on its row lock, so exactly one
report claims the body however they race.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from celeriac.exceptions import BackendStoreError

if TYPE_CHECKING:
    from celeriac.backends._sql_schema import Tables
    from celeriac.backends.chord import ChordPart

__all__ = ["SQLChordJoin"]


class _Database(Protocol):
    """What the join uses of ``DatabaseBackend``: its tables, connections, clock, expiry."""

    tables: Tables

    def connect(
        self, error: type[Exception], action: str
    ) -> AbstractContextManager[sa.Connection]: ...

    def _now(self) -> float: ...

    def _expiry(self, ttl: float | None) -> float | None: ...


class SQLChordJoin:
    """``celeriac.backends.chord.ChordJoin`` in the backend's database (module docstring)."""

    def __init__(self, backend: _Database) -> None:
        self._backend = backend
        self._chords = backend.tables.chords
        self._parts = backend.tables.chord_parts

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        backend, chords, parts = self._backend, self._chords, self._parts
        with backend.connect(BackendStoreError, f"record chord {group_id}") as conn:
            conn.execute(sa.delete(parts).where(parts.c.group_id == group_id))
            conn.execute(sa.delete(chords).where(chords.c.group_id == group_id))
            conn.execute(
                sa.insert(chords).values(
                    group_id=group_id,
                    size=len(member_ids),
                    joined=0,
                    claimer=None,
                    sent=False,
                    expires_at=backend._expiry(ttl),
                )
            )
            if member_ids:
                conn.execute(
                    sa.insert(parts),
                    [
                        {"group_id": group_id, "position": position, "task_id": task_id}
                        for position, task_id in enumerate(member_ids)
                    ],
                )

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        backend, chords, parts = self._backend, self._chords, self._parts
        group_id, task_id = part.group_id, part.task_id
        doing = f"join member {task_id} of chord {group_id}"
        with backend.connect(BackendStoreError, doing) as conn:
            chord = conn.execute(
                sa.select(chords.c.size, chords.c.joined, chords.c.claimer, chords.c.sent)
                .where(chords.c.group_id == group_id, _live(chords, backend._now()))
                .with_for_update()
            ).first()
            if chord is None:
                raise LookupError(f"chord {group_id} is not recorded in this database")
            size, joined, claimer, sent = chord
            if sent:
                return None
            mine = sa.and_(parts.c.group_id == group_id, parts.c.task_id == task_id)
            joined += conn.execute(
                sa.update(parts).where(mine, parts.c.entry.is_(None)).values(entry=part.entry)
            ).rowcount
            if joined >= size and claimer is None:
                claimer = task_id
            conn.execute(
                sa.update(chords)
                .where(chords.c.group_id == group_id)
                .values(joined=joined, claimer=claimer, expires_at=backend._expiry(ttl))
            )
            if joined < size or claimer != task_id:
                return None
            rows = conn.execute(
                sa.select(parts.c.entry)
                .where(parts.c.group_id == group_id)
                .order_by(parts.c.position)
            ).all()
        return [bytes(entry) for (entry,) in rows]

    def finish(self, group_id: str) -> None:
        chords, parts = self._chords, self._parts
        with self._backend.connect(BackendStoreError, f"finish chord {group_id}") as conn:
            conn.execute(sa.delete(parts).where(parts.c.group_id == group_id))
            conn.execute(
                sa.update(chords)
                .where(chords.c.group_id == group_id)
                .values(sent=True, claimer=None)
            )


def _live(table: sa.Table, now: float) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now)
