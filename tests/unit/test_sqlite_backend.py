"""What only the SQLite result backend promises: one file shared by processes and connections."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import states
from celeriac._time import ManualClock
from celeriac.backends import create_backend
from celeriac.backends.sqlite import SQLiteBackend
from celeriac.exceptions import (
    BackendError,
    BackendStoreError,
    ImproperlyConfigured,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


@pytest.fixture
def backend(url: str) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend(url)
    yield backend
    backend.close()


def python(script: str, *args: str) -> subprocess.Popen[str]:
    """Run ``script`` in a fresh interpreter (no fork: a child opens its own backend)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    try:
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()  # no-op once it has exited
    assert process.returncode == 0, err
    return out


STORE_AFTER_GO = """
    import sys, time
    from celeriac.backends.sqlite import SQLiteBackend
    backend = SQLiteBackend(sys.argv[1])
    backend.wait_for(["go"], lambda payload: True, timeout=20, interval=0.02)
    backend.store("t1", b"STARTED", state="STARTED", ttl=None)
    time.sleep(0.05)
    backend.store("t1", b"SUCCESS:from-child", state="SUCCESS", ttl=None)
    backend.close()
"""


def test_wait_for_receives_a_result_stored_by_another_process(
    backend: SQLiteBackend, url: str
) -> None:
    child = python(STORE_AFTER_GO, url)
    try:
        backend.store("go", b"", state=states.SUCCESS, ttl=None)
        got = backend.wait_for(
            ["t1"], lambda payload: payload.startswith(b"SUCCESS"), timeout=20, interval=0.05
        )
    finally:
        finish(child)

    assert got == {"t1": b"SUCCESS:from-child"}


INCREMENT_100_TIMES = """
    import sys, time
    from celeriac.backends.sqlite import SQLiteBackend
    backend = SQLiteBackend(sys.argv[1])
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all four start together
    print(" ".join(str(backend.incr("chord", ttl=3600)) for _ in range(100)))
    backend.close()
"""


def test_incr_from_four_processes_counts_every_increment_once(
    backend: SQLiteBackend, url: str
) -> None:
    # Start together, after each child has opened the file, so three meet the write lock held.
    start_at = str(time.time() + 1.0)
    children = [python(INCREMENT_100_TIMES, url, start_at) for _ in range(4)]
    seen = [int(value) for child in children for value in finish(child).split()]

    assert sorted(seen) == list(range(1, 401))  # no value returned twice, none lost
    assert backend.incr("chord", ttl=3600) == 401


def test_data_survives_reopening_the_file(url: str) -> None:
    first = SQLiteBackend(url)
    first.store("t1", b"SUCCESS:1", state=states.SUCCESS, ttl=None)
    first.save_group("g1", b"[t1]", ttl=None)
    first.incr("k", ttl=None)
    first.close()

    second = SQLiteBackend(url)
    try:
        assert second.fetch("t1") == b"SUCCESS:1"
        assert second.fetch_group("g1") == b"[t1]"
        assert second.incr("k", ttl=None) == 2
    finally:
        second.close()


def test_shares_a_file_with_a_connection_that_made_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    other = sqlite3.connect(path)
    try:
        other.execute("CREATE TABLE broker_messages (id INTEGER PRIMARY KEY, body BLOB)")
        other.execute("INSERT INTO broker_messages (body) VALUES (x'00ff')")
        other.commit()

        backend = SQLiteBackend(f"db+sqlite:///{path}")
        try:
            backend.store("t1", b"SUCCESS:1", state=states.SUCCESS, ttl=None)
            assert backend.fetch("t1") == b"SUCCESS:1"
        finally:
            backend.close()

        assert other.execute("SELECT body FROM broker_messages").fetchall() == [(b"\x00\xff",)]
        rows = other.execute("SELECT task_id, state FROM celeriac_results").fetchall()
        assert rows == [("t1", "SUCCESS")]
    finally:
        other.close()


def test_a_relative_url_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = create_backend("sqlite:///relative.sqlite", options={"unknown_key": True})
    try:
        assert isinstance(backend, SQLiteBackend)
        assert backend.path == str(tmp_path / "relative.sqlite")
        assert (tmp_path / "relative.sqlite").exists()
    finally:
        backend.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite://host/x.sqlite"])
def test_a_url_without_a_file_path_is_rejected(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="names no database file"):
        SQLiteBackend(url)


def test_a_missing_directory_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "results.sqlite"

    with pytest.raises(ImproperlyConfigured, match="does not exist") as caught:
        SQLiteBackend(f"sqlite:///{path}")

    assert str(path) in str(caught.value)
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("make_path", "problem"),
    [
        (lambda tmp: tmp / "dir.sqlite", "is a directory"),
        (lambda tmp: tmp / "plain-file" / "results.sqlite", "does not exist"),
        (lambda tmp: tmp / "garbage.sqlite", "not a database"),
    ],
    ids=["directory", "parent is a file", "not a database"],
)
def test_an_unusable_path_is_named_in_the_error(
    tmp_path: Path, make_path: Callable[[Path], Path], problem: str
) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    (tmp_path / "plain-file").write_text("not a directory")
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not an SQLite database file" * 100)
    path = make_path(tmp_path)

    with pytest.raises(ImproperlyConfigured, match=problem) as caught:
        SQLiteBackend(f"sqlite:///{path}")

    assert str(path) in str(caught.value)


def test_store_while_another_connection_holds_the_write_lock_raises_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.sqlite"
    backend = SQLiteBackend(f"sqlite:///{path}", options={"busy_timeout": 0.05})
    backend.store("t1", b"SUCCESS:1", state=states.SUCCESS, ttl=None)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")

        with pytest.raises(BackendStoreError, match="busy_timeout") as caught:
            backend.store("t2", b"SUCCESS:2", state=states.SUCCESS, ttl=None)

        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert backend.fetch("t1") == b"SUCCESS:1"  # WAL: readers are not blocked by a writer
    finally:
        holder.close()
        backend.close()


def test_expiry_is_judged_by_the_injected_clock(url: str) -> None:
    clock = ManualClock()
    backend = SQLiteBackend(url, clock=clock)
    try:
        backend.store("t1", b"SUCCESS:1", state=states.SUCCESS, ttl=60)
        clock.advance(61)
        assert backend.fetch("t1") is None
        assert backend.cleanup() == 1
    finally:
        backend.close()


def test_a_closed_backend_raises_backend_error(backend: SQLiteBackend) -> None:
    backend.close()

    with pytest.raises(BackendError, match="closed"):
        backend.fetch("t1")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_the_parents_backend(backend: SQLiteBackend) -> None:
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        try:
            backend.fetch("t1")
        except BackendError:
            os._exit(0)
        except BaseException:
            os._exit(2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
