"""Property-based fuzzing of everything that parses what a broker hands a worker.

Whatever bytes a sender (or an attacker, or a bug) puts in a queue, the parsers may only fail
with their documented errors, which the worker turns into a dead letter:

- ``protocol.v2.decode_task``: ``ContentDisallowed``, ``DecodeError``, ``InvalidTaskError``;
- Redis ``decode_envelope`` (kombu's JSON envelope): ``ValueError``, and what it returns has
  the types ``Message`` promises (bytes body, str content type and encoding, dict headers);
- SQLite: a raw row in ``celeriac_messages`` is either delivered as such a ``Message`` or
  dead-lettered by the consumer itself; ``fetch`` never raises;
- AMQP ``from_amqp`` and the delivery bookkeeping read from headers: never raise.

Any other exception would escape the worker's consumer loop and stop the worker.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celeriac.exceptions import ContentDisallowed, DecodeError, InvalidTaskError
from celeriac.protocol.message import Message, TaskMessage
from celeriac.protocol.v2 import PROTOCOL_HEADERS, decode_task, encode_task
from celeriac.transports.redis.layout import decode_envelope, encode_envelope

pytestmark = pytest.mark.chaos

DOCUMENTED = (ContentDisallowed, DecodeError, InvalidTaskError)
ACCEPT = ("json", "msgpack", "yaml")  # never pickle: unpickling random bytes runs code
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# -- strategies ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# What msgpack or YAML can add to JSON's types.
any_values = st.one_of(json_values, st.binary(max_size=20), st.datetimes(), st.dates())
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/x-msgpack",
            "application/x-yaml",
            "application/x-python-serialize",
            "text/plain",
            "",
        ]
    ),
    st.text(max_size=20),
    json_values,
)
content_encodings = st.one_of(
    st.sampled_from(["utf-8", "binary", "latin-1", "utf-16", "no-such-codec", ""]), json_values
)
compressions = st.one_of(
    st.none(),
    st.sampled_from(["application/x-gzip", "zlib", "bzip2", "xz", "brotli"]),
    json_values,
)
header_names = st.sampled_from(sorted(PROTOCOL_HEADERS)) | st.text(max_size=10)
headers = st.dictionaries(header_names, any_values, max_size=8)
properties = st.dictionaries(
    st.sampled_from(["correlation_id", "reply_to", "delivery_mode", "priority", "expiration"])
    | st.text(max_size=8),
    any_values,
    max_size=5,
)


def _body(value: Any, content_type: Any) -> bytes:
    if content_type == "application/x-msgpack":
        import msgpack

        try:
            return bytes(msgpack.packb(value, use_bin_type=True, datetime=True))
        except (TypeError, ValueError):
            return b"\xc1"
    if content_type == "application/x-yaml":
        import yaml

        return yaml.safe_dump(value).encode()
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError):
        return b"{"


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages from pure noise to a valid task with one part swapped for noise."""
    content_type = draw(content_types)
    shape = draw(st.sampled_from(["noise", "value", "v2", "v1", "mutant"]))
    message_headers = draw(headers)
    if shape == "noise":
        body = draw(st.binary(max_size=200))
    elif shape == "value":
        body = _body(draw(any_values), content_type)
    elif shape == "v2":
        parts = [draw(any_values), draw(any_values), draw(any_values)]
        body = _body(parts, content_type)
    elif shape == "v1":
        fields = draw(
            st.dictionaries(header_names | st.sampled_from(["args", "kwargs"]), any_values)
        )
        body = _body(fields, content_type)
    else:
        valid = encode_task(TaskMessage("tasks.add", "id-1", (1, 2), {"z": 3}))
        message_headers = {**valid.headers, **message_headers}
        body, content_type = valid.body, valid.content_type
        if draw(st.booleans()):
            body = _body([draw(any_values), {}, {"callbacks": draw(any_values)}], content_type)
    compression = draw(compressions)
    if compression is not None:
        message_headers["compression"] = compression
    return Message(
        body=body,
        content_type=content_type,
        content_encoding=draw(content_encodings),
        headers=message_headers,
        properties=draw(properties),
    )


