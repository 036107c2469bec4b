"""One suite every result backend must pass (celeriac.backends.base.ResultBackend).

The chord join each backend provides (``chord_join()``, a ``celeriac.backends.chord.
ChordJoin``) is held to the same rules everywhere, at the end of this file.

A new backend joins by adding a factory to ``FACTORIES``: a context manager taking
``(tmp_path, clock)`` that yields a backend and cleans up after it. Two backends made by the
same factory in one test must share one store (same file, same Redis DB, same name; for
``rpc://``, one vhost, results sent to the reading backend's reply queue). A test that needs
more than the interface's promises starts with ``requires(backend, "<flag>")``, which skips
it, naming the flag, where the backend's ``capabilities`` say it cannot (``rpc://`` keeps no
groups, counters or chords and honours no per-result ttl).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest

from celeriac import states
from celeriac._time import Clock, ManualClock, system_clock
from celeriac.backends import BackendCapabilities, ResultBackend, create_backend
from celeriac.backends.chord import ChordJoin, ChordPart
from celeriac.backends.memory import MemoryBackend, reset_store
from celeriac.exceptions import BackendCapabilityError, ImproperlyConfigured, TimeoutError
from tests.support import amqp_support, redis_support, sql_support

BackendFactory = Callable[[Path, Clock], AbstractContextManager[ResultBackend]]
MakeBackend = Callable[[Clock], ResultBackend]


@contextmanager
def memory_backend(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
    name = f"conformance-{tmp_path.name}"  # tmp_path names are unique within a process
    backend = create_backend(f"memory://{name}", clock=clock)
    try:
        yield backend
    finally:
        backend.close()
        reset_store(name)


@contextmanager
def sqlite_backend(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
    backend = create_backend(f"sqlite:///{tmp_path / 'results.sqlite'}", clock=clock)
    try:
        yield backend
    finally:
        backend.close()


# Stores that expire entries on their own clock (Redis) register here how to move that clock
# along with the test's ManualClock, by the test's tmp_path.
_STORE_CLOCKS: dict[Path, Callable[[float], None]] = {}


@contextmanager
def redis_backend(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix(tmp_path)  # the same for every call in one test
    db = redis_support.BACKEND_DB
    _STORE_CLOCKS[tmp_path] = lambda seconds: redis_support.shift_time(db, prefix, seconds)
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    backend = create_backend(url, options={"global_keyprefix": prefix}, clock=clock)
    try:
        yield backend
    finally:
        backend.close()
        _STORE_CLOCKS.pop(tmp_path, None)
        redis_support.delete_prefix(db, prefix)


_SQL_DATABASES: dict[Path, sql_support.Database] = {}  # one database per test, by tmp_path


def _sql_backend(kind: str) -> BackendFactory:
    @contextmanager
    def factory(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
        with ExitStack() as stack:
            db = _SQL_DATABASES.get(tmp_path)
            if db is None:  # the first backend of this test creates the database, and drops it
                db = _SQL_DATABASES[tmp_path] = stack.enter_context(sql_support.database(kind))
                stack.callback(_SQL_DATABASES.pop, tmp_path)
            backend = create_backend(f"db+{db.url()}", clock=clock)
            stack.callback(backend.close)
            yield backend

    return factory


@contextmanager
def db_sqlite_backend(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
    backend = create_backend(f"db+sqlite:///{tmp_path / 'celery-results.sqlite'}", clock=clock)
    try:
        yield backend
    finally:
        backend.close()


_RPC_VHOST: list[str] = []  # one vhost for the module's rpc:// cases, taken when first needed


@contextmanager
def rpc_backend(tmp_path: Path, clock: Clock) -> Iterator[ResultBackend]:
    if not _RPC_VHOST:
        _RPC_VHOST.append(amqp_support.take_vhost())
    options = {"broker_url": amqp_support.url(_RPC_VHOST[0])}
    backend = create_backend("rpc://", options=options, clock=clock)
    try:
        yield backend
    finally:
        backend.close()  # its reply queue is auto-delete: it goes with its consumer


@pytest.fixture(scope="module", autouse=True)
def _drop_rpc_vhost() -> Iterator[None]:
    yield
    if _RPC_VHOST:
        amqp_support.drop_vhost(_RPC_VHOST.pop())
        amqp_support.flush_vhosts()


FACTORIES = [
    pytest.param(memory_backend, id="memory"),
    pytest.param(sqlite_backend, id="sqlite"),
    pytest.param(redis_backend, id="redis"),
    pytest.param(_sql_backend("postgresql"), id="postgresql"),
    pytest.param(_sql_backend("mysql"), id="mysql"),
    pytest.param(db_sqlite_backend, id="db+sqlite"),
    pytest.param(rpc_backend, id="rpc"),
]


@pytest.fixture(params=FACTORIES)
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBackend]:
    factory: BackendFactory = request.param
    with ExitStack() as stack:
        yield lambda clock: stack.enter_context(factory(tmp_path, clock))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(make_backend: MakeBackend, clock: ManualClock) -> ResultBackend:
    return make_backend(clock)


@pytest.fixture
def advance(clock: ManualClock, tmp_path: Path) -> Callable[[float], None]:
    """Move the test's clock, and the store's own clock where it keeps one (Redis)."""

    def move(seconds: float) -> None:
        clock.advance(seconds)
        store_clock = _STORE_CLOCKS.get(tmp_path)
        if store_clock is not None:
            store_clock(seconds)

    return move


def requires(backend: ResultBackend, *flags: str) -> ResultBackend:
    """``backend``, or a skip naming the first of ``flags`` (``BackendCapabilities`` fields)
    its capabilities declare False: the case does not apply to it."""
    for flag in flags:
        if not getattr(backend.capabilities, flag):
            pytest.skip(f"{type(backend).__name__}: BackendCapabilities.{flag} is False")
    return backend


def put(
    backend: ResultBackend,
    task_id: str,
    payload: bytes,
    state: str,
    *,
    ttl: float | None = None,
    reader: ResultBackend | None = None,
) -> None:
    """Store a result as a worker does, for ``reader`` (default ``backend``) to read: sent to
    its reply queue where results are messages (``rpc://``), ignored elsewhere."""
    backend.store(task_id, payload, state=state, ttl=ttl, reply_to=(reader or backend).reply_to)


def expired_count(backend: ResultBackend, expired: int) -> int:
    """What ``cleanup`` returns after ``expired`` entries expired: 0 if the store expires them."""
    return 0 if backend.capabilities.expires_on_its_own else expired


@pytest.fixture
def real_backend(make_backend: MakeBackend) -> ResultBackend:
    """A backend on the system clock, for tests where another thread acts while one waits."""
    return make_backend(system_clock)


def ready(payload: bytes) -> bool:
    return payload.startswith(b"SUCCESS")


def store_later(
    backend: ResultBackend, task_id: str, delay: float, reader: ResultBackend
) -> threading.Thread:
    def run() -> None:
        put(backend, task_id, b"STARTED", states.STARTED, reader=reader)
        threading.Event().wait(delay)
        put(backend, task_id, b"SUCCESS:42", states.SUCCESS, reader=reader)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_store_then_fetch_returns_the_same_bytes(backend: ResultBackend) -> None:
    payload = b'\x00{"status": "SUCCESS", "result": 42}\xff'
    put(backend, "t1", payload, states.SUCCESS)
    put(backend, "empty", b"", states.SUCCESS)

    assert backend.fetch("t1") == payload
    assert backend.fetch("empty") == b""


def test_store_replaces_the_previous_meta(backend: ResultBackend) -> None:
    put(backend, "t1", b"STARTED", states.STARTED)
    put(backend, "t1", b"SUCCESS:1", states.SUCCESS)

    assert backend.fetch("t1") == b"SUCCESS:1"


def test_fetch_of_an_unknown_id_is_none(backend: ResultBackend) -> None:
    assert backend.fetch("never-stored") is None


def test_fetch_many_returns_only_the_ids_that_have_meta(backend: ResultBackend) -> None:
    put(backend, "a", b"A", states.SUCCESS)
    put(backend, "b", b"B", states.FAILURE)

    assert backend.fetch_many(["a", "missing", "b"]) == {"a": b"A", "b": b"B"}
    assert backend.fetch_many([]) == {}


def test_two_backends_on_one_store_see_each_others_writes(
    make_backend: MakeBackend, clock: ManualClock
) -> None:
    writer, reader = make_backend(clock), make_backend(clock)
    put(writer, "t1", b"SUCCESS:1", states.SUCCESS, reader=reader)

    assert reader.fetch("t1") == b"SUCCESS:1"


def test_meta_expires_after_its_ttl_and_cleanup_deletes_it(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    requires(backend, "expiry")
    put(backend, "a", b"A", states.SUCCESS, ttl=10)
    put(backend, "b", b"B", states.SUCCESS, ttl=10)
    put(backend, "kept", b"K", states.SUCCESS, ttl=100)
    advance(9.5)
    assert backend.fetch("a") == b"A"

    advance(1)

    assert backend.fetch("a") is None
    assert backend.fetch_many(["a", "b", "kept"]) == {"kept": b"K"}
    assert backend.cleanup() == expired_count(backend, 2)
    assert backend.cleanup() == 0
    assert backend.fetch("kept") == b"K"


def test_meta_without_ttl_never_expires(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    put(backend, "t1", b"SUCCESS:1", states.SUCCESS)
    advance(10 * 365 * 86400)

    assert backend.cleanup() == 0
    assert backend.fetch("t1") == b"SUCCESS:1"


def test_forget_deletes_the_meta_and_is_idempotent(backend: ResultBackend) -> None:
    put(backend, "t1", b"SUCCESS:1", states.SUCCESS)
    put(backend, "t2", b"SUCCESS:2", states.SUCCESS)
    # Read first: on rpc:// a result still on its way to the client is not forgotten yet.
    assert backend.fetch("t1") == b"SUCCESS:1"

    backend.forget("t1")
    backend.forget("t1")
    backend.forget("never-stored")

    assert backend.fetch("t1") is None
    assert backend.fetch("t2") == b"SUCCESS:2"


def test_groups_are_saved_fetched_and_forgotten(backend: ResultBackend) -> None:
    requires(backend, "groups")
    backend.save_group("g1", b"[a, b]", ttl=None)
    backend.save_group("g1", b"[a, b, c]", ttl=None)

    assert backend.fetch_group("g1") == b"[a, b, c]"
    assert backend.fetch_group("unknown") is None
    assert backend.fetch("g1") is None  # groups and task results are kept apart

    backend.forget_group("g1")
    backend.forget_group("g1")
    assert backend.fetch_group("g1") is None


def test_groups_expire_after_their_ttl(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    requires(backend, "groups", "expiry")
    backend.save_group("g1", b"[a]", ttl=5)
    advance(6)

    assert backend.fetch_group("g1") is None
    assert backend.cleanup() == expired_count(backend, 1)


def test_incr_counts_from_one_per_key(backend: ResultBackend) -> None:
    requires(backend, "counters")
    assert [backend.incr("chord-1", ttl=None) for _ in range(3)] == [1, 2, 3]
    assert backend.incr("chord-2", ttl=None) == 1


def test_incr_restarts_after_the_counter_expires(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    requires(backend, "counters", "expiry")
    assert backend.incr("k", ttl=10) == 1
    advance(6)
    assert backend.incr("k", ttl=10) == 2  # each call pushes the expiry out again
    advance(6)
    assert backend.incr("k", ttl=10) == 3
    advance(11)

    assert backend.incr("k", ttl=10) == 1


def test_wait_for_returns_at_once_when_everything_is_ready(backend: ResultBackend) -> None:
    put(backend, "a", b"SUCCESS:a", states.SUCCESS)
    put(backend, "b", b"SUCCESS:b", states.SUCCESS)
    assert len(backend.fetch_many(["a", "b"])) == 2  # on rpc://, received by the client now

    # A timeout of zero leaves no time to wait: only an answer from the first look passes.
    assert backend.wait_for(["b", "a"], ready, timeout=0) == {"b": b"SUCCESS:b", "a": b"SUCCESS:a"}


def test_wait_for_with_zero_timeout_raises_when_not_ready(backend: ResultBackend) -> None:
    put(backend, "a", b"STARTED", states.STARTED)

    with pytest.raises(TimeoutError, match="1 of 1"):
        backend.wait_for(["a"], ready, timeout=0)


def test_wait_for_raises_timeout_error_when_never_ready(real_backend: ResultBackend) -> None:
    put(real_backend, "done", b"SUCCESS:1", states.SUCCESS)
    put(real_backend, "running", b"STARTED", states.STARTED)

    with pytest.raises(TimeoutError, match=r"2 of 3 .*0\.2"):
        real_backend.wait_for(["done", "running", "unknown"], ready, timeout=0.2, interval=0.05)


@pytest.mark.parametrize("writer", ["same backend", "second backend"])
def test_wait_for_returns_when_another_thread_stores_later(
    make_backend: MakeBackend, writer: str
) -> None:
    waiter = make_backend(system_clock)
    storer = waiter if writer == "same backend" else make_backend(system_clock)
    put(waiter, "other", b"SUCCESS:other", states.SUCCESS)

    thread = store_later(storer, "t1", delay=0.1, reader=waiter)
    try:
        got = waiter.wait_for(["other", "t1"], ready, timeout=10, interval=0.05)
    finally:
        thread.join(10)

    assert got == {"other": b"SUCCESS:other", "t1": b"SUCCESS:42"}


def test_many_ids(backend: ResultBackend) -> None:
    ids = [f"task-{n}" for n in range(1500)]
    for task_id in ids:
        put(backend, task_id, f"SUCCESS:{task_id}".encode(), states.SUCCESS)
    expected = {task_id: f"SUCCESS:{task_id}".encode() for task_id in ids}

    assert backend.fetch_many([*ids, "missing"]) == expected
    assert backend.wait_for(ids, ready, timeout=0) == expected


def test_close_is_idempotent(make_backend: MakeBackend, clock: ManualClock) -> None:
    backend = make_backend(clock)
    backend.close()
    backend.close()


# The factory that picks an implementation by URL scheme.


def test_create_backend_rejects_an_unknown_scheme_without_leaking_the_password() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        create_backend("nosuch://user:s3cret@example.com:1234/0")

    message = str(caught.value)
    assert "nosuch://user:**@example.com:1234/0" in message
    assert "s3cret" not in message
    assert "sqlite://" in message
    assert "memory://" in message


def test_create_backend_rejects_a_url_without_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"results\.sqlite"):
        create_backend("results.sqlite")


def test_memory_backends_of_one_name_share_a_store_until_reset() -> None:
    first = create_backend("memory://factory-test", options={"unknown": 1})
    second = create_backend("cache+memory://factory-test")
    other = create_backend("memory://factory-test-other")
    try:
        assert isinstance(second, MemoryBackend)
        first.store("t1", b"SUCCESS:1", state=states.SUCCESS, ttl=None)
        assert second.fetch("t1") == b"SUCCESS:1"
        assert other.fetch("t1") is None

        reset_store("factory-test")

        assert first.fetch("t1") is None
        assert create_backend("memory://factory-test").fetch("t1") is None
    finally:
        reset_store("factory-test")
        reset_store("factory-test-other")


def _logging(backend: ResultBackend) -> ResultBackend:
    return requires(backend, "revocation_log")


def test_the_revocation_log_is_read_in_order_from_a_cursor(backend: ResultBackend) -> None:
    log = _logging(backend)
    assert log.revoked_since(None)[0] == []
    log.log_revoked(["a", "b"], ttl=60)
    ids, cursor = log.revoked_since(None)
    assert ids == ["a", "b"]
    assert log.revoked_since(cursor)[0] == []  # nothing new
    log.log_revoked(["c"], ttl=60)
    log.log_revoked(["d", "e"], ttl=None)
    ids, later = log.revoked_since(cursor)
    assert ids == ["c", "d", "e"]
    assert log.revoked_since(later) == ([], later)
    assert log.revoked_since(None)[0] == ["a", "b", "c", "d", "e"]  # a new reader sees all


def test_expired_revocations_are_not_read(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    log = _logging(backend)
    log.log_revoked(["short"], ttl=10)
    log.log_revoked(["long"], ttl=1000)
    advance(11)
    assert log.revoked_since(None)[0] == ["long"]
    log.cleanup()
    assert log.revoked_since(None)[0] == ["long"]


def test_the_revocation_log_is_shared_by_backends_of_one_store(
    make_backend: MakeBackend, clock: ManualClock
) -> None:
    writer, reader = make_backend(clock), make_backend(clock)
    _logging(writer)
    _, cursor = reader.revoked_since(None)
    writer.log_revoked(["x"], ttl=60)
    assert reader.revoked_since(cursor)[0] == ["x"]


# -- the chord join (``chord_join()``; the rules in celeriac.canvas.join) ----------------------


def _join(backend: ResultBackend) -> ChordJoin:
    """The backend's own join: every shipped backend that can join chords has one."""
    join = requires(backend, "chords").chord_join()
    assert isinstance(join, ChordJoin), f"{type(backend).__name__} has no join of its own"
    return join


def _part(group_id: str, index: int) -> ChordPart:
    task_id = f"{group_id}-t{index}"
    entry = f'[1, "{task_id}", "SUCCESS", {index}]'.encode()
    return ChordPart(group_id, index, task_id, states.SUCCESS, entry)


def _prepare(join: ChordJoin, group_id: str, size: int, ttl: float | None = 60) -> None:
    join.prepare(group_id, [_part(group_id, i).task_id for i in range(size)], ttl=ttl)


def _entries(group_id: str, size: int) -> list[bytes]:
    return [_part(group_id, i).entry for i in range(size)]


def _sends_nothing(join: ChordJoin, part: ChordPart) -> bool:
    """Whether the report gets no entries: None, or ``LookupError`` (no record of the chord
    here: the canvas then looks for a header a Celery client saved, see ``join_member``)."""
    try:
        return join.member_done(part, ttl=60) is None
    except LookupError:
        return True


def test_the_chord_join_hands_every_entry_to_the_report_that_completes_the_header(
    backend: ResultBackend,
) -> None:
    join = _join(backend)
    _prepare(join, "g", 4)
    assert [join.member_done(_part("g", i), ttl=60) for i in (3, 1, 0)] == [None] * 3
    assert join.member_done(_part("g", 2), ttl=60) == _entries("g", 4)  # header order
    assert join.member_done(_part("g", 3), ttl=60) is None  # not the member that claimed
    join.finish("g")
    assert [join.member_done(_part("g", i), ttl=60) for i in range(4)] == [None] * 4


def test_the_chord_join_counts_a_member_reported_twice_once(backend: ResultBackend) -> None:
    join = _join(backend)
    _prepare(join, "g", 3)
    assert join.member_done(_part("g", 0), ttl=60) is None
    assert join.member_done(_part("g", 0), ttl=60) is None  # redelivered and run again
    assert join.member_done(_part("g", 1), ttl=60) is None
    assert join.member_done(_part("g", 2), ttl=60) == _entries("g", 3)


def test_the_claiming_member_reporting_again_gets_the_entries_until_finish(
    make_backend: MakeBackend, clock: ManualClock
) -> None:
    """Its worker died between the claim and the body's send: the member is delivered again
    (to any worker: another backend on the same store), and its report sends the body."""
    first, second = _join(make_backend(clock)), _join(make_backend(clock))
    _prepare(first, "g", 2)
    assert first.member_done(_part("g", 0), ttl=60) is None
    assert first.member_done(_part("g", 1), ttl=60) == _entries("g", 2)
    # The first worker is gone; the member runs again on the second.
    assert second.member_done(_part("g", 0), ttl=60) is None
    assert second.member_done(_part("g", 1), ttl=60) == _entries("g", 2)
    second.finish("g")  # the body went out
    assert second.member_done(_part("g", 1), ttl=60) is None
    assert first.member_done(_part("g", 1), ttl=60) is None


def test_racing_reports_claim_the_body_once(make_backend: MakeBackend) -> None:
    size = 8
    joins = [_join(make_backend(system_clock)) for _ in range(2)]
    _prepare(joins[0], "race", size)
    start = threading.Barrier(size)
    claims: list[list[bytes]] = []
    lock = threading.Lock()

    def member(index: int) -> None:
        join = joins[index % 2]  # two workers
        start.wait()
        for _ in range(2):  # every member reports twice, as a redelivered one would
            entries = join.member_done(_part("race", index), ttl=60)
            if entries is not None:
                with lock:
                    claims.append(entries)
                join.finish("race")  # as the worker does once it sent the body

    threads = [threading.Thread(target=member, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert claims == [_entries("race", size)]


def test_a_frozen_chord_applied_again_joins_again(backend: ResultBackend) -> None:
    join = _join(backend)
    _prepare(join, "again", 1)
    assert join.member_done(_part("again", 0), ttl=60) == _entries("again", 1)
    join.finish("again")
    _prepare(join, "again", 1)
    assert join.member_done(_part("again", 0), ttl=60) == _entries("again", 1)


def test_the_chord_join_state_expires_unless_reports_keep_it(
    backend: ResultBackend, advance: Callable[[float], None]
) -> None:
    join = _join(backend)
    _prepare(join, "kept", 2, ttl=10)
    _prepare(join, "lapsed", 3, ttl=10)
    advance(6)
    assert join.member_done(_part("kept", 0), ttl=10) is None  # pushes the expiry out
    assert join.member_done(_part("lapsed", 0), ttl=10) is None
    advance(6)
    assert join.member_done(_part("kept", 1), ttl=10) == _entries("kept", 2)
    join.finish("kept")
    advance(11)
    assert _sends_nothing(join, _part("lapsed", 1))
    assert _sends_nothing(join, _part("lapsed", 2))  # the chord is gone
    assert backend.cleanup() == expired_count(backend, 2)  # both chords


def test_a_report_to_a_chord_never_prepared_sends_nothing(backend: ResultBackend) -> None:
    join = _join(backend)
    assert _sends_nothing(join, _part("unknown", 0))
    join.finish("unknown")  # harmless
    assert _sends_nothing(join, _part("unknown", 0))


# -- what a backend declares it cannot do ------------------------------------------------------


def test_a_call_a_backend_cannot_serve_raises_an_error_naming_its_capability(
    backend: ResultBackend,
) -> None:
    capabilities = backend.capabilities
    assert isinstance(capabilities, BackendCapabilities)
    calls: dict[str, Callable[[], object]] = {
        "groups": lambda: backend.save_group("g", b"[]", ttl=None),
        "counters": lambda: backend.incr("k", ttl=None),
        "revocation_log": lambda: backend.revoked_since(None),
        "chords": backend.chord_join,
    }
    lacking = [flag for flag in calls if not getattr(capabilities, flag)]
    if not lacking:
        pytest.skip(f"{type(backend).__name__} declares every one of {sorted(calls)}")
    for flag in lacking:
        with pytest.raises(BackendCapabilityError, match=rf"BackendCapabilities\.{flag} is False"):
            calls[flag]()
