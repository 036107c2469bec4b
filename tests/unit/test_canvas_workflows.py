"""Workflows run by an in-process worker on ``memory://``: chains, groups, chords, their
nesting, maps and chunks, results read back through parents and children."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, Task, chain, chord, group, states
from celeriac.backends.memory import reset_store
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import ChordError, TimeoutError
from celeriac.result import (
    AsyncResult,
    GroupResult,
    ResultSet,
    allow_join_result,
    result_from_tuple,
)
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker

NAME = f"test-canvas-workflows-{uuid.uuid4().hex}"
URL = f"memory://{NAME}"
T = 10  # seconds any one wait may take

app = Celery("flows", broker=URL, backend=URL, set_as_current=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def echo(*args: Any) -> list[Any]:
    return list(args)


@app.task
def fail(*args: Any) -> None:
    raise KeyError("broken")


@app.task(ignore_result=True)
def quiet_add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def fan_out(self: Task[Any, Any], n: int) -> str:
    result = group(add.s(i, i) for i in range(n)).apply_async()
    return str(result.id)


@app.task(bind=True)
def waits_inside(self: Task[Any, Any], allowed: bool) -> str:
    try:
        if allowed:
            with allow_join_result():
                return str(group(add.s(1, 1)).apply_async().get(timeout=T))
        group(add.s(1, 1)).apply_async().get(timeout=T)
    except RuntimeError as exc:
        return str(exc)
    return "waited"


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    try:
        with start_worker(app, pool="threads", concurrency=4) as running:
            yield running
    finally:
        app.close()
        MemoryTransport.reset(NAME)
        reset_store(NAME)


# -- chains --------------------------------------------------------------------------------


def test_chain_passes_each_result_on_and_links_parents(worker: Worker) -> None:
    result = chain(add.s(1, 2), add.s(3), mul.s(10)).apply_async()
    assert result.get(timeout=T) == 60
    assert result.parent.get(timeout=T) == 6
    assert result.parent.parent.get(timeout=T) == 3
    first = result.parent.parent
    assert first.children and first.children[0].id == result.parent.id
    assert [r.id for r in [result, result.parent, first]] == result.as_list()


def test_immutable_steps_ignore_the_previous_result(worker: Worker) -> None:
    assert (add.s(1, 1) | add.si(5, 5) | add.s(1)).delay().get(timeout=T) == 11


def test_a_failed_step_fails_every_later_step(worker: Worker) -> None:
    result = chain(add.s(1, 1), fail.s(), add.s(1), add.s(2)).apply_async()
    with pytest.raises(KeyError, match="broken"):
        result.get(timeout=T)
    assert result.parent.state == states.FAILURE
    assert result.parent.parent.state == states.FAILURE
    assert result.parent.parent.parent.get(timeout=T) == 2


def test_partial_arguments_go_to_the_first_step(worker: Worker) -> None:
    assert chain(add.s(1), mul.s(3)).apply_async((2,)).get(timeout=T) == 9


# -- groups --------------------------------------------------------------------------------


def test_group_result_reads_all_members(worker: Worker) -> None:
    result = group(add.s(i, i) for i in range(5)).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=T) == [0, 2, 4, 6, 8]
    assert result.join(timeout=T) == [0, 2, 4, 6, 8]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 5 and not result.waiting()
    assert len(result) == 5 and result[1].get(timeout=T) == 2
    assert result.backend is app.backend
    assert [r.id for r in result] == [r.id for r in result.results]
    assert list(result.iter_native(timeout=T)) == [(r.id, r.get()) for r in result.results]


def test_a_failed_member_fails_the_group(worker: Worker) -> None:
    result = group(add.s(1, 1), fail.s(), add.s(2, 2)).apply_async()
    with pytest.raises(KeyError):
        result.get(timeout=T)
    values = result.join(timeout=T, propagate=False)
    assert values[0] == 2 and isinstance(values[1], KeyError) and values[2] == 4
    assert result.failed() and not result.successful() and result.completed_count() == 2


def test_partial_arguments_go_to_every_member(worker: Worker) -> None:
    assert group(add.s(1), mul.s(3), add.si(0, 0)).apply_async((2,)).get(timeout=T) == [3, 6, 0]


def test_group_save_restore_and_delete(worker: Worker) -> None:
    result = group(add.s(1, 1), add.s(2, 2)).apply_async()
    result.save()
    restored = GroupResult.restore(str(result.id), app=app)
    assert restored == result
    assert restored is not None and restored.get(timeout=T) == [2, 4]
    assert app.GroupResult(result.id, result.results) == result
    result.delete()
    assert GroupResult.restore(str(result.id), app=app) is None


def test_result_set_add_remove(worker: Worker) -> None:
    first, second = add.delay(1, 1), add.delay(2, 2)
    results = ResultSet([first], app=app)
    results.add(second)
    results.add(second)
    assert results.get(timeout=T) == [2, 4]
    results.discard(first.id)
    results.discard("unknown")
    assert [r.id for r in results] == [second.id]
    with pytest.raises(KeyError):
        results.remove("unknown")


def test_a_task_that_sends_a_group_lists_it_in_its_children(worker: Worker) -> None:
    result = fan_out.delay(3)
    group_id = result.get(timeout=T)
    [child] = result.children
    assert isinstance(child, GroupResult) and child.id == group_id
    assert child.get(timeout=T) == [0, 2, 4]
    collected = list(result.collect(timeout=T))
    assert [value for _, value in collected] == [group_id, [0, 2, 4], 0, 2, 4]


def test_waiting_on_a_group_inside_a_task_is_refused(worker: Worker) -> None:
    assert "Never call result.get() within a task" in waits_inside.delay(False).get(timeout=T)
    assert waits_inside.delay(True).get(timeout=T) == "[2]"


# -- chords --------------------------------------------------------------------------------


def test_chord_both_forms(worker: Worker) -> None:
    assert chord([add.s(i, i) for i in range(10)], tsum.s()).apply_async().get(timeout=T) == 90
    result = chord([add.s(1, 1), add.s(2, 2)])(tsum.s())
    assert result.get(timeout=T) == 6
    assert isinstance(result.parent, GroupResult) and result.parent.get(timeout=T) == [2, 4]


def test_the_body_gets_the_results_in_header_order(worker: Worker) -> None:
    assert chord([add.s(i, 0) for i in range(8)], echo.s()).delay().get(timeout=T) == [
        list(range(8))
    ]


def test_a_group_followed_by_a_task_is_a_chord(worker: Worker) -> None:
    flow = add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s() | add.s(100)
    result: Any = flow.apply_async()
    assert result.get(timeout=T) == 107
    assert result.parent.get(timeout=T) == 7
    assert isinstance(result.parent.parent, GroupResult)


def test_members_that_ignore_results_still_join(worker: Worker) -> None:
    assert chord([quiet_add.s(1, 1), quiet_add.s(2, 2)], tsum.s()).delay().get(timeout=T) == 6


def test_nested_chains_chords_and_groups_in_a_header(worker: Worker) -> None:
    header = [
        add.s(1, 1) | add.s(1),  # 3
        chord([add.s(1, 1), add.s(2, 2)], tsum.s()),  # 6
        add.s(1, 1) | group(add.s(1), add.s(2)),  # [3, 4] (a group ending a chain: one list)
        group(add.s(5, 5), add.s(6, 6)),  # 10, 12
    ]
    assert chord(header, echo.s()).apply_async().get(timeout=T) == [[3, 6, [3, 4], 10, 12]]


def test_a_group_inside_a_chain_inside_a_chord(worker: Worker) -> None:
    header = [add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s(), add.s(10, 10)]
    assert (chord(header, tsum.s()) | add.s(1)).apply_async().get(timeout=T) == 28


def test_a_generator_header_with_a_group_member(worker: Worker) -> None:
    def header() -> Any:
        yield add.s(1, 1)
        yield group(add.s(2, 2), add.s(3, 3))
        yield add.s(4, 4) | add.s(1)

    assert chord(header(), tsum.s()).delay().get(timeout=T) == 2 + 4 + 6 + 9


def test_a_chord_inside_a_chain_inside_a_chord(worker: Worker) -> None:
    inner = add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()) | add.s(100)  # 107
    outer = chord([inner, chord([add.s(1, 1), add.s(2, 2)], tsum.s())], echo.s())
    result = outer.apply_async()
    assert result.get(timeout=T) == [[107, 6]]
    assert result.parent.get(timeout=T) == [107, 6]


def test_chord_body_can_be_a_chain_or_a_group(worker: Worker) -> None:
    assert chord([add.s(1, 1)], tsum.s() | mul.s(10)).delay().get(timeout=T) == 20
    result = chord([add.s(1, 1), add.s(2, 2)], group(echo.s(), echo.s("x"))).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=T) == [[[2, 4]], [[2, 4], "x"]]


def test_a_chord_with_a_group_body_in_a_chord_header(worker: Worker) -> None:
    """The inner chord's body (a group) is sent by a worker with the header's options; its
    values are one list in the outer body's (as in Celery)."""
    inner = chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), echo.s()))
    assert chord([inner, add.s(3, 3)], echo.s()).delay().get(timeout=T) == [[[6, [[2, 4]]], 6]]


