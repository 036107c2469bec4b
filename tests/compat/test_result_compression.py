"""result_compression, Celery 5.7 and Celeriac side by side: the stored format is Celery's
(``\\0celery-compressed\\0<mime type>\\0<body>``), so each reads what the other compressed on
one Redis, and a Celeriac rpc:// result compressed by kombu's header reaches a Celery client.
Celeriac's own stores (SQLite, memory) keep the same compressed format."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery as CeleryApp

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.compression import COMPRESSED_RESULT_MAGIC
from tests.support import amqp_support, redis_support

pytestmark = [pytest.mark.compat]

VALUE = "celeriac " * 600  # 5,400 characters that compress well


@pytest.fixture
def redis_pair() -> Iterator[tuple[CeleryApp, Celery, str]]:
    """A Celery and a Celeriac app on one Redis result store, Celery's compressing with gzip
    and Celeriac's with bzip2; and the key prefix."""
    redis_support.require_redis()
    db = redis_support.BACKEND_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    prefix = redis_support.unique_prefix()
    options = {"global_keyprefix": prefix}
    celery = CeleryApp("c", broker="memory://", backend=url)
    celery.conf.update(result_compression="gzip", result_backend_transport_options=options)
    celeriac = Celery("r", broker="memory://", backend=url)
    celeriac.conf.update(result_compression="bzip2", result_backend_transport_options=options)
    try:
        yield celery, celeriac, prefix
    finally:
        celeriac.close()
        celery.close()
        redis_support.delete_prefix(db, prefix)


def _stored(prefix: str, task_id: str) -> bytes:
    conn = redis_support.client(redis_support.BACKEND_DB)
    try:
        raw = conn.get(f"{prefix}celery-task-meta-{task_id}")
        assert isinstance(raw, bytes)
        return raw
    finally:
        conn.close()


def test_each_reads_what_the_other_compressed_on_redis(
    redis_pair: tuple[CeleryApp, Celery, str],
) -> None:
    celery, celeriac, prefix = redis_pair
    by_celery, by_celeriac = str(uuid.uuid4()), str(uuid.uuid4())
    celery.backend.store_result(by_celery, VALUE, "SUCCESS")
    celeriac.results.store(by_celeriac, "SUCCESS", VALUE)
    theirs, ours = _stored(prefix, by_celery), _stored(prefix, by_celeriac)
    assert theirs.startswith(COMPRESSED_RESULT_MAGIC + b"application/x-gzip\x00")
    assert ours.startswith(COMPRESSED_RESULT_MAGIC + b"application/x-bz2\x00")
    assert len(ours) < len(VALUE) / 5 and len(theirs) < len(VALUE) / 5
    assert celeriac.AsyncResult(by_celery).get(timeout=5) == VALUE
    assert celery.AsyncResult(by_celeriac).get(timeout=5) == VALUE
    # A reader with no compression configured reads both too, as Celery's does.
    plain = Celery("p", broker="memory://", backend=str(celeriac.result_backend_url))
    plain.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    try:
        assert plain.AsyncResult(by_celery).get(timeout=5) == VALUE
        assert plain.AsyncResult(by_celeriac).get(timeout=5) == VALUE
    finally:
        plain.close()


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_celeriac_stores_compress_too(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}" if backend == "sqlite" else "cache+memory://"
    app = Celery("r", broker="memory://", backend=url, result_compression="zlib")
    try:
        task_id = str(uuid.uuid4())
        app.results.store(task_id, "SUCCESS", VALUE)
        stored = app.results.backend.fetch(task_id)
        assert stored is not None
        assert stored.startswith(COMPRESSED_RESULT_MAGIC + b"application/x-gzip\x00")
        assert len(stored) < len(VALUE) / 5
        assert app.AsyncResult(task_id).get(timeout=5) == VALUE
    finally:
        app.close()


def test_an_unknown_method_is_refused() -> None:
    app = Celery("r", broker="memory://", backend="cache+memory://", result_compression="snappy")
    try:
        with pytest.raises(ImproperlyConfigured, match="result_compression = 'snappy'"):
            app.results.store(str(uuid.uuid4()), "SUCCESS", 1)
    finally:
        app.close()


def test_a_compressed_rpc_result_reaches_a_celery_client() -> None:
    amqp_support.require_rabbitmq()
    with amqp_support.vhost() as vhost:
        celery = CeleryApp("c", broker=amqp_support.url(vhost), backend="rpc://")
        celeriac = Celery("r", broker=amqp_support.url(vhost), backend="rpc://")
        celeriac.conf.result_compression = "gzip"
        try:
            reply_to: Any = celery.backend.oid
            with celery.connection_for_write() as connection:
                celery.backend.binding(connection.default_channel).declare()
            task_id = str(uuid.uuid4())
            celeriac.results.store(task_id, "SUCCESS", VALUE, reply_to=reply_to)
            assert celery.AsyncResult(task_id).get(timeout=10) == VALUE
            # and a Celeriac client reads its own compressed rpc result
            own = str(uuid.uuid4())
            celeriac.results.store(own, "SUCCESS", VALUE, reply_to=celeriac.backend.reply_to)
            assert celeriac.AsyncResult(own).get(timeout=10) == VALUE
        finally:
            consumer = celery.backend.result_consumer
            if consumer._consumer is not None:
                consumer.stop()
            celery.close()
            celeriac.close()
