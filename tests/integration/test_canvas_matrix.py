"""Every canvas primitive, and their nesting, against real worker processes on each broker and
result backend pairing: the embedded SQLite default, Redis (broker and results), and RabbitMQ
with results in Redis.

The same cases run for each pairing (``_Cases``; one class per pairing below). Each class
starts one prefork worker for all of its tests; Redis keys live under a prefix of the class's
own (deleted after), RabbitMQ in a vhost of its own. New-style errbacks run in the worker, so
they say what they saw in a log file the tests read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from celeriac import Celery, chain, chord, group
from celeriac.exceptions import ChordError, ImproperlyConfigured
from celeriac.result import AsyncResult, GroupResult
from tests.support import amqp_support, redis_support
from tests.support.polling import eventually
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

T = 30  # seconds any one result may take

TASKS = """
import os

from celeriac import Celery, group

app = Celery("tasks", broker=os.environ["TEST_BROKER"], backend=os.environ.get("TEST_BACKEND"))
PREFIX = os.environ.get("TEST_PREFIX")
if PREFIX:
    if app.broker_url.startswith("redis"):
        app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
    app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}


def _record(line):
    with open(os.environ["TEST_RUNLOG"], "a") as log:
        log.write(line + "\\n")


# The page pipeline.


@app.task
def fetch(url):
    return f"<title>{url.rpartition('/')[2]}</title>"


@app.task
def parse(page):
    return {"title": page[len("<title>") : -len("</title>")], "size": len(page)}


@app.task
def store(info, url):
    if isinstance(info, str):  # called back by fetch itself, with the page
        return f"{url}: page of {len(info)}"
    return f"{url}: {info['title']} ({info['size']})"


# Arithmetic.


@app.task
def add(x, y):
    return x + y


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def collect(values):
    return values


@app.task
def fail(*args):
    raise KeyError("broken")


# Errbacks: old style (sent with the failed task's id), new style (run in the worker).


@app.task
def on_error_old(task_id):
    return f"failed: {task_id}"


@app.task
def on_error_new(request, exc, traceback):
    _record(f"errback {request.id} {type(exc).__name__} {exc}")


# Replacing a task.


@app.task(bind=True)
def replaced_by_chain(self, n):
    return self.replace(add.s(n, 1) | add.s(10))


@app.task(bind=True)
def replaced_by_group(self, n):
    return self.replace(group(add.s(n, i) for i in range(3)))


@app.task(bind=True)
def replaced_by_chord(self, n):
    from celeriac import chord
    return self.replace(chord([add.s(n, i) for i in range(3)], tsum.s()))


# Children: spawn sends a group of relays, each relay sends a square.


@app.task
def square(i):
    return i * i


@app.task
def relay(i):
    square.delay(i)
    return i


@app.task
def spawn(n):
    group(relay.s(i) for i in range(n)).delay()
    return n


# Retries: fails ``times`` times before it returns ``value``.


@app.task(bind=True, max_retries=3, default_retry_delay=0.05)
def flaky(self, value, times):
    if self.request.retries < times:
        raise self.retry(exc=ValueError("not yet"))
    return value


@app.task(ignore_result=True)
def quiet(x):
    return x


# Waiting on a result inside a task.


@app.task
def waits(allowed):
    return add.delay(1, 1).get(timeout=20, disable_sync_subtasks=not allowed)
