"""TLS checks the server's name by default: rediss:// against redis-servers this test starts
with TLS (certificates from a CA made here), and amqps:// through a TLS proxy of the test's
own that terminates TLS in front of the machine's RabbitMQ (a TLS RabbitMQ node would need
its own config and restart)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac._amqp.connection import tls_options
from celeriac.backends import create_backend
from celeriac.exceptions import BackendError, TransportError
from celeriac.routing import Queue
from celeriac.transports import create_transport
from tests.support import amqp_support, pki_support
from tests.support.redis_support import HOST, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(name="pki", scope="module")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = pki_support.CertificateAuthority(root)
    right = ca.server("right", ["127.0.0.1", "localhost"])
    wrong = ca.server("wrong", ["broker.other.example"])
    return {
        "root": root,
        "ca": ca.cert,
        "right": right.cert,
        "right_key": right.key,
        "wrong": wrong.cert,
        "wrong_key": wrong.key,
    }


class TLSRedis:
    """A private redis-server speaking only TLS on a free loopback port."""

    def __init__(self, directory: Path, cert: Path, key: Path, ca: Path) -> None:
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is required in CI")
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"redis-{self.port}.log"
        args = [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--bind",
            HOST,
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(self.log),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server with TLS did not start: {self.log.read_text()}")
            time.sleep(0.02)

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
            return True
        return False

    def url(self, query: str) -> str:
        return f"rediss://{HOST}:{self.port}/0?{query}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(name="redis_servers", scope="module")
def redis_servers_fixture(pki: dict[str, Path]) -> Iterator[dict[str, TLSRedis]]:
    root = pki["root"]
    servers: dict[str, TLSRedis] = {}
    try:
        for name in ("right", "wrong"):
            servers[name] = TLSRedis(root / name, pki[name], pki[f"{name}_key"], pki["ca"])
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _round_trip(url: str) -> bytes | None:
    backend = create_backend(url, options={"max_retries": 0})
    try:
        backend.store("tls-probe", b"ok", state="SUCCESS", ttl=30)
        return backend.fetch("tls-probe")
    finally:
        backend.close()


def test_rediss_refuses_a_certificate_for_another_name(
    pki: dict[str, Path], redis_servers: dict[str, TLSRedis]
) -> None:
    url = redis_servers["wrong"].url(f"ssl_cert_reqs=required&ssl_ca_certs={pki['ca']}")
    with pytest.raises(BackendError) as refused:
        _round_trip(url)
    message = str(refused.value)
    assert "127.0.0.1" in message and "ssl_check_hostname" in message
    assert "mismatch" in message.lower() or "match" in message.lower()


def test_rediss_accepts_the_right_name_and_the_switch_turns_the_check_off(
    pki: dict[str, Path], redis_servers: dict[str, TLSRedis]
) -> None:
    query = f"ssl_cert_reqs=required&ssl_ca_certs={pki['ca']}"
    assert _round_trip(redis_servers["right"].url(query)) == b"ok"
    unchecked = redis_servers["wrong"].url(query + "&ssl_check_hostname=false")
    assert _round_trip(unchecked) == b"ok"


def test_the_redis_broker_checks_the_name_too(
    pki: dict[str, Path], redis_servers: dict[str, TLSRedis]
) -> None:
    for name, works in (("right", True), ("wrong", False)):
        app = Celery("tls", broker=redis_servers[name].url("ssl_cert_reqs=required"))
        app.conf.broker_use_ssl = {"ssl_ca_certs": str(pki["ca"])}
        app.conf.broker_transport_options = {"max_retries": 0}
        try:
            if works:
                assert app.transport.purge("tls-probe-queue") == 0
            else:
                with pytest.raises(TransportError, match="ssl_check_hostname"):
                    app.transport.purge("tls-probe-queue")
        finally:
            app.close()


def _tls_server(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize(
    ("server", "extra", "accepted"),
    [("wrong", {}, False), ("right", {}, True), ("wrong", {"ssl_check_hostname": False}, True)],
)
def test_amqps_checks_the_name(
    pki: dict[str, Path], server: str, extra: dict[str, object], accepted: bool
) -> None:
    """RabbitMQ behind a TLS proxy presenting the certificate of ``server``."""
    amqp_support.require_rabbitmq()
    context = _tls_server(pki[server], pki[f"{server}_key"])
    with amqp_support.vhost() as vhost, amqp_support.TcpProxy(tls=context) as proxy:
        url = amqp_support.url(vhost, port=proxy.port, scheme="amqps")
        ssl_options = {"ca_certs": str(pki["ca"]), **extra}
        transport = create_transport(url, options={"broker_use_ssl": ssl_options})
        try:
            if accepted:
                transport.declare(Queue("tls-probe"))
                assert transport.queue_length("tls-probe") == 0
            else:
                with pytest.raises(TransportError, match="TLS certificate was refused"):
                    transport.queue_length("tls-probe")
        finally:
            transport.close()


def test_amqp_tls_options_name_the_host_unless_switched_off() -> None:
    assert tls_options({}, "rabbit.example") == {"server_hostname": "rabbit.example"}
    given = {"ca_certs": "/ca.pem", "server_hostname": "alias.example"}
    assert tls_options(given, "10.0.0.5")["server_hostname"] == "alias.example"
    assert "server_hostname" not in tls_options({"ssl_check_hostname": False}, "h")
    assert "server_hostname" not in tls_options({"cert_reqs": ssl.CERT_NONE}, "h")
    assert "ssl_check_hostname" not in tls_options({"ssl_check_hostname": True}, "h")
