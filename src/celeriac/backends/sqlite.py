"""The embedded default result backend: one SQLite file shared by many processes.

Workers store results and clients wait for them through the same database file, which the
SQLite broker may share, so every table is prefixed ``celeriac_``::

    celeriac_results                    celeriac_groups            celeriac_counters
    ├── task_id    TEXT PRIMARY KEY     ├── group_id   TEXT PK     ├── key        TEXT PK
    ├── state      TEXT                 ├── payload    BLOB        ├── value      INTEGER
    ├── payload    BLOB                 ├── stored_at  REAL        └── expires_at REAL
    ├── stored_at  REAL                 └── expires_at REAL
    └── expires_at REAL   (Unix time; NULL: never; indexed where not NULL, for cleanup)

    celeriac_revoked (the revocation log)
    ├── seq        INTEGER PRIMARY KEY AUTOINCREMENT   (the cursor: never reused)
    ├── task_id    TEXT
    └── expires_at REAL

    celeriac_chords (SQLiteChordJoin)           celeriac_chord_parts (one row per member)
    ├── group_id   TEXT PRIMARY KEY             ├── group_id   TEXT    ┐ PRIMARY KEY
    ├── size       INTEGER  (header members)    ├── position   INTEGER ┘ (header order)
    ├── joined     INTEGER  (members reported)  ├── task_id    TEXT    (indexed with group_id)
    ├── claimer    TEXT     (the task id whose  └── entry      BLOB    [1, task id, state,
    │               report claimed the body)                           result]; NULL: waiting
    ├── sent       INTEGER  (1: the body went out; the parts are gone)
    └── expires_at REAL

Rows whose ``expires_at`` has passed read as absent; ``cleanup`` deletes them (and the parts
of chords that are gone). Atomicity: ``store``, ``forget`` and the group calls are single
statements (each its own implicit transaction); ``incr``, ``cleanup`` and each call of the
chord join run in one ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front so
concurrent read-modify-writes serialize instead of failing. The chord join
(``celeriac.canvas.join``'s rules): ``prepare`` replaces the chord's row and its members'
rows; ``member_done`` reads the live chord row (none: ``LookupError``, the chord is not
recorded here; ``sent``: nothing to do), sets the entry of the member's rows still waiting
(``joined`` + that many), and once ``joined`` reaches ``size`` sets ``claimer`` to this task
id if it is NULL, and returns the entries in ``position`` order when ``claimer`` is this
task id; ``finish`` deletes the parts and sets ``sent`` (the row stays until it expires).
The file is opened in WAL mode (readers never block the writer) with ``synchronous=NORMAL``
and a busy timeout (option ``busy_timeout``, 10 s by default).

``wait_for`` polls cheaply: ``PRAGMA data_version`` changes when another connection commits,
so the wanted rows are re-read only on the first pass and after a change, sleeping from a few
milliseconds up to ``interval`` between checks.

One connection per backend, guarded by a lock held only around statements, makes it safe from
any thread. It is not fork-safe: a forked child must create its own backend (using the
parent's raises ``BackendError``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from celeriac._forkguard import sqlite_call
from celeriac._sqlite import immediate
from celeriac._time import Clock, system_clock
from celeriac.backends._sqlite_chord import LIVE, SQLiteChordJoin
from celeriac.backends.base import BackendCapabilities, ResultBackend
from celeriac.exceptions import (
    BackendError,
    BackendGetMetaError,
    BackendStoreError,
    ImproperlyConfigured,
    TimeoutError,
)

__all__ = ["SQLiteBackend", "database_path"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS celeriac_results (task_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " payload BLOB NOT NULL, stored_at REAL NOT NULL, expires_at REAL)",
    "CREATE INDEX IF NOT EXISTS celeriac_results_expires_at ON celeriac_results (expires_at)"
    " WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS celeriac_groups (group_id TEXT PRIMARY KEY,"
    " payload BLOB NOT NULL, stored_at REAL NOT NULL, expires_at REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_counters (key TEXT PRIMARY KEY,"
    " value INTEGER NOT NULL, expires_at REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_revoked (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " task_id TEXT NOT NULL, expires_at REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_chords (group_id TEXT PRIMARY KEY,"
    " size INTEGER NOT NULL, joined INTEGER NOT NULL, claimer TEXT, sent INTEGER NOT NULL,"
    " expires_at REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_chord_parts (group_id TEXT NOT NULL,"
    " position INTEGER NOT NULL, task_id TEXT NOT NULL, entry BLOB,"
    " PRIMARY KEY (group_id, position))",
    "CREATE INDEX IF NOT EXISTS celeriac_chord_parts_task ON celeriac_chord_parts"
    " (group_id, task_id)",
)
_EXPIRED = "expires_at IS NOT NULL AND expires_at <= ?"
_INCR = (
    "INSERT INTO celeriac_counters (key, value, expires_at) VALUES (?, 1, ?)"
    " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, value = CASE"
    " WHEN celeriac_counters.expires_at IS NOT NULL AND celeriac_counters.expires_at <= ?"
    " THEN 1 ELSE celeriac_counters.value + 1 END"
)
_ORPHAN_PARTS = (
    "DELETE FROM celeriac_chord_parts WHERE group_id NOT IN (SELECT group_id FROM celeriac_chords)"
)
_SCHEMES = ("sqlite", "db+sqlite")
_FIRST_POLL = 0.001  # seconds; grows by half up to ``interval``
_CHUNK = 500  # ids per IN (...) query, well under SQLite's bound-parameter limit


def database_path(url: str) -> str:
    """The absolute file path named by ``sqlite:///relative`` or ``sqlite:////absolute``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ImproperlyConfigured(f"{url!r} is not an SQLite result backend URL")
    rest = rest.partition("?")[0]
    path = unquote(rest[1:]) if rest.startswith("/") else ""
    if not path or path == ":memory:":
        raise ImproperlyConfigured(
            f"SQLite result backend URL {url!r} names no database file: use "
            "sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite "
            "(for results kept inside one process, use memory://)"
        )
    return os.path.abspath(path)


