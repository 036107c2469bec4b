"""A Redis publish retried after its reply was lost does not push the messages twice.

A loopback proxy between the transport and Redis forwards the publish (MULTI ... EXEC),
lets Redis run it, swallows the reply and drops the connection: the transport retries on a
new connection, and the queue must still hold each message once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports.base import Outgoing
from tests.support import redis_support

pytestmark = pytest.mark.integration


class ReplyDroppingProxy:
    """Forwards TCP to Redis; once armed, the first connection that sends LPUSH loses the
    reply: the proxy lets Redis run it, then closes both sides without passing it on."""

    def __init__(self) -> None:
        self.listener = socket.create_server((redis_support.HOST, 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection((redis_support.HOST, redis_support.PORT))
                self._sockets += [client, server]
                swallow = threading.Event()
                threading.Thread(
                    target=self._to_server, args=(client, server, swallow), daemon=True
                ).start()
                threading.Thread(
                    target=self._to_client, args=(server, client, swallow), daemon=True
                ).start()

    def _to_server(
        self, client: socket.socket, server: socket.socket, swallow: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                doomed = self.armed.is_set() and b"LPUSH" in data
                if doomed:
                    self.armed.clear()
                    swallow.set()  # before Redis can answer
                server.sendall(data)
                if doomed:
                    time.sleep(0.3)  # Redis runs the transaction; its reply goes nowhere
                    self.dropped.set()
                    for sock in (client, server):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    return

    def _to_client(
        self, server: socket.socket, client: socket.socket, swallow: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if not swallow.is_set():
                    client.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy() -> Iterator[ReplyDroppingProxy]:
    redis_support.require_redis()
    proxy = ReplyDroppingProxy()
    yield proxy
    proxy.close()


def message(body: bytes) -> Message:
    return Message(body, "application/json", "utf-8", {"id": body.decode()}, {})


@pytest.mark.parametrize("batch", [1, 3])
def test_a_retried_publish_pushes_each_message_once(proxy: ReplyDroppingProxy, batch: int) -> None:
    db, prefix = redis_support.TRANSPORT_DB, redis_support.unique_prefix()
    url = f"redis://{redis_support.HOST}:{proxy.port}/{db}"
    transport = create_transport(url, options={"global_keyprefix": prefix})
    try:
        transport.publish([Outgoing(message(b"warm-up"), routing_key="q")])  # connected
        proxy.armed.set()
        items = [Outgoing(message(f"m{i}".encode()), routing_key="q") for i in range(batch)]
        assert transport.publish(items) == [1] * batch
        assert proxy.dropped.is_set()  # the reply of the first attempt was lost
        consumer = transport.consumer(["q"], owner="w1")
        deliveries = consumer.fetch(100, timeout=0)
        bodies = sorted(d.message.body for d in deliveries)
        assert bodies == sorted([b"warm-up", *(f"m{i}".encode() for i in range(batch))])
        assert len({d.delivery_tag.partition("/")[2] for d in deliveries}) == len(deliveries)
        consumer.close()
    finally:
        transport.close()
        redis_support.delete_prefix(db, prefix)
