"""The SQLite broker's storage: schema, SQL, and one locked connection (see ``sqlite``).

Shared by the transport (``sqlite``), its consumers (``consumer``) and broadcasts
(``_broadcast``); the schema and the atomic steps are drawn in ``sqlite``'s docstring.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from celeriac._forkguard import sqlite_call
from celeriac.exceptions import EncodeError, ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.transports import mask_password

_BUSY_TIMEOUT = 10.0
_FIRST_PAUSE = 0.001
_RECOVERY_INTERVAL = 2.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL, priority INTEGER NOT NULL, available_at REAL NOT NULL,
        delayed INTEGER NOT NULL,
        body BLOB NOT NULL, content_type TEXT NOT NULL, content_encoding TEXT NOT NULL,
        headers TEXT NOT NULL, properties TEXT NOT NULL,
        delivery_count INTEGER NOT NULL DEFAULT 0, lease_consumer TEXT, lease_owner TEXT,
        lease_host TEXT, lease_pid INTEGER, lease_expires REAL)""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_ready
        ON celeriac_messages (queue, priority DESC, id) WHERE delayed = 0""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_delayed
        ON celeriac_messages (queue, available_at) WHERE delayed = 1""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_consumer
        ON celeriac_messages (lease_consumer) WHERE lease_consumer IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_process
        ON celeriac_messages (lease_host, lease_pid) WHERE lease_consumer IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS celeriac_bindings (
        exchange TEXT NOT NULL, exchange_type TEXT NOT NULL, binding_key TEXT NOT NULL,
        queue TEXT NOT NULL, PRIMARY KEY (exchange, binding_key, queue))""",
    """CREATE TABLE IF NOT EXISTS celeriac_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL, body BLOB NOT NULL, content_type TEXT NOT NULL,
        content_encoding TEXT NOT NULL, headers TEXT NOT NULL, properties TEXT NOT NULL,
        reason TEXT NOT NULL, dead_lettered_at REAL NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS celeriac_dead_letters_at
        ON celeriac_dead_letters (dead_lettered_at)""",
)
# Columns added since the first schema: (name, definition), added where missing.
_ADDED_COLUMNS = (
    # claims given back (requeue, defer, close): not failed deliveries (see max_deliveries)
    ("returns", "INTEGER NOT NULL DEFAULT 0"),
)
_PARTS = "body, content_type, content_encoding, headers, properties"
_WAITING = "(lease_consumer IS NULL OR lease_expires <= ?)"
_HELD = "id = ? AND delivery_count = ? AND lease_consumer = ?"
_UNLEASE = (
    "lease_consumer = NULL, lease_owner = NULL, lease_host = NULL, lease_pid = NULL, "
    "lease_expires = NULL"
)
_RETURN = "returns = returns + 1"  # with _UNLEASE: a give-back, not a failed delivery
_SELECT_DUE = (
    "SELECT id, queue, exchange, routing_key, delivery_count, returns,"
    f" {_PARTS} FROM celeriac_messages"
    f" WHERE queue = ? AND delayed = 0 AND {_WAITING} ORDER BY priority DESC, id LIMIT ?"
)
# A queue's waiting rows, in two halves so each uses its index (delayed rows are never leased).
_WAITING_ROWS = (
    f"FROM celeriac_messages WHERE queue = ? AND delayed = 0 AND {_WAITING}",
    "FROM celeriac_messages WHERE queue = ? AND delayed = 1",
)
_PROMOTE = (
    "UPDATE celeriac_messages SET delayed = 0 WHERE queue = ? AND delayed = 1 AND available_at <= ?"
)
_NEXT_DUE = (
    "SELECT MIN(available_at) FROM celeriac_messages WHERE queue = ? AND delayed = 1"
    " UNION ALL SELECT MIN(lease_expires) FROM celeriac_messages"
    " WHERE lease_consumer IS NOT NULL AND queue = ?"
)
_LEASE = (
    "UPDATE celeriac_messages SET delivery_count = delivery_count + 1, lease_consumer = ?,"
    " lease_owner = ?, lease_host = ?, lease_pid = ?, lease_expires = ? WHERE id = ?"
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a broker file made by an older version up to the current schema."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(celeriac_messages)")}
    for name, definition in _ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE celeriac_messages ADD COLUMN {name} {definition}")


def _bury(where: str) -> str:
    """SQL copying the rows ``where`` selects to the dead letters; params: reason, time, where's."""
    return (
        "INSERT INTO celeriac_dead_letters (queue, exchange, routing_key, "
        f"{_PARTS}, reason, dead_lettered_at) SELECT queue, exchange, routing_key, {_PARTS}, ?, ?"
        f" FROM celeriac_messages WHERE {where}"
    )


def _poison_reason(count: int) -> str:
    return (
        f"delivered {count} times without being acknowledged (its worker probably died each time)"
    )


