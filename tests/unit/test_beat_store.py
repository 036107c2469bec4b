"""The schedule store's rules, run against every implementation (memory, SQLite, Redis)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.beat.redis_store import RedisScheduleStore
from celeriac.beat.store import Claim, MemoryScheduleStore, ScheduleStore, SQLiteScheduleStore
from celeriac.exceptions import ImproperlyConfigured, OperationalError
from tests.support import redis_support

REDIS_DB = 14  # beat's Redis tests; each under a key prefix of its own

DEFINITION = {"task": "t", "schedule": {"type": "interval", "every": 5.0, "relative": False}}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScheduleStore]:
    made: ScheduleStore
    prefix = redis_support.unique_prefix()
    if request.param == "memory":
        made = MemoryScheduleStore()
    elif request.param == "sqlite":
        made = SQLiteScheduleStore(str(tmp_path / "beat.sqlite"))
    else:
        redis_support.require_redis()
        made = RedisScheduleStore(redis_url(), prefix=prefix)
    try:
        yield made
    finally:
        made.close()
        if request.param == "redis":
            redis_support.delete_prefix(REDIS_DB, prefix)


def redis_url(port: int = redis_support.PORT) -> str:
    return f"redis://{redis_support.HOST}:{port}/{REDIS_DB}"


def test_edits_are_kept_and_bump_the_version(store: ScheduleStore) -> None:
    v0 = store.version()
    store.add("a", DEFINITION, fingerprint="f1", now=100.0)
    state = store.entries()["a"]
    assert (state.definition, state.fingerprint, state.last_run_at) == (DEFINITION, "f1", 100.0)
    assert state.enabled and state.total_run_count == 0
    v1 = store.version()
    store.set_enabled("a", False, now=200.0)
    store.request_run("a")
    assert store.version() not in (v0, v1)
    assert not store.entries()["a"].enabled and store.entries()["a"].run_requested
    assert store.remove("a") is True
    assert store.remove("a") is False
    assert store.entries() == {}


def test_enabling_again_restarts_the_clock(store: ScheduleStore) -> None:
    store.add("a", DEFINITION, fingerprint="f", now=100.0)
    store.set_enabled("a", False, now=150.0)
    store.set_enabled("a", True, now=900.0)
    assert store.entries()["a"].last_run_at == 900.0  # no catch-up burst for the pause


def test_a_run_is_claimed_once(store: ScheduleStore) -> None:
    assert store.start_entry("a", "f", 100.0, token=1) is Claim.CLAIMED
    assert store.start_entry("a", "f", 150.0, token=1) is Claim.TAKEN  # already running
    first = store.claim_run("a", token=1, last_run_at=100.0, run_at=105.0, task_id="id-1")
    again = store.claim_run("a", token=1, last_run_at=100.0, run_at=105.5, task_id="id-2")
    assert (first, again) == (Claim.CLAIMED, Claim.TAKEN)
    state = store.entries()["a"]
    assert (state.last_run_at, state.total_run_count, state.pending_task_id) == (105.0, 1, "id-1")


def test_no_new_claim_while_a_send_is_pending(store: ScheduleStore) -> None:
    store.start_entry("a", "f", 100.0, token=1)
    store.claim_run("a", token=1, last_run_at=100.0, run_at=105.0, task_id="id-1")
    assert store.claim_run("a", token=1, last_run_at=105.0, run_at=110.0, task_id="x") is (
        Claim.TAKEN
    )
    store.confirm_sent("a", "id-1")
    store.confirm_sent("a", "id-1")  # idempotent
    assert store.entries()["a"].pending_task_id is None
    assert store.claim_run("a", token=1, last_run_at=105.0, run_at=110.0, task_id="x") is (
        Claim.CLAIMED
    )


def test_an_older_token_is_refused_once_a_newer_one_wrote(store: ScheduleStore) -> None:
    store.start_entry("a", "f", 100.0, token=1)
    assert store.claim_run("a", token=2, last_run_at=100.0, run_at=105.0, task_id=None) is (
        Claim.CLAIMED
    )
    assert store.claim_run("a", token=1, last_run_at=105.0, run_at=110.0, task_id="x") is (
        Claim.DEPOSED
    )
    assert store.start_entry("b", "f", 100.0, token=1) is Claim.DEPOSED
    state = store.entries()["a"]
    assert (state.last_run_at, state.total_run_count) == (105.0, 0)  # skipped: not counted


def test_run_now_is_claimed_once_and_leaves_the_schedule_alone(store: ScheduleStore) -> None:
    store.start_entry("a", "f", 100.0, token=1)
    store.request_run("a")
    claim = store.claim_run(
        "a", token=1, last_run_at=100.0, run_at=120.0, task_id="now-1", requested=True
    )
    assert claim is Claim.CLAIMED
    store.confirm_sent("a", "now-1")
    assert store.claim_run(
        "a", token=1, last_run_at=100.0, run_at=121.0, task_id="now-2", requested=True
    ) is (Claim.TAKEN)
    state = store.entries()["a"]
    assert (state.last_run_at, state.total_run_count, state.run_requested) == (100.0, 1, False)


def test_a_disabled_entry_cannot_be_claimed(store: ScheduleStore) -> None:
    store.start_entry("a", "f", 100.0, token=1)
    store.set_enabled("a", False, now=100.0)
    assert store.claim_run("a", token=1, last_run_at=100.0, run_at=105.0, task_id="x") is (
        Claim.TAKEN
    )


def test_pending_send_is_retaken_once(store: ScheduleStore) -> None:
    store.start_entry("a", "f", 100.0, token=1)
    store.claim_run("a", token=1, last_run_at=100.0, run_at=105.0, task_id="id-1")
    assert store.retake_pending("a", token=2, since=105.0, now=130.0) is Claim.CLAIMED
    assert store.retake_pending("a", token=2, since=105.0, now=131.0) is Claim.TAKEN
    state = store.entries()["a"]
    assert (state.pending_task_id, state.pending_since) == ("id-1", 130.0)


def test_a_changed_definition_restarts_the_entry(store: ScheduleStore) -> None:
    store.start_entry("a", "old", 100.0, token=1)
    assert store.start_entry("a", "new", 500.0, token=1) is Claim.CLAIMED
    assert store.entries()["a"].last_run_at == 500.0


def test_sqlite_store_is_shared_by_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    one, two = SQLiteScheduleStore(path), SQLiteScheduleStore(path)
    try:
        one.add("a", DEFINITION, fingerprint="f", now=1.0)
        assert two.entries()["a"].definition == DEFINITION
        assert two.version() == one.version()
    finally:
        one.close()
        two.close()


def test_sqlite_store_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    shelve_like = tmp_path / "celerybeat-schedule"
    shelve_like.write_bytes(b"\x00\x01not a database at all" * 64)
    with pytest.raises(ImproperlyConfigured, match="not a Celeriac schedule"):
        SQLiteScheduleStore(str(shelve_like))


def test_sqlite_store_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="does not exist"):
        SQLiteScheduleStore(str(tmp_path / "nowhere" / "beat.sqlite"))


def test_redis_store_is_shared_by_clients_and_keeps_exact_times() -> None:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    one = RedisScheduleStore(redis_url(), prefix=prefix)
    two = RedisScheduleStore(redis_url(), prefix=prefix)
    other_app = RedisScheduleStore(redis_url(), prefix=prefix + "other:")
    try:
        now = 1_712_345_678.123456  # more digits than Lua prints: compared as written
        one.start_entry("a", "f", now, token=3)
        assert two.entries()["a"].last_run_at == now
        assert two.claim_run("a", token=3, last_run_at=now, run_at=now + 5, task_id="i") is (
            Claim.CLAIMED
        )
        assert one.entries()["a"].pending_task_id == "i"
        assert other_app.entries() == {}  # another prefix is another schedule
    finally:
        for store in (one, two, other_app):
            store.close()
        redis_support.delete_prefix(REDIS_DB, prefix)


def test_redis_store_without_a_server_says_so() -> None:
    store = RedisScheduleStore(redis_url(redis_support.free_port()), prefix="unused:")
    try:
        with pytest.raises(OperationalError, match="beat schedule store at Redis"):
            store.entries()
    finally:
        store.close()


def test_redis_store_needs_no_redis_client_library(monkeypatch: pytest.MonkeyPatch) -> None:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
            store = RedisScheduleStore(redis_url(), prefix=prefix)
            try:
                store.request_run("a")
                assert store.entries()["a"].run_requested
                assert store.version() == 1
            finally:
                store.close()
    finally:
        redis_support.delete_prefix(REDIS_DB, prefix)


def test_redis_store_refuses_a_url_that_is_not_redis() -> None:
    with pytest.raises(ImproperlyConfigured, match="redis:// or rediss://"):
        RedisScheduleStore("sentinel://localhost:26379/0", prefix="unused:")