"""


class Flow:
    """A project folder on one pairing, its worker, and its tasks module as a client loads it."""

    def __init__(self, project: WorkerProject, runlog: Path, env: dict[str, str]):
        self.project = project
        self.runlog = runlog
        with pytest.MonkeyPatch.context() as patch:  # the module reads them as it loads
            for name, value in env.items():
                patch.setenv(name, value)
            self.tasks: Any = project.load_tasks()
        self.app = self.tasks.app

    def records(self) -> list[str]:
        return self.runlog.read_text().splitlines() if self.runlog.exists() else []

    def matching(self, line: str, prefix: bool = False) -> list[str]:
        """The records equal to ``line`` (with ``prefix``: that start with it)."""
        return [r for r in self.records() if (r.startswith(line) if prefix else r == line)]


@pytest.fixture(scope="class")
def flow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flow]:
    kind: str = request.cls.kind
    root = tmp_path_factory.mktemp(f"canvas-{kind}")
    runlog = root / "runs.log"
    env = {"TEST_RUNLOG": str(runlog)}
    cleanup: list[Any] = []
    if kind == "sqlite":
        env["TEST_BROKER"] = f"sqlite:///{root / 'celeriac.sqlite'}"
    else:
        redis_support.require_redis()
        prefix = redis_support.unique_prefix()
        db = redis_support.BACKEND_DB
        env["TEST_BACKEND"] = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
        env["TEST_PREFIX"] = prefix
        cleanup.append(lambda: redis_support.delete_prefix(db, prefix))
        if kind == "redis":
            broker_db = redis_support.TRANSPORT_DB
            env["TEST_BROKER"] = f"redis://{redis_support.HOST}:{redis_support.PORT}/{broker_db}"
            cleanup.append(lambda: redis_support.delete_prefix(broker_db, prefix))
        else:
            vhost = amqp_support.take_vhost()
            env["TEST_BROKER"] = amqp_support.url(vhost)
            cleanup.append(lambda: amqp_support.drop_vhost(vhost))
    project = WorkerProject(root, TASKS, env)
    try:
        flow = Flow(project, runlog, env)
        project.start_worker("-P", "prefork", "-c", "4")
        yield flow
    finally:
        project.stop_all()
        for step in cleanup:
            step()


class _Cases:
    """The cases every pairing runs (a subclass per pairing sets ``kind``)."""

    kind: ClassVar[str]

    # -- chains -------------------------------------------------------------------------------

    def test_page_pipeline_chain(self, flow: Flow) -> None:
        t = flow.tasks
        url = "https://example.com/home"
        result = (t.fetch.s(url) | t.parse.s() | t.store.s(url)).delay()
        assert result.get(timeout=T) == f"{url}: home (19)"
        parse_result = result.parent
        assert parse_result.get(timeout=T) == {"title": "home", "size": 19}
        assert parse_result.parent.get(timeout=T) == "<title>home</title>"
        assert parse_result.parent.parent is None

    def test_page_pipeline_callbacks(self, flow: Flow) -> None:
        """``link=[a, b]``: each callback gets the page; a callback's own link gets its result."""
        t = flow.tasks
        url = "https://example.com/news"
        parse_sig, store_sig = t.parse.s(), t.store.s(url)
        parsed, stored = parse_sig.freeze(), store_sig.freeze()
        fetched = t.fetch.apply_async((url,), link=[parse_sig, store_sig])
        assert fetched.get(timeout=T) == "<title>news</title>"
        assert parsed.get(timeout=T) == {"title": "news", "size": 19}
        assert stored.get(timeout=T) == f"{url}: page of 19"
        [callbacks] = fetched.children  # the two went out as one group
        assert callbacks.get(timeout=T) == [{"title": "news", "size": 19}, f"{url}: page of 19"]
        # The pipeline as callbacks of callbacks.
        parse_sig = t.parse.s()
        last = parse_sig.link(t.store.s(url))
        stored = last.freeze()
        t.fetch.apply_async((url,), link=parse_sig)
        assert stored.get(timeout=T) == f"{url}: news (19)"

    def test_immutable_step_in_a_chain(self, flow: Flow) -> None:
        t = flow.tasks
        result = (t.add.s(1, 1) | t.add.si(10, 10) | t.add.s(1)).delay()
        assert result.get(timeout=T) == 21
        assert result.parent.get(timeout=T) == 20
        assert result.parent.parent.get(timeout=T) == 2

    def test_a_failed_step_fails_the_rest_of_the_chain(self, flow: Flow) -> None:
        t = flow.tasks
        result = chain(t.add.s(1, 1), t.fail.s(), t.add.s(1)).delay()
        with pytest.raises(KeyError):
            result.get(timeout=T)  # raises as soon as a parent failed (Celery: follow_parents)
        assert result.parent.state == "FAILURE"
        # the failing step then marks the rest of the chain FAILURE, just after its own state
        eventually(
            lambda: result.state, "the last step marked FAILURE", until=lambda s: s == "FAILURE"
        )
        assert result.parent.parent.get(timeout=T) == 2

    # -- groups -------------------------------------------------------------------------------

    def test_group_result(self, flow: Flow) -> None:
        t = flow.tasks
        result = group(t.add.s(i, i) for i in range(5)).delay()
        assert isinstance(result, GroupResult)
        assert result.get(timeout=T) == [0, 2, 4, 6, 8]
        assert result.join(timeout=T) == [0, 2, 4, 6, 8]
        assert result.ready() and result.successful() and not result.failed()
        assert result.completed_count() == 5
        result.save()
        restored = GroupResult.restore(str(result.id), app=flow.app)
        assert restored is not None and restored == result
        assert restored.get(timeout=T) == [0, 2, 4, 6, 8]
        assert restored.completed_count() == 5

    def test_a_group_with_a_failed_member(self, flow: Flow) -> None:
        t = flow.tasks
        result = group(t.add.s(1, 1), t.fail.s(), t.add.s(2, 2)).delay()
        values = result.join(timeout=T, propagate=False)
        assert values[0] == 2 and values[2] == 4 and isinstance(values[1], KeyError)
        assert result.ready() and result.failed() and not result.successful()
        assert result.completed_count() == 2
        with pytest.raises(KeyError):
            result.get(timeout=T)

    def test_group_of_chains_and_partial_arguments(self, flow: Flow) -> None:
        t = flow.tasks
        assert group(t.add.s(i, i) | t.add.s(1) for i in range(3)).delay().get(timeout=T) == [
            1,
            3,
            5,
        ]
        assert group(t.add.s(1), t.add.s(2)).delay(10).get(timeout=T) == [11, 12]

    # -- chords -------------------------------------------------------------------------------

    def test_chord_both_forms(self, flow: Flow) -> None:
        t = flow.tasks
        header = [t.add.s(i, i) for i in range(10)]
        called = chord(header)(t.tsum.s())
        assert called.get(timeout=T) == 90
        assert isinstance(called.parent, GroupResult)
        assert called.parent.get(timeout=T) == [2 * i for i in range(10)]
        applied = chord(header, t.collect.s()).delay()
        assert applied.get(timeout=T) == [2 * i for i in range(10)]
        # A group followed by a task is a chord too.
        assert (group(header) | t.tsum.s()).delay().get(timeout=T) == 90

    def test_a_failed_member_fails_the_body_and_its_errbacks_hear_of_it(self, flow: Flow) -> None:
        t = flow.tasks
        old_style = t.on_error_old.s()
        errback_result = old_style.freeze()
        body = t.tsum.s().on_error(t.on_error_new.s()).on_error(old_style)
        result = chord([t.add.s(1, 1), t.fail.s(), t.add.s(2, 2)], body).delay()
        with pytest.raises(KeyError):  # as in Celery: the member's error, through the parent
            result.get(timeout=T)
        with pytest.raises(ChordError) as raised:  # the body's own stored failure
            result.get(timeout=T, follow_parents=False)
        assert "KeyError" in str(raised.value)
        assert result.state == "FAILURE"
        assert errback_result.get(timeout=T) == f"failed: {result.id}"
        [line] = [r for r in flow.records() if r.startswith(f"errback {result.id} ")]
        assert line.startswith(f"errback {result.id} ChordError ")
        # What is chained after the body fails too.
        followed = (chord([t.fail.s(), t.add.s(1, 1)], t.tsum.s()) | t.add.s(1)).delay()
        with pytest.raises(ChordError):
            followed.get(timeout=T, follow_parents=False)

    # -- chunks, map, starmap -----------------------------------------------------------------

    def test_chunks_map_and_starmap(self, flow: Flow) -> None:
        t = flow.tasks
        chunked = t.add.chunks([(i, i) for i in range(10)], 3).delay()
        assert isinstance(chunked, GroupResult)
        assert chunked.get(timeout=T) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
        assert t.tsum.map([[1, 2], [3, 4, 5]]).delay().get(timeout=T) == [3, 12]
        assert t.add.starmap([(i, i) for i in range(4)]).delay().get(timeout=T) == [0, 2, 4, 6]
        # The group of a chunks as a chord's header: one list per chunk.
        flat = (t.add.chunks([(i, i) for i in range(4)], 2).group() | t.collect.s()).delay()
        assert flat.get(timeout=T) == [[0, 2], [4, 6]]
        # A chunks as a header, or a member of a group, counts as its parts.
        header = t.add.chunks([(1, 1), (2, 2), (3, 3)], 2)
        assert chord(header, t.collect.s()).delay().get(timeout=T) == [[2, 4], [6]]
        mixed = group(t.add.chunks([(1, 1), (2, 2), (3, 3)], 2), t.add.s(1, 1)).delay()
        assert mixed.get(timeout=T) == [[2, 4], [6], 2]

    # -- callbacks and errbacks -----------------------------------------------------------------

    def test_link_and_link_error(self, flow: Flow) -> None:
        t = flow.tasks
        callback = t.add.s(100)
        called = callback.freeze()
        assert t.add.apply_async((1, 2), link=callback).get(timeout=T) == 3
        assert called.get(timeout=T) == 103
        old_style = t.on_error_old.s()
        errback_result = old_style.freeze()
        failed = t.fail.apply_async(link_error=[old_style, t.on_error_new.s()])
        with pytest.raises(KeyError):
            failed.get(timeout=T)
        assert errback_result.get(timeout=T) == f"failed: {failed.id}"
        eventually(lambda: flow.matching(f"errback {failed.id} KeyError 'broken'"), timeout=T)
        # An errback on a chain hears of the step that failed.
        in_chain = (t.add.s(1, 1) | t.fail.s() | t.add.s(1)).on_error(t.on_error_new.s()).delay()
        with pytest.raises(KeyError):
            in_chain.get(timeout=T, follow_parents=False)
        eventually(
            lambda: flow.matching(f"errback {in_chain.parent.id} KeyError 'broken'"), timeout=T
        )

    # -- replace --------------------------------------------------------------------------------

    def test_replace_with_a_chain_or_a_group(self, flow: Flow) -> None:
        t = flow.tasks
        assert t.replaced_by_chain.delay(5).get(timeout=T) == 16
        assert t.replaced_by_group.delay(3).get(timeout=T) == [3, 4, 5]
        assert (t.replaced_by_chain.s(5) | t.add.s(100)).delay().get(timeout=T) == 116
        header = [t.replaced_by_group.s(1), t.replaced_by_chain.s(1), t.add.s(1, 1)]
        assert chord(header, t.collect.s()).delay().get(timeout=T) == [[1, 2, 3], 12, 2]
        assert t.replaced_by_chord.delay(2).get(timeout=T) == 9
        members = group(t.replaced_by_group.s(1), t.replaced_by_chord.s(1)).delay()
        assert members.get(timeout=T) == [[1, 2, 3], 6]
        after_chord = chord([t.add.s(1, 1)], t.tsum.s()) | t.replaced_by_chain.s() | t.add.s(1)
        assert after_chord.delay().get(timeout=T) == 14

    # -- nesting --------------------------------------------------------------------------------

    def test_a_group_inside_a_chain_inside_a_chord(self, flow: Flow) -> None:
        t = flow.tasks
        inner = t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s()  # 2 -> [3, 4] -> 7
        result = chord([inner, t.add.s(5, 5)], t.collect.s()).delay()
        assert result.get(timeout=T) == [7, 10]

    def test_a_chord_inside_a_chain(self, flow: Flow) -> None:
        t = flow.tasks
        flow_ = t.add.s(1, 1) | chord([t.add.s(1), t.add.s(2)], t.tsum.s()) | t.add.s(100)
        result = flow_.delay()
        assert result.get(timeout=T) == 107  # 2 -> [3, 4] -> 7 -> 107
        assert result.parent.get(timeout=T) == 7

    def test_a_chain_of_chords(self, flow: Flow) -> None:
        t = flow.tasks
        result = chain(
            chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()),  # 6
            chord([t.add.s(1), t.add.s(2)], t.tsum.s()),  # [7, 8] -> 15
            chord([t.add.s(10), t.add.s(20)], t.collect.s()),  # [25, 35]
        ).delay()
        assert result.get(timeout=T) == [25, 35]

    def test_chords_and_groups_in_a_chord_header(self, flow: Flow) -> None:
        t = flow.tasks
        header = [
            chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()),  # 6
            group(t.add.s(3, 3), t.add.s(4, 4)),  # 6, 8
            t.add.s(1, 1) | t.add.s(1),  # 3
        ]
        result = (chord(header, t.tsum.s()) | t.add.s(100)).delay()
        assert result.get(timeout=T) == 123

    def test_a_chord_body_that_is_a_chain_or_a_group(self, flow: Flow) -> None:
        t = flow.tasks
        header = [t.add.s(1, 1), t.add.s(2, 2)]
        assert chord(header, t.tsum.s() | t.add.s(1)).delay().get(timeout=T) == 7
        as_group = chord(header, group(t.tsum.s(), t.collect.s())).delay()
        assert as_group.get(timeout=T) == [6, [2, 4]]
        # That chord, in turn a member of a chord's header: its group's values are one list.
        outer = chord([chord([t.add.s(1, 1)], group(t.tsum.s(), t.collect.s()))], t.collect.s())
        assert outer.delay().get(timeout=T) == [[2, [2]]]

    def test_more_nesting(self, flow: Flow) -> None:
        t = flow.tasks
        # group | group: the second group gets the first's results (a chord with a group body).
        both = (group(t.add.s(1, 1), t.add.s(2, 2)) | group(t.collect.s(), t.tsum.s())).delay()
        assert both.get(timeout=T) == [[2, 4], 6]
        # A chain that ends in a group; one that starts with a group.
        assert (t.add.s(1, 1) | group(t.add.s(1), t.add.s(2))).delay().get(timeout=T) == [3, 4]
        starts = (group(t.add.s(1, 1), t.add.s(2, 2)) | t.tsum.s() | t.add.s(1)).delay()
        assert starts.get(timeout=T) == 7
        # A group of chords, a chord of one member, a group in a group.
        chords = group(chord([t.add.s(i, i), t.add.s(1, 1)], t.tsum.s()) for i in range(3))
        assert chords.delay().get(timeout=T) == [2, 4, 6]
        assert chord([t.add.s(2, 2)], t.collect.s()).delay().get(timeout=T) == [4]
        nested = group(t.add.s(1, 1), group(t.add.s(2, 2), t.add.s(3, 3)))
        assert chord(nested, t.collect.s()).delay().get(timeout=T) == [2, 4, 6]
        # Immutable chords in a chain ignore what came before.
        ignoring = (t.add.s(1, 1) | chord([t.add.si(5, 5)], t.tsum.si([1, 2]))).delay()
        assert ignoring.get(timeout=T) == 3
        # A chord with callbacks on its result; a chain with a callback on its end.
        callback = t.add.s(1000)
        called = callback.freeze()
        result = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()).apply_async(link=callback)
        assert result.get(timeout=T) == 6 and called.get(timeout=T) == 1006
        callback = t.add.s(1000)
        called = callback.freeze()
        assert (t.add.s(1, 1) | t.add.s(1)).apply_async(link=callback).get(timeout=T) == 3
        assert called.get(timeout=T) == 1003

    def test_members_that_retry_or_ignore_results_still_join(self, flow: Flow) -> None:
        t = flow.tasks
        header = [t.flaky.s(i, i % 3) for i in range(6)]
        assert chord(header, t.collect.s()).delay().get(timeout=T) == list(range(6))
        quiet = chord([t.quiet.s(1), t.quiet.s(2)], t.collect.s()).delay()
        assert quiet.get(timeout=T) == [1, 2]

    def test_nested_failures_reach_the_outer_body(self, flow: Flow) -> None:
        t = flow.tasks
        inner = chord([t.add.s(1, 1), t.fail.s()], t.tsum.s())
        outer_body = t.collect.s().on_error(t.on_error_new.s())
        outer = chord([inner, t.add.s(2, 2)], outer_body).delay()
        with pytest.raises(ChordError):
            outer.get(timeout=T, follow_parents=False)
        eventually(lambda: flow.matching(f"errback {outer.id} ChordError", prefix=True), timeout=T)
        failing_chain = t.add.s(1, 1) | t.fail.s() | t.add.s(1)
        in_chain = chord([failing_chain, t.add.s(2, 2)], t.collect.s()).delay()
        with pytest.raises(ChordError):
            in_chain.get(timeout=T, follow_parents=False)
        in_group = chord([t.add.s(1, 1) | group(t.fail.s(), t.add.s(1))], t.collect.s()).delay()
        with pytest.raises(ChordError):
            in_group.get(timeout=T, follow_parents=False)

    # -- the result graph -------------------------------------------------------------------------

    def test_parent_children_and_collect(self, flow: Flow) -> None:
        t = flow.tasks
        result = t.spawn.delay(3)
        assert result.get(timeout=T) == 3
        [sent] = result.children
        assert isinstance(sent, GroupResult) and len(sent) == 3
        values = [value for _, value in result.collect(timeout=T)]
        assert values == [3, [0, 1, 2], 0, 1, 2, 0, 1, 4]
        nodes = [node for node, _ in result.collect(timeout=T)]
        assert all(isinstance(node, (AsyncResult, GroupResult)) for node in nodes)

    def test_waiting_inside_a_task_is_refused_unless_allowed(self, flow: Flow) -> None:
        t = flow.tasks
        with pytest.raises(RuntimeError, match="disable_sync_subtasks"):
            t.waits.delay(False).get(timeout=T)
        assert t.waits.delay(True).get(timeout=T) == 2


