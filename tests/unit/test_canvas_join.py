"""The chord join on every embedded backend: the body's results come out exactly once, in
header order, whatever the order, duplication or concurrency of the members' reports; and
again to the member that claimed the body, reporting again before the body was recorded as
sent (its redelivery after a crash). ``CounterJoin``, the fallback for backends without a
join of their own, runs the same checks on SQLite, except that last one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from celeriac import Celery, states
from celeriac.app.results import ResultStore
from celeriac.backends._sqlite_chord import SQLiteChordJoin
from celeriac.backends.memory import MemoryBackend, MemoryChordJoin, reset_store
from celeriac.canvas.join import (
    ChordJoin,
    ChordPart,
    CounterJoin,
    add_chord_member,
    chord_join_for,
    decode_entry,
    encode_entry,
    join_member,
    leaf_ids,
    prepare_chord,
)
from celeriac.request import Context
from tests.support.apps import AppFactory

KINDS = ["memory", "sqlite", "counter"]  # counter: CounterJoin on the SQLite backend


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(kind: str, tmp_path: Path, make_app: AppFactory) -> Celery:
    results = {} if kind == "memory" else {"backend": f"sqlite:///{tmp_path}/r.sqlite"}
    return make_app("memory", "join", set_as_current=False, **results)


class Chord:
    """A chord's header as a join sees it: members that store a result, then report."""

    def __init__(self, app: Celery, size: int, kind: str) -> None:
        self.app = app
        self.group_id = str(uuid.uuid4())
        self.ids = [str(uuid.uuid4()) for _ in range(size)]
        prepare_chord(app, self.group_id, self.ids)
        self.join = CounterJoin(app.results) if kind == "counter" else chord_join_for(app.results)

    def report(
        self, index: int, value: object = None, state: str = states.SUCCESS
    ) -> list[bytes] | None:
        task_id = self.ids[index]
        value = index * 10 if value is None else value
        request = Context(id=task_id, group=self.group_id, group_index=index)
        self.app.results.store(task_id, state, value, request=request)
        entry = encode_entry(self.app, task_id, state, value)
        part = ChordPart(self.group_id, index, task_id, state, entry)
        return self.join.member_done(part, ttl=60)

    def values(self, entries: Sequence[bytes]) -> list[object]:
        return [decode_entry(self.app, entry)[2] for entry in entries]


def test_each_backend_brings_its_own_join(app: Celery, kind: str) -> None:
    own = {"memory": MemoryChordJoin, "sqlite": SQLiteChordJoin, "counter": SQLiteChordJoin}
    assert isinstance(chord_join_for(app.results), own[kind])


def test_the_last_report_gets_every_result_in_header_order(app: Celery, kind: str) -> None:
    header = Chord(app, 4, kind)
    assert [header.report(i) for i in (2, 0, 3)] == [None, None, None]
    entries = header.report(1)
    assert entries is not None and header.values(entries) == [0, 10, 20, 30]
    assert [decode_entry(app, e)[0] for e in entries] == header.ids


def test_a_duplicate_report_does_not_complete_the_header_early(app: Celery, kind: str) -> None:
    header = Chord(app, 3, kind)
    assert header.report(0) is None
    assert header.report(0) is None  # redelivered: still one of three
    assert header.report(1) is None  # three reports, but member 2 has not reported
    entries = header.report(2)
    assert entries is not None and header.values(entries) == [0, 10, 20]


def test_the_claiming_member_reporting_again_gets_the_body_until_it_is_sent(
    app: Celery, kind: str
) -> None:
    """Its worker died between the claim and the body's send; the member was redelivered."""
    header = Chord(app, 3, kind)
    header.report(0)
    header.report(2)
    first = header.report(1)
    assert first is not None
    again = header.report(1)
    if kind == "counter":
        assert again is None  # the gap CounterJoin keeps: counters cannot say whose a claim is
        return
    assert again == first
    assert header.report(0) is None and header.report(2) is None  # other members: no
    header.join.finish(header.group_id)  # the body went out
    assert [header.report(i) for i in range(3)] == [None, None, None]


def test_failures_travel_as_exceptions(app: Celery, kind: str) -> None:
    header = Chord(app, 2, kind)
    header.report(0, KeyError("missing"), states.FAILURE)
    entries = header.report(1)
    assert entries is not None
    task_id, state, value = decode_entry(app, entries[0])
    assert (task_id, state) == (header.ids[0], states.FAILURE)
    assert isinstance(value, KeyError) and value.args == ("missing",)


