"""Long ``acks_late`` tasks against RabbitMQ's consumer_timeout, on a private node whose
consumer_timeout is 3 s (checked every half second) instead of the default 30 minutes.

RabbitMQ closes a channel that keeps a delivery unacknowledged past consumer_timeout and
requeues the delivery, so without help a long ``acks_late`` task runs twice. The consumer
hands such a delivery over to a lease queue of its own (``lease``): the task runs
once, and still runs again elsewhere when its worker is killed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports.base import Consumer, Delivery, Outgoing, Transport
from tests.support import amqp_support
from tests.support.polling import eventually
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration

CONSUMER_TIMEOUT = 3  # seconds, on the private node
# The workers are told 2 s, so they hand over after 1 s: a margin for a busy machine.
# Prefetched messages go back well before the node's consumer_timeout too.
OPTIONS = {"consumer_timeout": 2, "lease_timeout": 4, "prefetch_timeout": 1}
LONG = 3 * CONSUMER_TIMEOUT

TASKS = """
import os
import time
from celeriac import Celery

app = Celery("tasks", broker="{broker}", backend="sqlite:///{folder}/results.sqlite")
app.conf.task_default_queue = "{queue}"
app.conf.broker_transport_options = {options!r}
RUNS = "{folder}/runs.log"


def _record(what, task_id):
    with open(RUNS, "a") as log:
        log.write(f"{{what}} {{task_id}} {{os.getpid()}}\\n")


def _started_before(task_id):
    if not os.path.exists(RUNS):
        return False
    with open(RUNS) as log:
        return task_id in log.read()


@app.task(bind=True, acks_late=True)
def long_late(self, seconds):
    again = _started_before(self.request.id)
    _record("start", self.request.id)
    time.sleep(0 if again else seconds)  # only the first run is long: a second one is quick
    _record("done", self.request.id)
    return self.request.id
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[amqp_support.PrivateNode]:
    folder = tmp_path_factory.mktemp("rabbitmq")
    settings = {"consumer_timeout": str(CONSUMER_TIMEOUT * 1000)}
    with amqp_support.private_node(folder, settings) as private:
        yield private


ProjectFactory = Callable[[dict[str, Any]], WorkerProject]


@pytest.fixture
def make_project(
    node: amqp_support.PrivateNode, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ProjectFactory]:
    projects: list[WorkerProject] = []

    def make(options: dict[str, Any]) -> WorkerProject:
        source = TASKS.format(
            broker=node.url(), folder=tmp_path, queue=queue_of(request), options=options
        )
        project = WorkerProject(tmp_path, source)
        projects.append(project)
        return project

    yield make
    for project in projects:
        project.stop_all()


def queue_of(request: pytest.FixtureRequest) -> str:
    return f"long.{request.node.name}"


def runs(folder: Path, what: str) -> list[str]:
    """The pids of the runs that got to ``what`` (start, done)."""
    path = folder / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[2] for line in lines if line.split()[0] == what]


def queues(node: amqp_support.PrivateNode, queue: str) -> dict[str, tuple[int, int]]:
    """``queue`` and its lease queues: name -> (messages ready, unacknowledged)."""
    rows = node.list_queues("name", "messages_ready", "messages_unacknowledged")
    return {
        name: (int(ready), int(unacked))
        for name, ready, unacked in rows
        if name == queue or (name.startswith("celeriac.lease.") and name.endswith(f".{queue}"))
    }


def settled(node: amqp_support.PrivateNode, queue: str) -> Callable[[], bool]:
    """Nothing left of the task anywhere: no message waiting or held in the queue, no copy
    in a lease queue. From then on no run can follow."""
    return lambda: all(counts == (0, 0) for counts in queues(node, queue).values())


def only_a_lease_copy(node: amqp_support.PrivateNode, queue: str) -> Callable[[], bool]:
    """The delivery is acknowledged: only its copy in a lease queue is left."""

    def check() -> bool:
        found = queues(node, queue)
        leases = [counts for name, counts in found.items() if name != queue]
        return found.get(queue) == (0, 0) and leases == [(1, 0)]

    return check


