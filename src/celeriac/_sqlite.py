"""One SQLite file used by one part of Celeriac (beat's store and lease, the dashboard's store).

Each opens one connection through ``Database``: WAL mode (readers never block the
writer), ``synchronous=NORMAL``, a busy timeout, autocommit outside explicit
``BEGIN IMMEDIATE`` transactions (which take the write lock up front, so concurrent
read-modify-writes queue instead of failing). ``sqlite3`` errors become
``OperationalError`` (``ImproperlyConfigured`` when the file cannot be used at all),
naming the file and what to do.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from celeriac._forkguard import sqlite_call
from celeriac.exceptions import ImproperlyConfigured, OperationalError

__all__ = ["Database", "immediate"]

_BUSY_TIMEOUT = 10.0


def _advice(exc: sqlite3.Error, not_sqlite: str) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "another process held the write lock too long; retry, or use fewer processes"
    if "not a database" in text:
        return not_sqlite
    if "readonly" in text or "full" in text or "i/o" in text:
        return "check that the file and its directory are writable and the disk has space"
    return "check that the file is a healthy SQLite database, or point at a new file"


class Database:
    """One connection to ``path``, used under a lock, so any thread may call."""

    #: The hint for a file that is not a beat store (an old Celery shelve file, say).
    NOT_A_SCHEDULE = (
        "the file is not a Celeriac schedule (an old Celery shelve file?): move it away"
    )

    def __init__(
        self,
        path: str,
        schema: Iterable[str],
        *,
        what: str,
        not_sqlite: str = "the file is not a SQLite database: move it away",
        rows: bool = False,
    ) -> None:
        self.path = os.path.abspath(path)
        self.what = what
        self.not_sqlite = not_sqlite
        self.rows = rows  # rows as sqlite3.Row (by name) instead of tuples
        self._lock = threading.Lock()
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise ImproperlyConfigured(
                f"cannot use {self.path} as the {what}: its directory {directory} does not exist"
            )
        with sqlite_call():
            self._conn: sqlite3.Connection | None = self._connect(schema)

    def _connect(self, schema: Iterable[str]) -> sqlite3.Connection:
        what = self.what
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ImproperlyConfigured(
                f"cannot open the {what} {self.path}: {exc}; {_advice(exc, self.not_sqlite)}"
            ) from exc
        if self.rows:
            conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with immediate(conn):
                for statement in schema:
                    conn.execute(statement)
        except sqlite3.Error as exc:
            conn.close()
            error = OperationalError if "locked" in str(exc).lower() else ImproperlyConfigured
            raise error(
                f"cannot set up the {what} {self.path}: {exc}; {_advice(exc, self.not_sqlite)}"
            ) from exc
        return conn

    @contextmanager
    def using(self, action: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock (in a write transaction if ``write``)."""
        with sqlite_call(), self._lock:
            if self._conn is None:
                raise OperationalError(f"the {self.what} {self.path} is closed")
            try:
                if write:
                    with immediate(self._conn):
                        yield self._conn
                else:
                    yield self._conn
            except sqlite3.Error as exc:
                raise OperationalError(
                    f"could not {action} in the {self.what} {self.path}: {exc}; "
                    f"{_advice(exc, self.not_sqlite)}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with sqlite_call():
                conn.close()


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock at its start (rolled back on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
