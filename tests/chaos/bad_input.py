"""Malformed entries written straight into a broker's queue, among good tasks.

Each bad entry carries a marker (``chaos-bad-<n>``: its task id, or bytes inside it) so its
dead letter can be found again, and the reason its dead letter must give. Message-level kinds
(a wrong body shape, an unregistered task, a content type not accepted, a body that does not
decompress) are the same on every broker; below them each broker has its own way to be
malformed: on Redis, raw ``LPUSH`` of random bytes, JSON that is not kombu's envelope, an
envelope whose body is not base64; on SQLite, raw rows whose body or headers are garbage.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celeriac.protocol.message import Message, TaskMessage
from celeriac.protocol.v2 import encode_task
from celeriac.transports.redis.layout import encode_envelope
from tests.chaos.harness import Ledger, Report, Soak, judge
from tests.support import redis_support

# kind -> (the message, the fragment its dead letter's reason must contain)
MessageKind = Callable[[str], Message]


def _body_shape(marker: str) -> Message:
    good = encode_task(TaskMessage("chaos.work", marker, (5,)))
    return Message(
        json.dumps([[5], {}]).encode(),
        good.content_type,
        good.content_encoding,
        good.headers,
        good.properties,
    )


def _not_accepted(marker: str) -> Message:
    return encode_task(TaskMessage("chaos.work", marker, (5,)), serializer="pickle")


def _bad_compression(marker: str) -> Message:
    good = encode_task(TaskMessage("chaos.work", marker, (5,)))
    headers = {**good.headers, "compression": "application/x-gzip"}
    return Message(good.body, good.content_type, good.content_encoding, headers, good.properties)


def v1_lookalike(marker: str) -> Message:
    """A JSON-object body with the task name in the headers: not protocol v1 (defect 6)."""
    good = encode_task(TaskMessage("chaos.work", marker, (5,)))
    return Message(
        b'{"x": 1}', good.content_type, good.content_encoding, good.headers, good.properties
    )


MESSAGE_KINDS: dict[str, tuple[MessageKind, str]] = {
    "wrong body shape": (_body_shape, "InvalidTaskError"),
    "unregistered name": (lambda m: encode_task(TaskMessage("chaos.nope", m)), "unregistered"),
    "content type not accepted": (_not_accepted, "ContentDisallowed"),
    "body does not decompress": (_bad_compression, "DecodeError"),
}


def good_message(task_id: str) -> Message:
    return encode_task(TaskMessage("chaos.work", task_id, (5,)))


# -- Redis: raw entries of the queue's list --------------------------------------------------


def envelope(message: Message, routing_key: str = "chaos") -> bytes:
    return encode_envelope(message, "", routing_key)[0].encode()


def _redis_random_bytes(marker: str, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, 60)) + marker.encode() + rng.randbytes(20)


def _redis_not_envelope(marker: str, rng: random.Random) -> bytes:
    return json.dumps(rng.choice([[marker, 1], {"marker": marker}, f"just {marker}"])).encode()


def _redis_bad_base64(marker: str, rng: random.Random) -> bytes:
    fields = json.loads(envelope(good_message(marker)))
    fields["body"] = "*not base64*"
    return json.dumps(fields).encode()


RawKind = Callable[[str, random.Random], bytes]
REDIS_KINDS: dict[str, tuple[RawKind, str]] = {
    "random bytes": (_redis_random_bytes, "not a kombu message envelope"),
    "JSON, not an envelope": (_redis_not_envelope, "not a kombu message envelope"),
    "bad base64": (_redis_bad_base64, "not a kombu message envelope"),
    **{
        kind: (lambda m, _r, make=make: envelope(make(m)), reason)
        for kind, (make, reason) in MESSAGE_KINDS.items()
    },
}


def redis_pusher(soak: Soak) -> Callable[[list[tuple[str, Any]]], None]:
    """LPUSH each (marker, raw bytes) to the soak's queue list, in order."""
    transport = soak.tasks.app.transport
    key = transport.keys.queue(soak.tasks.app.conf.task_default_queue)
    address = transport.connector.address

    def push(entries: list[tuple[str, Any]]) -> None:
        conn = redis_support.client(address.db, address.hosts[0][1])
        try:
            pipe = conn.pipeline(transaction=False)
            for _, raw in entries:
                pipe.lpush(key, raw)
            pipe.execute()
        finally:
            conn.close()

    return push


# -- SQLite: raw rows ------------------------------------------------------------------------


