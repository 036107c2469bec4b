"""RabbitMQ for the tests: the machine's broker, a vhost of each test's (or module's) own.

``require_rabbitmq()`` skips a test when no broker answers at 127.0.0.1:5672 or
``rabbitmqctl`` is missing, except in CI (``CI=true``), where that is a failure. Vhosts are
made and deleted with ``rabbitmqctl``, which starts an Erlang VM per call (about a second),
so they are made in batches (``take_vhost``) and deleted in batches (``drop_vhost`` queues a
name; the queue is emptied when it grows, when a module asks (``flush_vhosts``) and at exit),
one process at a time on the machine (a file lock).
Names are ``celeriac-test-<pid>-<n>``; at the first batch, vhosts left by test processes that
no longer exist (killed runs) are deleted too.

Worker processes on a vhost are started with tests/support/workers.py (``WorkerProject``).
``TcpProxy`` stands between clients and RabbitMQ so a test can cut the network (or add TLS).
``private_node(folder, settings)`` runs a RabbitMQ node of the test's own (free loopback
ports, its data under ``folder``, ``settings`` in its rabbitmq.conf) for broker settings the
machine's node must keep, such as a short consumer_timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

HOST = "127.0.0.1"
PORT = 5672
_PREFIX = "celeriac-test-"
_BATCH = 8
_LOCK_FILE = Path(tempfile.gettempdir()) / "celeriac-test-vhosts.lock"


def rabbitmq_reachable(host: str = HOST, port: int = PORT, timeout: float = 5.0) -> bool:
    """Whether the server answers (a loaded machine may take a while: wait up to ``timeout``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(1) == b"\x01"  # a method frame: connection.start
    except OSError:
        return False


def require_rabbitmq() -> None:
    """Skip (locally) or fail (in CI) unless RabbitMQ, rabbitmqctl and py-amqp are there."""
    problem = None
    try:
        import amqp  # noqa: F401
    except ImportError:
        problem = 'the amqp client is not installed (pip install "celeriac[amqp]")'
    if problem is None and shutil.which("rabbitmqctl") is None:
        problem = "rabbitmqctl is not on PATH (needed to make test vhosts)"
    if problem is None and not rabbitmq_reachable():
        problem = f"no RabbitMQ answers at {HOST}:{PORT}"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"RabbitMQ is required in CI: {problem}")
    pytest.skip(problem)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl``; on timeout its whole process group is killed (it forks an
    Erlang VM through ``su``) and ``RuntimeError`` raised."""
    proc = subprocess.Popen(
        ["rabbitmqctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"rabbitmqctl {args[0]} did not finish in {timeout} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err or out}")
    return out


@contextlib.contextmanager
def _one_at_a_time() -> Iterator[None]:
    """Vhost changes one process at a time on this machine: RabbitMQ 3.10 was seen to hang
    (message stores that never stop) when two test processes deleted vhosts at once."""
    with open(_LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _binaries(names: list[str]) -> str:
    return "[" + ", ".join(f'<<"{name}">>' for name in names) + "]"


class _Vhosts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[str] = []
        self._dropped: list[str] = []
        self._made = 0
        self._swept = False

    def take(self) -> str:
        with self._lock:
            if not self._free:
                names = [f"{_PREFIX}{os.getpid()}-{self._made + i}" for i in range(_BATCH)]
                self._made += _BATCH
                with _one_at_a_time():
                    stale = [] if self._swept else _stale_vhosts()
                    self._swept = True
                    rabbitmqctl("eval", _delete(stale) + _add(names))
                self._free.extend(names)
            return self._free.pop()

    def drop(self, name: str) -> None:
        with self._lock:
            self._dropped.append(name)
            full = len(self._dropped) >= 2 * _BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            names, self._dropped = self._dropped, []
        if names:
            with _one_at_a_time():
                rabbitmqctl("eval", _delete(names) + "ok.")

    def at_exit(self) -> None:
        with self._lock:
            self._dropped.extend(self._free)
            self._free = []
        with contextlib.suppress(Exception):
            self.flush()


def _delete(names: list[str]) -> str:
    return f'lists:foreach(fun(V) -> rabbit_vhost:delete(V, <<"tests">>) end, {_binaries(names)}), '


def _add(names: list[str]) -> str:
    return (
        f'lists:foreach(fun(V) -> rabbit_vhost:add(V, <<"tests">>), '
        f'rabbit_auth_backend_internal:set_permissions(<<"guest">>, V, <<".*">>, <<".*">>, '
        f'<<".*">>, <<"tests">>) end, {_binaries(names)}).'
    )


def _stale_vhosts() -> list[str]:
    listed = rabbitmqctl("list_vhosts", "--silent", "name")
    stale = []
    for name in listed.split():
        found = re.fullmatch(re.escape(_PREFIX) + r"(\d+)-\d+", name)
        if found and not _alive(int(found.group(1))):
            stale.append(name)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_vhosts = _Vhosts()
atexit.register(_vhosts.at_exit)


def take_vhost() -> str:
    """A new, empty vhost the guest user may use."""
    require_rabbitmq()
    return _vhosts.take()


def drop_vhost(name: str) -> None:
    """Delete ``name`` (soon: deletions are batched)."""
    _vhosts.drop(name)


def flush_vhosts() -> None:
    _vhosts.flush()


@contextlib.contextmanager
def vhost() -> Iterator[str]:
    name = take_vhost()
    try:
        yield name
    finally:
        drop_vhost(name)


def url(vhost: str, *, port: int = PORT, scheme: str = "amqp") -> str:
    return f"{scheme}://guest:guest@{HOST}:{port}/{quote(vhost, safe='')}"


def list_queues(vhost: str, *fields: str) -> list[list[str]]:
    """``rabbitmqctl list_queues`` rows (tab-separated fields) of ``vhost``."""
    out = rabbitmqctl("list_queues", "-p", vhost, "--silent", "--no-table-headers", *fields)
    return [line.split("\t") for line in out.splitlines() if line.strip()]


class TcpProxy:
    """A TCP proxy on a free loopback port in front of RabbitMQ, that a test cuts and restores.

    ``cut()`` aborts every proxied connection and refuses new ones (the port is closed) until
    ``restore()``. With ``tls`` (a server-side ``ssl.SSLContext``) clients speak TLS to the
    proxy, which speaks plain AMQP to RabbitMQ: an ``amqps://`` endpoint for tests. Runs an
    asyncio loop in a thread of its own.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()
        self._run(self._finish())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def cut(self) -> None:
        self._run(self._cut())

    def restore(self) -> None:
        self._run(self._listen())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, HOST, self.port, ssl=self.tls, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _finish(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(HOST, PORT)
            self._writers |= {writer, upstream}
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (certificate, key) files."""
    cert, key = folder / "cert.pem", folder / "key.pem"
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
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


# -- a private RabbitMQ node, for settings the machine's broker must keep ------------------

_SERVER_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin", "/opt/rabbitmq/sbin")


def _server_scripts() -> Path | None:
    """The folder of the real ``rabbitmq-server`` and ``rabbitmqctl`` scripts (Debian's
    /usr/sbin ones are a wrapper that switches to the rabbitmq user and its data)."""
    candidates = [Path(folder) for folder in _SERVER_DIRS]
    found = shutil.which("rabbitmq-server")
    if found is not None:
        candidates.append(Path(os.path.realpath(found)).parent)
    for folder in candidates:
        server = folder / "rabbitmq-server"
        if (
            server.is_file()
            and (folder / "rabbitmqctl").is_file()
            and "rabbitmq-script-wrapper" not in server.read_text(errors="replace")
        ):
            return folder
    return None


def _free_ports(count: int) -> list[int]:
    """``count`` ports free on the loopback interface, below 55000 (RabbitMQ's CLI tools
    listen 10000 above a node's distribution port)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(30000, 55000)
        if port in ports or port - 10000 in ports or port + 10000 in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        ports.append(port)
    return ports


class PrivateNode:
    """A RabbitMQ node of the test's own: its data, config, ports and node name."""

    def __init__(self, folder: Path, scripts: Path, settings: dict[str, str]) -> None:
        self.folder = folder
        self.scripts = scripts
        self.port, dist_port = _free_ports(2)
        self.name = f"celeriac-test-{os.getpid()}-{self.port}@localhost"
        folder.mkdir(parents=True, exist_ok=True)
        conf = {
            "listeners.tcp.default": f"{HOST}:{self.port}",
            "loopback_users": "none",
            **settings,
        }
        (folder / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        # How often channels check consumer_timeout (every 60 s by default).
        (folder / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 500}]}].\n")
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq-env.conf").write_text("")  # not the machine's node name and paths
        self.env = {
            **os.environ,
            "HOME": str(folder),  # the Erlang cookie the node makes, and rabbitmqctl reads
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(folder / "plugins-expand"),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, vhost: str = "/") -> str:
        return url(vhost, port=self.port)

    def start(self, timeout: float = 60) -> None:
        with open(self.folder / "server.log", "wb") as log:
            self._proc = subprocess.Popen(
                [str(self.scripts / "rabbitmq-server")],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not rabbitmq_reachable(HOST, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (self.folder / "server.log").read_text(errors="replace")
                raise RuntimeError(f"the private RabbitMQ node did not start:\n{log_text}")
            time.sleep(0.2)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl`` against this node."""
        result = subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def list_queues(self, *fields: str, vhost: str = "/") -> list[list[str]]:
        out = self.ctl("list_queues", "-p", vhost, "--silent", "--no-table-headers", *fields)
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Stop the node (``rabbitmqctl stop``), then kill whatever of it is left."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the Erlang VM and its helpers
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._proc = None


@contextlib.contextmanager
def private_node(folder: Path, settings: dict[str, str] | None = None) -> Iterator[PrivateNode]:
    """A RabbitMQ node of its own on free loopback ports, with ``settings`` added to its
    rabbitmq.conf; stopped on exit. Skips when RabbitMQ's scripts or py-amqp are missing, or
    the node does not start, except in CI (``CI=true``), where that is a failure."""
    problem = None
    try:
        import amqp  # noqa: F401
    except ImportError:
        problem = 'the amqp client is not installed (pip install "celeriac[amqp]")'
    scripts = _server_scripts()
    if problem is None and scripts is None:
        problem = "RabbitMQ's rabbitmq-server and rabbitmqctl scripts are not installed"
    node = None
    if problem is None:
        assert scripts is not None
        node = PrivateNode(folder, scripts, settings or {})
        try:
            node.start()
        except RuntimeError as exc:
            problem = str(exc)
    if problem is not None or node is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a private RabbitMQ node is required in CI: {problem}")
        pytest.skip(problem or "no private RabbitMQ node")
    try:
        yield node
    finally:
        node.stop()
