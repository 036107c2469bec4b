"""The Redis broker's pure parts, checked against kombu 5.7 itself: envelope, keys, URLs."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest

from celeriac._redis.connection import RetryPolicy, pack, parse_url
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.transports.redis.layout import (
    BrokerOptions,
    Keys,
    decode_envelope,
    encode_envelope,
    topic_pattern,
)

pytestmark = pytest.mark.compat

kombu = pytest.importorskip("kombu")


def _kombu_envelope(body: bytes, priority: int, exchange: str, routing_key: str) -> dict[str, Any]:
    """What kombu's virtual transport (Redis's base) puts in a list for the same message."""
    channel = kombu.Connection("memory://").default_channel
    message = channel.prepare_message(
        body,
        priority=priority,
        content_type="application/json",
        content_encoding="utf-8",
        headers={"id": "t1", "task": "tasks.add"},
        properties={"correlation_id": "t1", "reply_to": "r", "delivery_mode": 2},
    )
    channel._inplace_augment_message(message, exchange, routing_key)
    return dict(json.loads(json.dumps(message)))


def test_envelope_is_kombus() -> None:
    message = Message(
        b"[[2, 2], {}, {}]",
        "application/json",
        "utf-8",
        {"id": "t1", "task": "tasks.add"},
        {"correlation_id": "t1", "reply_to": "r", "delivery_mode": 2, "priority": 3},
    )
    raw, tag = encode_envelope(message, "", "celery")
    ours = json.loads(raw)
    theirs = _kombu_envelope(message.body, 3, "", "celery")
    assert ours["properties"].pop("delivery_tag") == tag
    theirs["properties"].pop("delivery_tag")
    assert ours == theirs
    assert list(ours) == list(theirs)  # same key order, as kombu writes it
    assert list(ours["properties"]) == list(theirs["properties"])


def test_kombu_envelope_decodes_to_the_message() -> None:
    theirs = _kombu_envelope(b"[[1], {}, {}]", 9, "ex", "rk")
    theirs["headers"]["redelivered"] = True  # as kombu's restore marks it
    decoded = decode_envelope(json.dumps(theirs))
    assert decoded.message.body == b"[[1], {}, {}]"
    assert decoded.message.properties == {
        "correlation_id": "t1",
        "reply_to": "r",
        "delivery_mode": 2,
        "priority": 9,
    }
    assert (decoded.exchange, decoded.routing_key, decoded.redelivered) == ("ex", "rk", True)
    assert decoded.tag == theirs["properties"]["delivery_tag"]


@pytest.mark.parametrize("raw", ["not json", "[]", '{"body": "x"}', '{"properties": 3}'])
def test_decode_refuses_what_is_not_an_envelope(raw: str) -> None:
    with pytest.raises(ValueError, match="not a kombu message envelope"):
        decode_envelope(raw)


@pytest.mark.parametrize("key", ["celery", "news.*", "#", "a.#.b", "x-y.*.z$", "*.orders"])
def test_topic_pattern_is_kombus(key: str) -> None:
    from kombu.transport.virtual.exchange import TopicExchange

    assert topic_pattern(key) == TopicExchange(None).key_to_pattern(key)


@pytest.mark.parametrize("steps", [[0, 3, 6, 9], [0, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
def test_priority_steps_are_kombus(steps: list[int]) -> None:
    from kombu.transport.redis import Channel

    options = BrokerOptions.parse({"priority_steps": steps})
    channel = Channel.__new__(Channel)
    channel.priority_steps = steps
    assert [options.step_of(p) for p in range(10)] == [channel.priority(p) for p in range(10)]


def test_keys_follow_kombu_and_the_prefix() -> None:
    keys = Keys(BrokerOptions.parse({"global_keyprefix": "app:"}), db=9)
    assert keys.queue("celery") == "app:celery"
    assert keys.queue("celery", 6) == "app:celery\x06\x166"
    assert keys.binding("celery") == "app:_kombu.binding.celery"
    assert keys.unacked == "app:unacked" and keys.unacked_index == "app:unacked_index"
    assert keys.topic("celery.pidbox", "") == "app:/9.celery.pidbox"
    assert keys.topic("celeryev", "worker.heartbeat") == "app:/9.celeryev/worker.heartbeat"
    plain = Keys(BrokerOptions.parse({"fanout_prefix": False, "fanout_patterns": False}), db=0)
    assert plain.topic("celeryev", "worker.heartbeat") == "celeryev"


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"priority_steps": [3, 6]}, "priority_steps"),
        ({"priority_steps": "abc"}, "priority_steps"),
        ({"queue_order_strategy": "random"}, "queue_order_strategy"),
        ({"visibility_timeout": -1}, "visibility_timeout"),
        ({"max_deliveries": 0}, "max_deliveries"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=name):
        BrokerOptions.parse(options)


def test_lease_never_outlives_the_visibility_timeout() -> None:
    assert BrokerOptions.parse({}).lease_timeout == 30
    assert BrokerOptions.parse({"visibility_timeout": 5}).lease_timeout == 5
    assert BrokerOptions.parse({"lease_timeout": 2}).lease_timeout == 2


def test_url_forms() -> None:
    plain = parse_url("redis://user:p%40ss@example.com:6380/4", what="broker")
    assert (plain.hosts, plain.db, plain.username, plain.password) == (
        (("example.com", 6380),),
        4,
        "user",
        "p@ss",
    )
    assert plain.shown == "redis://user:**@example.com:6380/4"
    assert parse_url("redis://", what="broker").hosts == (("localhost", 6379),)
    tls = parse_url("rediss://:pw@h:1/0?ssl_cert_reqs=required", what="broker")
    assert tls.tls and tls.params["ssl_cert_reqs"] == "required"
    sock = parse_url("redis+socket:///run/redis.sock?virtual_host=2", what="broker")
    assert (sock.socket_path, sock.db) == ("/run/redis.sock", 2)
    sentinel = parse_url("sentinel://:pw@s1:26379/1;sentinel://:pw@s2:26380", what="broker")
    assert sentinel.sentinel and sentinel.hosts == (("s1", 26379), ("s2", 26380))
    assert "pw" not in sentinel.shown


@pytest.mark.parametrize(
    "url",
    ["http://h/0", "redis://h/x", "redis://a;redis://b", "redis+socket://", "redis://h:99999/0"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        parse_url(url, what="broker")


def test_ssl_requirement_names() -> None:
    from celeriac._redis.url import tls_settings

    address = parse_url("rediss://h/0?ssl_cert_reqs=none", what="broker")
    assert tls_settings(address, None)["ssl_cert_reqs"] == ssl.CERT_NONE
    assert tls_settings(address, {"ssl_cert_reqs": ssl.CERT_OPTIONAL})["ssl_cert_reqs"] == (
        ssl.CERT_OPTIONAL
    )
    with pytest.raises(ImproperlyConfigured, match="ssl_cert_reqs"):
        tls_settings(parse_url("rediss://h/0?ssl_cert_reqs=maybe", what="broker"), None)


def test_pack_is_resp() -> None:
    assert pack(["LPUSH", b"q\x06\x16", 3, 1.5]) == (
        b"*4\r\n$5\r\nLPUSH\r\n$3\r\nq\x06\x16\r\n$1\r\n3\r\n$3\r\n1.5\r\n"
    )


def test_retry_policy_is_linear_and_capped() -> None:
    policy = RetryPolicy(max_retries=5, interval_start=0.1, interval_step=0.3, interval_max=0.5)
    assert [policy.pause(n) for n in range(4)] == pytest.approx([0.1, 0.4, 0.5, 0.5])


def test_sentinel_needs_a_master_name() -> None:
    from celeriac.backends import create_backend
    from celeriac.transports import create_transport

    with pytest.raises(ImproperlyConfigured, match="master_name"):
        create_transport("sentinel://:pw@h1:26379;sentinel://:pw@h2:26379/0")
    with pytest.raises(ImproperlyConfigured, match="master_name"):
        create_backend("sentinel://h1:26379/0")


def test_redis_urls_pick_the_redis_implementations() -> None:
    from celeriac.backends import create_backend
    from celeriac.backends.redis import RedisBackend
    from celeriac.transports import create_transport
    from celeriac.transports.redis import RedisTransport

    for url in ("redis://h/1", "rediss://h/1?ssl_cert_reqs=none", "redis+socket:///tmp/r.sock"):
        transport, backend = create_transport(url), create_backend(url)  # connect lazily
        try:
            assert isinstance(transport, RedisTransport)
            assert isinstance(backend, RedisBackend)
        finally:
            transport.close()
            backend.close()