def test_an_empty_header_runs_the_body_with_no_results(worker: Worker) -> None:
    assert chord([], echo.s()).apply_async().get(timeout=T) == [[]]


def test_a_failed_member_fails_the_body_with_chord_error(worker: Worker) -> None:
    header = [add.s(1, 1), fail.s()]
    result = chord(header, tsum.s()).apply_async()
    with pytest.raises(KeyError):  # as in Celery: the failed member's own error first
        result.get(timeout=T)
    with pytest.raises(ChordError, match=r"Dependency .* raised KeyError\('broken'\)") as info:
        result.get(timeout=T, follow_parents=False)
    failed_id = result.parent.results[1].id
    assert failed_id in str(info.value)
    assert result.state == states.FAILURE


def test_chord_failure_fails_what_follows_the_body(worker: Worker) -> None:
    result: Any = (chord([fail.s()], tsum.s()) | add.s(1) | add.s(2)).apply_async()
    with pytest.raises(KeyError):  # the header's failure, raised through the parents
        result.get(timeout=T)
    with pytest.raises(ChordError):
        result.get(timeout=T, follow_parents=False)
    assert result.parent.state == states.FAILURE


# -- one task over many --------------------------------------------------------------------


def test_map_starmap_and_chunks(worker: Worker) -> None:
    assert tsum.map([[1, 2], [3]]).delay().get(timeout=T) == [3, 3]
    assert add.starmap([(1, 2), (3, 4)]).apply_async().get(timeout=T) == [3, 7]
    chunked = add.chunks([(i, i) for i in range(5)], 2).apply_async()
    assert isinstance(chunked, GroupResult)
    assert chunked.get(timeout=T) == [[0, 2], [4, 6], [8]]
    assert add.chunks([(1, 1)], 1).group().apply_async().get(timeout=T) == [[2]]


