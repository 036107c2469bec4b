"""Redis URLs and TLS settings, as Celery and redis-py read them, for ``celeriac._redis``.

URL forms (Celery's)::

    redis://[[user]:password@]host[:port][/db][?socket_timeout=s&...]
    rediss://...            TLS: ssl_cert_reqs (required|optional|none), ssl_ca_certs,
                            ssl_ca_path, ssl_ca_data, ssl_certfile, ssl_keyfile,
                            ssl_password, ssl_ciphers, ssl_check_hostname in the query or in
                            the ssl options (Celery's broker_use_ssl / redis_backend_use_ssl);
                            the server's certificate must name the host of the URL unless
                            ssl_check_hostname is false or ssl_cert_reqs none (redis-py 6)
    redis+socket:///path/to/redis.sock[?virtual_host=db]       (``db=`` works too)
    sentinel://[[user]:password@]host:port[/db][;sentinel://host2:port...]
                            with option ``master_name``; ``sentinel_kwargs`` (password,
                            username, socket_timeout) are for the sentinels themselves

Query options the client acts on: ``socket_timeout``, ``socket_connect_timeout``,
``socket_keepalive``, ``client_name``, ``username`` and ``password`` (redis-py's; those in the
URL's user part win), ``db`` (redis://, rediss://: before the path's, as redis-py),
``virtual_host`` and ``db`` (redis+socket://), and the TLS ones (``TLS_KEYS``). Options
whose purpose the client already serves are accepted and change nothing (``_SERVED``, each
with its reason). Any other query option, and any TLS key the client does not know, is
refused with ``ImproperlyConfigured``, never ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from celeriac._masking import mask_url
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["TLS_KEYS", "RedisAddress", "parse_url", "tls_context", "tls_settings"]

_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")
# ssl_cert_reqs names -> ssl.VerifyMode names (ssl is imported only when TLS is used).
_CERT_REQS = {
    "required": "CERT_REQUIRED",
    "cert_required": "CERT_REQUIRED",
    "optional": "CERT_OPTIONAL",
    "cert_optional": "CERT_OPTIONAL",
    "none": "CERT_NONE",
    "cert_none": "CERT_NONE",
}
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: The TLS settings the client knows, in a URL's query or in the ssl options (Celery's
#: broker_use_ssl / redis_backend_use_ssl dict): redis-py's names.
TLS_KEYS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "ssl_ciphers",
)
#: Query options the client reads (besides the TLS ones).
_QUERY_KEYS = (
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "username",
    "password",
    "db",
    "virtual_host",
)
#: redis-py query options whose purpose the client already serves: accepted, no effect.
_SERVED = {
    "health_check_interval": "a connection found broken is replaced and the command retried",
    "retry_on_timeout": "timeouts are retried by the connector's retry policy",
    "max_connections": "each thread has one connection of its own; there is no pool to size",
}


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, parsed from a URL; ``shown`` is the URL with its password masked."""

    shown: str
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    socket_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel: bool = False
    params: dict[str, str] = field(default_factory=dict)


def _db_number(raw: str, shown: str) -> int:
    try:
        db = int(raw or 0)
    except ValueError:
        db = -1
    if db < 0:
        raise ImproperlyConfigured(f"{shown!r}: the database must be a number >= 0, not {raw!r}.")
    return db


def parse_url(url: str, *, what: str) -> RedisAddress:
    """Parse one Redis URL (several ``;``-separated ``sentinel://`` URLs make one address)."""
    shown = ";".join(mask_url(part) for part in url.split(";"))
    parts = [urlsplit(part.strip()) for part in url.split(";") if part.strip()]
    schemes = {p.scheme.lower() for p in parts}
    if not parts or len(schemes) != 1 or not schemes <= set(_SCHEMES):
        raise ImproperlyConfigured(
            f"{shown!r} is not a Redis {what} URL: use redis://host:port/db, rediss://..., "
            "redis+socket:///path/to/redis.sock or sentinel://host:port;sentinel://host2:port."
        )
    scheme = schemes.pop()
    first = parts[0]
    params = {k: v for p in parts for k, v in parse_qsl(p.query)}
    _check_query(params, shown)
    if scheme != "sentinel" and len(parts) > 1:
        raise ImproperlyConfigured(f"{shown!r}: only sentinel:// URLs may list several hosts.")
    # redis-py's precedence: the user part of the URL before ?username= and ?password=
    username = unquote(first.username) if first.username else params.pop("username", None)
    password = unquote(first.password) if first.password else params.pop("password", None)
    params.pop("username", None)
    params.pop("password", None)
    if scheme == "redis+socket":
        if not first.path:
            raise ImproperlyConfigured(f"{shown!r} names no socket: redis+socket:///path.sock")
        db = _db_number(params.pop("virtual_host", params.pop("db", "0")), shown)
        return RedisAddress(
            shown,
            False,
            socket_path=unquote(first.path),
            db=db,
            username=username,
            password=password,
            params=params,
        )
    try:
        hosts = tuple(
            (p.hostname or "localhost", p.port or (26379 if scheme == "sentinel" else 6379))
            for p in parts
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"{shown!r}: bad port ({exc}).") from exc
    if "virtual_host" in params:
        raise ImproperlyConfigured(
            f"{shown!r}: virtual_host is for redis+socket:// URLs; put the database in the "
            "path (redis://host:port/db)."
        )
    return RedisAddress(
        shown,
        tls=scheme == "rediss",
        hosts=hosts,
        db=_db_number(params.pop("db", "") or first.path.strip("/"), shown),  # as redis-py
        username=username,
        password=password,
        sentinel=scheme == "sentinel",
        params=params,
    )