def test_racing_reports_complete_the_header_once(app: Celery, kind: str) -> None:
    header = Chord(app, 12, kind)
    start = threading.Barrier(12)
    won: list[list[bytes]] = []

    def member(index: int) -> None:
        start.wait()
        for _ in range(2 if index % 3 == 0 else 1):  # some members report twice
            entries = header.report(index)
            if entries is not None:
                won.append(entries)
                header.join.finish(header.group_id)  # as the worker does once it sent the body

    threads = [threading.Thread(target=member, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(won) == 1
    assert header.values(won[0]) == [i * 10 for i in range(12)]


def test_an_unknown_chord_is_not_joined_here(app: Celery) -> None:
    part = ChordPart("no-such-group", 0, "t", states.SUCCESS, encode_entry(app, "t", "SUCCESS", 1))
    assert CounterJoin(app.results).member_done(part, ttl=60) is None
    assert join_member(app.results, chord_join_for(app.results), part, ttl=60) is None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_chord_recorded_only_as_its_saved_header_is_joined_by_counters(
    app: Celery, kind: str
) -> None:
    """A Celery client on a store without a native join (or an older Celeriac client)
    saves the header's GroupResult and nothing else: ``join_member`` falls back on
    ``CounterJoin``. A chord the join finished is never joined again that way."""
    join = chord_join_for(app.results)
    finished = Chord(app, 2, kind)
    finished.report(0)
    assert finished.report(1) is not None
    join.finish(finished.group_id)
    ids = finished.ids  # the same members, in a chord recorded as a Celery client does
    saved_only = str(uuid.uuid4())
    app.results.save_group(saved_only, [[saved_only, None], [[[tid, None], None] for tid in ids]])

    def report(group_id: str, index: int) -> list[bytes] | None:
        entry = encode_entry(app, ids[index], states.SUCCESS, index * 10)
        part = ChordPart(group_id, index, ids[index], states.SUCCESS, entry)
        return join_member(app.results, join, part, ttl=60)

    assert report(saved_only, 0) is None
    entries = report(saved_only, 1)
    assert entries is not None and finished.values(entries) == [0, 10]
    assert report(saved_only, 1) is None  # counters: nothing more
    assert report(finished.group_id, 0) is None and report(finished.group_id, 1) is None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])  # not CounterJoin: its counters stay
def test_a_rerun_of_a_frozen_chord_joins_again(app: Celery, kind: str) -> None:
    header = Chord(app, 2, kind)
    header.report(0)
    assert header.report(1) is not None
    header.join.finish(header.group_id)
    prepare_chord(app, header.group_id, header.ids)  # the same ids, applied again
    assert header.report(1) is None
    assert header.report(0) is not None


def test_the_saved_header_is_celerys_group_meta(app: Celery, kind: str) -> None:
    header = Chord(app, 2, kind)
    saved = app.results.restore_group(header.group_id)
    assert saved == [[header.group_id, None], [[[tid, None], None] for tid in header.ids]]
    assert leaf_ids(saved) == header.ids
    nested = [["g", None], [[["a", None], None], [["h", None], [[["b", None], None]]]]]
    assert leaf_ids(nested) == ["a", "b"]


class RecordingJoin:
    """A join a backend provides (as the Redis backend does): records what it is told."""

    def __init__(self) -> None:
        self.prepared: list[tuple[str, list[str]]] = []

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        self.prepared.append((group_id, list(member_ids)))

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        return [part.entry]

    def finish(self, group_id: str) -> None:
        pass


class PlainBackend(MemoryBackend):
    """A backend with no join of its own: ``ResultBackend.chord_join`` says None."""

    def chord_join(self) -> None:  # type: ignore[override]
        return None


class JoiningBackend(MemoryBackend):
    def __init__(self, join: object) -> None:
        self.name_ = uuid.uuid4().hex
        super().__init__(f"memory://{self.name_}")
        self.join = join

    def chord_join(self) -> object:  # type: ignore[override]
        return self.join


def test_a_backend_can_provide_its_own_join() -> None:
    with Celery("own", broker="memory://own-join", set_as_current=False) as app:
        backend = JoiningBackend(RecordingJoin())
        assert isinstance(backend.join, ChordJoin)  # structural: no import of the protocol
        join = chord_join_for(ResultStore(app, lambda: backend))
        assert join is backend.join
        join.prepare("g", ["a"], ttl=None)
        assert backend.join.prepared == [("g", ["a"])]  # type: ignore[attr-defined]
        plain = PlainBackend(f"memory://{backend.name_}")
        assert isinstance(chord_join_for(ResultStore(app, lambda: plain)), CounterJoin)
        broken = JoiningBackend("not a join")
        with pytest.raises(TypeError, match="not a ChordJoin"):
            chord_join_for(ResultStore(app, lambda: broken))
        reset_store(backend.name_)
        reset_store(broken.name_)


def test_a_member_added_to_a_running_chord_is_waited_for(app: Celery, kind: str) -> None:
    """``Task.add_to_chord``: the body waits for the added member, whose result comes last."""
    chord = Chord(app, 2, kind)
    added = str(uuid.uuid4())
    if kind == "counter":
        chord.join.add_member(chord.group_id, added, ttl=60)  # type: ignore[attr-defined]
    else:
        add_chord_member(app, chord.group_id, added)
    chord.ids.append(added)
    assert chord.report(0) is None
    assert chord.report(1) is None  # the header as sent is complete; the added one is not
    entries = chord.report(2, value="late")
    assert entries is not None and chord.values(entries) == [0, 10, "late"]