def test_chunks_in_a_chord_header_or_a_group_count_as_their_parts(worker: Worker) -> None:
    chunked = add.chunks([(i, i) for i in range(3)], 2)
    assert chord(chunked, echo.s()).apply_async().get(timeout=T) == [[[0, 2], [4]]]
    result = group(chunked.clone().set(queue="celery"), add.s(1, 1)).apply_async()
    assert result.get(timeout=T) == [[0, 2], [4], 2]


def test_sig_delay_and_invert(worker: Worker) -> None:
    result = add.s(2).delay(3)
    assert isinstance(result, AsyncResult) and result.get(timeout=T) == 5
    assert ~add.s(4, 4) == 8


def test_group_of_one_chain_ending_in_a_group_gives_the_inner_group(worker: Worker) -> None:
    """group(a | group(b, c)): the result is the inner group's, as Celery special-cases it."""
    result = group(add.s(1, 2) | group(add.s(1), add.s(2))).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=10) == [4, 5]
    two = group(add.s(1, 2) | group(add.s(1), add.s(2)), add.s(0, 0)).apply_async()
    assert len(two.results) == 2  # more than one member: nothing is flattened


def test_empty_groups_and_chains_are_no_steps(worker: Worker) -> None:
    """As Celery (its issue 9772): an empty group or chain in a chain or group is skipped,
    and the partial arguments reach the first real step."""
    two = group(add.s(2, 2), add.s(4, 4))
    assert chain(two, group(), group()).apply_async().get(timeout=T) == [4, 8]
    assert chain(two.clone(), group(), group(), tsum.s()).apply_async().get(timeout=T) == 12
    assert chain(group(), add.s(10)).apply_async((5,)).get(timeout=T) == 15
    assert chain(chain(), add.s(10)).apply_async((5,)).get(timeout=T) == 15
    nested = chain(chain(group(), add.s(10)), add.s(20))
    assert nested.apply_async((5,)).get(timeout=T) == 35
    members = group(chain(), add.s(1, 2), chain(), add.s(3, 4)).apply_async()
    assert len(members.results) == 2
    assert members.get(timeout=T) == [3, 7]


