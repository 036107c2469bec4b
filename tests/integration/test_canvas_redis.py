"""Chords on Redis in Celery 5.7's keys: ``RedisChordJoin`` alone, then Celery and Celeriac
clients and workers mixed on one Redis (chain, group, chord, both directions, one fleet)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import chain, chord, group
from celeriac.backends._redis_chord import RedisChordJoin
from celeriac.backends.redis import RedisBackend
from celeriac.canvas.join import ChordJoin, ChordPart
from tests.support import redis_support
from tests.support.redis_project import CELTASKS, RTASKS, RedisProject, open_project

pytestmark = [pytest.mark.integration, pytest.mark.compat]

DB = redis_support.INTEROP_DB
URL = f"redis://{redis_support.HOST}:{redis_support.PORT}/{DB}"

# -- RedisChordJoin on its own ---------------------------------------------------------------


@pytest.fixture(name="backend")
def backend_fixture() -> Iterator[RedisBackend]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    backend = RedisBackend(URL, options={"global_keyprefix": prefix})
    try:
        yield backend
    finally:
        backend.close()
        redis_support.delete_prefix(DB, prefix)


def _join(backend: RedisBackend) -> RedisChordJoin:
    return backend.chord_join()


def _part(group_id: str, index: int, task_id: str | None = None) -> ChordPart:
    task_id = task_id or f"t{index}"
    return ChordPart(
        group_id, index, task_id, "SUCCESS", f'[1, "{task_id}", "SUCCESS", {index}]'.encode()
    )


def _key(backend: RedisBackend, group_id: str, suffix: str) -> str:
    return f"{backend.group_keyprefix}{group_id}{suffix}"


def test_entries_come_back_in_header_order_in_celerys_keys(backend: RedisBackend) -> None:
    join = _join(backend)
    assert isinstance(join, ChordJoin)
    join.prepare("g", [f"t{i}" for i in range(4)], ttl=60)
    conn = redis_support.client(DB)
    try:
        assert conn.get(_key(backend, "g", ".s")) == b"4"
        assert 0 < conn.ttl(_key(backend, "g", ".s")) <= 60
        assert [join.member_done(_part("g", i), ttl=60) for i in (3, 1, 0)] == [None] * 3
        assert conn.zcard(_key(backend, "g", ".j")) == 3
        entries = join.member_done(_part("g", 2), ttl=60)
        assert entries == [f'[1, "t{i}", "SUCCESS", {i}]'.encode() for i in range(4)]
        join.finish("g")
        assert conn.get(_key(backend, "g", ".c")) == b"done"
        assert not conn.exists(*(_key(backend, "g", s) for s in (".j", ".s", ".d", ".t")))
        # A late duplicate after the body went out changes nothing.
        assert join.member_done(_part("g", 2), ttl=60) is None
        assert not conn.exists(_key(backend, "g", ".j"))
    finally:
        conn.close()


def test_a_member_reported_twice_counts_once(backend: RedisBackend) -> None:
    join = _join(backend)
    join.prepare("g", ["a", "b", "c"], ttl=60)
    assert join.member_done(_part("g", 0, "a"), ttl=60) is None
    assert join.member_done(_part("g", 0, "a"), ttl=60) is None  # a redelivery
    assert join.member_done(_part("g", 1, "b"), ttl=60) is None
    entries = join.member_done(_part("g", 2, "c"), ttl=60)
    assert entries is not None and len(entries) == 3
    # Members added later (Celery's add_to_chord INCRs .t) raise the total.
    join.prepare("h", ["a"], ttl=None)
    conn = redis_support.client(DB)
    try:
        conn.incr(_key(backend, "h", ".t"))
    finally:
        conn.close()
    assert join.member_done(_part("h", 0, "a"), ttl=None) is None
    assert join.member_done(_part("h", 1, "b"), ttl=None) is not None


def test_members_that_end_before_the_size_is_recorded_still_count(backend: RedisBackend) -> None:
    """Celery's client records the size just before it sends the last member."""
    join = _join(backend)
    assert join.member_done(_part("late", 0), ttl=60) is None
    assert join.member_done(_part("late", 1), ttl=60) is None  # still no size: never completes
    join.prepare("late", ["t0", "t1", "t2"], ttl=60)
    assert join.member_done(_part("late", 2), ttl=60) == [_part("late", i).entry for i in range(3)]