def _database_path(url: str) -> str:
    """The absolute file path of a ``sqlite://`` URL, checked to be usable."""
    parts = urlsplit(url)
    shown = mask_password(url)
    if parts.scheme != "sqlite" or parts.netloc or parts.query:
        raise ImproperlyConfigured(
            f"{shown!r} is not a SQLite broker URL: write sqlite:///relative/path.sqlite or "
            "sqlite:////absolute/path.sqlite (options go in broker_transport_options)."
        )
    raw = parts.path[1:]
    if not raw or raw == ":memory:":
        raise ImproperlyConfigured(
            f"The SQLite broker URL {shown!r} names no file: give a path such as "
            "sqlite:///celeriac.sqlite (use memory:// for a broker inside one process)."
        )
    path = os.path.abspath(raw)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ImproperlyConfigured(
            f"The SQLite broker file {path} cannot be created: the directory {directory} does "
            "not exist. Create it, or point broker_url at a file in an existing directory."
        )
    if not os.access(directory, os.W_OK | os.X_OK) or (
        os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK)
    ):
        raise ImproperlyConfigured(
            f"The SQLite broker file {path} is not writable by this user (SQLite also needs to "
            f"write beside it in {directory}). Fix the permissions or choose another path."
        )
    if os.path.isdir(path):
        raise ImproperlyConfigured(f"The SQLite broker path {path} is a directory, not a file.")
    return path


def holder_identity(hostname: str) -> str:
    """Who may judge a lease holder's pid: the host, its boot and its pid namespace.

    Recovery releases a dead holder's leases only when the holder's identity equals ours, so
    a pid is only ever looked up in the namespace it was taken in. Two hosts or containers
    that share a hostname and the file (but not a pid namespace, or not a kernel) then never
    release each other's live leases; those wait for ``lease_timeout`` instead. Where
    ``/proc`` is missing (not Linux) the identity is the hostname alone.
    """
    parts = [hostname]
    for path, read in (
        ("/proc/sys/kernel/random/boot_id", _read_text),
        ("/proc/self/ns/pid", os.readlink),
    ):
        try:
            parts.append(read(path))
        except OSError:
            break
    return "|".join(parts)


def _read_text(path: str) -> str:
    with open(path, encoding="ascii") as file:
        return file.read().strip()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks the pid (POSIX)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: it exists but belongs to another user
    return True


class _Database:
    """One connection to the broker file, used under a lock; sqlite3 errors become ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        with sqlite_call(), self._errors("open the database"):
            self._conn = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            hint = "Check that the file is a Celeriac database on a local disk."
            if "locked" in str(exc) or "busy" in str(exc):
                hint = f"Another process held its write lock for over {_BUSY_TIMEOUT:g} s."
            raise TransportError(
                f"SQLite broker {self.path}: could not {what}: {exc}. {hint}"
            ) from exc

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        with sqlite_call(), self._lock, self._errors(what):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    def query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with sqlite_call(), self._lock, self._errors(what):
            return self._conn.execute(sql, params).fetchall()

    def change(self, what: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (its own transaction); return how many rows it changed."""
        with sqlite_call(), self._lock, self._errors(what):
            return self._conn.execute(sql, params).rowcount

    def close(self) -> None:
        with sqlite_call(), self._lock:
            self._conn.close()


def _json_object(row: sqlite3.Row, column: str) -> dict[str, Any]:
    value = row[column]
    try:
        parsed = json.loads(value) if isinstance(value, (str, bytes)) else value
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"column {column!r} is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"column {column!r} must hold a JSON object, got {type(parsed).__name__}")
    return parsed


def _message(row: sqlite3.Row) -> Message:
    """The message a row holds. Raises ValueError (with the reason) for a row that another
    program wrote with parts of the wrong type; the consumer dead-letters those."""
    body, content_type, encoding = row["body"], row["content_type"], row["content_encoding"]
    if isinstance(body, str):  # text where a blob belongs: what it says, as utf-8
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, bytes):
        raise ValueError(f"column 'body' must be a blob, got {type(body).__name__}")
    for column, value in (("content_type", content_type), ("content_encoding", encoding)):
        if not isinstance(value, str):
            raise ValueError(f"column {column!r} must be text, got {type(value).__name__}")
    return Message(
        body=body,
        content_type=content_type,
        content_encoding=encoding,
        headers=_json_object(row, "headers"),
        properties=_json_object(row, "properties"),
    )


def _stored_message(row: sqlite3.Row) -> Message:
    """``_message``, or for a malformed row what can be shown of it (dead letters)."""
    try:
        return _message(row)
    except ValueError:
        body = row["body"]
        return Message(
            body=body if isinstance(body, bytes) else str(body).encode("utf-8", "replace"),
            content_type=str(row["content_type"]),
            content_encoding=str(row["content_encoding"]),
            headers={"x-celeriac-unreadable-headers": str(row["headers"])[:1000]},
        )


def _parts(message: Message) -> tuple[bytes, str, str, str, str]:
    try:
        headers, properties = json.dumps(message.headers), json.dumps(message.properties)
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            "The SQLite broker stores message headers and properties as JSON, so they may hold "
            f"only strings, numbers, booleans, None, lists and dicts: {exc}"
        ) from exc
    return (message.body, message.content_type, message.content_encoding, headers, properties)