def _check_query(params: Mapping[str, str], shown: str) -> None:
    """Refuse a query option the client does not act on (module docstring)."""
    unknown = sorted(k for k in params if k not in (*_QUERY_KEYS, *TLS_KEYS, *_SERVED))
    if params.get("protocol", "2") != "2":
        unknown.append("protocol (Celeriac's client speaks RESP2 only)")
    elif "protocol" in unknown:
        unknown.remove("protocol")
    if unknown:
        raise ImproperlyConfigured(
            f"{shown!r}: Celeriac's Redis client does not support the URL option(s) "
            f"{', '.join(unknown)}; it reads {', '.join((*_QUERY_KEYS, *TLS_KEYS))}."
        )


def tls_settings(address: RedisAddress, ssl_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ssl_* settings from the URL query and the ssl options, with cert_reqs as a constant.

    Raises ``ImproperlyConfigured`` for a key of the ssl options the client does not know.
    """
    import ssl

    unknown = sorted(str(k) for k in (ssl_options or {}) if k not in TLS_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"{address.shown!r}: Celeriac's Redis client does not support the TLS option(s) "
            f"{', '.join(unknown)}; it reads {', '.join(TLS_KEYS)}."
        )
    settings: dict[str, Any] = {k: v for k, v in address.params.items() if k in TLS_KEYS}
    settings.update(ssl_options or {})
    reqs = settings.get("ssl_cert_reqs", ssl.CERT_REQUIRED)
    if isinstance(reqs, str):
        if reqs.lower() not in _CERT_REQS:
            raise ImproperlyConfigured(
                f"{address.shown!r}: ssl_cert_reqs must be required, optional or none, "
                f"not {reqs!r}."
            )
        reqs = getattr(ssl, _CERT_REQS[reqs.lower()])
    settings["ssl_cert_reqs"] = reqs
    check = settings.get("ssl_check_hostname", True)
    if isinstance(check, str):
        if check.lower() not in _BOOLEANS:
            raise ImproperlyConfigured(
                f"{address.shown!r}: ssl_check_hostname must be true or false, not {check!r}."
            )
        check = _BOOLEANS[check.lower()]
    settings["ssl_check_hostname"] = bool(check)
    return settings


def tls_context(address: RedisAddress, ssl_options: Mapping[str, Any] | None) -> Any:
    """An ``ssl.SSLContext`` for the client side of TLS, from the ssl_* settings."""
    import ssl

    settings = tls_settings(address, ssl_options)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verify = settings["ssl_cert_reqs"] != ssl.CERT_NONE
    context.check_hostname = verify and settings["ssl_check_hostname"]
    context.verify_mode = settings["ssl_cert_reqs"]
    try:
        if settings["ssl_cert_reqs"] != ssl.CERT_NONE:
            cafile, capath = settings.get("ssl_ca_certs"), settings.get("ssl_ca_path")
            cadata = settings.get("ssl_ca_data")
            if cafile or capath or cadata:
                context.load_verify_locations(cafile=cafile, capath=capath, cadata=cadata)
            else:
                context.load_default_certs()
        if settings.get("ssl_certfile"):
            context.load_cert_chain(
                settings["ssl_certfile"], settings.get("ssl_keyfile"), settings.get("ssl_password")
            )
        if settings.get("ssl_ciphers"):
            context.set_ciphers(settings["ssl_ciphers"])
    except (OSError, ssl.SSLError) as exc:
        raise ImproperlyConfigured(f"{address.shown!r}: cannot load the TLS files: {exc}") from exc
    return context
