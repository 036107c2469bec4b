"""The leader lease, run against every implementation (memory, SQLite, Redis), on a manual clock.

Redis expires the lease on its own clock, so for Redis the manual clock also shortens the
TTLs of the test's keys when it moves (``redis_support.shift_time``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac._time import ManualClock
from celeriac.beat.lease import LeaderLease, LeaseState, MemoryLease, SQLiteLease
from celeriac.beat.redis_lease import RedisLease
from tests.support import redis_support

REDIS_DB = 14
REDIS_URL = f"redis://{redis_support.HOST}:{redis_support.PORT}/{REDIS_DB}"


class RedisMovingClock(ManualClock):
    """A manual clock that, once given a key prefix, moves Redis's expiries with it."""

    redis_prefix: str | None = None

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        if self.redis_prefix is not None:
            redis_support.shift_time(REDIS_DB, self.redis_prefix, seconds)


@pytest.fixture
def clock() -> RedisMovingClock:
    return RedisMovingClock()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def lease(
    request: pytest.FixtureRequest, tmp_path: Path, clock: RedisMovingClock
) -> Iterator[LeaderLease]:
    made: LeaderLease
    if request.param == "memory":
        made = MemoryLease(ttl=5.0, clock=clock)
    elif request.param == "sqlite":
        made = SQLiteLease(str(tmp_path / "beat.sqlite"), ttl=5.0, clock=clock)
    else:
        redis_support.require_redis()
        clock.redis_prefix = redis_support.unique_prefix()
        made = RedisLease(REDIS_URL, prefix=clock.redis_prefix, ttl=5.0, clock=clock)
    try:
        yield made
    finally:
        made.close()
        if clock.redis_prefix is not None:
            redis_support.delete_prefix(REDIS_DB, clock.redis_prefix)


def test_one_holder_at_a_time(lease: LeaderLease, clock: ManualClock) -> None:
    token = lease.acquire("a")
    assert token is not None
    assert lease.acquire("b") is None
    assert lease.acquire("a") == token  # the holder keeps its term
    state = lease.current()
    assert state is not None and (state.holder, state.token) == ("a", token)
    assert state.expires_at == clock.time() + 5.0


def test_an_expired_lease_goes_to_another_with_a_greater_token(
    lease: LeaderLease, clock: ManualClock
) -> None:
    first = lease.acquire("a")
    assert first is not None
    clock.advance(5.0)
    second = lease.acquire("b")
    assert second is not None and second > first
    assert lease.renew("a", first) is False  # the old leader learns it was replaced
    assert lease.renew("b", second) is True


def test_renewing_keeps_the_lease(lease: LeaderLease, clock: ManualClock) -> None:
    token = lease.acquire("a")
    assert token is not None
    for _ in range(5):
        clock.advance(3.0)
        assert lease.renew("a", token)
    assert lease.acquire("b") is None
    clock.advance(5.0)
    assert lease.renew("a", token) is False  # too late: it expired


def test_release_hands_over_at_once(lease: LeaderLease) -> None:
    first = lease.acquire("a")
    assert first is not None
    lease.release("b", first)  # not b's to release
    assert lease.acquire("b") is None
    lease.release("a", first)
    lease.release("a", first)  # idempotent
    second = lease.acquire("b")
    assert second is not None and second > first


def test_the_same_holder_after_expiry_starts_a_new_term(
    lease: LeaderLease, clock: ManualClock
) -> None:
    first = lease.acquire("a")
    assert first is not None
    clock.advance(6.0)
    again = lease.acquire("a")
    assert again is not None and again > first


def test_sqlite_lease_is_shared_between_connections(tmp_path: Path, clock: ManualClock) -> None:
    path = str(tmp_path / "beat.sqlite")
    one, two = SQLiteLease(path, ttl=5.0, clock=clock), SQLiteLease(path, ttl=5.0, clock=clock)
    try:
        token = one.acquire("a")
        assert token is not None
        assert two.acquire("b") is None
        one.release("a", token)
        assert two.acquire("b") == token + 1
    finally:
        one.close()
        two.close()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        MemoryLease(ttl=0)


def test_redis_lease_expires_on_the_servers_clock(clock: RedisMovingClock) -> None:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    one = RedisLease(REDIS_URL, prefix=prefix, ttl=5.0, clock=clock)
    two = RedisLease(REDIS_URL, prefix=prefix, ttl=5.0, clock=clock)
    try:
        token = one.acquire("a")
        assert token is not None and two.acquire("b") is None
        clock.advance(60.0)  # only this process's clock moved: Redis still holds the lease
        assert two.acquire("b") is None
        redis_support.shift_time(REDIS_DB, prefix, 5.0)  # now Redis's clock did too
        assert two.acquire("b") == token + 1
        state = one.current()
        assert state is not None and (state.holder, state.token) == ("b", token + 1)
        two.release("b", token + 1)
        assert one.current() == LeaseState(None, token + 1, 0.0)
    finally:
        one.close()
        two.close()
        redis_support.delete_prefix(REDIS_DB, prefix)
