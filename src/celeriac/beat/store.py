"""The schedule store: beat's run-time state, shared by every beat on the schedule.

It keeps, per entry name: when the entry last ran and how often (so a restart neither
repeats nor forgets a run), whether it is enabled, a run asked for by ``beat run-now``, a
send claimed but not yet confirmed, and, for entries added at run time (``beat add``), the
entry's definition as JSON. Entries from ``beat_schedule`` keep only their state here.

Editing calls (``add``, ``remove``, ``set_enabled``, ``request_run``) bump ``version``,
which beat polls to re-read the store without a restart. Leader calls pass the leader's
fencing token (``celeriac.beat.lease``); the store remembers the newest token and answers
``DEPOSED`` to older ones. A run is claimed by compare-and-set on ``last_run_at`` and is
marked pending (with the task id to send) until ``confirm_sent``: so two leaders never both
send one run, and a send cut short by a crash is sent again, with the same task id.

SQLite schema (prefixed ``celeriac_beat_``; it may share the broker's file)::

    celeriac_beat_entries                           celeriac_beat_meta
      name            TEXT PRIMARY KEY                key    TEXT PRIMARY KEY
      definition      TEXT    JSON; NULL: config      value  INTEGER  "fence": newest token
      enabled         INTEGER 1/0                                     "version": edits
      fingerprint     TEXT    the definition last_run_at belongs to
      last_run_at     REAL    Unix time
      total_run_count INTEGER
      run_requested   INTEGER 1: send once now
      pending_task_id TEXT, pending_since REAL      claimed, not yet confirmed sent

Atomicity: every call that writes is one ``BEGIN IMMEDIATE`` transaction that checks the
fence and the row it changes, then writes; reads are single statements. The logic is in
``RowStore`` once; ``MemoryScheduleStore`` and ``SQLiteScheduleStore`` only read and write
rows. The module is longer than most because the interface, that logic and both row
stores read best side by side.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from celeriac._sqlite import Database

__all__ = [
    "Claim",
    "EntryState",
    "MemoryScheduleStore",
    "RowStore",
    "SQLiteScheduleStore",
    "ScheduleStore",
]


class Claim(enum.Enum):
    """The answer to a leader's write."""

    CLAIMED = "claimed"  # done: the run is this leader's to send
    TAKEN = "taken"  # the entry changed since it was read (another beat, or an edit)
    DEPOSED = "deposed"  # a newer leader has written: stop leading


@dataclass(frozen=True, slots=True)
class EntryState:
    """What the store holds about one entry."""

    name: str
    definition: Mapping[str, Any] | None = None
    enabled: bool = True
    fingerprint: str | None = None
    last_run_at: float | None = None
    total_run_count: int = 0
    run_requested: bool = False
    pending_task_id: str | None = None
    pending_since: float | None = None


class ScheduleStore(ABC):
    """Beat's shared state. Every method may raise ``OperationalError``; none blocks long."""

    @abstractmethod
    def entries(self) -> dict[str, EntryState]:
        """Every stored entry's state, by name."""

    @abstractmethod
    def version(self) -> int:
        """A number that changes with every edit; cheap, polled by beat."""

    @abstractmethod
    def add(
        self, name: str, definition: Mapping[str, Any], *, fingerprint: str, now: float
    ) -> None:
        """Add (or replace) an entry defined at run time; its clock starts at ``now``."""

    @abstractmethod
    def remove(self, name: str) -> bool:
        """Forget an entry and its state; False if there was none."""

    @abstractmethod
    def set_enabled(self, name: str, enabled: bool, *, now: float) -> None:
        """Pause or resume an entry; resuming restarts its clock at ``now`` (no catch-up)."""

    @abstractmethod
    def request_run(self, name: str) -> None:
        """Ask the leader to send the entry once, now, besides its schedule."""

    @abstractmethod
    def start_entry(self, name: str, fingerprint: str, now: float, *, token: int) -> Claim:
        """Start an entry's clock at ``now`` unless it already runs with this fingerprint."""

    @abstractmethod
    def claim_run(
        self,
        name: str,
        *,
        token: int,
        last_run_at: float | None,
        run_at: float,
        task_id: str | None,
        requested: bool = False,
    ) -> Claim:
        """Take the run that is due after ``last_run_at`` (as read): compare-and-set.

        Sets ``last_run_at = run_at``; with a ``task_id`` also counts the run and marks it
        pending; without one the run is skipped. ``requested`` claims a ``run-now`` instead,
        leaving ``last_run_at`` alone. TAKEN if the row changed or has a pending send.
        """

    @abstractmethod
    def retake_pending(self, name: str, *, token: int, since: float, now: float) -> Claim:
        """Take over a pending send last marked at ``since`` (its sender died), to resend it."""

    @abstractmethod
    def confirm_sent(self, name: str, task_id: str) -> None:
        """The pending send ``task_id`` is published. Idempotent."""

    def close(self) -> None:
        """Release connections. Idempotent."""
        return None