def insert_raw_rows(path: Path, queue: str, rows: list[dict[str, Any]]) -> None:
    """Rows in the SQLite broker's table, written as another program might: no checks."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            for parts in rows:
                row = {
                    "queue": queue,
                    "exchange": "",
                    "routing_key": queue,
                    "priority": 0,
                    "available_at": 0.0,
                    "delayed": 0,
                    "body": b"",
                    "content_type": "application/json",
                    "content_encoding": "utf-8",
                    "headers": "{}",
                    "properties": "{}",
                    **parts,
                }
                conn.execute(
                    f"INSERT INTO celeriac_messages ({', '.join(row)}) "
                    f"VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )
    finally:
        conn.close()


def row(message: Message) -> dict[str, Any]:
    return {
        "body": message.body,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": json.dumps(message.headers),
        "properties": json.dumps(message.properties),
    }


def _sqlite_random_bytes(marker: str, rng: random.Random) -> dict[str, Any]:
    parts = row(good_message(marker))
    parts["body"] = b"\xff" + rng.randbytes(rng.randrange(1, 60))
    return parts


def _sqlite_headers_not_json(marker: str, rng: random.Random) -> dict[str, Any]:
    return {**row(good_message(marker)), "headers": f"{{not json {marker}"}


def _sqlite_headers_not_object(marker: str, rng: random.Random) -> dict[str, Any]:
    return {**row(good_message(marker)), "headers": json.dumps([marker])}


RowKind = Callable[[str, random.Random], dict[str, Any]]
SQLITE_KINDS: dict[str, tuple[RowKind, str]] = {
    "random bytes": (_sqlite_random_bytes, "DecodeError"),
    "headers not JSON": (_sqlite_headers_not_json, "not a Celeriac message row"),
    "headers not an object": (_sqlite_headers_not_object, "not a Celeriac message row"),
    **{
        kind: (lambda m, _r, make=make: row(make(m)), reason)
        for kind, (make, reason) in MESSAGE_KINDS.items()
    },
}


def sqlite_inserter(soak: Soak) -> Callable[[list[tuple[str, Any]]], None]:
    transport = soak.tasks.app.transport
    queue = soak.tasks.app.conf.task_default_queue

    def insert(entries: list[tuple[str, Any]]) -> None:
        insert_raw_rows(Path(transport.path), queue, [parts for _, parts in entries])

    return insert


# -- the scenario ----------------------------------------------------------------------------


def bad_input(
    soak: Soak,
    kinds: dict[str, tuple[Callable[..., Any], str]],
    push: Callable[[list[tuple[str, Any]]], None],
    make_good: Callable[[str], Any],
    *,
    bad: int,
    good: int,
    seed: int = 1,
    timeout: float = 120.0,
) -> Report:
    """``bad`` malformed entries (kinds in turn) shuffled among ``good`` tasks, pushed raw;
    a single worker must run every good one, dead-letter every bad one with its reason, and
    never restart."""
    rng = random.Random(seed)
    soak.start_workers(1)
    pid = soak.workers["w0"].pid
    names = sorted(kinds)
    wanted: dict[str, tuple[str, str]] = {}  # marker -> (kind, reason fragment)
    entries: list[tuple[str, Any]] = []
    for n in range(bad):
        kind = names[n % len(names)]
        make, reason = kinds[kind]
        marker = f"chaos-bad-{n}-{rng.randrange(10**9)}"
        wanted[marker] = (kind, reason)
        entries.append((marker, make(marker, rng)))
    ids = [f"chaos-good-{n}-{rng.randrange(10**9)}" for n in range(good)]
    entries += [(tid, make_good(tid)) for tid in ids]
    rng.shuffle(entries)
    began = time.monotonic()
    push(entries)
    transport = soak.tasks.app.transport
    deadline = time.monotonic() + timeout
    letters = []
    while time.monotonic() < deadline:
        letters = transport.dead_letters()
        if len(letters) >= bad and set(ids) <= Ledger.read(soak.runlog).finished():
            break
        time.sleep(0.25)
    report = _judge_bad(soak, ids, wanted, letters, time.monotonic() - began)
    if soak.workers["w0"].pid != pid or soak.workers["w0"].poll() is not None:
        report.crashes += 1
        report.details.append("the worker did not survive the bad input")
    return report


def _judge_bad(
    soak: Soak,
    ids: list[str],
    wanted: dict[str, tuple[str, str]],
    letters: list[Any],
    seconds: float,
) -> Report:
    """``judge`` for the good tasks; then each bad entry's dead letter and its reason."""
    report = judge(soak, "bad input", ids, seconds)
    report.bad = len(wanted)
    found: dict[str, str] = {}
    for letter in letters:
        shown = repr(letter.message)
        marker = next((m for m in wanted if m in shown), None)
        if marker is None:
            report.misfiled += 1
            report.details.append(f"an unexpected dead letter: {letter.reason} {shown:.200}")
        else:
            found[marker] = letter.reason
    for marker, (kind, fragment) in wanted.items():
        reason = found.get(marker)
        if reason is not None and fragment in reason:
            report.dead_lettered += 1
            continue
        report.misfiled += 1
        if reason is None:
            report.details.append(f"{kind} ({marker}) is not in the dead-letter store")
        else:
            report.details.append(f"{kind} ({marker}): reason {reason!r} lacks {fragment!r}")
    return report
