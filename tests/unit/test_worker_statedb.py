"""The worker's state file (``--statedb``): round trip, expiry, files that are not ours."""

from __future__ import annotations

import dbm.dumb
import json
import logging
import shelve
from pathlib import Path

import pytest

from celeriac._lamport import LamportClock
from celeriac._time import ManualClock
from celeriac.worker.revoked import RevokedSet
from celeriac.worker.statedb import StateDB


def store(path: Path, clock: ManualClock, expires: float = 100.0) -> StateDB:
    return StateDB(str(path), RevokedSet(expires=expires, clock=clock), LamportClock())


def test_round_trip_keeps_ids_their_order_and_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "worker.state"
    first = store(path, clock)
    first.revoked.add("a")
    clock.advance(1)
    first.revoked.update(["b", "c"])
    first.clock.adjust(41)
    first.save()

    second = store(path, clock)
    second.load()
    assert list(second.revoked) == ["a", "b", "c"]
    assert second.clock.value > 42  # moved past the saved value, as after any message
    assert [p.name for p in tmp_path.iterdir()] == ["worker.state"]  # no temp file left


def test_a_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    fresh = store(tmp_path / "none", ManualClock())
    fresh.load()
    assert list(fresh.revoked) == [] and fresh.clock.value == 0


def test_loaded_ids_keep_their_stamps_and_expire_as_if_never_restarted(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "worker.state"
    first = store(path, clock, expires=100)
    first.revoked.add("old")
    clock.advance(60)
    first.revoked.add("new")
    first.save()

    clock.advance(50)  # "old" is 110 s old now, "new" 50 s
    second = store(path, clock, expires=100)
    second.load()
    assert list(second.revoked) == ["new"]
    clock.advance(60)
    assert list(second.revoked) == []


def test_loading_merges_with_ids_already_known(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "worker.state"
    first = store(path, clock)
    first.revoked.update(["a", "b"])
    first.save()
    clock.advance(5)
    second = store(path, clock)
    second.revoked.add("b")  # learnt again since (newer stamp wins)
    second.revoked.add("c")
    second.load()
    assert list(second.revoked) == ["a", "b", "c"]


def test_loading_keeps_at_most_maxlen_ids_newest_first_kept(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "worker.state"
    first = store(path, clock)
    for task_id in "abcde":
        first.revoked.add(task_id)
        clock.advance(1)
    first.save()
    small = StateDB(str(path), RevokedSet(maxlen=2, clock=clock), LamportClock())
    small.load()
    assert list(small.revoked) == ["d", "e"]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01garbage\xff",
        b"not json at all",
        json.dumps({"clock": 3, "revoked": []}).encode(),  # no marker
        json.dumps(
            {"format": "celeriac-statedb", "version": 1, "clock": 3, "revoked": [[1]]}
        ).encode(),  # a malformed entry
    ],
)
def test_a_file_that_is_not_ours_is_moved_aside_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "worker.state"
    path.write_bytes(content)
    fresh = store(path, ManualClock())
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        fresh.load()
    assert list(fresh.revoked) == [] and fresh.clock.value == 0
    assert str(path) in caplog.text and "not a Celeriac state file" in caplog.text
    assert not path.exists()
    assert (tmp_path / "worker.state.unreadable").read_bytes() == content
    fresh.revoked.add("x")
    fresh.save()
    again = store(path, ManualClock())
    again.load()
    assert list(again.revoked) == ["x"]


def test_a_celery_shelve_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "worker.state"
    with shelve.Shelf(dbm.dumb.open(str(path), "c")) as db:  # writes path.dat/.dir
        db["zrevoked"] = {"a": 1.0}
        db["clock"] = 3
    (tmp_path / "worker.state.dat").rename(path)  # a single-file shelve, as gdbm makes one
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        store(path, ManualClock()).load()
    assert f"{path} is not a Celeriac state file" in caplog.text
    assert (tmp_path / "worker.state.unreadable").exists()


def test_a_save_that_cannot_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = store(tmp_path / "missing-dir" / "worker.state", ManualClock())
    state.revoked.add("a")
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        state.save()
    assert "cannot save" in caplog.text