def _decode_or_documented(message: Message) -> TaskMessage | None:
    try:
        task = decode_task(message, accept=ACCEPT)
    except DOCUMENTED:
        return None
    assert isinstance(task.task, str) and isinstance(task.id, str)
    assert isinstance(task.args, tuple) and isinstance(task.kwargs, dict)
    return task


# -- the protocol decoder --------------------------------------------------------------------


@FUZZ
@given(messages())
@example(Message(b"[[], {}, {}]", ["application/json"], "utf-8", {"task": "t", "id": "i"}))
@example(Message(b"[[], {}, {}]", "application/json", "utf-8", {"compression": [1]}))
@example(Message(b"[[], {}, {}]", "application/json", "utf-8", {"compression": {"a": 1}}))
@example(Message(b"x", "application/json", ["utf-8"], {}))
@example(Message(b"[" * 100_000, "application/json", "utf-8", {}))
def test_decode_task_raises_only_documented_errors(message: Message) -> None:
    _decode_or_documented(message)


@FUZZ
@given(st.dictionaries(header_names, any_values, max_size=6), properties)
def test_valid_body_with_noisy_headers(extra: dict[str, Any], props: dict[str, Any]) -> None:
    valid = encode_task(TaskMessage("tasks.add", "id-2", (1,), {}))
    message = Message(
        valid.body, valid.content_type, valid.content_encoding, {**valid.headers, **extra}, props
    )
    _decode_or_documented(message)


# -- Redis: kombu's JSON envelope ------------------------------------------------------------

envelope_fields = st.fixed_dictionaries(
    {},
    optional={
        "body": st.one_of(
            st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()), json_values
        ),
        "content-encoding": content_encodings,
        "content-type": content_types,
        "headers": st.one_of(st.dictionaries(header_names, json_values, max_size=8), json_values),
        "properties": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "body_encoding": st.sampled_from(["base64", "utf-8"]) | json_values,
                    "delivery_tag": json_values,
                    "delivery_info": st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {}, optional={"exchange": json_values, "routing_key": json_values}
                        ),
                    ),
                    "priority": json_values,
                },
            ),
            json_values,
        ),
    },
)


@st.composite
def raw_envelopes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "mutant"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "envelope":
        return json.dumps(draw(envelope_fields)).encode()
    good, _ = encode_envelope(encode_task(TaskMessage("tasks.add", "id-3", (1, 2))), "", "celery")
    envelope = json.loads(good)
    envelope.update(draw(envelope_fields))
    return json.dumps(envelope).encode()


@FUZZ
@given(raw_envelopes())
@example(b'{"properties": {}, "body": 100000000000000}')
@example(b'{"properties": {}, "body": -1}')
@example(b'{"properties": {}, "content-type": ["application/json"], "body": "[[], {}, {}]"}')
@example(b'{"properties": {}, "headers": [["task", "x"]], "body": "[[], {}, {}]"}')
def test_redis_envelope_then_task_raise_only_documented_errors(raw: bytes) -> None:
    try:
        envelope = decode_envelope(raw)
    except ValueError:
        return
    message = envelope.message
    assert isinstance(message.body, bytes)
    assert isinstance(message.content_type, str) and isinstance(message.content_encoding, str)
    assert isinstance(message.headers, dict) and isinstance(message.properties, dict)
    assert isinstance(envelope.tag, str) and isinstance(envelope.routing_key, str)
    _decode_or_documented(message)


# -- SQLite: raw rows ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from celeriac.transports.sqlite import SQLiteTransport

    path = tmp_path_factory.mktemp("fuzz") / "broker.sqlite"
    transport = SQLiteTransport(f"sqlite:///{path}")
    consumer = transport.consumer(["fuzz"], owner="fuzzer")
    try:
        yield path, transport, consumer
    finally:
        consumer.close()
        transport.close()


