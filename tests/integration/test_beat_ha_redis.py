"""Three real beat processes sharing one Redis: each run sent once, and a standby takes over.

As ``test_beat_ha`` on SQLite, with the broker, the schedule store and the leader lease in
Redis (database 14, under a key prefix of the test's own, deleted after). No worker runs:
the test reads back what the beats sent through Celeriac's Redis transport and checks it
against the runs the schedule store recorded.
"""

from __future__ import annotations

import collections
import os
import signal
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.beat.redis_lease import RedisLease
from celeriac.beat.redis_store import RedisScheduleStore
from celeriac.beat.service import open_store, store_location
from celeriac.protocol.message import Message
from celeriac.transports.redis import RedisTransport
from tests.support import redis_support
from tests.support.polling import eventually

from .conftest import Project
from .test_beat_ha import Beats

pytestmark = pytest.mark.integration

DB = 14
URL = f"redis://{redis_support.HOST}:{redis_support.PORT}/{DB}"

BEATPROJ = """
import os
from datetime import timedelta

from celeriac import Celery

app = Celery("beatproj", broker=os.environ["TEST_BROKER"])
app.conf.broker_transport_options = {"global_keyprefix": os.environ["TEST_PREFIX"]}
app.conf.task_default_queue = os.environ["TEST_QUEUE"]
app.conf.beat_schedule = {
    "fast": {"task": "beatproj.fast", "schedule": timedelta(seconds=0.2)},
    "slow": {"task": "beatproj.slow", "schedule": 1.0, "args": (1, 2)},
}
"""


class Setup:
    """The test's key prefix and queue, and readers of what the beats left in Redis."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.beat_prefix = f"{prefix}celeriac-beat:beatproj:"
        self.queue = f"beat-ha-{uuid.uuid4().hex[:8]}"

    def runs(self) -> dict[str, int]:
        store = RedisScheduleStore(URL, prefix=self.beat_prefix)
        try:
            return {name: state.total_run_count for name, state in store.entries().items()}
        finally:
            store.close()

    def leader_pid(self) -> int | None:
        lease = RedisLease(URL, prefix=self.beat_prefix)
        try:
            state = lease.current()
        finally:
            lease.close()
        if state is None or state.holder is None:  # Redis dropped the key: no live lease
            return None
        return int(state.holder.split(":")[-2])

    def sent_messages(self) -> list[Message]:
        transport = RedisTransport(URL, options={"global_keyprefix": self.prefix})
        consumer = transport.consumer([self.queue], owner="test")
        try:
            messages: list[Message] = []
            while batch := consumer.fetch(500, 0.2):
                messages += [delivery.message for delivery in batch]
            return messages
        finally:
            consumer.close()
            transport.close()


@pytest.fixture
def setup(project: Project) -> Iterator[Setup]:
    redis_support.require_redis()
    made = Setup(redis_support.unique_prefix())
    (project.root / "beatproj.py").write_text(textwrap.dedent(BEATPROJ))
    project.env.update(TEST_BROKER=URL, TEST_PREFIX=made.prefix, TEST_QUEUE=made.queue)
    try:
        yield made
    finally:
        redis_support.delete_prefix(DB, made.prefix)


@pytest.fixture
def beats(project: Project, setup: Setup) -> Iterator[Beats]:
    group = Beats(project)
    try:
        yield group
    finally:
        group.stop_all()


def stepped_down(project: Project, pid: int) -> bool:
    """Whether the beat with ``pid`` logged that it stopped leading."""
    for name in ("beat1", "beat2", "beat3"):
        for line in project.log(name).splitlines():
            if f":{pid}:" in line and "no longer leading" in line:
                return True
    return False


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_three_beats_on_redis_send_every_run_once_across_a_leader_fault(
    setup: Setup, beats: Beats, project: Project, fault: str
) -> None:
    for name in ("beat1", "beat2", "beat3"):
        beats.start(name)
    eventually(lambda: setup.runs().get("fast", 0) >= 8, "the first sends")
    first = setup.leader_pid()
    assert first in beats.procs
    if fault == "killed":
        os.kill(first, signal.SIGKILL)  # no chance to release the lease
        beats.procs[first].wait(timeout=10)
    else:
        os.kill(first, signal.SIGSTOP)  # a stalled leader: it wakes up after being replaced
    at_fault = setup.runs()["fast"]
    fault_at = time.monotonic()
    eventually(lambda: setup.leader_pid() not in (None, first), "a standby to take over")
    assert time.monotonic() - fault_at < 15  # the lease ttl is 2 s: seconds, not minutes
    successor = setup.leader_pid()
    if fault == "paused":
        os.kill(first, signal.SIGCONT)
    eventually(lambda: setup.runs()["fast"] >= at_fault + 10, "sends after the takeover")
    if fault == "paused":
        eventually(lambda: stepped_down(project, first), "the paused leader to step down")
    beats.stop_all()

    messages = setup.sent_messages()
    assert all(m.headers["celery_beat_task"] is True for m in messages)
    by_task = collections.defaultdict(list)
    for message in messages:
        by_task[message.headers["task"]].append(message.headers["id"])
    recorded = setup.runs()
    for entry, task in (("fast", "beatproj.fast"), ("slow", "beatproj.slow")):
        ids = by_task[task]
        # A run is sent twice only if its sender died between publishing and recording the
        # publish, and then with the same task id.
        assert len(set(ids)) == recorded[entry], (entry, len(set(ids)), recorded[entry])
        assert len(ids) - len(set(ids)) <= 1
    senders = [int(m.headers["origin"].split("@")[0].removeprefix("gen")) for m in messages]
    assert senders.count(first) >= 8
    assert successor is not None and senders.count(successor) >= 10
    assert set(senders) <= set(beats.procs)


def test_a_redis_broker_keeps_the_schedule_in_that_redis(tmp_path: Path) -> None:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    app = Celery("shop", broker=f"redis://:secret@127.0.0.1:6379/{DB}", set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    try:
        where = store_location(app)
        assert where == f"redis://127.0.0.1:6379/{DB} (keys {prefix}celeriac-beat:shop:*)"
        assert store_location(app, str(tmp_path / "beat.db")) == str(tmp_path / "beat.db")
        store, lease = open_store(app, lease_ttl=3.0)
        try:
            assert isinstance(store, RedisScheduleStore) and isinstance(lease, RedisLease)
            assert (store.prefix, lease.ttl) == (f"{prefix}celeriac-beat:shop:", 3.0)
        finally:
            store.close()
            lease.close()
        app.conf.broker_transport_options = {"beat_key_prefix": f"{prefix}mine:"}
        store, lease = open_store(app)
        try:
            assert isinstance(store, RedisScheduleStore) and store.prefix == f"{prefix}mine:"
        finally:
            store.close()
            lease.close()
    finally:
        app.close()
        redis_support.delete_prefix(DB, prefix)
