"""Three real beat processes on one SQLite file: each run sent once, and a standby takes over.

The beats run ``python -m celeriac -A beatproj beat`` as a user would. No worker runs: the
test counts what the beats sent by reading the queue afterwards, and checks it against the
runs the schedule store recorded.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.beat.lease import SQLiteLease
from celeriac.beat.store import SQLiteScheduleStore
from celeriac.protocol.message import Message
from celeriac.transports.sqlite import SQLiteTransport
from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration

BEATPROJ = """
import os
from datetime import timedelta

from celeriac import Celery

app = Celery("beatproj", broker=os.environ["TEST_BROKER"])
app.conf.beat_schedule = {
    "fast": {"task": "beatproj.fast", "schedule": timedelta(seconds=0.2)},
    "slow": {"task": "beatproj.slow", "schedule": 1.0, "args": (1, 2)},
}
"""


class Beats:
    """Beat processes of one project, each in its own session, stopped by pid."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            "beatproj",
            "beat",
            "-l",
            "info",
            "--lease-ttl",
            "2",
        ]
        proc = self.project.start(argv, name, ready=None)
        self.procs[proc.pid] = proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            self.project.stop(proc, timeout=15)


@pytest.fixture
def beats(project: Project) -> Iterator[Beats]:
    (project.root / "beatproj.py").write_text(textwrap.dedent(BEATPROJ))
    group = Beats(project)
    try:
        yield group
    finally:
        group.stop_all()


def runs(db: Path) -> dict[str, int]:
    store = SQLiteScheduleStore(str(db))
    try:
        return {name: state.total_run_count for name, state in store.entries().items()}
    finally:
        store.close()


def leader_pid(db: Path) -> int | None:
    lease = SQLiteLease(str(db))
    try:
        state = lease.current()
    finally:
        lease.close()
    if state is None or state.holder is None or state.expires_at < time.time():
        return None
    return int(state.holder.split(":")[-2])


def sent_messages(db: Path) -> list[Message]:
    transport = SQLiteTransport(f"sqlite:///{db}")
    consumer = transport.consumer(["celery"], owner="test")
    try:
        messages: list[Message] = []
        while batch := consumer.fetch(500, 0.2):
            messages += [delivery.message for delivery in batch]
        return messages
    finally:
        consumer.close()
        transport.close()


def test_three_beats_send_every_run_once_across_a_leader_kill(
    project: Project, beats: Beats
) -> None:
    for name in ("beat1", "beat2", "beat3"):
        beats.start(name)
    eventually(lambda: runs(project.db).get("fast", 0) >= 8, "the first sends")
    first = leader_pid(project.db)
    assert first in beats.procs
    os.kill(first, signal.SIGKILL)  # no chance to release the lease
    beats.procs[first].wait(timeout=10)
    at_kill = runs(project.db)["fast"]
    eventually(lambda: leader_pid(project.db) not in (None, first), "a standby to take over")
    successor = leader_pid(project.db)
    eventually(lambda: runs(project.db)["fast"] >= at_kill + 10, "sends after the takeover")
    beats.stop_all()

    messages = sent_messages(project.db)
    assert all(m.headers["celery_beat_task"] is True for m in messages)
    by_task = collections.defaultdict(list)
    for message in messages:
        by_task[message.headers["task"]].append(message.headers["id"])
    recorded = runs(project.db)
    for entry, task in (("fast", "beatproj.fast"), ("slow", "beatproj.slow")):
        ids = by_task[task]
        # Every recorded run was sent; a run is sent twice only if its sender died between
        # publishing and recording the publish, and then with the same task id.
        assert len(set(ids)) == recorded[entry], (entry, len(set(ids)), recorded[entry])
        assert len(ids) - len(set(ids)) <= 1
    senders = [int(m.headers["origin"].split("@")[0].removeprefix("gen")) for m in messages]
    assert senders.count(first) >= 8
    assert senders.count(successor) >= 10
    assert set(senders) <= set(beats.procs)