def _check_path(path: str) -> None:
    """Fail early, naming the path, when SQLite could not create or write the file."""
    directory = os.path.dirname(path)
    problem = ""
    if not os.path.isdir(directory):
        problem = f"its directory {directory} does not exist; create it or choose another path"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = f"its directory {directory} is not writable; SQLite needs to create files there"
    elif os.path.isdir(path):
        problem = "it is a directory; name a file instead"
    elif os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        problem = "the file is not readable and writable; fix its permissions"
    if problem:
        raise ImproperlyConfigured(f"cannot use {path} as the SQLite result store: {problem}")


def _busy_timeout(options: Mapping[str, Any] | None) -> float:
    value = (options or {}).get("busy_timeout", 10.0)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"result_backend_transport_options['busy_timeout'] must be seconds, got {value!r}"
        ) from exc


def _advice(exc: sqlite3.Error) -> str:
    """What to do about a driver error, for the end of its message."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "another connection held the write lock too long; raise the busy_timeout option"
    if "readonly" in text or "full" in text or "i/o" in text:
        return "check that the file and its directory are writable and the disk has space"
    return "check that the file is a healthy SQLite database, or point at a new file"


class SQLiteBackend(ResultBackend):
    """Results in an SQLite file that every process on the machine can share."""

    capabilities = BackendCapabilities(revocation_log=True)

    def __init__(
        self,
        url: str,
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.path = database_path(url)
        _check_path(self.path)
        self._clock = clock
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._local_writes = 0  # data_version does not count this connection's own commits
        with sqlite_call():
            self._conn: sqlite3.Connection | None = self._open(_busy_timeout(options))

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ImproperlyConfigured(
                f"cannot open the SQLite result store {self.path}: {exc}; {_advice(exc)}"
            ) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with immediate(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
        except sqlite3.Error as exc:
            conn.close()
            transient = "locked" in str(exc).lower()  # another process is busy: not a config error
            raise (BackendError if transient else ImproperlyConfigured)(
                f"cannot set up the SQLite result store {self.path}: {exc}; {_advice(exc)}"
            ) from exc
        return conn

    @contextmanager
    def _using(self, error: type[BackendError], action: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with sqlite3 errors raised as ``error``."""
        if os.getpid() != self._pid:
            raise error(
                f"this SQLite result backend ({self.path}) was opened in process {self._pid}; "
                "a forked child must create its own backend"
            )
        with sqlite_call(), self._lock:
            if self._conn is None:
                raise error(f"the SQLite result backend {self.path} is closed; create a new one")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise error(f"could not {action} in {self.path}: {exc}; {_advice(exc)}") from exc

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock.time() + ttl

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,  # ignored: results are kept here, not sent
    ) -> None:
        row = (task_id, state, payload, self._clock.time(), self._expiry(ttl))
        with self._using(BackendStoreError, f"store the result of task {task_id}") as conn:
            conn.execute("INSERT OR REPLACE INTO celeriac_results VALUES (?, ?, ?, ?, ?)", row)
            self._local_writes += 1

    def fetch(self, task_id: str) -> bytes | None:
        return self.fetch_many([task_id]).get(task_id)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, bytes] = {}
        now = self._clock.time()
        with self._using(BackendGetMetaError, "read results") as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT task_id, payload FROM celeriac_results WHERE task_id IN ({marks})"
                found.update(conn.execute(f"{query} AND {LIVE}", (*chunk, now)).fetchall())
        return found

    def _change_marker(self) -> tuple[int, int]:
        with self._using(BackendGetMetaError, "check for new results") as conn:
            (data_version,) = conn.execute("PRAGMA data_version").fetchone()
            return int(data_version), self._local_writes

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(task_ids))
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        ready: dict[str, bytes] = {}
        pending = wanted
        seen: tuple[int, int] | None = None
        delay, ceiling = _FIRST_POLL, max(interval, _FIRST_POLL)
        while True:
            marker = self._change_marker()  # read before the rows, so no commit slips between
            if marker != seen:
                seen = marker
                found = self.fetch_many(pending)
                ready.update((tid, payload) for tid, payload in found.items() if is_ready(payload))
                pending = [task_id for task_id in pending if task_id not in ready]
                if not pending:
                    return {task_id: ready[task_id] for task_id in wanted}
            pause = delay
            if deadline is not None:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(pending)} of {len(wanted)} results were not ready within {timeout} s"
                    )
                pause = min(delay, remaining)
            self._clock.sleep(pause)  # never under the lock
            delay = min(delay * 1.5, ceiling)

    def forget(self, task_id: str) -> None:
        with self._using(BackendError, f"forget task {task_id}") as conn:
            conn.execute("DELETE FROM celeriac_results WHERE task_id = ?", (task_id,))
            self._local_writes += 1

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        row = (group_id, payload, self._clock.time(), self._expiry(ttl))
        with self._using(BackendStoreError, f"store group {group_id}") as conn:
            conn.execute("INSERT OR REPLACE INTO celeriac_groups VALUES (?, ?, ?, ?)", row)

    def fetch_group(self, group_id: str) -> bytes | None:
        query = f"SELECT payload FROM celeriac_groups WHERE group_id = ? AND {LIVE}"
        with self._using(BackendGetMetaError, f"read group {group_id}") as conn:
            row = conn.execute(query, (group_id, self._clock.time())).fetchone()
        return None if row is None else bytes(row[0])

    def forget_group(self, group_id: str) -> None:
        with self._using(BackendError, f"forget group {group_id}") as conn:
            conn.execute("DELETE FROM celeriac_groups WHERE group_id = ?", (group_id,))

    def incr(self, key: str, *, ttl: float | None) -> int:
        now = self._clock.time()
        expires_at = None if ttl is None else now + ttl
        select = "SELECT value FROM celeriac_counters WHERE key = ?"
        with self._using(BackendStoreError, f"increment counter {key}") as conn, immediate(conn):
            conn.execute(_INCR, (key, expires_at, now))
            (value,) = conn.execute(select, (key,)).fetchone()
        return int(value)

    def log_revoked(self, task_ids: Sequence[str], *, ttl: float | None) -> None:
        expires_at = None if ttl is None else self._clock.time() + ttl
        insert = "INSERT INTO celeriac_revoked (task_id, expires_at) VALUES (?, ?)"
        with self._using(BackendStoreError, "log revoked tasks") as conn, immediate(conn):
            conn.executemany(insert, [(task_id, expires_at) for task_id in task_ids])

    def revoked_since(self, cursor: str | None) -> tuple[list[str], str]:
        after = int(cursor) if cursor else 0
        query = "SELECT seq, task_id, expires_at FROM celeriac_revoked WHERE seq > ? ORDER BY seq"
        with self._using(BackendGetMetaError, "read the revocation log") as conn:
            rows = conn.execute(query, (after,)).fetchall()
        now = self._clock.time()
        ids = [str(task_id) for _, task_id, expires in rows if expires is None or expires > now]
        return ids, str(rows[-1][0] if rows else after)

    def cleanup(self) -> int:
        now = self._clock.time()
        tables = (
            "celeriac_results",
            "celeriac_groups",
            "celeriac_counters",
            "celeriac_revoked",
            "celeriac_chords",
        )
        with self._using(BackendError, "delete expired results") as conn, immediate(conn):
            removed = sum(
                conn.execute(f"DELETE FROM {table} WHERE {_EXPIRED}", (now,)).rowcount
                for table in tables
            )
            conn.execute(_ORPHAN_PARTS)
            return removed

    def chord_join(self) -> SQLiteChordJoin:
        """The chord join in this file (``celeriac.backends._sqlite_chord``)."""
        return SQLiteChordJoin(self)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with sqlite_call():
                conn.close()
