"""Reaching Redis: URLs, connections, TLS, Sentinel, error translation and retries.

Shared by the Redis broker (``celeriac.transports.redis``) and the Redis result backend
(``celeriac.backends.redis``), on Celeriac's own RESP client (``celeriac._redis.client``): no Redis
client library is needed.

URLs and TLS settings are read by ``celeriac._redis.url``.

Connections: each thread gets one connection of its own for ordinary commands (``execute``),
and subscriptions or consumers ask for ``dedicated`` ones; nothing is shared between threads,
so no pool lock sits on the hot path. Errors: a client error becomes the caller's
``OperationalError`` subclass with the masked URL and a hint. Errors that mean "Redis could
not be reached" (connection refused or lost, timeouts, a server still loading, a read-only
replica after a failover) are retried on a fresh connection with a linear backoff
(``interval_start`` + n * ``interval_step``, at most ``interval_max`` seconds) up to
``max_retries`` times; others are raised at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from celeriac._redis.client import (
    AuthenticationError,
    CertificateError,
    ConnectFailed,
    Connection,
    ConnectionError,
    ConnectSettings,
    NoScriptError,
    RedisError,
    ResponseError,
    pack,
    sentinel_locator,
)
from celeriac._redis.url import TLS_KEYS, RedisAddress, parse_url, tls_context
from celeriac.exceptions import ImproperlyConfigured, OperationalError

__all__ = ["PUBLISH_RETRY", "RedisAddress", "RedisConnector", "RetryPolicy", "pack", "parse_url"]

T = TypeVar("T")

_RETRYABLE_CODES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN")
_SENTINEL_KEYS = ("username", "password", "socket_connect_timeout", "socket_timeout", "ssl")


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"Redis option {name} must be seconds, not {value!r}") from exc


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry when Redis cannot be reached.

    ``retry_connect`` False: a failure to open a connection is not retried here (the caller
    retries per its own policy); a connection that broke is, ``max_retries`` times.
    """

    max_retries: int = 10
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 1.0
    retry_connect: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any], defaults: RetryPolicy) -> RetryPolicy:
        try:
            return cls(
                max_retries=int(options.get("max_retries", defaults.max_retries)),
                interval_start=float(options.get("interval_start", defaults.interval_start)),
                interval_step=float(options.get("interval_step", defaults.interval_step)),
                interval_max=float(options.get("interval_max", defaults.interval_max)),
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"Bad Redis retry policy {dict(options)!r}: {exc}") from exc

    def pause(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return min(self.interval_start + attempt * self.interval_step, self.interval_max)


#: Publishing (and what a publish reads or declares): one immediate reconnect when a
#: connection that was open broke (Redis restarted, an idle socket dropped), and no retry
#: of a connection that cannot be opened: the producer retries per task_publish_retry_policy
#: (docs/connection-retry.md), so the two never multiply.
PUBLISH_RETRY = RetryPolicy(
    max_retries=1, interval_start=0.0, interval_step=0.0, interval_max=0.0, retry_connect=False
)


class RedisConnector:
    """Connections to one Redis (or Sentinel-managed master), with retries.

    ``error`` is the exception class callers see (TransportError or BackendError).
    """

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any],
        *,
        what: str,
        error: type[OperationalError],
        retry: RetryPolicy,
        ssl_options: Mapping[str, Any] | bool | None = None,
        retry_on_startup: bool = True,
        retry_after_loss: bool = True,
    ) -> None:
        """``ssl_options``: Celery's ``broker_use_ssl``: a dict of ssl_* settings, or True."""
        self.address = address = parse_url(url, what=what)
        self.what = what
        self.error = error
        self.retry = retry
        self._retry_on_startup = retry_on_startup
        self._retry_after_loss = retry_after_loss
        self._connected_once = False
        self._closed = False
        merged = {**address.params, **options}
        self.settings = ConnectSettings(
            db=address.db,
            username=address.username,
            password=address.password,
            client_name=str(merged["client_name"]) if merged.get("client_name") else None,
            connect_timeout=_seconds(merged.get("socket_connect_timeout", 5.0), "connect"),
            socket_timeout=_seconds(merged.get("socket_timeout", 30.0), "socket_timeout"),
            keepalive=str(merged.get("socket_keepalive", True)).lower() in ("1", "true"),
        )
        if address.tls or ssl_options:
            extra = ssl_options if isinstance(ssl_options, Mapping) else None
            self.settings.tls = tls_context(address, extra)
        elif any(key in address.params for key in TLS_KEYS):
            raise ImproperlyConfigured(
                f"{address.shown!r} has TLS options but is no TLS URL: use rediss:// (or set "
                "the ssl options, Celery's broker_use_ssl / redis_backend_use_ssl)."
            )
        self.locate = self._locator(options)
        self._local = threading.local()
        self._own: list[tuple[threading.Thread, Connection]] = []  # to close them all
        self._own_lock = threading.Lock()
        self._pid = os.getpid()
        self._shas: dict[str, str] = {}

    def _locator(self, options: Mapping[str, Any]) -> Callable[[], tuple[str, str, int]]:
        address = self.address
        if address.socket_path is not None:
            path = address.socket_path
            return lambda: ("unix", path, 0)
        if not address.sentinel:
            host, port = address.hosts[0]
            return lambda: ("tcp", host, port)
        master = options.get("master_name")
        if not master:
            raise ImproperlyConfigured(
                f"{address.shown!r} is a Sentinel URL: set the transport option master_name "
                "to the name of the monitored master."
            )
        extra = dict(options.get("sentinel_kwargs") or {})
        unknown = sorted(str(k) for k in extra if k not in _SENTINEL_KEYS)
        if unknown:
            raise ImproperlyConfigured(
                f"{address.shown!r}: Celeriac's Redis client does not support the "
                f"sentinel_kwargs {', '.join(unknown)}; it reads {', '.join(_SENTINEL_KEYS)}."
            )
        sentinel = ConnectSettings(
            username=extra.get("username"),
            password=extra.get("password"),
            connect_timeout=_seconds(extra.get("socket_connect_timeout", 1.0), "connect"),
            socket_timeout=_seconds(extra.get("socket_timeout", 5.0), "socket_timeout"),
            tls=self.settings.tls if extra.get("ssl") else None,
        )
        return sentinel_locator(address.hosts, str(master), sentinel)

    def dedicated(self) -> Connection:
        """A new connection of the caller's own (for subscriptions and consumers)."""
        return Connection(self.settings, self.locate)

    def execute(self, commands: Sequence[Sequence[Any]], *, transaction: bool = False) -> list[Any]:
        """Send ``commands`` in one round trip on this thread's own connection; their replies.

        With ``transaction`` they run as one MULTI/EXEC. Raises the client's errors (the
        first error reply among them, after reading them all); ``run`` translates them.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None or self._pid != os.getpid():
            conn = self._own_connection()
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        replies = conn.call(commands)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        if transaction:
            result = replies[-1]
            if not isinstance(result, list):
                raise ResponseError(f"EXECABORT transaction discarded: {result!r}")
            for reply in result:
                if isinstance(reply, ResponseError):
                    raise reply
            return result
        return replies

    def _own_connection(self) -> Connection:
        """A connection for this thread; closes those of threads that have ended."""
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._pid = os.getpid()
            self._local = threading.local()
            self._own = []
        conn = self._local.conn = self.dedicated()
        with self._own_lock:
            ended = [c for thread, c in self._own if not thread.is_alive()]
            self._own = [(t, c) for t, c in self._own if t.is_alive()]
            self._own.append((threading.current_thread(), conn))
        for old in ended:
            old.disconnect()
        return conn

    def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA1 (learnt from SCRIPT LOAD, which also reloads it)."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = self.execute([("SCRIPT", "LOAD", source)])[0].decode()
        try:
            return self.execute([("EVALSHA", sha, len(keys), *keys, *args)])[0]
        except NoScriptError:  # the server restarted or flushed its scripts
            del self._shas[source]
            return self.script(source, keys, args)

    def describe(self, exc: BaseException, doing: str) -> OperationalError:
        """``exc`` as our error class, naming the URL and what was being done."""
        if isinstance(exc, AuthenticationError):
            hint = "Check the user name and password in the URL and the server's ACL."
        elif isinstance(exc, CertificateError):
            hint = (
                "The server's certificate must be signed by a CA in ssl_ca_certs and name the "
                "host of the URL (ssl_check_hostname=false turns the name check off)."
            )
        elif isinstance(exc, ConnectionError):
            hint = "Is the Redis server running and reachable at that address?"
        else:
            hint = "The server refused the command."
        return self.error(
            f"Redis {self.what} {self.address.shown}: could not {doing}: {exc}. {hint}"
        )

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        if isinstance(exc, ConnectionError):
            return True
        return isinstance(exc, ResponseError) and exc.code in _RETRYABLE_CODES

    def run(
        self,
        doing: str,
        operation: Callable[[], T],
        *,
        deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Run ``operation``; retry per the policy while Redis cannot be reached.

        ``retry`` replaces the connector's policy for this call; ``deadline`` (monotonic
        time) caps the retrying, whatever the policy says.
        """
        attempt = 0
        while True:
            if self._closed:
                raise self.error(f"Redis {self.what} {self.address.shown} is closed: {doing}.")
            try:
                result = operation()
            except RedisError as exc:
                if isinstance(exc, ResponseError) and exc.code == "READONLY":
                    self._drop_local()  # a failed-over master: find the new one
                policy = retry or self.retry
                limit = policy.max_retries
                if not (self._retry_after_loss if self._connected_once else self._retry_on_startup):
                    limit = 0
                if isinstance(exc, ConnectFailed) and not policy.retry_connect:
                    limit = 0
                pause = policy.pause(attempt)
                out_of_time = deadline is not None and time.monotonic() + pause > deadline
                if not self.is_retryable(exc) or attempt >= limit or out_of_time:
                    raise self.describe(exc, doing) from exc
                attempt += 1
                sleep(pause)
                continue
            self._connected_once = True
            return result

    def _drop_local(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._own_lock:
            own, self._own = self._own, []
        for _, conn in own:
            with contextlib.suppress(Exception):
                conn.disconnect()