class Rows(Protocol):
    """Row access inside one store transaction."""

    def get(self, name: str) -> EntryState | None: ...
    def put(self, state: EntryState) -> None: ...
    def delete(self, name: str) -> bool: ...
    def meta(self, key: str) -> int: ...
    def set_meta(self, key: str, value: int) -> None: ...


class RowStore(ScheduleStore):
    """The store's rules, over a backend that reads and writes rows in transactions."""

    @abstractmethod
    def transaction(self, action: str) -> AbstractContextManager[Rows]:
        """Rows, in one atomic transaction; ``action`` names it for error messages."""

    def _edit(self, action: str) -> AbstractContextManager[Rows]:
        return _bumping(self.transaction(action))

    def add(
        self, name: str, definition: Mapping[str, Any], *, fingerprint: str, now: float
    ) -> None:
        with self._edit(f"add entry {name!r}") as rows:
            old = rows.get(name) or EntryState(name)
            rows.put(
                dataclasses.replace(
                    old,
                    definition=dict(definition),
                    fingerprint=fingerprint,
                    last_run_at=now,
                    pending_task_id=None,
                    pending_since=None,
                )
            )

    def remove(self, name: str) -> bool:
        with self._edit(f"remove entry {name!r}") as rows:
            return rows.delete(name)

    def set_enabled(self, name: str, enabled: bool, *, now: float) -> None:
        with self._edit(f"enable/disable entry {name!r}") as rows:
            old = rows.get(name) or EntryState(name)
            restart = enabled and not old.enabled and old.last_run_at is not None
            last = now if restart else old.last_run_at
            rows.put(dataclasses.replace(old, enabled=enabled, last_run_at=last))

    def request_run(self, name: str) -> None:
        with self._edit(f"request a run of {name!r}") as rows:
            rows.put(dataclasses.replace(rows.get(name) or EntryState(name), run_requested=True))

    def start_entry(self, name: str, fingerprint: str, now: float, *, token: int) -> Claim:
        with self.transaction(f"start entry {name!r}") as rows:
            if not _fenced(rows, token):
                return Claim.DEPOSED
            old = rows.get(name) or EntryState(name)
            if old.fingerprint == fingerprint and old.last_run_at is not None:
                return Claim.TAKEN
            rows.put(dataclasses.replace(old, fingerprint=fingerprint, last_run_at=now))
            return Claim.CLAIMED

    def claim_run(
        self,
        name: str,
        *,
        token: int,
        last_run_at: float | None,
        run_at: float,
        task_id: str | None,
        requested: bool = False,
    ) -> Claim:
        with self.transaction(f"claim a run of {name!r}") as rows:
            if not _fenced(rows, token):
                return Claim.DEPOSED
            old = rows.get(name)
            if old is None or old.pending_task_id is not None or not old.enabled:
                return Claim.TAKEN
            changed = not old.run_requested if requested else old.last_run_at != last_run_at
            if changed:
                return Claim.TAKEN
            new = dataclasses.replace(old, run_requested=False) if requested else old
            if not requested:
                new = dataclasses.replace(new, last_run_at=run_at)
            if task_id is not None:
                new = dataclasses.replace(
                    new,
                    total_run_count=old.total_run_count + 1,
                    pending_task_id=task_id,
                    pending_since=run_at,
                )
            rows.put(new)
            return Claim.CLAIMED

    def retake_pending(self, name: str, *, token: int, since: float, now: float) -> Claim:
        with self.transaction(f"retake the pending send of {name!r}") as rows:
            if not _fenced(rows, token):
                return Claim.DEPOSED
            old = rows.get(name)
            if old is None or old.pending_task_id is None or old.pending_since != since:
                return Claim.TAKEN
            rows.put(dataclasses.replace(old, pending_since=now))
            return Claim.CLAIMED

    def confirm_sent(self, name: str, task_id: str) -> None:
        with self.transaction(f"confirm the send of {name!r}") as rows:
            old = rows.get(name)
            if old is not None and old.pending_task_id == task_id:
                rows.put(dataclasses.replace(old, pending_task_id=None, pending_since=None))


