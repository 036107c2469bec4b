"""Results in an SQL database through SQLAlchemy 2, in Celery's tables.

``db+postgresql://``, ``db+postgresql+psycopg://``, ``db+mysql://``, ``db+mysql+pymysql://``,
``db+sqlite:///path`` (any ``db+<SQLAlchemy URL>``). The task and group tables are those of
Celery's database backend, so Celery and Celeriac read each other's results::

    celery_taskmeta (database_table_names['task'])   celery_tasksetmeta (['group'])
    ├── id          INTEGER  (sequence task_id_sequence) ├── id          INTEGER (sequence)
    ├── task_id     VARCHAR(155) UNIQUE                  ├── taskset_id  VARCHAR(155) UNIQUE
    ├── status      VARCHAR(50)                          ├── result      BLOB  (the group's
    ├── result      BLOB   (serialized value or          │                      tuple, serialized)
    │                       encoded exception)           ├── date_done   TIMESTAMP (naive UTC)
    ├── date_done   TIMESTAMP (naive UTC)                ├── celeriac_expires  DOUBLE
    ├── traceback   TEXT                                 └── celeriac_payload  BLOB
    ├── children    BLOB   (serialized)
    ├── name, args BLOB, kwargs BLOB, worker, retries, queue, stamps   (result_extended)
    ├── celeriac_expires  DOUBLE  (Unix time the entry expires; NULL: Celery's rule)
    └── celeriac_payload  BLOB   (a payload that is not a meta, kept verbatim)

    celeriac_counters                celeriac_chords                 celeriac_chord_parts
    ├── key        VARCHAR PK        ├── group_id  VARCHAR PK        ├── group_id  ┐ PK
    ├── value      BIGINT            ├── size, joined  INTEGER       ├── position  ┘
    └── expires_at DOUBLE            ├── claimer   VARCHAR           ├── task_id (indexed)
                                     ├── sent      BOOLEAN           └── entry     BLOB
                                     └── expires_at DOUBLE

(``celeriac_*`` tables live in the task table's schema.) Tables are created on first use,
or at set-up with ``database_create_tables_at_setup`` (the default), and columns a table made
by an older Celery lacks are added. ``_sql_rows`` translates a meta to columns and back.

Expiry: an entry stored with a ttl reads as absent once ``celeriac_expires`` passes; a row
without one (Celery wrote it, or there is no ttl) follows Celery's rule: ``cleanup`` deletes
it ``result_expires`` after its ``date_done``. ``cleanup`` runs from the
``celeriac.backend_cleanup`` task that beat schedules daily, as Celery's does.

Atomicity: ``store`` and ``save_group`` are one upsert (``INSERT ... ON CONFLICT`` /
``ON DUPLICATE KEY UPDATE``); ``incr`` reads its row ``FOR UPDATE``, then inserts it (a
racing insert fails on the key and is counted as an update) or updates it, in one
transaction (the row stays locked until commit); each step of the chord join
(``_sql_chord``) is one transaction that locks the chord's row (``SELECT ... FOR UPDATE``;
on SQLite every transaction is ``BEGIN IMMEDIATE``). ``wait_for`` polls, from a few
milliseconds up to ``interval``.

Processes: the engine (and its pool, ``database_engine_options``, two connections by default)
is made on first use in each process, so a prefork child never shares its parent's
connections; ``database_short_lived_sessions`` uses no pool at all.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from celeriac._forkguard import sqlite_call
from celeriac._imports import symbol_by_name
from celeriac._time import Clock, system_clock
from celeriac.backends._sql_chord import SQLChordJoin
from celeriac.backends._sql_rows import RowCodec
from celeriac.backends._sql_schema import Tables, create_engine, engine_url, ensure_schema
from celeriac.backends.base import BackendCapabilities, ResultBackend
from celeriac.exceptions import (
    BackendError,
    BackendGetMetaError,
    BackendStoreError,
    ImproperlyConfigured,
    TimeoutError,
)

__all__ = ["DatabaseBackend"]

_FIRST_POLL = 0.005  # seconds; grows by half up to ``interval``
_CHUNK = 500  # ids per IN (...) query
_DEFAULT_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_recycle": 3600}


class DatabaseBackend(ResultBackend):
    """Task results in an SQL database, in Celery's tables (module docstring).

    Options (the app passes its settings under these names): ``result_serializer``,
    ``result_expires`` (seconds; Celery's cleanup rule), ``database_engine_options``,
    ``database_short_lived_sessions``, ``database_table_names``, ``database_table_schemas``,
    ``database_create_tables_at_setup``, ``database_engine_callback``.
    """

    capabilities = BackendCapabilities()  # polls; cleanup deletes what expired

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        options = dict(options or {})
        self.url = engine_url(url)
        self._clock = clock
        self._codec = RowCodec(str(options.get("result_serializer") or "json"))
        self._expires = options.get("result_expires")
        engine_options = options.get("database_engine_options")
        self._engine_options = dict(
            _DEFAULT_ENGINE_OPTIONS if engine_options is None else engine_options
        )
        self._short_lived = bool(options.get("database_short_lived_sessions", False))
        self._engine_callback = _callback(options.get("database_engine_callback"))
        self.tables = Tables(
            options.get("database_table_names"), options.get("database_table_schemas")
        )
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._schema_ready = False
        self._closed = False
        self._sqlite = self.url.get_backend_name() == "sqlite"
        if options.get("database_create_tables_at_setup", True):
            with self.connect(ImproperlyConfigured, "create the result tables"):
                pass

    # -- connections ----------------------------------------------------------------------

    def _current_engine(self) -> Engine:
        with self._lock:
            if self._closed:
                raise BackendError(f"the SQL result backend {self._shown} is closed")
            if self._engine is not None and self._pid != os.getpid():
                self._engine.dispose(close=False)  # the parent's connections stay the parent's
                self._engine = None
            if self._engine is None:
                self._pid = os.getpid()
                self._engine = create_engine(
                    self.url, self._engine_options, short_lived=self._short_lived
                )
                if self._engine_callback is not None:
                    self._engine_callback(self._engine)  # e.g. to add event listeners
            engine = self._engine
            if not self._schema_ready:
                ensure_schema(engine, self.tables)
                self._schema_ready = True
            return engine

    @property
    def _shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def connect(self, error: type[Exception], action: str) -> Iterator[sa.Connection]:
        """A connection in a transaction (committed on leaving), SQLAlchemy's errors raised
        as ``error`` naming ``action``."""
        guard = sqlite_call() if self._sqlite else nullcontext()
        with guard:
            try:
                with self._current_engine().begin() as conn:
                    yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise error(f"could not {action} in {self._shown}: {_reason(exc)}") from exc

    def _now(self) -> float:
        return self._clock.time()

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._now() + ttl

    def _live(self, table: sa.Table) -> sa.ColumnElement[bool]:
        column = table.c.celeriac_expires
        return sa.or_(column.is_(None), column > self._now())

    def _upsert(
        self, conn: sa.Connection, table: sa.Table, key: str, values: dict[str, Any]
    ) -> None:
        """Insert the row, or update every given column of the row with the same ``key``."""
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg = pg_insert(table).values(values)
            pg = pg.on_conflict_do_update(
                index_elements=[key], set_={name: pg.excluded[name] for name in values}
            )
            conn.execute(pg)
        elif dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as my_insert

            my = my_insert(table).values(values)
            conn.execute(my.on_duplicate_key_update({name: my.inserted[name] for name in values}))
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as lite_insert

            lite = lite_insert(table).values(values)
            lite = lite.on_conflict_do_update(
                index_elements=[key], set_={name: lite.excluded[name] for name in values}
            )
            conn.execute(lite)
        else:  # no upsert in SQLAlchemy for this dialect: one transaction, update or insert
            where = table.c[key] == values[key]
            if conn.execute(sa.update(table).where(where).values(values)).rowcount == 0:
                conn.execute(sa.insert(table).values(values))

    # -- task results ---------------------------------------------------------------------

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,  # ignored: results are kept here, not sent
    ) -> None:
        row = self._codec.task_row(payload, state)
        if row["date_done"] is None and row["celeriac_payload"] is not None:
            row["date_done"] = dt.datetime.fromtimestamp(self._now(), dt.UTC).replace(tzinfo=None)
        row.update(task_id=task_id, celeriac_expires=self._expiry(ttl))
        with self.connect(BackendStoreError, f"store the result of task {task_id}") as conn:
            self._upsert(conn, self.tables.task, "task_id", row)

    def fetch(self, task_id: str) -> bytes | None:
        return self.fetch_many([task_id]).get(task_id)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        ids = list(dict.fromkeys(task_ids))
        table = self.tables.task
        found: dict[str, bytes] = {}
        with self.connect(BackendGetMetaError, "read results") as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                query = sa.select(table).where(table.c.task_id.in_(chunk), self._live(table))
                for row in conn.execute(query).mappings():
                    found[row["task_id"]] = self._decoded(row)
        return found

    def _decoded(self, row: sa.RowMapping) -> bytes:
        try:
            return self._codec.task_payload(row)
        except Exception as exc:
            raise BackendGetMetaError(
                f"the stored result of task {row['task_id']} in {self._shown} does not decode "
                f"with the {self._codec.serializer} result serializer: {exc}; set "
                "result_serializer to the one its writer used"
            ) from exc

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
        delay, ceiling = _FIRST_POLL, max(interval, _FIRST_POLL)
        while True:
            pending = [task_id for task_id in wanted if task_id not in ready]
            found = self.fetch_many(pending)
            ready.update((tid, payload) for tid, payload in found.items() if is_ready(payload))
            if len(ready) == len(wanted):
                return {task_id: ready[task_id] for task_id in wanted}
            pause = delay
            if deadline is not None:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    missing = len(wanted) - len(ready)
                    raise TimeoutError(
                        f"{missing} of {len(wanted)} results were not ready within {timeout} s"
                    )
                pause = min(delay, remaining)
            self._clock.sleep(pause)
            delay = min(delay * 1.5, ceiling)

    def forget(self, task_id: str) -> None:
        table = self.tables.task
        with self.connect(BackendError, f"forget task {task_id}") as conn:
            conn.execute(sa.delete(table).where(table.c.task_id == task_id))

    # -- groups ---------------------------------------------------------------------------

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        row = self._codec.group_row(payload)
        now = dt.datetime.fromtimestamp(self._now(), dt.UTC).replace(tzinfo=None)
        row.update(taskset_id=group_id, date_done=now, celeriac_expires=self._expiry(ttl))
        with self.connect(BackendStoreError, f"store group {group_id}") as conn:
            self._upsert(conn, self.tables.group, "taskset_id", row)

    def fetch_group(self, group_id: str) -> bytes | None:
        table = self.tables.group
        query = sa.select(table).where(table.c.taskset_id == group_id, self._live(table))
        with self.connect(BackendGetMetaError, f"read group {group_id}") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else self._codec.group_payload(row)

    def forget_group(self, group_id: str) -> None:
        table = self.tables.group
        with self.connect(BackendError, f"forget group {group_id}") as conn:
            conn.execute(sa.delete(table).where(table.c.taskset_id == group_id))

    # -- counters, cleanup ----------------------------------------------------------------

    def incr(self, key: str, *, ttl: float | None) -> int:
        table = self.tables.counters
        now = self._now()
        expired = sa.and_(table.c.expires_at.is_not(None), table.c.expires_at <= now)
        with self.connect(BackendStoreError, f"increment counter {key}") as conn:
            current = conn.execute(
                sa.select(table.c.value, expired.label("expired"))
                .where(table.c.key == key)
                .with_for_update()
            ).first()
            if current is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.insert(table).values(key=key, value=1, expires_at=self._expiry(ttl))
                        )
                    return 1
                except sa.exc.IntegrityError:
                    pass  # another process created it since: count on it below
            value = sa.case((expired, 1), else_=table.c.value + 1)
            conn.execute(
                sa.update(table)
                .where(table.c.key == key)
                .values(value=value, expires_at=self._expiry(ttl))
            )
            (new,) = conn.execute(sa.select(table.c.value).where(table.c.key == key)).one()
        return int(new)

    def cleanup(self) -> int:
        now = self._now()
        tables = self.tables
        removed = 0
        with self.connect(BackendError, "delete expired results") as conn:
            for table in (tables.task, tables.group, tables.counters, tables.chords):
                column = table.c.get("celeriac_expires", table.c.get("expires_at"))
                assert column is not None
                expired = sa.and_(column.is_not(None), column <= now)
                removed += conn.execute(sa.delete(table).where(expired)).rowcount
            if self._expires:  # Celery's rule, for rows that carry no expiry of their own
                cutoff = dt.datetime.fromtimestamp(now - float(self._expires), dt.UTC)
                for table in (tables.task, tables.group):
                    old = sa.and_(
                        table.c.celeriac_expires.is_(None),
                        table.c.date_done < cutoff.replace(tzinfo=None),
                    )
                    removed += conn.execute(sa.delete(table).where(old)).rowcount
            parts, chords = tables.chord_parts, tables.chords
            orphan = parts.c.group_id.not_in(sa.select(chords.c.group_id))
            conn.execute(sa.delete(parts).where(orphan))
        return removed

    def chord_join(self) -> SQLChordJoin:
        """The chord join in this database (``celeriac.backends._sql_chord``)."""
        return SQLChordJoin(self)

    def close(self) -> None:
        with self._lock:
            engine, self._engine, self._closed = self._engine, None, True
        if engine is not None:
            engine.dispose(close=self._pid == os.getpid())


def _callback(value: Any) -> Callable[[Engine], Any] | None:
    """``database_engine_callback``: a callable or its ``'module:name'``, called with each
    new engine (as Celery does)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = symbol_by_name(value)
    if not callable(value):
        raise ImproperlyConfigured(f"database_engine_callback must be callable, got {value!r}")
    return value  # type: ignore[no-any-return]


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump and help link."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
