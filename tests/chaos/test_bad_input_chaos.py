"""Bad input pushed straight into the broker's queue among good tasks: every good task runs,
every bad entry lands in the dead-letter store with its reason, the worker never restarts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import bad_input, harness
from tests.support import redis_support

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def _redis_soak(tmp_path: Path) -> harness.Soak:
    redis_support.require_redis()
    db = redis_support.TRANSPORT_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    return harness.Soak(tmp_path, harness.redis_broker(url, db))


def _run(
    soak: harness.Soak,
    kinds: dict[str, Any],
    push: Callable[[list[tuple[str, Any]]], None],
    make_good: Callable[[str], Any],
    bad: int = 140,
    timeout: float = 60,
) -> None:
    report = bad_input.bad_input(soak, kinds, push, make_good, bad=bad, good=bad, timeout=timeout)
    print(harness.table([report]))
    assert report.ok, "\n".join(report.details) + "\n" + soak.logs()
    assert report.executed == report.sent and report.dead_lettered == report.bad


def test_redis_raw_entries(tmp_path: Path) -> None:
    with contextlib.closing(_redis_soak(tmp_path)) as soak:
        _run(
            soak,
            bad_input.REDIS_KINDS,
            bad_input.redis_pusher(soak),
            lambda tid: bad_input.envelope(bad_input.good_message(tid)),
        )


def test_sqlite_raw_rows(tmp_path: Path) -> None:
    with contextlib.closing(harness.Soak(tmp_path, harness.sqlite_broker(tmp_path))) as soak:
        _run(
            soak,
            bad_input.SQLITE_KINDS,
            bad_input.sqlite_inserter(soak),
            lambda tid: bad_input.row(bad_input.good_message(tid)),
        )


def test_v1_lookalike_bodies_are_dead_lettered(tmp_path: Path) -> None:
    """A JSON-object body with the task name in the headers is not protocol v1: today it runs
    the task with no arguments (a FAILURE) instead of being dead-lettered (defect 6 of issue
    11)."""
    kinds = {
        "v1 lookalike": (
            lambda m, _r: bad_input.envelope(bad_input.v1_lookalike(m)),
            "InvalidTaskError",
        )
    }
    with contextlib.closing(_redis_soak(tmp_path)) as soak:
        good = lambda tid: bad_input.envelope(bad_input.good_message(tid))  # noqa: E731
        _run(soak, kinds, bad_input.redis_pusher(soak), good, bad=20, timeout=10)


def test_dead_letters_of_raw_bytes_are_valid_json(tmp_path: Path) -> None:
    """The Redis dead-letter record of an entry that was not UTF-8 must still be valid JSON
    (the original base64-encoded)."""
    kinds = {"random bytes": bad_input.REDIS_KINDS["random bytes"]}
    with contextlib.closing(_redis_soak(tmp_path)) as soak:
        _run(
            soak,
            kinds,
            bad_input.redis_pusher(soak),
            lambda tid: bad_input.envelope(bad_input.good_message(tid)),
            bad=10,
        )
        transport = soak.tasks.app.transport
        conn = redis_support.client(transport.connector.address.db)
        try:
            entries = conn.lrange(transport.keys.dead_letters, 0, -1)
        finally:
            conn.close()
    assert len(entries) == 10
    for entry in entries:
        json.loads(entry.decode("utf-8"))  # strict: no bytes replaced