@app.task
def return_a_result() -> Any:
    return add.delay(1, 1)


@app.task
def return_a_group_result() -> Any:
    return group(add.s(2, 2), add.s(3, 3)).delay()


def test_a_task_returning_results_stores_their_tuples(worker: Worker) -> None:
    """As Celery: an AsyncResult or GroupResult a task returns is stored as its tuple."""
    one = return_a_result.delay().get(timeout=T)
    assert one == [[one[0][0], None], None]
    restored = result_from_tuple(return_a_group_result.delay().get(timeout=T), app=app)
    assert isinstance(restored, GroupResult) and restored.get(timeout=T) == [4, 6]


def test_tasks_given_as_members_are_their_signatures(worker: Worker) -> None:
    """As Celery: ``chord([tsum, tsum], body)`` takes the tasks as signatures with no args."""
    header = group([tsum, tsum])
    assert [member.task for member in header.tasks] == [tsum.name, tsum.name]
    workflow = chord([add.s(0, 1)], chord([tsum, tsum], tsum.s()))
    assert workflow.apply_async().get(timeout=T) == 2


def test_group_get_waits_for_the_members_not_their_parents(worker: Worker) -> None:
    """As Celery's native join: a member whose parent failed is still waited for."""
    failed = fail.delay()
    with pytest.raises(KeyError):
        failed.get(timeout=T)
    child = AsyncResult(str(uuid.uuid4()), app=app, parent=failed)
    with pytest.raises(TimeoutError):
        GroupResult(str(uuid.uuid4()), [child], app=app).get(timeout=0.3)
    with pytest.raises(KeyError):
        child.get(timeout=0.3)  # a member alone still follows its parents


def test_a_frozen_chord_is_sent_with_its_task_id_given_again(worker: Worker) -> None:
    """``c.freeze(id)`` then ``c.apply_async(task_id=id)``: the body's id, as in Celery."""
    expected = str(uuid.uuid4())
    workflow = chord([add.si(1, 1), add.si(2, 2)], chain(tsum.s(), add.s(1)))
    assert workflow.freeze(expected).id == expected
    result = workflow.apply_async(task_id=expected)
    assert result.id == expected and result.get(timeout=T) == 7


def test_a_group_body_of_a_failed_chord_gets_the_members_error(worker: Worker) -> None:
    """As Celery: each member of a group body is stored FAILURE with the failed header
    member's own exception; a single-task body keeps the ChordError."""
    as_group = chord([add.si(1, 1), fail.si()], group(add.si(1, 1), add.si(2, 2)))
    with pytest.raises(KeyError):
        as_group.apply_async().get(timeout=T)
    single = chord([add.si(1, 1), fail.si()], tsum.s()).apply_async()
    with pytest.raises(ChordError):
        single.get(timeout=T, follow_parents=False)
