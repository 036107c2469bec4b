"""rpc:// replies are decoded only as result_serializer: a reply in another content type
(a pickle sent to a json client) is refused, never decoded."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator

import amqp  # type: ignore[import-untyped]
import pytest

from celeriac.backends import create_backend
from celeriac.backends.rpc import RpcBackend
from celeriac.exceptions import TimeoutError
from tests.support import amqp_support

pytestmark = pytest.mark.integration


@pytest.fixture(name="client")
def client_fixture() -> Iterator[RpcBackend]:
    with amqp_support.vhost() as vhost:
        backend = create_backend("rpc://", options={"broker_url": amqp_support.url(vhost)})
        assert isinstance(backend, RpcBackend)
        try:
            yield backend
        finally:
            backend.close()


def _send(client: RpcBackend, vhost: str, task_id: str, body: bytes, content_type: str) -> None:
    connection = amqp.Connection(f"{amqp_support.HOST}:{amqp_support.PORT}", virtual_host=vhost)
    connection.connect()
    try:
        message = amqp.Message(body, content_type=content_type, correlation_id=task_id)
        connection.channel().basic_publish(message, exchange="", routing_key=client.reply_to)
    finally:
        connection.close()


def test_a_reply_in_another_content_type_is_refused(
    client: RpcBackend, caplog: pytest.LogCaptureFixture
) -> None:
    vhost = client._connector.addresses[0].virtual_host
    meta = {"status": "SUCCESS", "result": 1, "task_id": "t1"}
    with caplog.at_level(logging.ERROR, logger="celeriac.backends.rpc"):
        _send(client, vhost, "t1", pickle.dumps(meta), "application/x-python-serialize")
        _send(
            client, vhost, "t2", json.dumps({**meta, "task_id": "t2"}).encode(), "application/json"
        )
        found = client.wait_for(["t2"], lambda payload: True, timeout=10)
        assert json.loads(found["t2"])["result"] == 1
        with pytest.raises(TimeoutError):
            client.wait_for(["t1"], lambda payload: True, timeout=0.3)
    assert "application/x-python-serialize" in caplog.text and "result_serializer" in caplog.text
