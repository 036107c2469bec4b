"""Who may read the dashboard and who may act on the cluster through it.

With ``--auth user:password`` (HTTP basic) and/or ``--token`` (``Authorization: Bearer``, or
``?token=`` for the page and its event stream), every request but the static files must
carry one of them, and anyone who does may also act (revoke, rate limit, pool, shutdown).

With neither, anyone who reaches the port may read, and nobody may act, unless
``--allow-unauthenticated-control`` is given *and* the dashboard is bound to a loopback
address; bound elsewhere the flag is ignored (``AuthPolicy.from_options`` warns). Even then
an action must come with a loopback ``Host`` header, so a web page elsewhere cannot reach
the port through DNS rebinding.

Bound to a loopback address, every request (reads, the event stream and the page included)
must carry a ``Host`` that is a loopback name or one given with ``--allowed-hosts``; so a
page elsewhere that rebinds its own name to 127.0.0.1 cannot read tasks, results or
settings either. ``--allowed-hosts`` also applies when bound elsewhere (``.example.com``
allows the domain and its subdomains, ``*`` any host).

Every action is a POST with a JSON body and, when the browser sends one, an ``Origin``
matching the host: a plain HTML form on another site can send neither, so a browser that
holds basic-auth credentials cannot be made to act by another site (CSRF).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from celeriac.exceptions import CeleryWarning, ImproperlyConfigured

__all__ = ["AuthPolicy", "host_allowed", "is_loopback", "same_origin"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, maybe with a port or [brackets]) is this machine."""
    name = host.strip()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    name = host.strip().lower()
    if name.startswith("["):
        return name[1:].partition("]")[0]
    return name.partition(":")[0] if name.count(":") == 1 else name


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a ``Host`` header names this machine or one of the ``allowed`` hosts."""
    if is_loopback(host):
        return True
    name = _host_name(host)
    for entry in allowed:
        wanted = entry.strip().lower()
        if wanted == "*" or name == wanted.lstrip("."):
            return True
        if wanted.startswith(".") and name.endswith(wanted):
            return True
    return False


@dataclass(frozen=True)
class AuthPolicy:
    """Credentials the dashboard accepts, and whether actions need them."""

    users: Mapping[str, str] = field(default_factory=dict)
    tokens: tuple[str, ...] = ()
    allow_unauthenticated_control: bool = False
    #: Refuse requests whose Host is neither a loopback name nor in ``allowed_hosts``.
    check_host: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_options(
        cls,
        *,
        auth: Iterable[str] = (),
        tokens: Iterable[str] = (),
        allow_unauthenticated_control: bool = False,
        address: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
    ) -> AuthPolicy:
        """A policy from the command line's options; ``auth`` items are ``user:password``."""
        users: dict[str, str] = {}
        for item in auth:
            user, sep, password = item.partition(":")
            if not sep or not user or not password:
                raise ImproperlyConfigured(
                    f"--auth takes user:password (both non-empty), not {item!r}"
                )
            users[user] = password
        token_list = tuple(token for token in tokens if token)
        if allow_unauthenticated_control and not is_loopback(address):
            warnings.warn(
                f"--allow-unauthenticated-control is ignored: the dashboard is bound to "
                f"{address}, not to a loopback address; actions need --auth or --token",
                CeleryWarning,
                stacklevel=2,
            )
            allow_unauthenticated_control = False
        hosts = tuple(name for item in allowed_hosts for name in item.split(",") if name.strip())
        check_host = is_loopback(address) or bool(hosts)
        return cls(users, token_list, allow_unauthenticated_control, check_host, hosts)

    def host_ok(self, host_header: str) -> bool:
        """Whether a request with this ``Host`` may be served at all (DNS rebinding)."""
        return not self.check_host or host_allowed(host_header, self.allowed_hosts)

    @property
    def required(self) -> bool:
        """Whether every request must carry credentials."""
        return bool(self.users or self.tokens)

    @property
    def schemes(self) -> list[str]:
        return [s for s, on in (("basic", bool(self.users)), ("token", bool(self.tokens))) if on]

    def authenticated(self, authorization: str | None, query_token: str | None) -> bool:
        """Whether an ``Authorization`` header or ``token`` query parameter is valid."""
        if query_token and self._token_ok(query_token):
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return self._token_ok(value.strip())
        if scheme.lower() == "basic" and self.users:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            expected = self.users.get(user)
            return expected is not None and hmac.compare_digest(
                expected.encode("utf-8"), password.encode("utf-8")
            )
        return False

    def _token_ok(self, token: str) -> bool:
        return any(hmac.compare_digest(token.encode(), known.encode()) for known in self.tokens)

    def may_read(self, authenticated: bool) -> bool:
        return authenticated or not self.required

    def may_act(self, authenticated: bool, host_header: str) -> bool:
        """Whether a request may act; without credentials only as the docstring says."""
        if self.required:
            return authenticated
        return self.allow_unauthenticated_control and is_loopback(host_header)


def same_origin(origin: str | None, host_header: str) -> bool:
    """Whether a request's ``Origin`` (if the browser sent one) names the host it was sent to."""
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == host_header.lower()
