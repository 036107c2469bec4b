"""Reaching Redis by every URL form: unix socket, TLS, Sentinel (private servers per test)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import states
from celeriac.backends import create_backend
from celeriac.protocol.message import Message
from celeriac.transports import create_transport
from celeriac.transports.base import Outgoing
from tests.support import redis_support
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def _roundtrip(url: str, **options: object) -> None:
    """A message through the broker and a result through the backend, both at ``url``."""
    transport = create_transport(url, options=dict(options))
    backend = create_backend(url, options={k: v for k, v in options.items() if k != "ssl"})
    try:
        message = Message(b"[[], {}, {}]", "application/json", "utf-8", {"id": "t1"}, {})
        assert transport.publish([Outgoing(message, routing_key="q")]) == [1]
        consumer = transport.consumer(["q"], owner="w1")
        [delivery] = consumer.fetch(1, timeout=5)
        consumer.ack(delivery)
        assert delivery.message == message
        backend.store("t1", b'{"status": "SUCCESS"}', state=states.SUCCESS, ttl=60)
        assert backend.wait_for(["t1"], lambda _: True, timeout=5) == {
            "t1": b'{"status": "SUCCESS"}'
        }
    finally:
        transport.close()
        backend.close()


def _server(tmp_path: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    args = ["redis-server", "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = _server(tmp_path, "--port", "0", "--unixsocket", str(sock))
    next(server)
    try:
        eventually(sock.exists, "the unix socket", timeout=10)
        _roundtrip(f"redis+socket://{sock}?virtual_host=3")
    finally:
        server.close()


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = redis_support.free_port()
    server = _server(
        tmp_path,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    )
    next(server)
    try:
        eventually(lambda: redis_support.port_open(port), "the TLS port", timeout=10)
        _roundtrip(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}")
        # Celery's broker_use_ssl / redis_backend_use_ssl dicts work too.
        ssl = {"ssl_cert_reqs": "CERT_REQUIRED", "ssl_ca_certs": str(cert)}
        _roundtrip(f"rediss://127.0.0.1:{port}/1", broker_use_ssl=ssl, redis_backend_use_ssl=ssl)
    finally:
        server.close()


def test_sentinel(tmp_path: Path) -> None:
    master_port, sentinel_port = redis_support.free_port(), redis_support.free_port()
    master = _server(tmp_path, "--port", str(master_port), "--bind", "127.0.0.1")
    next(master)
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {master_port} 1\n"
    )
    sentinel = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(lambda: redis_support.port_open(sentinel_port), "the sentinel", timeout=10)
        url = f"sentinel://127.0.0.1:{redis_support.free_port()};sentinel://127.0.0.1:{sentinel_port}/2"
        _roundtrip(url, master_name="main")
    finally:
        sentinel.terminate()
        sentinel.wait(10)
        master.close()
