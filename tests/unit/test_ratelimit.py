"""Rate parsing and the token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from celeriac._time import ManualClock
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.ratelimit import TokenBucket, parse_rate


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("10/s", 10.0), ("120/m", 2.0), ("3600/h", 1.0), (5, 5.0), ("7", 7.0), (None, 0.0)],
)
def test_parse_rate(rate: object, per_second: float) -> None:
    assert parse_rate(rate) == pytest.approx(per_second)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["ten/s", "10/d", "x"])
def test_bad_rates_name_the_value(bad: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="rate limit"):
        parse_rate(bad)


def test_bucket_spaces_takes_by_the_fill_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, clock)
    assert bucket.take()
    assert not bucket.take()
    assert bucket.wait_time() == pytest.approx(0.5)
    clock.advance(0.25)
    assert not bucket.take()
    assert bucket.wait_time() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.take()
    clock.advance(10)  # a long idle time does not bank more than one token
    assert bucket.take()
    assert not bucket.take()
