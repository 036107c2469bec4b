"""The chord join on every embedded backend: the body's results come out exactly once, in
header order, whatever the order, duplication or concurrency of the members' reports."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from celeriac import Celery, states
from celeriac.app.results import ResultStore
from celeriac.backends.memory import MemoryBackend, reset_store
from celeriac.canvas.join import (
    ChordJoin,
    ChordPart,
    CounterJoin,
    chord_join_for,
    decode_entry,
    encode_entry,
    leaf_ids,
)
from celeriac.request import Context


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Celery]:
    name = uuid.uuid4().hex
    url = f"memory://{name}" if request.param == "memory" else f"sqlite:///{tmp_path}/r.sqlite"
    with Celery("join", broker=f"memory://{name}", backend=url, set_as_current=False) as app:
        yield app
    reset_store(name)


class Chord:
    """A chord's header as a join sees it: members that store a result, then report."""

    def __init__(self, app: Celery, size: int) -> None:
        self.app = app
        self.group_id = str(uuid.uuid4())
        self.ids = [str(uuid.uuid4()) for _ in range(size)]
        self.join = chord_join_for(app.results)
        self.join.prepare(self.group_id, self.ids, ttl=60)

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


def test_the_last_report_gets_every_result_in_header_order(app: Celery) -> None:
    header = Chord(app, 4)
    assert [header.report(i) for i in (2, 0, 3)] == [None, None, None]
    entries = header.report(1)
    assert entries is not None and header.values(entries) == [0, 10, 20, 30]
    assert [decode_entry(app, e)[0] for e in entries] == header.ids


def test_a_duplicate_report_does_not_complete_the_header_early(app: Celery) -> None:
    header = Chord(app, 3)
    assert header.report(0) is None
    assert header.report(0) is None  # redelivered: the counter says 2 of 3 already
    assert header.report(1) is None  # 3 reports, but member 2 has no result yet
    entries = header.report(2)
    assert entries is not None and header.values(entries) == [0, 10, 20]


def test_reports_after_completion_get_nothing(app: Celery) -> None:
    header = Chord(app, 2)
    header.report(0)
    assert header.report(1) is not None
    assert header.report(1) is None
    assert header.report(0) is None


def test_failures_travel_as_exceptions(app: Celery) -> None:
    header = Chord(app, 2)
    header.report(0, KeyError("missing"), states.FAILURE)
    entries = header.report(1)
    assert entries is not None
    task_id, state, value = decode_entry(app, entries[0])
    assert (task_id, state) == (header.ids[0], states.FAILURE)
    assert isinstance(value, KeyError) and value.args == ("missing",)


def test_racing_reports_complete_the_header_once(app: Celery) -> None:
    header = Chord(app, 12)
    start = threading.Barrier(12)
    won: list[list[bytes]] = []

    def member(index: int) -> None:
        start.wait()
        for _ in range(2 if index % 3 == 0 else 1):  # some members report twice
            entries = header.report(index)
            if entries is not None:
                won.append(entries)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(won) == 1
    assert header.values(won[0]) == [i * 10 for i in range(12)]


def test_an_unknown_chord_is_not_joined_here(app: Celery) -> None:
    join = CounterJoin(app.results)
    part = ChordPart("no-such-group", 0, "t", states.SUCCESS, encode_entry(app, "t", "SUCCESS", 1))
    assert join.member_done(part, ttl=60) is None


def test_the_saved_header_is_celerys_group_meta(app: Celery) -> None:
    header = Chord(app, 2)
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


class JoiningBackend(MemoryBackend):
    def __init__(self, join: object) -> None:
        self.name_ = uuid.uuid4().hex
        super().__init__(f"memory://{self.name_}")
        self.join = join

    def chord_join(self) -> object:
        return self.join


def test_a_backend_can_provide_its_own_join() -> None:
    with Celery("own", broker="memory://own-join", set_as_current=False) as app:
        backend = JoiningBackend(RecordingJoin())
        assert isinstance(backend.join, ChordJoin)  # structural: no import of the protocol
        join = chord_join_for(ResultStore(app, lambda: backend))
        assert join is backend.join
        join.prepare("g", ["a"], ttl=None)
        assert backend.join.prepared == [("g", ["a"])]  # type: ignore[attr-defined]
        plain = MemoryBackend(f"memory://{backend.name_}")
        assert isinstance(chord_join_for(ResultStore(app, lambda: plain)), CounterJoin)
        broken = JoiningBackend("not a join")
        with pytest.raises(TypeError, match="not a ChordJoin"):
            chord_join_for(ResultStore(app, lambda: broken))
        reset_store(backend.name_)
        reset_store(broken.name_)
