"""Connections to RabbitMQ: URLs and settings, opening, error translation, a connection pool.

URLs (kombu's forms): ``amqp://user:password@host:port/vhost``; ``pyamqp://`` means the same;
``amqps://`` adds TLS (port 5671 unless given), configured by ``broker_use_ssl`` (``True``, or
py-amqp's dict: ``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs``, ``server_hostname``...).
The server's certificate must name the host of the URL (or ``server_hostname``) unless the
dict says ``ssl_check_hostname: False`` or ``cert_reqs: ssl.CERT_NONE`` (``tls_options``).
Defaults: ``guest:guest@localhost:5672``, vhost ``/`` (``amqp://host``, ``amqp://host/`` and
``amqp://host//`` all mean ``/``; ``%2F`` decodes). Several URLs joined by ``;`` are failover
addresses, tried in turn. Query parameters: ``heartbeat``, ``connect_timeout`` (seconds).

Options (the options mapping; Celery's setting names, which the app passes through):
``broker_heartbeat`` (120 s; 0 turns heartbeats off), ``broker_connection_timeout`` (4 s),
``broker_use_ssl``, ``broker_login_method``, ``broker_pool_limit`` (10; 0 or None: no pool, a
connection per use), ``broker_connection_max_retries`` (100; 0 or None: forever),
``broker_connection_retry`` / ``broker_connection_retry_on_startup`` (False: a consumer gives
up at the first failed (re)connection; on startup follows the first when unset); and the
transport options ``interval_start`` (0.1 s), ``interval_step`` (0.5 s), ``interval_max``
(5 s) spacing reconnection attempts, ``confirm_publish`` (True), ``confirm_timeout`` (10 s).

Two kinds of connection exist: pooled ones (``celeriac._amqp.pool``), lent to one thread at
a time for request/reply work, without heartbeats as Celery's producer connections; and
consuming ones, each owned by an I/O thread (``celeriac._amqp.io``), which heartbeat.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from celeriac._amqp.driver import amqp, amqp_errors
from celeriac._masking import mask_url
from celeriac._options import connection_retry, positive_option
from celeriac.exceptions import CeleryError, ImproperlyConfigured, TransportError

__all__ = ["RECOVERABLE", "Address", "Backoff", "Connector", "close_quietly", "translate"]

_SCHEMES = {"amqp": False, "pyamqp": False, "amqps": True}
_QUERY_KEYS = ("heartbeat", "connect_timeout")
#: Errors after which a connection is unusable (the broker went away or broke the protocol).
RECOVERABLE: tuple[type[BaseException], ...] = (
    OSError,  # includes socket.timeout and ssl.SSLError
    amqp_errors.ConnectionError,
)


@dataclass(frozen=True, slots=True)
class Address:
    """One broker to connect to."""

    host: str  # "host:port"
    userid: str
    password: str
    virtual_host: str
    tls: bool
    shown: str  # the URL with its password masked


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between reconnection attempts: start, growing by step, up to max."""

    interval_start: float = 0.1
    interval_step: float = 0.5
    interval_max: float = 5.0
    max_retries: int | None = 100  # None: retry forever

    def interval(self, attempt: int) -> float:
        return min(self.interval_start + attempt * self.interval_step, self.interval_max)


def _parse_address(url: str) -> tuple[Address, dict[str, str]]:
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{shown!r} is not a valid AMQP URL: {exc}") from None
    tls = _SCHEMES.get(parts.scheme.lower())
    if tls is None:
        raise ImproperlyConfigured(
            f"{shown!r} is not an AMQP URL: write amqp://user:password@host:port/vhost "
            "(or pyamqp://, or amqps:// for TLS)."
        )
    vhost = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown AMQP URL parameter(s) {', '.join(unknown)} in {shown!r}: the URL takes "
            f"{', '.join(_QUERY_KEYS)}; put other settings in broker_transport_options."
        )
    address = Address(
        host=f"{parts.hostname or 'localhost'}:{port or (5671 if tls else 5672)}",
        userid=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        virtual_host=vhost or "/",
        tls=tls,
        shown=shown,
    )
    return address, query


def _optional_count(options: Mapping[str, Any], name: str, default: int) -> int | None:
    """``options[name]`` as a count; 0 and None mean "no limit" (returned as None)."""
    value = options.get(name, default)
    if value is None or value == 0:
        return None
    return int(positive_option(options, name, default, integer=True))


