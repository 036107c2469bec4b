"""Connections to RabbitMQ: URLs and settings, errors that say what is wrong, TLS, the pool,
failover, heartbeats, and recovery when the network between Celeriac and RabbitMQ is cut."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from celeriac._amqp.connection import Connector
from celeriac.exceptions import ImproperlyConfigured, TransportError
from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports.base import Outgoing
from tests.support import amqp_support
from tests.support.workers import WorkerProject

pytestmark = pytest.mark.integration


def message(body: bytes = b"[]") -> Message:
    return Message(body, "application/json", "utf-8", {}, {})


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((amqp_support.HOST, 0))
        return int(probe.getsockname()[1])


# -- URLs and settings (no broker needed) ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "vhost", "user", "tls"),
    [
        ("amqp://", "localhost:5672", "/", "guest", False),
        ("amqp://h", "h:5672", "/", "guest", False),
        ("amqp://h//", "h:5672", "/", "guest", False),
        ("pyamqp://u:p@h:1234/v", "h:1234", "v", "u", False),
        ("amqp://u:p%40ss@h/my%2Fvhost", "h:5672", "my/vhost", "u", False),
        ("amqps://u:p@h/v", "h:5671", "v", "u", True),
    ],
)
def test_urls_read_as_kombu_reads_them(
    url: str, host: str, vhost: str, user: str, tls: bool
) -> None:
    [address] = Connector(url).addresses
    assert (address.host, address.virtual_host, address.userid, address.tls) == (
        host,
        vhost,
        user,
        tls,
    )


def test_settings_come_from_the_url_and_the_options() -> None:
    connector = Connector(
        "amqp://h/v?heartbeat=7;amqp://other/v",
        {"broker_connection_timeout": 2, "broker_pool_limit": 0, "confirm_publish": False},
    )
    assert [a.host for a in connector.addresses] == ["h:5672", "other:5672"]
    assert (connector.heartbeat, connector.connect_timeout) == (7.0, 2.0)
    assert (connector.pool_limit, connector.confirm_publish) == (None, False)
    assert Connector("amqp://h", {"broker_heartbeat": 0}).heartbeat == 0.0


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("amqp://h/v?hearbeat=3", {}, "hearbeat"),
        ("amqp://h/v", {"broker_use_ssl": "yes"}, "broker_use_ssl"),
        ("amqp://h/v", {"broker_pool_limit": -1}, "broker_pool_limit"),
        ("amqp://h:notaport/v", {}, "not a valid AMQP URL"),
    ],
)
def test_bad_settings_are_named(url: str, options: dict[str, object], says: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=says):
        Connector(url, options)


# -- errors from a real broker --------------------------------------------------------------


def test_a_wrong_password_says_so_without_showing_it(vhost: str) -> None:
    url = amqp_support.url(vhost).replace("guest:guest", "guest:s3cret")
    transport = create_transport(url)
    try:
        with pytest.raises(ImproperlyConfigured, match="refused access") as raised:
            transport.publish([Outgoing(message(), routing_key="q")])
        assert "s3cret" not in str(raised.value)
    finally:
        transport.close()


def test_an_unknown_vhost_says_so() -> None:
    transport = create_transport(amqp_support.url("celeriac-no-such-vhost"))
    try:
        with pytest.raises(ImproperlyConfigured, match="vhost"):
            transport.queue_length("q")
    finally:
        transport.close()


def test_nothing_listening_is_a_transport_error() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    transport = create_transport(url, options={"interval_start": 0, "interval_step": 0})
    try:
        with pytest.raises(TransportError, match="is RabbitMQ running"):
            transport.queue_length("q")
    finally:
        transport.close()


def test_failover_addresses_are_tried_in_turn(vhost: str) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{closed_port()}/{vhost}"
    transport = create_transport(f"{dead};{amqp_support.url(vhost)}")
    try:
        assert transport.publish([Outgoing(message(), routing_key="failover")]) == [1]
        assert transport.purge("failover") == 1
    finally:
        transport.close()


def test_the_pool_limits_connections(vhost: str) -> None:
    transport = create_transport(amqp_support.url(vhost), options={"broker_pool_limit": 2})
    errors: list[BaseException] = []

    def publish_many() -> None:
        try:
            for _ in range(20):
                transport.publish([Outgoing(message(), routing_key="pooled")])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=publish_many) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert transport.queue_length("pooled") == 120
        rows = amqp_support.rabbitmqctl(
            "list_connections", "vhost", "--silent", "--no-table-headers"
        )
        assert rows.split().count(vhost) == 2  # six threads shared two connections
    finally:
        transport.purge("pooled")
        transport.close()


# -- TLS ------------------------------------------------------------------------------------


def test_amqps_through_tls(vhost: str, tmp_path: Path) -> None:
    cert, key = amqp_support.make_certificate(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    with amqp_support.TcpProxy(tls=server) as proxy:
        url = amqp_support.url(vhost, port=proxy.port, scheme="amqps")
        options = {"broker_use_ssl": {"ca_certs": str(cert), "server_hostname": "localhost"}}
        transport = create_transport(url, options=options)
        consumer = transport.consumer(["secure"], owner="w1")
        try:
            transport.publish([Outgoing(message(b"secret"), routing_key="secure")])
            [delivery] = consumer.fetch(1, timeout=5)  # read by the consumer's I/O thread
            assert delivery.message.body == b"secret"
            consumer.ack(delivery)
        finally:
            consumer.close()
            transport.close()
        untrusting = create_transport(url, options={"broker_use_ssl": True})
        try:
            with pytest.raises(TransportError, match="TLS"):
                untrusting.queue_length("secure")
        finally:
            untrusting.close()


# -- heartbeats and network cuts, with real workers ------------------------------------------

TASKS = """
import time
from celeriac import Celery

