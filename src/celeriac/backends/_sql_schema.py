"""The SQL result backend's tables, engine and URL handling (``celeriac.backends.database``).

The task and group tables are Celery's (``celery.backends.database.models`` of Celery 5.7:
same names, columns, types and id sequences), so one database serves Celery and Celeriac
alike; Celeriac adds two nullable columns to each, which Celery's ORM never maps and so
leaves alone. The other tables are Celeriac's own. The module docstring of
``celeriac.backends.database`` draws them all.

``create_engine`` makes the SQLAlchemy engine of one process: the backend calls it lazily
and again after a fork, so every prefork child has a pool of its own.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["Tables", "create_engine", "engine_url", "ensure_schema"]

_ID = sa.Integer().with_variant(sa.BigInteger, "mssql")  # Celery's DialectSpecificInteger
#: Drivers tried, in order, when a URL names a database but no driver (``postgresql://``).
_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg2"), ("psycopg", "psycopg")),
    "mysql": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
    "mariadb": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
}


class Tables:
    """The backend's tables, named by ``database_table_names`` / ``database_table_schemas``
    (keys ``task`` and ``group``, as Celery reads them)."""

    def __init__(
        self, names: Mapping[str, str] | None = None, schemas: Mapping[str, str] | None = None
    ) -> None:
        names, schemas = dict(names or {}), dict(schemas or {})
        unknown = sorted((set(names) | set(schemas)) - {"task", "group"})
        if unknown:
            raise ImproperlyConfigured(
                f"database_table_names/database_table_schemas take the keys 'task' and "
                f"'group', got {unknown}"
            )
        self.metadata = sa.MetaData()
        task_schema, group_schema = schemas.get("task"), schemas.get("group")
        self.task = _task_table(self.metadata, names.get("task", "celery_taskmeta"), task_schema)
        self.group = _group_table(
            self.metadata, names.get("group", "celery_tasksetmeta"), group_schema
        )
        self.counters = _counters_table(self.metadata, task_schema)
        self.chords = _chords_table(self.metadata, task_schema)
        self.chord_parts = _chord_parts_table(self.metadata, task_schema)


def _task_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """Celery's task table (``TaskExtended``'s columns always made)."""
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "id",
            _ID,
            sa.Sequence("task_id_sequence", schema=schema),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("task_id", sa.String(155), unique=True),
        sa.Column("status", sa.String(50)),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.Column("children", sa.LargeBinary, nullable=True),
        # result_extended (Celery's TaskExtended): always created, so either side may
        # turn it on later.
        sa.Column("name", sa.String(155), nullable=True),
        sa.Column("args", sa.LargeBinary, nullable=True),
        sa.Column("kwargs", sa.LargeBinary, nullable=True),
        sa.Column("worker", sa.String(155), nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("queue", sa.String(155), nullable=True),
        sa.Column("stamps", sa.LargeBinary, nullable=True),
        *_celeriac_columns(),
        schema=schema,
        sqlite_autoincrement=True,
    )


def _group_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """Celery's group table (``TaskSet``)."""
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "id",
            _ID,
            sa.Sequence("taskset_id_sequence", schema=schema),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("taskset_id", sa.String(155), unique=True),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        *_celeriac_columns(),
        schema=schema,
        sqlite_autoincrement=True,
    )


def _counters_table(metadata: sa.MetaData, schema: str | None) -> sa.Table:
    """Celeriac's counters (``incr``)."""
    return sa.Table(
        "celeriac_counters",
        metadata,
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        schema=schema,
    )