class Connector:
    """Opens connections to the broker a URL names, with the settings of the options."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        opts = dict(options or {})
        parsed = [_parse_address(part.strip()) for part in url.split(";") if part.strip()]
        if not parsed:
            raise ImproperlyConfigured("The AMQP broker URL is empty.")
        self.addresses = tuple(address for address, _ in parsed)
        query = parsed[0][1]
        heartbeat = query.get("heartbeat", opts.get("broker_heartbeat", 120.0))
        self.heartbeat = (
            0.0 if not heartbeat else positive_option({"heartbeat": heartbeat}, "heartbeat", 0)
        )
        timeout = query.get("connect_timeout", opts.get("broker_connection_timeout", 4.0))
        self.connect_timeout = positive_option({"connect_timeout": timeout}, "connect_timeout", 4.0)
        self.ssl_options = self._ssl_options(opts.get("broker_use_ssl"))
        self.login_method: str | None = opts.get("broker_login_method")
        self.pool_limit = _optional_count(opts, "broker_pool_limit", 10)
        self.confirm_publish = opts.get("confirm_publish", True) is not False
        self.confirm_timeout = positive_option(opts, "confirm_timeout", 10.0)
        self.backoff = Backoff(
            interval_start=float(opts.get("interval_start", 0.1)),
            interval_step=float(opts.get("interval_step", 0.5)),
            interval_max=positive_option(opts, "interval_max", 5.0),
            max_retries=_optional_count(opts, "broker_connection_max_retries", 100),
        )
        self.retry_on_startup, self.retry_after_loss = connection_retry(opts)
        self.shown = self.addresses[0].shown
        self._turn = 0
        self._lock = threading.Lock()

    def _ssl_options(self, value: Any) -> dict[str, Any] | bool:
        if value is None or value is False:
            return bool(any(a.tls for a in self.addresses))
        if value is True or isinstance(value, Mapping):
            return dict(value) if isinstance(value, Mapping) else True
        raise ImproperlyConfigured(
            f"broker_use_ssl must be True or a dict of TLS options (ca_certs, certfile, keyfile, "
            f"cert_reqs, server_hostname), not {value!r}."
        )

    def connect(self, *, heartbeat: bool, name: str = "celeriac") -> amqp.Connection:
        """A new, open connection: the failover addresses are tried in turn, starting after
        the one that failed last. Raises ``TransportError`` (or ``ImproperlyConfigured`` when
        the broker refuses the credentials or vhost) when none can be opened."""
        with self._lock:
            start = self._turn
        error: BaseException | None = None
        for offset in range(len(self.addresses)):
            index = (start + offset) % len(self.addresses)
            address = self.addresses[index]
            try:
                return self._open(address, heartbeat, name)
            except (*RECOVERABLE, amqp_errors.AMQPError) as exc:
                error = translate(exc, "connect", address.shown)
                with self._lock:
                    self._turn = index + 1
                if isinstance(error, ImproperlyConfigured):
                    raise error from exc
        assert error is not None
        raise error

    def _open(self, address: Address, heartbeat: bool, name: str) -> amqp.Connection:
        tls: dict[str, Any] | bool = False
        if address.tls or self.ssl_options:
            given = self.ssl_options if isinstance(self.ssl_options, dict) else {}
            tls = tls_options(given, address.host.rpartition(":")[0])
        connection = amqp.Connection(
            host=address.host,
            userid=address.userid,
            password=address.password,
            virtual_host=address.virtual_host,
            login_method=self.login_method,
            ssl=tls,
            connect_timeout=self.connect_timeout,
            heartbeat=self.heartbeat if heartbeat else 0,
            client_properties={"product": "celeriac", "connection_name": name},
        )
        try:
            connection.connect()
            # Every later blocking read or write gives up after this long (a dead peer).
            connection.transport.sock.settimeout(max(self.connect_timeout, self.confirm_timeout))
        except BaseException:
            close_quietly(connection)
            raise
        return connection


def tls_options(given: Mapping[str, Any], host: str) -> dict[str, Any]:
    """py-amqp's ssl dict for a connection to ``host``: its name checked unless switched off.

    py-amqp checks the certificate's name only when ``server_hostname`` is given, so it is
    set to the URL's host by default; ``ssl_check_hostname: False`` (or ``cert_reqs:
    ssl.CERT_NONE``) leaves it out, and the name is not checked (nor sent for SNI).
    """
    options = dict(given)
    check = options.pop("ssl_check_hostname", True)
    if isinstance(check, str):
        check = check.strip().lower() not in ("false", "0", "no")
    if not check or options.get("cert_reqs") == ssl.CERT_NONE:
        options.pop("server_hostname", None)
    else:
        options.setdefault("server_hostname", host)
    return options


def translate(exc: BaseException, what: str, shown: str) -> CeleryError:
    """Our exception for a driver error that happened while trying to ``what``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, amqp_errors.PreconditionFailed):
        return ImproperlyConfigured(
            f"RabbitMQ at {shown} refused to {what}: {text}. An exchange or queue of that name "
            "exists with other settings (type, durable, auto_delete, arguments such as "
            "x-max-priority or x-queue-type): declare it the same way everywhere, or delete it."
        )
    if isinstance(exc, amqp_errors.AccessRefused):
        return ImproperlyConfigured(
            f"RabbitMQ at {shown} refused access ({text}): check the user name and password "
            "in broker_url and that the user has permissions on the vhost."
        )
    if isinstance(exc, (amqp_errors.NotAllowed, amqp_errors.InvalidPath)) and "vhost" in text:
        return ImproperlyConfigured(
            f"RabbitMQ at {shown}: {text}. Create the vhost (rabbitmqctl add_vhost <name>) and "
            "grant the user permissions on it, or fix the vhost in broker_url."
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        hint = "the broker did not answer in time"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        hint = (
            "the server's TLS certificate was refused: it must be signed by a CA in "
            "broker_use_ssl['ca_certs'] and name the host of the URL (or server_hostname)"
        )
    elif isinstance(exc, ssl.SSLError):
        hint = "the TLS handshake or stream failed: check broker_use_ssl"
    elif isinstance(exc, OSError):
        hint = "is RabbitMQ running and reachable at that address?"
    else:
        hint = "the broker closed the connection or channel"
    return TransportError(f"RabbitMQ at {shown}: could not {what}: {text} ({hint}).")


def close_quietly(connection: amqp.Connection | None) -> None:
    """Close ``connection`` without caring whether the broker still answers."""
    if connection is None:
        return
    with suppress(Exception):  # a broken connection cannot say goodbye: drop the socket
        if connection.connected:
            connection.transport.sock.settimeout(1.0)
            connection.close()
    with suppress(Exception):
        connection.collect()
