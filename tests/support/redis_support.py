"""Redis for the tests: the machine's server, key prefixes of their own, private servers.

``require_redis()`` skips a test when no Redis answers at 127.0.0.1:6379, except in CI
(``CI=true``), where a missing Redis is a failure. Each test works under a key prefix of its
own (``unique_prefix``) and deletes its keys after (``delete_prefix``). ``RedisServer`` starts a
private ``redis-server`` on a free loopback port, for tests that restart or kill it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
PORT = 6379
TRANSPORT_DB = 11
BACKEND_DB = 12
INTEROP_DB = 13


def redis_reachable(host: str = HOST, port: int = PORT, timeout: float = 5.0) -> bool:
    """Whether the server answers (a loaded machine may take a while: wait up to ``timeout``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_open(port: int, host: str = HOST) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def require_redis() -> None:
    """Skip (locally) or fail (in CI) unless Redis and the redis client are there."""
    problem = None
    try:
        import redis  # noqa: F401
    except ImportError:
        problem = 'the redis client is not installed (pip install "celeriac[redis]")'
    if problem is None and not redis_reachable():
        problem = f"no Redis server answers at {HOST}:{PORT}"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required in CI: {problem}")
    pytest.skip(problem)


def client(db: int, port: int = PORT) -> Any:
    import redis

    return redis.Redis(host=HOST, port=port, db=db, protocol=2)


def unique_prefix(seed: Path | None = None) -> str:
    """A key prefix no other test uses (stable for one ``seed``, e.g. a test's tmp_path)."""
    token = hashlib.sha1(str(seed).encode()).hexdigest()[:12] if seed else uuid.uuid4().hex[:12]
    return f"t-{token}:"


def delete_prefix(db: int, prefix: str, port: int = PORT) -> None:
    conn = client(db, port)
    try:
        keys = list(conn.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            conn.delete(*keys[start : start + 500])
    finally:
        conn.close()


def shift_time(db: int, prefix: str, seconds: float) -> None:
    """Make Redis act as if ``seconds`` passed for the keys under ``prefix``: shorten their TTLs.

    Redis expires keys on its own clock, which a test's ManualClock does not move.
    """
    conn = client(db)
    try:
        for key in conn.scan_iter(match=f"{prefix}*", count=1000):
            ttl = conn.pttl(key)
            if ttl >= 0:
                left = ttl - int(seconds * 1000)
                if left > 0:
                    conn.pexpire(key, left)
                else:
                    conn.delete(key)
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on a free loopback port, in a directory of the test's."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is required in CI")
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not redis_reachable(HOST, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
