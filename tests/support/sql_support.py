"""PostgreSQL and MariaDB for the tests: the machine's servers, databases of their own.

``database(kind)`` creates a database with a unique name on the machine's server
(PostgreSQL at 127.0.0.1:5432 as ``postgres``, trust; MariaDB at 127.0.0.1:3306 as ``root``,
no password), yields its parts, and drops it after. A server that does not answer skips the
test locally and fails it in CI (``CI=true``), as redis_support.py does for Redis.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

HOST = "127.0.0.1"
KINDS = ("postgresql", "mysql")


@dataclass(frozen=True)
class Database:
    """One test database: its kind (``postgresql``/``mysql``), name and URLs."""

    kind: str
    name: str

    @property
    def port(self) -> int:
        return 5432 if self.kind == "postgresql" else 3306

    @property
    def user(self) -> str:
        return "postgres" if self.kind == "postgresql" else "root"

    def url(self, driver: str | None = None) -> str:
        """The SQLAlchemy URL (``postgresql+psycopg://...``); Celery's is ``'db+' + url``."""
        driver = driver or ("psycopg" if self.kind == "postgresql" else "pymysql")
        return f"{self.kind}+{driver}://{self.user}@{HOST}:{self.port}/{self.name}"


def _admin(kind: str) -> object:
    if kind == "postgresql":
        import psycopg

        return psycopg.connect(
            host=HOST, user="postgres", dbname="postgres", autocommit=True, connect_timeout=5
        )
    import pymysql

    return pymysql.connect(host=HOST, user="root", autocommit=True, connect_timeout=5)


def _execute(conn: object, statement: str) -> None:
    if hasattr(conn, "execute"):
        conn.execute(statement)
    else:
        with conn.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(statement)


def require(kind: str) -> object:
    """An admin connection to the ``kind`` server, or skip (fail in CI) when it is absent."""
    try:
        return _admin(kind)
    except Exception as exc:
        problem = f"no {kind} server answers at {HOST}: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{kind} is required in CI: {problem}")
    pytest.skip(problem)


@contextmanager
def database(kind: str) -> Iterator[Database]:
    """A fresh database on the machine's ``kind`` server, dropped afterwards."""
    admin = require(kind)
    db = Database(kind, f"celeriac_t_{uuid.uuid4().hex[:12]}")
    _execute(admin, f"CREATE DATABASE {db.name}")
    try:
        yield db
    finally:
        if kind == "postgresql":
            _execute(admin, f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
        else:
            _execute(admin, f"DROP DATABASE IF EXISTS {db.name}")
        admin.close()  # type: ignore[attr-defined]
