"""Redis queue entries that are no message: set aside as valid JSON, logged once, rate-limited.

Each test has a key prefix of its own on database ``TRANSPORT_DB`` and deletes its keys after.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac._time import ManualClock
from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports._dead_letters import RejectLog
from celeriac.transports.base import Outgoing
from celeriac.transports.redis import RedisTransport
from celeriac.transports.redis.dead_letters import WATCH_INTERVAL
from celeriac.transports.redis.layout import encode_envelope
from tests.support import redis_support

pytestmark = pytest.mark.integration

DB = redis_support.TRANSPORT_DB
RANDOM = b"\xff\xfe\x00 random bytes \x80\x81"


@pytest.fixture
def prefix() -> Iterator[str]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    yield prefix
    redis_support.delete_prefix(DB, prefix)


@pytest.fixture
def raw() -> Iterator[Any]:
    conn = redis_support.client(DB)
    yield conn
    conn.close()


def _transport(prefix: str, clock: ManualClock) -> RedisTransport:
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{DB}"
    transport = create_transport(url, options={"global_keyprefix": prefix}, clock=clock)
    assert isinstance(transport, RedisTransport)
    return transport


def _bad_base64_envelope() -> str:
    envelope = json.loads(encode_envelope(Message(b"x", "application/json", "utf-8"), "", "q")[0])
    envelope["body"] = "!!! not base64 !!!"
    return json.dumps(envelope)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "celeriac.dead_letters"
    ]


def test_entries_that_are_no_message_are_set_aside_logged_and_kept_as_json(
    prefix: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    transport = _transport(prefix, clock)
    try:
        consumer = transport.consumer(["q"], owner="w")
        transport.publish([Outgoing(Message(b"good", "application/json", "utf-8"), "", "q")])
        for entry in (RANDOM, b'{"not": "an envelope"}', _bad_base64_envelope().encode()):
            raw.lpush(f"{prefix}q", entry)
        with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
            taken = consumer.fetch(10, timeout=1)
            assert [d.message.body for d in taken] == [b"good"]  # the worker goes on
            consumer.ack(taken[0])
            # The bad base64 is found in Python and logged at once; the two others were set
            # aside inside Redis, and are logged by the next watch of the fetching consumer.
            assert len(_warnings(caplog)) == 1 and "base64" in _warnings(caplog)[0].lower()
            clock.advance(WATCH_INTERVAL + 1)
            consumer.fetch(1, timeout=0)
            logged = _warnings(caplog)
            assert len(logged) == 3, logged
            assert sum("JSON with properties.delivery_tag" in line for line in logged) == 2
            letters = transport.dead_letters("q")  # reading logs nothing again
            assert len(_warnings(caplog)) == 3
        consumer.close()
        entries = raw.lrange(f"{prefix}_celeriac.dead_letters", 0, -1)
        records = [json.loads(entry.decode("utf-8")) for entry in entries]  # strict UTF-8 JSON
        assert [r["envelope_encoding"] for r in records] == ["base64", "utf-8", "utf-8"]
        assert base64.b64decode(records[0]["envelope"]) == RANDOM
        assert [(d.is_message, d.message.body) for d in letters[:2]] == [
            (False, RANDOM),
            (False, b'{"not": "an envelope"}'),
        ]
        assert not letters[2].is_message and "base64" in letters[2].reason.lower()
        with pytest.raises(ValueError, match="not a message"):
            transport.requeue_dead_letter(letters[0].id)
    finally:
        transport.close()


def test_reject_log_is_rate_limited_and_counts_what_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    log = RejectLog(burst=3, window=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="celeriac.dead_letters"):
        for i in range(5):
            log.note("q", f"reason {i}")
        assert len(_warnings(caplog)) == 3  # one line per letter, up to the burst
        clock.advance(61)
        log.note("q", "reason 5")
    lines = _warnings(caplog)
    assert len(lines) == 5
    assert "2 more message(s)" in lines[3] and "reason 5" in lines[4]
