"""The leader lease: of the beats sharing a schedule, one sends; if it dies, another takes over.

A lease is a named lock that expires ``ttl`` seconds after it was taken or last renewed.
Each new term (the lease taken while free or expired) comes with a *fencing token* greater
than every earlier one. The leader passes its token with every write to the schedule
store, and the store refuses tokens older than the newest it has seen, so a leader that
stalled past its lease (and was replaced) cannot send once its successor has written.

Implementations: ``MemoryLease`` (one process; tests and ``memory://``), ``SQLiteLease``
(the processes of one machine); ``redis_lease.RedisLease`` serves several machines.

SQLite schema (in the schedule store's file)::

    celeriac_beat_lease
      name        TEXT PRIMARY KEY   the schedule the lease guards ("beat")
      holder      TEXT               the leader's id (host:pid:random); NULL once released
      token       INTEGER NOT NULL   the fencing token of the current or last term
      expires_at  REAL NOT NULL      Unix time (the lease is free from then on)

Atomicity: ``acquire`` reads, then in one ``BEGIN IMMEDIATE`` transaction reads again and
takes the row (token + 1) only if it is free, expired or already its own; ``renew`` and
``release`` are one ``UPDATE`` each, guarded by holder and token (and, for renew, expiry).
Times come from the injected clock: every process must share one wall clock (one machine).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from celeriac._sqlite import Database
from celeriac._time import Clock, system_clock

__all__ = ["DEFAULT_LEASE_TTL", "LeaderLease", "LeaseState", "MemoryLease", "SQLiteLease"]

DEFAULT_LEASE_TTL = 10.0


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Who holds the lease (None once released), its fencing token, and when it expires."""

    holder: str | None
    token: int
    expires_at: float


class LeaderLease(ABC):
    """A named lock with an expiry and a fencing token. Safe to call from any thread."""

    def __init__(self, *, ttl: float = DEFAULT_LEASE_TTL, clock: Clock = system_clock) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive seconds, got {ttl}")
        self.ttl = ttl
        self.clock = clock

    @abstractmethod
    def acquire(self, holder: str) -> int | None:
        """Take the lease for ``ttl`` seconds if it is free, expired, or ``holder``'s already.

        Returns the fencing token: a new, greater one when a new term starts; the same one
        when ``holder`` already held a live lease (which is extended). None when another
        holder's lease is live. May raise ``OperationalError``. Does not block beyond the
        store's own locking.
        """

    @abstractmethod
    def renew(self, holder: str, token: int) -> bool:
        """Extend ``holder``'s live lease by ``ttl``; False if it expired or was taken."""

    @abstractmethod
    def release(self, holder: str, token: int) -> None:
        """Give the lease up now (if still held with ``token``), so another takes over at once.

        Idempotent; the token is kept, so the next term's is greater.
        """

    @abstractmethod
    def current(self) -> LeaseState | None:
        """The lease as stored (None if never taken); it may be expired."""

    def close(self) -> None:
        """Release connections (not the lease). Idempotent."""
        return None


class MemoryLease(LeaderLease):
    """A lease inside one process: share the one object between the contenders."""

    def __init__(self, *, ttl: float = DEFAULT_LEASE_TTL, clock: Clock = system_clock) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self._lock = threading.Lock()
        self._state: LeaseState | None = None

    def acquire(self, holder: str) -> int | None:
        now = self.clock.time()
        with self._lock:
            state = self._state
            if state is not None and state.holder == holder and state.expires_at > now:
                token = state.token
            elif state is None or state.holder is None or state.expires_at <= now:
                token = (state.token if state else 0) + 1
            else:
                return None
            self._state = LeaseState(holder, token, now + self.ttl)
            return token

    def renew(self, holder: str, token: int) -> bool:
        now = self.clock.time()
        with self._lock:
            state = self._state
            if state is None or (state.holder, state.token) != (holder, token):
                return False
            if state.expires_at <= now:
                return False
            self._state = LeaseState(holder, token, now + self.ttl)
            return True

    def release(self, holder: str, token: int) -> None:
        with self._lock:
            state = self._state
            if state is not None and (state.holder, state.token) == (holder, token):
                self._state = LeaseState(None, token, 0.0)

    def current(self) -> LeaseState | None:
        with self._lock:
            return self._state


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS celeriac_beat_lease (name TEXT PRIMARY KEY, holder TEXT,"
    " token INTEGER NOT NULL, expires_at REAL NOT NULL)",
)
_SELECT = "SELECT holder, token, expires_at FROM celeriac_beat_lease WHERE name = ?"


class SQLiteLease(LeaderLease):
    """A lease in an SQLite file shared by the beats of one machine."""

    def __init__(
        self,
        path: str,
        *,
        name: str = "beat",
        ttl: float = DEFAULT_LEASE_TTL,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self.name = name
        self._db = Database(
            path, _SCHEMA, what="beat leader lease", not_sqlite=Database.NOT_A_SCHEDULE
        )

    def _read(self) -> LeaseState | None:
        with self._db.using("read the leader lease") as conn:
            row = conn.execute(_SELECT, (self.name,)).fetchone()
        return None if row is None else LeaseState(row[0], int(row[1]), float(row[2]))

    def acquire(self, holder: str) -> int | None:
        now = self.clock.time()
        seen = self._read()  # a cheap read first: most calls find the lease taken
        if seen is not None and seen.holder not in (None, holder) and seen.expires_at > now:
            return None
        with self._db.using("take the leader lease", write=True) as conn:
            row = conn.execute(_SELECT, (self.name,)).fetchone()
            if row is not None and row[0] == holder and row[2] > now:
                token = int(row[1])
            elif row is None or row[0] is None or row[2] <= now:
                token = (int(row[1]) if row is not None else 0) + 1
            else:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_beat_lease VALUES (?, ?, ?, ?)",
                (self.name, holder, token, now + self.ttl),
            )
        return token

    def renew(self, holder: str, token: int) -> bool:
        now = self.clock.time()
        with self._db.using("renew the leader lease") as conn:
            cursor = conn.execute(
                "UPDATE celeriac_beat_lease SET expires_at = ? WHERE name = ? AND holder = ?"
                " AND token = ? AND expires_at > ?",
                (now + self.ttl, self.name, holder, token, now),
            )
        return cursor.rowcount == 1

    def release(self, holder: str, token: int) -> None:
        with self._db.using("release the leader lease") as conn:
            conn.execute(
                "UPDATE celeriac_beat_lease SET holder = NULL, expires_at = 0 WHERE name = ?"
                " AND holder = ? AND token = ?",
                (self.name, holder, token),
            )

    def current(self) -> LeaseState | None:
        return self._read()

    def close(self) -> None:
        self._db.close()
