"""A small Redis client: RESP2 over TCP, TLS or a unix socket, with Sentinel master discovery.

Celeriac speaks to Redis itself rather than through redis-py: measured with
``bench/redis_client.py`` (results/redis-client-2026-12-07.md), a process that imported
redis-py 8 and sent one PING holds 35 MB against this client's 19 MB, and redis-py spends
53-66 µs of CPU per command (34-55 µs with hiredis) where this client spends 15-24 µs. The
broker, the result backend and beat need only a fraction of redis-py: send packed commands,
read replies, wait on a socket.

``Connection`` is one socket, used by one thread at a time; it connects lazily (asking
``locate`` where to, so a Sentinel-managed master is looked up again after every reconnect),
authenticates and selects the database, and reads replies with a buffered RESP2 parser. Error
replies come back as ``ResponseError`` values (so every reply of a pipeline can be read);
socket failures raise ``ConnectionError`` after closing the socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ssl costs every process megabytes: imported only when TLS is used
    import ssl

__all__ = [
    "AuthenticationError",
    "CertificateError",
    "ConnectFailed",
    "ConnectSettings",
    "Connection",
    "ConnectionError",
    "NoScriptError",
    "RedisError",
    "ResponseError",
    "pack",
    "sentinel_locator",
]

_CHUNK = 65536


class RedisError(Exception):
    """Anything that went wrong talking to Redis."""


class ConnectionError(RedisError):
    """Redis could not be reached, or the connection broke (including timeouts)."""


class CertificateError(RedisError):
    """The server's TLS certificate was refused (unknown CA, or it names another host)."""


class ConnectFailed(ConnectionError):
    """No connection could be opened (refused, unreachable, connect timeout)."""


class ResponseError(RedisError):
    """An error reply; ``code`` is its first word (ERR, NOSCRIPT, READONLY, WRONGPASS...)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class NoScriptError(ResponseError):
    """EVALSHA of a script the server does not have."""


class AuthenticationError(ResponseError):
    """The server refused the credentials, or the user may not run a command."""


def _error(text: str) -> ResponseError:
    code = text.split(" ", 1)[0]
    if code == "NOSCRIPT":
        return NoScriptError(text)
    if code in ("WRONGPASS", "NOAUTH", "NOPERM") or text.startswith("ERR invalid password"):
        return AuthenticationError(text)
    return ResponseError(text)


def pack(args: Sequence[bytes | str | int | float]) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def _wrap_tls(context: ssl.SSLContext, sock: socket.socket, host: str, where: str) -> socket.socket:
    """``sock`` in TLS; a refused certificate is a ``CertificateError`` (no use retrying)."""
    import ssl

    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        reason = str(exc.verify_message or exc).rstrip(".")
        raise CertificateError(f"TLS to {where}: {reason}") from exc


@dataclass
class ConnectSettings:
    """How to open and prepare one connection (the address comes from a locator)."""

    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    connect_timeout: float | None = 5.0
    socket_timeout: float | None = 30.0
    keepalive: bool = True
    tls: ssl.SSLContext | None = None

    def commands(self) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            user = (self.username,) if self.username else ()
            commands.append(("AUTH", *user, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        return commands


# Where to connect: ("tcp", host, port) or ("unix", path, 0).
Address = tuple[str, str, int]


class Connection:
    """One connection to Redis (module docstring). Not thread-safe: one user at a time."""

    def __init__(self, settings: ConnectSettings, locate: Callable[[], Address]) -> None:
        self.settings = settings
        self._locate = locate
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._pos = 0
        self.address: Address | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        if self._sock is not None:
            return
        settings = self.settings
        kind, host, port = self.address = self._locate()
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(settings.connect_timeout)
                sock.connect(host)
            else:
                sock = socket.create_connection((host, port), timeout=settings.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if settings.keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if settings.tls is not None:
                    sock = _wrap_tls(settings.tls, sock, host, self.where())
            sock.settimeout(settings.socket_timeout)
        except OSError as exc:
            raise ConnectFailed(f"Error connecting to {self.where()}: {exc}") from exc
        self._sock = sock
        self._buffer.clear()
        self._pos = 0
        commands = settings.commands()
        if commands:
            for reply in self.call(commands):
                if isinstance(reply, ResponseError):
                    self.disconnect()
                    raise reply

    def where(self) -> str:
        if self.address is None:
            return "?"
        kind, host, port = self.address
        return host if kind == "unix" else f"{host}:{port}"

    def disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._buffer.clear()
        self._pos = 0

    def send(self, data: bytes) -> None:
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.disconnect()
            raise ConnectionError(f"Error writing to {self.where()}: {exc}") from exc

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; their replies (errors as ResponseError values)."""
        self.send(b"".join(pack(command) for command in commands))
        return [self.read() for _ in commands]

    def can_read(self, timeout: float | None) -> bool:
        """Whether a reply is waiting (or arrives within ``timeout`` seconds)."""
        if self._pos < len(self._buffer):
            return True
        sock = self._sock
        if sock is None:
            return False
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted but not read yet
        if pending is not None and pending():
            return True
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError) as exc:
            self.disconnect()
            raise ConnectionError(f"Error waiting on {self.where()}: {exc}") from exc
        return bool(readable)

    # -- the RESP2 parser --------------------------------------------------------------------

    def _fill(self) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("Connection closed")
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        try:
            data = sock.recv(_CHUNK)
        except OSError as exc:  # socket.timeout included
            self.disconnect()
            raise ConnectionError(f"Error reading from {self.where()}: {exc}") from exc
        if not data:
            self.disconnect()
            raise ConnectionError(f"Connection closed by {self.where()}")
        self._buffer += data

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(self._buffer[self._pos : end])
                self._pos = end + 2
                return line
            self._fill()

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) - self._pos < size + 2:
            self._fill()
        data = bytes(self._buffer[self._pos : self._pos + size])
        self._pos += size + 2
        return data

    def read(self) -> Any:
        """The next reply: bytes, int, None, a list, or a ResponseError."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read() for _ in range(count)]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"-":
            return _error(rest.decode("utf-8", "replace"))
        self.disconnect()
        raise ConnectionError(f"Protocol error from {self.where()}: {line[:50]!r}")


def sentinel_locator(
    sentinels: Sequence[tuple[str, int]], master: str, settings: ConnectSettings
) -> Callable[[], Address]:
    """A locator asking each sentinel in turn where ``master`` is now."""

    def locate() -> Address:
        problems = []
        for host, port in sentinels:
            conn = Connection(settings, lambda h=host, p=port: ("tcp", h, p))  # type: ignore[misc]
            try:
                [reply] = conn.call([("SENTINEL", "get-master-addr-by-name", master)])
            except ConnectionError as exc:
                problems.append(str(exc))
                continue
            finally:
                conn.disconnect()
            if isinstance(reply, list) and len(reply) == 2:
                return ("tcp", reply[0].decode(), int(reply[1]))
            problems.append(f"{host}:{port} does not know a master named {master!r}")
        raise ConnectionError(f"No sentinel gave the master {master!r}: {'; '.join(problems)}")

    return locate