app = Celery("tasks", broker="{broker}", backend="sqlite:///{results}")
app.conf.broker_transport_options = {{
    "broker_heartbeat": {heartbeat}, "interval_start": 0.1, "interval_step": 0.2,
    "interval_max": 0.5,
}}


@app.task
def nap(seconds):
    time.sleep(seconds)
    return seconds
"""


def test_a_busy_worker_keeps_heartbeating(vhost: str, tmp_path: Path) -> None:
    source = TASKS.format(
        broker=amqp_support.url(vhost), results=tmp_path / "r.sqlite", heartbeat=1
    )
    project = WorkerProject(tmp_path, source)
    try:
        tasks = project.load_tasks()
        project.start_worker("-P", "solo")
        # The worker's only thread is busy for 4 heartbeat intervals: its I/O thread answers.
        assert tasks.nap.delay(4).get(timeout=20) == 4
        rows = amqp_support.rabbitmqctl(
            "list_connections",
            "vhost",
            "timeout",
            "client_properties",
            "--silent",
            "--no-table-headers",
        )
        consumers = [row for row in rows.splitlines() if vhost in row and "consumer w1@" in row]
        assert len(consumers) == 1 and "\t1\t" in consumers[0]  # heartbeat negotiated: 1 s
        assert "Lost the connection" not in project.log("w1")
    finally:
        project.stop_all()


def test_workers_and_producers_come_back_after_a_network_cut(vhost: str, tmp_path: Path) -> None:
    with amqp_support.TcpProxy() as proxy:
        broker = amqp_support.url(vhost, port=proxy.port)
        source = TASKS.format(broker=broker, results=tmp_path / "r.sqlite", heartbeat=10)
        project = WorkerProject(tmp_path, source)
        try:
            tasks = project.load_tasks()
            project.start_worker("-c", "2")
            retry = {"max_retries": None, "interval_start": 0.1, "interval_step": 0.1}
            results = [tasks.nap.apply_async((0.05,), retry_policy=retry) for _ in range(20)]
            proxy.cut()  # workers and producer lose their connections mid-run
            during: list[object] = []
            sender = threading.Thread(
                target=lambda: during.extend(
                    tasks.nap.apply_async((0.01,), retry_policy=retry) for _ in range(5)
                )
            )
            sender.start()  # publishing waits, retrying, until the broker is back
            time.sleep(1.5)
            proxy.restore()
            sender.join(30)
            results.extend(during)  # type: ignore[arg-type]
            assert len(results) == 25
            assert all(r.get(timeout=30) in (0.05, 0.01) for r in results)
            project.wait_for_log("w1", "Reconnected to RabbitMQ")
        finally:
            project.stop_all()