def test_without_hand_over_consumer_timeout_runs_a_long_task_twice(
    node: amqp_support.PrivateNode,
    make_project: ProjectFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The control: with the hand-over turned off, the node's consumer_timeout closes the
    worker's channel mid-task and the task runs again (what the other tests prevent)."""
    project = make_project({**OPTIONS, "consumer_timeout": None})
    tasks = project.load_tasks()
    project.start_worker("-P", "solo")
    result = tasks.long_late.delay(LONG)
    assert result.get(timeout=40) == result.id
    eventually(settled(node, queue_of(request)), "settled", timeout=40, interval=0.2)
    assert len(runs(tmp_path, "start")) == 2
    assert "PRECONDITION_FAILED" in project.log("w1")  # the delivery acknowledgement timeout


def test_long_acks_late_task_runs_once(
    node: amqp_support.PrivateNode,
    make_project: ProjectFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue = queue_of(request)
    project = make_project(OPTIONS)
    tasks = project.load_tasks()
    project.start_worker("-P", "solo")
    result = tasks.long_late.delay(LONG)  # three consumer_timeouts
    assert result.get(timeout=40) == result.id
    eventually(settled(node, queue), "settled", timeout=40, interval=0.2)
    assert len(runs(tmp_path, "start")) == len(runs(tmp_path, "done")) == 1
    assert len(queues(node, queue)) == 2  # the queue and the lease queue the task went through
    log = project.log("w1")
    assert "PRECONDITION_FAILED" not in log and "Lost the connection" not in log


def test_killed_worker_s_handed_over_task_runs_again_elsewhere(
    node: amqp_support.PrivateNode,
    make_project: ProjectFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue = queue_of(request)
    project = make_project(OPTIONS)
    tasks = project.load_tasks()
    first = project.start_worker("-P", "solo", name="w1")
    result = tasks.long_late.delay(LONG)

    eventually(only_a_lease_copy(node, queue), "handed over", timeout=40, interval=0.2)
    project.start_worker("-P", "solo", name="w2")
    project.kill9(first)  # mid-task: the copy expires and goes back to the queue
    assert result.get(timeout=40) == result.id
    eventually(settled(node, queue), "settled", timeout=40, interval=0.2)
    started, done = runs(tmp_path, "start"), runs(tmp_path, "done")
    assert len(started) == 2 and started[0] == str(first.pid)
    assert done == [started[1]]  # finished once, by the second worker


def test_short_acks_late_task_is_not_handed_over(
    node: amqp_support.PrivateNode,
    make_project: ProjectFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue = queue_of(request)
    project = make_project(OPTIONS)
    tasks = project.load_tasks()
    project.start_worker("-P", "solo")
    result = tasks.long_late.delay(CONSUMER_TIMEOUT / 6)
    assert result.get(timeout=20) == result.id
    eventually(settled(node, queue), "settled", timeout=40, interval=0.2)
    assert list(queues(node, queue)) == [queue]  # no lease queue was ever declared
    assert len(runs(tmp_path, "start")) == 1


# The consumer's side of it, without workers: the transport is told consumer_timeout is
# 0.4 s, so a delivery held for 0.2 s is handed over at the next renew.

SENT = Message(
    b"[[2], {}, {}]",
    "application/json",
    "utf-8",
    headers={"id": "task-1", "task": "tasks.long_late"},
    properties={"priority": 3, "expiration": "600000", "correlation_id": "task-1"},
)


@pytest.fixture
def transport(node: amqp_support.PrivateNode) -> Iterator[Transport]:
    options = {"consumer_timeout": 0.4, "lease_timeout": 60, "max_priority": 9}
    transport = create_transport(node.url(), options=options)
    yield transport
    transport.close()


def handed_over(
    transport: Transport, node: amqp_support.PrivateNode, queue: str
) -> tuple[Consumer, Delivery]:
    """A consumer holding ``SENT`` from ``queue``, handed over to its lease queue."""
    assert transport.publish([Outgoing(SENT, routing_key=queue)]) == [1]
    consumer = transport.consumer([queue], owner="t1")
    [delivery] = consumer.fetch(1, timeout=10)
    time.sleep(0.25)  # held for more than half of consumer_timeout
    consumer.renew([delivery])
    eventually(only_a_lease_copy(node, queue), "handed over", timeout=40, interval=0.2)
    return consumer, delivery


def test_acked_leased_delivery_drops_its_copy(
    transport: Transport, node: amqp_support.PrivateNode, request: pytest.FixtureRequest
) -> None:
    queue = queue_of(request)
    consumer, delivery = handed_over(transport, node, queue)
    consumer.ack(delivery)
    eventually(settled(node, queue), "settled", timeout=40, interval=0.2)
    consumer.close()
    assert transport.queue_length(queue) == 0


def test_requeued_leased_delivery_goes_back_at_once_uncounted(
    transport: Transport, node: amqp_support.PrivateNode, request: pytest.FixtureRequest
) -> None:
    queue = queue_of(request)
    consumer, delivery = handed_over(transport, node, queue)
    consumer.reject(delivery, requeue=True)
    [again] = consumer.fetch(1, timeout=10)
    assert (again.message, again.redelivered, again.delivery_count) == (SENT, True, 1)
    consumer.ack(again)
    eventually(
        settled(node, queue), "settled", timeout=40, interval=0.2
    )  # the lease copy is gone too
    consumer.close()


def test_dead_lettered_leased_delivery_drops_its_copy(
    transport: Transport, node: amqp_support.PrivateNode, request: pytest.FixtureRequest
) -> None:
    queue = queue_of(request)
    consumer, delivery = handed_over(transport, node, queue)
    consumer.dead_letter(delivery, "gave up")
    [dead] = transport.dead_letters(queue)
    assert (dead.message, dead.reason) == (SENT, "gave up")
    eventually(settled(node, queue), "settled", timeout=40, interval=0.2)
    consumer.close()


def test_closing_gives_leased_deliveries_back_at_once(
    transport: Transport, node: amqp_support.PrivateNode, request: pytest.FixtureRequest
) -> None:
    """At once, not after lease_timeout (60 s), and not counted as a failed delivery."""
    queue = queue_of(request)
    consumer, _ = handed_over(transport, node, queue)
    consumer.close()
    assert list(queues(node, queue)) == [queue]  # the lease queue is deleted
    other = transport.consumer([queue], owner="t2")
    [again] = other.fetch(1, timeout=10)
    assert (again.message, again.redelivered, again.delivery_count) == (SENT, True, 1)
    other.ack(again)
    other.close()


def test_lease_outlives_a_reconnection() -> None:
    """A cut connection requeues what it held, but a leased delivery is no longer on it: the
    task's ack after the reconnection still drops its copy (on the machine's RabbitMQ)."""
    with amqp_support.vhost() as vhost, amqp_support.TcpProxy() as proxy:
        options = {"consumer_timeout": 0.4, "lease_timeout": 60}
        transport = create_transport(amqp_support.url(vhost, port=proxy.port), options=options)
        try:
            assert transport.publish([Outgoing(SENT, routing_key="q")]) == [1]
            consumer = transport.consumer(["q"], owner="t1")
            [delivery] = consumer.fetch(1, timeout=10)
            time.sleep(0.25)  # held for more than half of consumer_timeout
            consumer.renew([delivery])

            def left() -> dict[str, int]:
                rows = amqp_support.list_queues(vhost, "name", "messages")
                return {name: int(count) for name, count in rows}

            def handed_over() -> bool:
                found = left()
                return found.pop("q") == 0 and list(found.values()) == [1]  # only the copy

            eventually(handed_over, "handed over", timeout=40, interval=0.2)
            before = proxy.accepted
            proxy.cut()
            proxy.restore()
            eventually(lambda: proxy.accepted > before, "reconnected", timeout=40, interval=0.2)
            consumer.ack(delivery)
            eventually(lambda: not any(left().values()), "settled", timeout=40, interval=0.2)
            [lease] = [name for name in left() if name != "q"]
            assert lease.startswith("celeriac.lease.t1.")
            consumer.close()
        finally:
            transport.close()