sqlite_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    json_values.map(json.dumps),
)


def insert_raw_row(path: Path, queue: str, parts: dict[str, Any]) -> None:
    """A row in the SQLite broker's table, written as another program might: no checks."""
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
    with sqlite3.connect(path) as conn:
        names = ", ".join(row)
        conn.execute(
            f"INSERT INTO celeriac_messages ({names}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    conn.close()


@settings(FUZZ, max_examples=60)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "body": sqlite_values.filter(lambda v: v is not None),
            "content_type": content_types.map(lambda v: v if isinstance(v, str) else json.dumps(v)),
            "content_encoding": st.text(max_size=10),
            "headers": sqlite_values.filter(lambda v: v is not None),
            "properties": sqlite_values.filter(lambda v: v is not None),
        },
    )
)
@example({"headers": "not json"})
@example({"headers": "[1, 2]"})
@example({"properties": "5"})
@example({"body": "text, not a blob"})
def test_sqlite_raw_rows_are_delivered_or_dead_lettered(
    sqlite_broker: Any, parts: dict[str, Any]
) -> None:
    path, transport, consumer = sqlite_broker
    before = len(transport.dead_letters("fuzz"))
    insert_raw_row(path, "fuzz", parts)
    deliveries = consumer.fetch(10, 0.0)
    if deliveries:
        [delivery] = deliveries
        message = delivery.message
        assert isinstance(message.body, bytes)
        assert isinstance(message.content_type, str) and isinstance(message.content_encoding, str)
        assert isinstance(message.headers, dict) and isinstance(message.properties, dict)
        _decode_or_documented(message)
        consumer.ack(delivery)
    else:
        [letter] = transport.dead_letters("fuzz")[before:]
        assert letter.reason
    assert transport.queue_length("fuzz") == 0


# -- AMQP: py-amqp messages ------------------------------------------------------------------

amqp_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.datetimes(min_value=dt.datetime(1971, 1, 1)),
)
bookkeeping_names = st.sampled_from(
    [
        "x-celeriac-deliveries",
        "x-celeriac-not-before",
        "x-celeriac-queue",
        "x-celeriac-exchange",
        "x-celeriac-routing-key",
        "x-celeriac-properties",
        "x-celeriac-expiration",
        "x-celeriac-reason",
        "x-celeriac-dead-lettered-at",
        "x-delivery-count",
        "x-death",
    ]
)
amqp_headers = st.dictionaries(
    bookkeeping_names | header_names,
    st.one_of(
        amqp_values,
        st.lists(amqp_values, max_size=3),
        st.dictionaries(st.text(max_size=5), amqp_values, max_size=3),
    ),
    max_size=8,
)


@FUZZ
@given(
    st.binary(max_size=100),
    amqp_headers,
    st.fixed_dictionaries(
        {},
        optional={
            "content_type": st.text(max_size=20),
            "content_encoding": st.text(max_size=10),
            "correlation_id": st.text(max_size=10),
            "priority": st.integers(0, 255),
            "delivery_mode": st.integers(1, 2),
        },
    ),
)
def test_amqp_messages_parse_without_escaping_errors(
    body: bytes, headers: dict[str, Any], props: dict[str, Any]
) -> None:
    amqp = pytest.importorskip("amqp")
    from celeriac.transports.amqp.copies import delivery_failures
    from celeriac.transports.amqp.topology import from_amqp

    raw = amqp.Message(body, application_headers=headers, **props)
    message, book = from_amqp(raw)
    assert isinstance(message.body, bytes)
    assert isinstance(message.content_type, str) and isinstance(message.content_encoding, str)
    assert isinstance(message.headers, dict) and isinstance(message.properties, dict)
    for redelivered in (False, True):
        assert delivery_failures(book, redelivered) >= 0
    _decode_or_documented(message)