class TestSqlite(_Cases):
    """The embedded default: broker and results in one SQLite file."""

    kind = "sqlite"


class TestRedis(_Cases):
    """Redis as broker and result backend."""

    kind = "redis"


class TestRabbitmqRedis(_Cases):
    """RabbitMQ as broker, Redis as result backend."""

    kind = "amqp"


def test_a_chord_on_the_rpc_backend_is_refused_not_left_hanging() -> None:
    """On RabbitMQ with ``rpc://`` results, plain tasks go out; a chord is refused at once."""
    with amqp_support.vhost() as vhost:
        app = Celery(
            "rpcchord", broker=amqp_support.url(vhost), backend="rpc://", set_as_current=False
        )
        try:

            @app.task(shared=False)
            def add(x: int, y: int) -> int:
                return x + y

            add.delay(1, 1)  # the backend is in use: its reply queue declared
            with pytest.raises(ImproperlyConfigured, match="cannot run with the rpc://"):
                chord([add.s(1, 1), add.s(2, 2)], add.s(1)).delay()
            with pytest.raises(ImproperlyConfigured, match="cannot run with the rpc://"):
                (group(add.s(1, 1), add.s(2, 2)) | add.s(1)).delay()
            assert app.transport.queue_length("celery") == 1
        finally:
            app.close()
