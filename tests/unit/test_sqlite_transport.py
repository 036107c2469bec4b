"""The SQLite broker where it differs from the others: shared by processes, kept on disk.

These tests use real processes and the real clock; the behaviour every transport shares is in
tests/conformance/test_transport_conformance.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from celeriac._time import ManualClock
from celeriac.exceptions import EncodeError, ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.transports.base import Outgoing
from celeriac.transports.sqlite import SQLiteTransport

# Claims and acks until the queue is empty; prints the bodies it acked as a JSON list.
DRAIN = """
import json, sys
from celeriac.transports.sqlite import SQLiteTransport
transport = SQLiteTransport(sys.argv[1])
consumer = transport.consumer(["q"], owner=sys.argv[2])
acked = []
while batch := consumer.fetch(7, timeout=0.5):
    for delivery in batch:
        consumer.ack(delivery)
        acked.append(delivery.message.body.decode())
transport.close()
print(json.dumps(acked))
"""

# Claims up to 5 messages, prints their bodies, then holds the leases until killed.
HOLD = """
import sys
from celeriac.transports.sqlite import SQLiteTransport
transport = SQLiteTransport(sys.argv[1], options={"lease_timeout": 600})
held = transport.consumer(["q"], owner="doomed").fetch(5, timeout=10)
print(" ".join(d.message.body.decode() for d in held), flush=True)
sys.stdin.read()
"""


def message(body: str) -> Message:
    return Message(body.encode(), "text/plain", "utf-8")


def publish(transport: SQLiteTransport, bodies: list[str]) -> None:
    transport.publish([Outgoing(message(b), routing_key="q") for b in bodies])


def python(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", code, *args]
    return subprocess.Popen(command, text=True, stdin=stdin, stdout=subprocess.PIPE)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/broker.sqlite"


@pytest.fixture
def transport(url: str) -> Iterator[SQLiteTransport]:
    transport = SQLiteTransport(url, options={"lease_timeout": 600})
    yield transport
    transport.close()


def test_processes_share_the_queue_and_ack_each_message_once(
    url: str, transport: SQLiteTransport
) -> None:
    sent = [str(i) for i in range(600)]
    publish(transport, sent)
    workers = [python(DRAIN, url, f"worker{i}") for i in range(3)]
    outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    acked = [body for output in outputs for body in json.loads(output)]
    assert sorted(acked, key=int) == sent  # each exactly once: no duplicates, none missing
    assert transport.queue_length("q") == 0
    assert transport.consumer(["q"], owner="check").fetch(1, timeout=0) == []


def test_leases_of_a_killed_process_come_back_before_they_expire(
    url: str, transport: SQLiteTransport
) -> None:
    publish(transport, ["a", "b", "c", "d", "e"])
    holder = python(HOLD, url, stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().split()
        assert sorted(held) == ["a", "b", "c", "d", "e"]
        survivor = transport.consumer(["q"], owner="survivor")
        assert survivor.fetch(5, timeout=0.2) == []  # its owner is alive: leases stand
    finally:
        holder.kill()
        holder.communicate(timeout=10)  # reaped, so its pid no longer exists
    back = survivor.fetch(5, timeout=30)  # leases last 600 s; the pid check is what works
    assert sorted(d.message.body.decode() for d in back) == held
    assert all(d.redelivered and d.delivery_count == 2 for d in back)


def test_missing_directory_is_named_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(ImproperlyConfigured) as raised:
        SQLiteTransport(f"sqlite:///{missing}/broker.sqlite")
    assert str(missing) in str(raised.value)
    assert "does not exist" in str(raised.value)


@pytest.mark.parametrize("bad", ["sqlite://", "sqlite:///:memory:", "sqlite://host/x.db"])
def test_urls_without_a_usable_file_are_refused(bad: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="sqlite:///"):
        SQLiteTransport(bad)


def test_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    transport = SQLiteTransport("sqlite:///relative.sqlite")
    transport.close()
    assert (tmp_path / "relative.sqlite").is_file()


def test_a_file_that_is_not_a_database_is_a_transport_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TransportError, match=str(path)):
        SQLiteTransport(f"sqlite:///{path}")


def test_headers_that_are_not_json_are_refused(transport: SQLiteTransport) -> None:
    bad = Message(b"x", "text/plain", "utf-8", headers={"when": object()})
    with pytest.raises(EncodeError, match="JSON"):
        transport.publish([Outgoing(bad, routing_key="q")])
    assert transport.queue_length("q") == 0


def test_messages_and_dead_letters_survive_reopening(url: str) -> None:
    clock = ManualClock()
    first = SQLiteTransport(url, clock=clock)
    publish(first, ["kept", "dead"])
    consumer = first.consumer(["q"], owner="w1")
    consumer.dead_letter(consumer.fetch(2, timeout=0)[1], "bad")
    first.close()
    second = SQLiteTransport(url, clock=clock)
    try:
        assert [d.message.body for d in second.consumer(["q"], owner="w2").fetch(5, 0)] == [b"kept"]
        assert [(d.message.body, d.reason) for d in second.dead_letters()] == [(b"dead", "bad")]
    finally:
        second.close()


def test_file_is_in_wal_mode(transport: SQLiteTransport, tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "broker.sqlite")) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_broker_file_from_before_give_back_counting_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    from celeriac.transports.sqlite.db import _SCHEMA

    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as conn:  # the tables as an older version made them
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.commit()
    transport = SQLiteTransport(f"sqlite:///{path}", options={"max_deliveries": 1})
    try:
        sent = Message(b"{}", "application/json", "utf-8", {"id": "1"}, {})
        transport.publish([Outgoing(sent, routing_key="q")])
        consumer = transport.consumer(["q"], owner="w1")
        for _ in range(3):  # given back each time: never dead-lettered
            [delivery] = consumer.fetch(1, timeout=0)
            consumer.reject(delivery, requeue=True)
        [delivery] = consumer.fetch(1, timeout=0)
        assert (delivery.redelivered, delivery.delivery_count) == (True, 1)
        consumer.close()
    finally:
        transport.close()


def _gone_pid() -> int:
    """A pid that no process of this machine has any more (a child, reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def _hand_lease_to(path: str, holder: str, pid: int) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE celeriac_messages SET lease_host = ?, lease_pid = ?", (holder, pid))


@pytest.mark.parametrize("other", ["{host}|another-boot-id|pid:[1]", "{host}"])
def test_a_holder_in_another_pid_namespace_keeps_its_lease_until_it_expires(
    tmp_path: Path, other: str
) -> None:
    clock = ManualClock()
    transport = SQLiteTransport(
        f"sqlite:///{tmp_path}/b.sqlite", options={"lease_timeout": 600}, clock=clock
    )
    try:
        publish(transport, ["a"])
        assert len(transport.consumer(["q"], owner="held").fetch(1, timeout=0)) == 1
        # The same hostname, but another container (pid namespace) and kernel, or a holder
        # that only wrote the hostname (as Celeriac did before): its pid means nothing here,
        # so it must not be taken for dead.
        _hand_lease_to(transport.path, other.format(host=transport.hostname), _gone_pid())
        survivor = transport.consumer(["q"], owner="survivor")
        for _ in range(3):  # recovery runs at most every 2 s of the clock
            clock.advance(2.5)
            assert survivor.fetch(1, timeout=0) == []
        clock.advance(600)  # the lease lapses: now it comes back
        [back] = survivor.fetch(1, timeout=0)
        assert back.message.body == b"a" and back.delivery_count == 2
    finally:
        transport.close()


def test_a_dead_holder_with_our_identity_is_released_at_once(tmp_path: Path) -> None:
    clock = ManualClock()
    transport = SQLiteTransport(
        f"sqlite:///{tmp_path}/b.sqlite", options={"lease_timeout": 600}, clock=clock
    )
    try:
        publish(transport, ["a"])
        assert len(transport.consumer(["q"], owner="held").fetch(1, timeout=0)) == 1
        _hand_lease_to(transport.path, transport.holder, _gone_pid())
        [back] = transport.consumer(["q"], owner="survivor").fetch(1, timeout=0)
        assert back.message.body == b"a"  # long before the 600 s lease would expire
    finally:
        transport.close()
