"""Secrets out of everything shown: one place that masks credentials, for every display.

The worker banner, error messages, the dashboard (``/api/config``) and ``celeriac report``
all show URLs and settings through here, so a credential masked in one is masked in all.

``mask_url`` masks each URL of a failover or sentinel list (``;``-separated) on its own:
the password of ``user:password@`` (and ``:password@``) becomes ``**``, and so does the
value of every query parameter whose name says it is a secret (``?password=``,
``&token=``). ``mask_value`` masks a setting or a transport option for display: the whole
value when its name says it is a secret (``password``, ``token``, ``secret``, ``..._key``,
...), nested mappings and lists key by key, and every URL found in strings. A user name
stays, as Celery shows it. When in doubt, more is masked rather than less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "URL_MASK", "is_secret_name", "mask_text", "mask_url", "mask_value"]

#: What a whole secret value is shown as (Celery's ``humanize``); a URL password is ``**``.
MASK = "********"
URL_MASK = "**"

_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?$|password|secret|token|credential|api_?key|access_?key"
    r"|private_?key|(^|_)key$|^auth$",
    re.IGNORECASE,
)
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>,]*")


_NOT_SECRET = re.compile(r"routing_key$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a setting or option called ``name`` holds a secret (its value is masked)."""
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        pairs.append(f"{name}={URL_MASK}" if eq and value and is_secret_name(name) else pair)
    return "&".join(pairs)


def _mask_one(url: str, mask: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    # The query starts at the first '?' after the credentials (a password may hold a '?').
    question = rest.find("?", at + 1)
    head, query = (rest, "") if question < 0 else (rest[:question], rest[question + 1 :])
    if at >= 0 and at < len(head):
        userinfo, host = head[:at], head[at + 1 :]
        user, colon, password = userinfo.partition(":")
        if colon and password:
            head = f"{user}:{mask}@{host}"
    masked = f"{scheme}://{head}"
    return f"{masked}?{_mask_query(query)}" if question >= 0 else masked


def mask_url(url: str, *, mask: str = URL_MASK) -> str:
    """``url`` (or a ``;``-separated list of URLs) with every credential masked: a password
    becomes ``mask`` (``app.bugreport()`` shows ``MASK``, as Celery's does)."""
    parts = url.split(";")
    return ";".join(_mask_one(part.strip(), mask) if "://" in part else part for part in parts)


def mask_text(text: str) -> str:
    """``text`` (a URL, a URL list, or a message holding URLs) with every credential masked."""
    if "://" not in text:
        return text
    if _URL_START.match(text) or not any(char.isspace() for char in text):
        return mask_url(text)
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)


def mask_value(name: str, value: Any) -> Any:
    """``value`` of setting or option ``name`` for display, every secret in it masked."""
    if isinstance(value, Mapping):
        return {key: mask_value(str(key), item) for key, item in value.items()}
    if value is not None and value != "" and is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(name, item) for item in value)
    return value