def test_racing_reports_claim_the_body_once(backend: RedisBackend) -> None:
    size = 12
    join = _join(backend)
    join.prepare("race", [f"t{i}" for i in range(size)], ttl=60)
    start = threading.Barrier(size)
    claims: list[list[bytes]] = []
    lock = threading.Lock()

    def report(index: int) -> None:
        own = _join(backend)  # each worker has a join of its own; they meet in Redis only
        start.wait()
        for _ in range(2):  # each member reports twice, as a redelivered one would
            entries = own.member_done(_part("race", index), ttl=60)
            if entries is not None:
                with lock:
                    claims.append(entries)
                own.finish("race")  # as the worker does once it sent the body

    threads = [threading.Thread(target=report, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(claims) == 1
    assert claims[0] == [_part("race", i).entry for i in range(size)]


def test_only_the_claiming_part_takes_a_live_claim_over(backend: RedisBackend) -> None:
    """A redelivered member takes back a claim its earlier run made (that worker died before
    the body went out); a claim a Celery worker holds names no part: only its expiry frees it."""
    join = _join(backend)
    join.prepare("ours", ["a", "b"], ttl=60)
    assert join.member_done(_part("ours", 0, "a"), ttl=60) is None
    assert join.member_done(_part("ours", 1, "b"), ttl=60) is not None  # claims, then "dies"
    assert join.member_done(_part("ours", 0, "a"), ttl=60) is None  # not the claiming part
    assert join.member_done(_part("ours", 1, "b"), ttl=60) is not None  # its redelivery
    join.prepare("theirs", ["a", "b"], ttl=60)
    conn = redis_support.client(DB)
    try:
        conn.set(_key(backend, "theirs", ".c"), "0123456789abcdef0123456789abcdef", ex=60)
    finally:
        conn.close()
    assert join.member_done(_part("theirs", 0, "a"), ttl=60) is None
    assert join.member_done(_part("theirs", 1, "b"), ttl=60) is None
    assert join.member_done(_part("theirs", 1, "b"), ttl=60) is None


def test_a_rerun_of_a_frozen_chord_joins_again(backend: RedisBackend) -> None:
    join = _join(backend)
    join.prepare("again", ["a"], ttl=60)
    assert join.member_done(_part("again", 0, "a"), ttl=60) is not None
    join.finish("again")
    join.prepare("again", ["a"], ttl=60)  # drops the done marker, as Celery's client does
    assert join.member_done(_part("again", 0, "a"), ttl=60) is not None


# -- Celery and Celeriac on one Redis ----------------------------------------------------------

# Both apps: a header task that says which system ran it, and a body that records its runs.
_CANVAS_TASKS = """

@app.task(name="interop.tsum")
def tsum(numbers):
    return sum(numbers)


@app.task(name="interop.where", bind=True)
def where(self, seconds=0.0):
    _record(self.request.id)
    time.sleep(seconds)
    return KIND


@app.task(name="interop.boom")
def boom(*args):
    raise KeyError("boom")


@app.task(name="interop.collect", bind=True)
def collect(self, results):
    _record(self.request.id)
    return results
"""


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisProject]:
    redis_support.require_redis()
    with open_project(tmp_path, monkeypatch, URL, DB) as project:
        (tmp_path / "rtasks.py").write_text(RTASKS + _CANVAS_TASKS)
        (tmp_path / "celtasks.py").write_text(CELTASKS + _CANVAS_TASKS)
        yield project


def _rtasks() -> Any:
    """The project's Celeriac app module, as the client side of a test imports it."""
    return importlib.import_module("rtasks")


def _group_id(body_result: Any) -> str:
    """The header's group id of a chord, from its body's result."""
    assert body_result.parent is not None
    return str(body_result.parent.id)


def _chord_keys(project: RedisProject, group_id: str) -> dict[str, Any]:
    """What a finished chord left: Celery 5.7's done marker, and which keys remain."""
    conn = redis_support.client(project.db)
    try:
        base = f"{project.prefix}celery-taskset-meta-{group_id}"
        left = sorted(k.decode() for k in conn.scan_iter(match=f"{project.prefix}*{group_id}*"))
        return {"claim": conn.get(base + ".c"), "left": [k[len(project.prefix) :] for k in left]}
    finally:
        conn.close()


CELERY_CANVAS_CLIENT = """
import json
from celery import chain, chord, group
from celtasks import add, boom, tsum

out = {"chain": chain(add.s(1, 2), add.s(3), add.s(4)).delay().get(timeout=20)}
out["group"] = group(add.s(i, i) for i in range(5)).delay().get(timeout=20)
result = chord([add.s(i, i) for i in range(6)], tsum.s()).delay()
out["chord"] = result.get(timeout=20)
out["group_id"] = result.parent.id
failed = chord([add.s(1, 1), boom.s(), add.s(2, 2)], tsum.s()).delay()
body = tsum.AsyncResult(failed.id)  # no parent: get() would raise the member's error first
exc = body.get(timeout=20, propagate=False)
out["failed"] = [body.state, type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def test_celery_client_canvas_runs_on_a_celeriac_worker(project: RedisProject) -> None:
    project.celeriac_worker("-P", "prefork", "-c", "2")
    out = project.run_script(CELERY_CANVAS_CLIENT)
    assert out["chain"] == 10
    assert out["group"] == [0, 2, 4, 6, 8]
    assert out["chord"] == 30
    # A member failed: the body failed with Celery's ChordError, naming the member's error.
    state, exc_type, message = out["failed"]
    assert (state, exc_type) == ("FAILURE", "ChordError") and "KeyError" in message
    # Joined in Celery's keys by RedisChordJoin (CounterJoin would have left chord-unlock-*).
    assert _chord_keys(project, out["group_id"]) == {
        "claim": b"done",
        "left": [f"celery-taskset-meta-{out['group_id']}.c"],
    }


def test_celeriac_client_canvas_runs_on_a_celery_worker(project: RedisProject) -> None:
    project.celery_worker()
    rtasks = _rtasks()
    add, tsum = rtasks.add, rtasks.tsum
    assert chain(add.s(1, 2), add.s(3), add.s(4)).delay().get(timeout=20) == 10
    assert group(add.s(i, i) for i in range(5)).delay().get(timeout=20) == [0, 2, 4, 6, 8]
    result = chord([add.s(i, i) for i in range(6)], tsum.s()).delay()
    assert result.get(timeout=20) == 30
    # Celery's worker found the size our client recorded, joined, and marked the chord done.
    group_id = _group_id(result)
    assert _chord_keys(project, group_id) == {
        "claim": b"done",
        "left": [f"celery-taskset-meta-{group_id}.c"],
    }


# Chord k's member k sleeps, so it ends last: for k = 0, 2 a Celeriac worker joins the
# chord (reading entries Celery's worker wrote), for k = 1 a Celery worker does (reading ours).
CELERY_MIXED_CLIENT = """
import json
from celery import chord
from celtasks import collect, where

results = [
    chord(
        [where.s(0.5 if i == k else 0).set(queue="qc" if i % 2 else "qr") for i in range(6)],
        collect.s(),
    ).delay()
    for k in range(3)
]
print(json.dumps([[r.id, r.parent.id, r.get(timeout=30)] for r in results]))
"""


def test_a_mixed_fleet_joins_each_chord_once(project: RedisProject) -> None:
    rtasks = _rtasks()
    project.celery_worker("-Q", "qc,celery", name="c1")
    project.celeriac_worker("-P", "prefork", "-c", "2", "-Q", "qr,celery", name="w1")
    # Header members alternate between the two workers; bodies go to whichever takes them.
    where, collect = rtasks.where, rtasks.collect
    ours = [
        chord(
            [where.s(0.5 if i == k else 0).set(queue="qc" if i % 2 else "qr") for i in range(6)],
            collect.s(),
        ).delay()
        for k in range(3)
    ]
    expected = ["celeriac", "celery"] * 3  # in header order, whichever ended first
    chords: list[tuple[Any, ...]] = [(r.id, _group_id(r), r.get(timeout=30)) for r in ours]
    chords += [tuple(row) for row in project.run_script(CELERY_MIXED_CLIENT)]
    assert [value for _, _, value in chords] == [expected] * 6
    for _, group_id, _ in chords:
        assert _chord_keys(project, group_id)["claim"] == b"done"
    body_ids = [body_id for body_id, _, _ in chords]
    runs = project.runs()
    assert sorted(tid for tid, _ in runs if tid in body_ids) == sorted(body_ids)  # each once
    assert len(runs) == 6 * 6 + 6
    assert {kind for _, kind in runs} == {"celery", "celeriac"}


def _nested_header_chord(rtasks: Any) -> Any:
    """A header member that is a chain ending in a group: its value is that group's list."""
    add, collect = rtasks.add, rtasks.collect
    return chord([chain(add.s(1, 1), group(add.s(1), add.s(2))), add.s(5, 5)], collect.s())


@pytest.mark.parametrize("worker", ["celeriac", "celery"])
def test_a_chain_ending_in_a_group_keeps_its_list_in_the_chords_values(
    project: RedisProject, worker: str
) -> None:
    if worker == "celery":
        project.celery_worker()
    else:
        project.celeriac_worker("-P", "prefork", "-c", "2")
    result = _nested_header_chord(_rtasks()).delay()
    assert result.get(timeout=20) == [[3, 4], 10]


CELERY_NESTED_CLIENT = """
import json
from celery import chain, chord, group
from celtasks import add, collect, tsum

tail = chord([chain(add.s(1, 1), group(add.s(1), add.s(2))), add.s(5, 5)], collect.s())
inner = chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), collect.s()))
body_group = chord([inner, add.s(3, 3)], collect.s())
alone = chord([chord([add.s(1, 1)], group(tsum.s(), collect.s()))], collect.s())
print(json.dumps([s.delay().get(timeout=20) for s in (tail, body_group, alone)]))
"""


def test_nested_chord_values_match_celerys(project: RedisProject) -> None:
    """Celery's client and worker, then Celeriac's, on the same two nested headers."""
    celery_worker = project.celery_worker()
    theirs = project.run_script(CELERY_NESTED_CLIENT)
    # Each group's values are one list in the header's.
    assert theirs == [[[3, 4], 10], [[6, [2, 4]], 6], [[2, [2]]]]
    project.stop(celery_worker)
    rtasks = _rtasks()
    add, collect, tsum = rtasks.add, rtasks.collect, rtasks.tsum
    project.celeriac_worker("-P", "prefork", "-c", "2")
    tail = chord([chain(add.s(1, 1), group(add.s(1), add.s(2))), add.s(5, 5)], collect.s())
    inner = chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), collect.s()))
    body_group = chord([inner, add.s(3, 3)], collect.s())
    alone = chord([chord([add.s(1, 1)], group(tsum.s(), collect.s()))], collect.s())
    ours = [s.delay().get(timeout=20) for s in (tail, body_group, alone)]
    assert ours == theirs