def _chords_table(metadata: sa.MetaData, schema: str | None) -> sa.Table:
    """Celeriac's chord joins, one row per chord."""
    return sa.Table(
        "celeriac_chords",
        metadata,
        sa.Column("group_id", sa.String(155), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("joined", sa.Integer, nullable=False),
        sa.Column("claimer", sa.String(155), nullable=True),
        sa.Column("sent", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        schema=schema,
    )


def _chord_parts_table(metadata: sa.MetaData, schema: str | None) -> sa.Table:
    """Celeriac's chord members, one row per header member."""
    return sa.Table(
        "celeriac_chord_parts",
        metadata,
        sa.Column("group_id", sa.String(155), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.String(155), nullable=False),
        sa.Column("entry", sa.LargeBinary, nullable=True),
        sa.Index("celeriac_chord_parts_task", "group_id", "task_id"),
        schema=schema,
    )


def _celeriac_columns() -> tuple[sa.Column[Any], ...]:
    """Celeriac's additions to Celery's tables: the entry's expiry (Unix time; NULL: kept
    until ``result_expires`` after ``date_done``, Celery's rule) and a payload kept verbatim
    when it is not a result meta the backend can lay out in Celery's columns."""
    return (
        sa.Column("celeriac_expires", sa.Double, nullable=True),
        sa.Column("celeriac_payload", sa.LargeBinary, nullable=True),
    )


def ensure_schema(engine: Engine, tables: Tables) -> None:
    """Create the missing tables, and add the columns a table made by an older Celery (or
    without ``result_extended``) lacks, so both sides can read and write it."""
    tables.metadata.create_all(engine)
    inspector = sa.inspect(engine)
    for table in (tables.task, tables.group):
        present = {column["name"] for column in inspector.get_columns(table.name, table.schema)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            continue
        preparer = engine.dialect.identifier_preparer
        with engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {preparer.format_table(table)} "
                    f"ADD COLUMN {preparer.format_column(column)} {kind}"
                )


def engine_url(url: str) -> sa.URL:
    """The SQLAlchemy URL of a ``db+<dialect>[+driver]://`` result backend URL; a dialect
    without a driver gets the first installed of the usual ones (psycopg2, then psycopg 3;
    mysqlclient, then PyMySQL)."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme.lower().startswith("db+"):
        raise ImproperlyConfigured(
            f"{url.partition('://')[0]!r} is not an SQL result backend URL: use "
            "db+postgresql://, db+mysql:// or db+sqlite:///path"
        )
    try:
        parsed = sa.make_url(url[3:])
    except sa.exc.ArgumentError as exc:
        raise ImproperlyConfigured(f"cannot parse the result backend URL: {exc}") from exc
    if "+" not in parsed.drivername:
        for module, driver in _DRIVERS.get(parsed.drivername, ()):
            if importlib.util.find_spec(module) is not None:
                return parsed.set(drivername=f"{parsed.drivername}+{driver}")
    return parsed


def create_engine(url: sa.URL, options: Mapping[str, Any], *, short_lived: bool) -> Engine:
    """An engine for this process. ``options`` are ``database_engine_options`` (SQLAlchemy's
    ``create_engine`` arguments). ``short_lived`` (``database_short_lived_sessions``): no
    pool, a connection per call, closed after it."""
    kwargs = dict(options)
    if short_lived:
        kwargs["poolclass"] = NullPool
        for pooled in ("pool_size", "max_overflow", "pool_timeout"):
            kwargs.pop(pooled, None)
    if url.get_backend_name() == "sqlite":
        kwargs.pop("pool_pre_ping", None)
    elif url.get_backend_name() in ("mysql", "mariadb") and not short_lived:
        # Reports to one chord lock its row; READ COMMITTED keeps InnoDB from taking the
        # gap locks that make concurrent inserts of unrelated rows deadlock.
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        kwargs.setdefault("pool_size", 2)  # a prefork child uses one or two at a time
    elif not short_lived:
        kwargs.setdefault("pool_size", 2)
    try:
        engine = sa.create_engine(url, **kwargs)
    except (TypeError, sa.exc.ArgumentError) as exc:
        raise ImproperlyConfigured(
            f"database_engine_options {dict(options)!r} are not valid for SQLAlchemy's "
            f"create_engine: {exc}"
        ) from exc
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"the SQL result backend {url.drivername}:// needs the {exc.name!r} driver: "
            'pip install "celeriac[sql]" (psycopg and PyMySQL) or the driver the URL names'
        ) from exc
    if url.get_backend_name() == "sqlite":
        _immediate_transactions(engine)
    return engine


def _immediate_transactions(engine: Engine) -> None:
    """SQLite: every transaction takes the write lock when it begins (``BEGIN IMMEDIATE``),
    so read-modify-writes (the counters, the chord join) serialize instead of failing."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: let the 'begin' hook decide
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