def _fenced(rows: Rows, token: int) -> bool:
    """Record ``token`` as the newest leader's; False if a newer one has written."""
    newest = rows.meta("fence")
    if token < newest:
        return False
    if token > newest:
        rows.set_meta("fence", token)
    return True


@contextmanager
def _bumping(transaction: AbstractContextManager[Rows]) -> Iterator[Rows]:
    with transaction as rows:
        yield rows
        rows.set_meta("version", rows.meta("version") + 1)


class _MemoryRows:
    def __init__(self, entries: dict[str, EntryState], meta: dict[str, int]) -> None:
        self.entries, self.meta_values = entries, meta

    def get(self, name: str) -> EntryState | None:
        return self.entries.get(name)

    def put(self, state: EntryState) -> None:
        self.entries[state.name] = state

    def delete(self, name: str) -> bool:
        return self.entries.pop(name, None) is not None

    def meta(self, key: str) -> int:
        return self.meta_values.get(key, 0)

    def set_meta(self, key: str, value: int) -> None:
        self.meta_values[key] = value


class MemoryScheduleStore(RowStore):
    """A store inside one process (tests, ``memory://`` brokers): share the one object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, EntryState] = {}
        self._meta: dict[str, int] = {}

    @contextmanager
    def transaction(self, action: str) -> Iterator[Rows]:
        with self._lock:
            entries, meta = dict(self._entries), dict(self._meta)
            yield _MemoryRows(entries, meta)  # kept only if the block completes
            self._entries, self._meta = entries, meta

    def entries(self) -> dict[str, EntryState]:
        with self._lock:
            return dict(self._entries)

    def version(self) -> int:
        with self._lock:
            return self._meta.get("version", 0)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS celeriac_beat_entries (name TEXT PRIMARY KEY, definition TEXT,"
    " enabled INTEGER NOT NULL, fingerprint TEXT, last_run_at REAL,"
    " total_run_count INTEGER NOT NULL, run_requested INTEGER NOT NULL,"
    " pending_task_id TEXT, pending_since REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_beat_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_COLUMNS = (
    "name, definition, enabled, fingerprint, last_run_at, total_run_count, run_requested,"
    " pending_task_id, pending_since"
)


def _row_state(row: tuple[Any, ...]) -> EntryState:
    definition = json.loads(row[1]) if row[1] is not None else None
    return EntryState(
        row[0], definition, bool(row[2]), row[3], row[4], int(row[5]), bool(row[6]), row[7], row[8]
    )


class _SQLiteRows:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def get(self, name: str) -> EntryState | None:
        query = f"SELECT {_COLUMNS} FROM celeriac_beat_entries WHERE name = ?"
        row = self.conn.execute(query, (name,)).fetchone()
        return None if row is None else _row_state(row)

    def put(self, s: EntryState) -> None:
        definition = None if s.definition is None else json.dumps(s.definition, default=repr)
        self.conn.execute(
            f"INSERT OR REPLACE INTO celeriac_beat_entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                s.name,
                definition,
                int(s.enabled),
                s.fingerprint,
                s.last_run_at,
                s.total_run_count,
                int(s.run_requested),
                s.pending_task_id,
                s.pending_since,
            ),
        )

    def delete(self, name: str) -> bool:
        cursor = self.conn.execute("DELETE FROM celeriac_beat_entries WHERE name = ?", (name,))
        return bool(cursor.rowcount)

    def meta(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM celeriac_beat_meta WHERE key = ?", (key,))
        found = row.fetchone()
        return int(found[0]) if found else 0

    def set_meta(self, key: str, value: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO celeriac_beat_meta VALUES (?, ?)", (key, value))


class SQLiteScheduleStore(RowStore):
    """A store in an SQLite file shared by the processes of one machine."""

    def __init__(self, path: str) -> None:
        self._db = Database(
            path, _SCHEMA, what="beat schedule store", not_sqlite=Database.NOT_A_SCHEDULE
        )
        self.path = self._db.path

    @contextmanager
    def transaction(self, action: str) -> Iterator[Rows]:
        with self._db.using(action, write=True) as conn:
            yield _SQLiteRows(conn)

    def entries(self) -> dict[str, EntryState]:
        with self._db.using("read the schedule") as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM celeriac_beat_entries").fetchall()
        return {row[0]: _row_state(row) for row in rows}

    def version(self) -> int:
        with self._db.using("read the schedule's version") as conn:
            return _SQLiteRows(conn).meta("version")

    def close(self) -> None:
        self._db.close()
