"""Celeriac's own Redis client (``celeriac._redis``) against the machine's Redis (DB 15).

What the broker, the result backend and beat rely on: every reply type of RESP2, replies
larger than one read, error replies as values inside a pipeline, MULTI/EXEC, scripts by SHA,
one connection per thread, and the URL forms and options users configure (ACL user and
password, ``?password=``, ``?db=``, TLS keys, Sentinel options), with those the client does
not support refused rather than ignored. Each test works under a key prefix of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac._redis.client import (
    AuthenticationError,
    ConnectFailed,
    NoScriptError,
    ResponseError,
    pack,
)
from celeriac._redis.connection import RedisConnector, RetryPolicy
from celeriac._redis.url import parse_url
from celeriac.exceptions import BackendError, ImproperlyConfigured
from tests.support import redis_support

DB = 15
URL = f"redis://{redis_support.HOST}:{redis_support.PORT}/{DB}"
NO_RETRY = RetryPolicy(max_retries=0)


def connector(url: str = URL, **options: object) -> RedisConnector:
    return RedisConnector(url, options, what="test", error=BackendError, retry=NO_RETRY)


@pytest.fixture
def redis() -> Iterator[tuple[RedisConnector, str]]:
    redis_support.require_redis()
    prefix = redis_support.unique_prefix()
    made = connector()
    try:
        yield made, prefix
    finally:
        made.close()
        redis_support.delete_prefix(DB, prefix)


def test_pack_is_resp() -> None:
    assert pack(["SET", b"k", 7, 1.5]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n$3\r\n1.5\r\n"


def test_every_reply_type(redis: tuple[RedisConnector, str]) -> None:
    conn, prefix = redis
    key, items = f"{prefix}k", f"{prefix}l"
    replies = conn.execute(
        [
            ("SET", key, b"\x00value\r\n"),  # status
            ("GET", key),  # bulk, binary-safe
            ("GET", f"{prefix}missing"),  # nil bulk
            ("RPUSH", items, "a", "b"),  # integer
            ("LRANGE", items, 0, -1),  # array
            ("BLPOP", f"{prefix}empty", "0.01"),  # nil array after the timeout
        ]
    )
    assert replies == [b"OK", b"\x00value\r\n", None, 2, [b"a", b"b"], None]


def test_a_reply_larger_than_one_read(redis: tuple[RedisConnector, str]) -> None:
    conn, prefix = redis
    big = bytes(range(256)) * 1024  # 256 KiB: several socket reads
    conn.execute([("SET", f"{prefix}big", big)])
    assert conn.execute([("GET", f"{prefix}big")]) == [big]


def test_an_error_reply_is_a_value_inside_a_pipeline(redis: tuple[RedisConnector, str]) -> None:
    conn, prefix = redis
    raw = conn.dedicated()
    try:
        set_reply, error, get_reply = raw.call(
            [("SET", f"{prefix}s", "x"), ("LPUSH", f"{prefix}s", "y"), ("GET", f"{prefix}s")]
        )
    finally:
        raw.disconnect()
    assert (set_reply, get_reply) == (b"OK", b"x")
    assert isinstance(error, ResponseError)
    assert error.code == "WRONGTYPE"
    with pytest.raises(ResponseError, match="WRONGTYPE"):  # execute raises the first one
        conn.execute([("LPUSH", f"{prefix}s", "y")])


def test_a_transaction_returns_the_replies_inside_it(redis: tuple[RedisConnector, str]) -> None:
    conn, prefix = redis
    replies = conn.execute([("INCR", f"{prefix}n"), ("INCRBY", f"{prefix}n", 4)], transaction=True)
    assert replies == [1, 5]


def test_scripts_run_by_sha(redis: tuple[RedisConnector, str]) -> None:
    conn, prefix = redis
    source = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
    assert conn.script(source, [f"{prefix}c"], ["a"]) == [f"{prefix}c".encode(), b"a", 1]
    assert conn.script(source, [f"{prefix}c"], ["b"]) == [f"{prefix}c".encode(), b"b", 2]
    with pytest.raises(NoScriptError):
        conn.execute([("EVALSHA", "0" * 40, 0)])


def test_each_thread_has_a_connection_of_its_own(redis: tuple[RedisConnector, str]) -> None:
    conn, _ = redis
    ids: list[int] = []

    def client_id() -> None:
        ids.append(conn.execute([("CLIENT", "ID")])[0])

    threads = [threading.Thread(target=client_id) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client_id()
    client_id()  # the same thread again: the same connection
    assert len(set(ids[:4])) == 4
    assert ids[3] == ids[4]


def test_the_url_database_and_query_options(redis: tuple[RedisConnector, str]) -> None:
    _, prefix = redis
    by_query = connector(f"redis://{redis_support.HOST}:{redis_support.PORT}/0?db={DB}")
    named = connector(URL + "?client_name=celeriac-test&health_check_interval=25")
    try:
        by_query.execute([("SET", f"{prefix}q", "1")])
        assert by_query.execute([("CLIENT", "INFO")])[0].decode().count(f"db={DB}") == 1
        assert named.execute([("CLIENT", "GETNAME")]) == [b"celeriac-test"]
    finally:
        by_query.close()
        named.close()


def test_a_refused_connection_is_connect_failed() -> None:
    conn = connector(f"redis://{redis_support.HOST}:{redis_support.free_port()}/0")
    try:
        with pytest.raises(ConnectFailed):
            conn.execute([("PING",)])
        with pytest.raises(BackendError, match="Is the Redis server running"):
            conn.run("ping", lambda: conn.execute([("PING",)]))
    finally:
        conn.close()


def test_acl_user_and_password_in_the_url_or_the_query(tmp_path: Path) -> None:
    redis_support.require_redis()
    with redis_support.RedisServer(tmp_path) as server:
        admin = connector(server.url)
        admin.execute([("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all")])
        admin.execute([("ACL", "SETUSER", "default", "off")])
        admin.close()
        where = f"{redis_support.HOST}:{server.port}/0"
        for url in (f"redis://app:s3cret@{where}", f"redis://{where}?username=app&password=s3cret"):
            conn = connector(url)
            try:
                assert conn.execute([("ACL", "WHOAMI")]) == [b"app"]
            finally:
                conn.close()
        wrong = connector(f"redis://app:wrong@{where}")
        try:
            with pytest.raises(AuthenticationError):
                wrong.execute([("PING",)])
            with pytest.raises(BackendError, match="user name and password"):
                wrong.run("ping", lambda: wrong.execute([("PING",)]))
        finally:
            wrong.close()


def test_the_user_part_of_the_url_comes_before_the_query() -> None:
    address = parse_url("redis://u:p@h/1?username=q&password=r&db=3", what="broker")
    assert (address.username, address.password, address.db) == ("u", "p", 3)
    assert address.params == {}


@pytest.mark.parametrize(
    ("url", "options", "refused"),
    [
        (URL + "?max_conections=5", {}, "max_conections"),  # a typo is no silent default
        (URL + "?protocol=3", {}, "RESP2 only"),
        (URL + "?ssl_cert_reqs=required", {}, "no TLS URL"),
        ("redis+socket:///tmp/r.sock?ssl_keyfile=k", {}, "no TLS URL"),
        (URL + "?virtual_host=3", {}, "virtual_host is for redis\\+socket"),
        ("rediss://h:1/0", {"ssl_options": {"cert_reqs": "required"}}, "cert_reqs"),
        (
            "sentinel://h:26379",
            {"master_name": "m", "sentinel_kwargs": {"pasword": "x"}},
            "pasword",
        ),
    ],
)
def test_what_the_client_does_not_support_is_refused(
    url: str, options: dict[str, object], refused: str
) -> None:
    ssl_options = options.pop("ssl_options", None)
    with pytest.raises(ImproperlyConfigured, match=refused):
        RedisConnector(
            url,
            options,
            what="test",
            error=BackendError,
            retry=NO_RETRY,
            ssl_options=ssl_options,  # type: ignore[arg-type]
        )


def test_the_tls_keys_it_knows_make_a_context() -> None:
    import ssl

    conn = RedisConnector(
        "rediss://h:1/0?ssl_cert_reqs=optional",
        {},
        what="test",
        error=BackendError,
        retry=NO_RETRY,
        ssl_options={"ssl_check_hostname": False, "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256"},
    )
    context = conn.settings.tls
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert not context.check_hostname
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-RSA-AES128-GCM-SHA256"]
