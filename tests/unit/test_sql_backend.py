"""The SQL result backend's settings, schema handling and cleanup (db+sqlite, and PostgreSQL
for schemas); the interface itself is held by tests/conformance."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from celeriac import Celery, states
from celeriac._time import ManualClock
from celeriac.backends import create_backend
from celeriac.backends.database import DatabaseBackend
from celeriac.beat.lease import MemoryLease
from celeriac.beat.scheduler import Scheduler
from celeriac.beat.store import MemoryScheduleStore
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.result_meta import build_meta, encode_meta
from tests.support import sql_support


def _app(url: str, **settings: object) -> Celery:
    app = Celery("sqlunit", broker="memory://", backend=url, set_as_current=False)
    app.conf.update(settings)
    return app


def test_table_names_from_settings_are_used(tmp_path: Path) -> None:
    url = f"db+sqlite:///{tmp_path / 'r.sqlite'}"
    app = _app(url, database_table_names={"task": "my_tasks", "group": "my_groups"})
    try:
        app.results.store("t1", states.SUCCESS, 7)
        engine = sa.create_engine(url[3:])
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT task_id, status FROM my_tasks").all()
        engine.dispose()
        assert rows == [("t1", "SUCCESS")]
        assert app.AsyncResult("t1").get(timeout=1) == 7
    finally:
        app.close()


def test_unknown_table_name_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'task' and 'group'.*'tasks'"):
        create_backend(
            f"db+sqlite:///{tmp_path / 'r.sqlite'}",
            options={"database_table_names": {"tasks": "x"}},
        )


def test_bad_engine_options_and_missing_driver_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="database_engine_options"):
        create_backend(
            f"db+sqlite:///{tmp_path / 'r.sqlite'}",
            options={"database_engine_options": {"no_such_option": 1}},
        )
    with pytest.raises(ImproperlyConfigured, match="driver"):
        create_backend("db+postgresql+psycopg2://u@127.0.0.1/x")


def test_a_table_made_by_an_older_celery_gains_the_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # Celery 5.2's table: no children, no extended columns
        conn.exec_driver_sql(
            "CREATE TABLE celery_taskmeta (id INTEGER PRIMARY KEY, task_id VARCHAR(155) UNIQUE,"
            " status VARCHAR(50), result BLOB, date_done DATETIME, traceback TEXT)"
        )
        conn.exec_driver_sql(
            "INSERT INTO celery_taskmeta (task_id, status, result, date_done) VALUES"
            " ('old', 'SUCCESS', X'3432', '2026-01-02 03:04:05')"
        )
    engine.dispose()
    app = _app(f"db+sqlite:///{path}", result_extended=True)
    try:
        old = app.AsyncResult("old")
        assert old.get(timeout=1) == 42
        assert old.date_done == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        app.results.store("new", states.SUCCESS, [1])
        assert app.AsyncResult("new").get(timeout=1) == [1]
    finally:
        app.close()


def test_cleanup_deletes_rows_older_than_result_expires(tmp_path: Path) -> None:
    now = time.time()
    clock = ManualClock(start=now)
    url = f"db+sqlite:///{tmp_path / 'r.sqlite'}"
    backend = create_backend(url, options={"result_expires": 3600}, clock=clock)

    def celery_row(task_id: str, done: float) -> None:  # no expiry of its own: date_done decides
        when = dt.datetime.fromtimestamp(done, dt.UTC)
        meta = build_meta(task_id=task_id, status=states.SUCCESS, result=1, date_done=when)
        backend.store(task_id, encode_meta(meta, "json"), state=states.SUCCESS, ttl=None)

    try:
        celery_row("old", now - 7200)
        celery_row("recent", now - 60)
        backend.store("own-ttl", b"opaque", state=states.SUCCESS, ttl=10)
        clock.advance(11)
        assert backend.cleanup() == 2
        assert backend.fetch_many(["old", "recent", "own-ttl"]).keys() == {"recent"}
    finally:
        backend.close()


def test_the_cleanup_task_runs_under_both_names(tmp_path: Path) -> None:
    app = _app(f"db+sqlite:///{tmp_path / 'r.sqlite'}")
    try:
        app.results.store("t1", states.SUCCESS, 1)
        assert app.tasks["celeriac.backend_cleanup"]() == 0
        assert app.tasks["celery.backend_cleanup"]() == 0
        assert app.AsyncResult("t1").get(timeout=1) == 1
    finally:
        app.close()


def test_beat_sends_the_cleanup_task_daily_for_sql_backends(tmp_path: Path) -> None:
    def entries(url: str, **settings: object) -> dict[str, str]:
        app = _app(url, **settings)
        try:
            scheduler = Scheduler(app, store=MemoryScheduleStore(), lease=MemoryLease())
            return {name: repr(e.schedule) for name, e in scheduler.config_entries.items()}
        finally:
            app.close()

    sql = f"db+sqlite:///{tmp_path / 'r.sqlite'}"
    assert list(entries(sql)) == ["celeriac.backend_cleanup"]
    assert "4" in entries(sql)["celeriac.backend_cleanup"]
    assert entries(sql, result_expires=None) == {}
    assert entries("memory://") == {}


def test_table_schemas_on_postgresql() -> None:
    with sql_support.database("postgresql") as db:
        engine = sa.create_engine(db.url())
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA results")
        app = _app(f"db+{db.url()}", database_table_schemas={"task": "results", "group": "results"})
        try:
            app.results.store("t1", states.SUCCESS, "in a schema")
            assert app.AsyncResult("t1").get(timeout=1) == "in a schema"
            with engine.connect() as conn:
                found = conn.exec_driver_sql("SELECT status FROM results.celery_taskmeta").all()
            assert found == [("SUCCESS",)]
        finally:
            app.close()
            engine.dispose()


engines_seen: list[object] = []


def record_engine(engine: object) -> None:
    engines_seen.append(engine)


def test_the_engine_callback_gets_each_new_engine(tmp_path: Path) -> None:
    url = f"db+sqlite:///{tmp_path / 'r.sqlite'}"
    app = _app(url, database_engine_callback=f"{__name__}:record_engine")
    try:
        app.results.store("t1", states.SUCCESS, 1)
        assert len(engines_seen) == 1
        assert isinstance(engines_seen[0], sa.Engine)
    finally:
        app.close()
        engines_seen.clear()
    with pytest.raises(ImproperlyConfigured, match="must be callable"):
        create_backend(url, options={"database_engine_callback": 42})


def _store_in_child(backend: DatabaseBackend, task_id: str) -> None:
    backend.store(task_id, b"from the child", state=states.SUCCESS, ttl=None)


def test_a_forked_child_makes_its_own_engine_and_leaves_the_parents_alone() -> None:
    import multiprocessing

    with sql_support.database("postgresql") as db:
        backend = create_backend(f"db+{db.url()}")
        assert isinstance(backend, DatabaseBackend)
        try:
            backend.store("parent", b"before the fork", state=states.SUCCESS, ttl=None)
            parent_engine = backend._engine
            child = multiprocessing.get_context("fork").Process(
                target=_store_in_child, args=(backend, "child")
            )
            child.start()
            child.join(30)
            assert child.exitcode == 0
            assert backend._engine is parent_engine  # still the parent's, and still working
            assert backend.fetch_many(["parent", "child"]) == {
                "parent": b"before the fork",
                "child": b"from the child",
            }
        finally:
            backend.close()
