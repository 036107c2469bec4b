"""The values ``apply_async`` takes, as a message carries them: aware datetimes, ``eta`` from
``countdown``, ``expires`` from seconds, kombu's delivery-mode names, signatures as wire dicts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

__all__ = ["as_dict", "as_dicts", "aware", "delivery_mode", "eta_and_expires"]


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def delivery_mode(value: Any) -> int:
    """kombu's names or numbers: ``'persistent'`` is 2 (the default), ``'transient'`` 1."""
    names = {"persistent": 2, "transient": 1}
    return names[value] if isinstance(value, str) and value in names else int(value or 2)


def as_dict(value: Any) -> dict[str, Any] | None:
    """A signature (a ``celeriac.canvas.Signature`` or its dict) as its wire dict."""
    if value is None:
        return None
    reducer = getattr(value, "__json__", None)  # a Signature is a dict: take its deep form
    return dict(reducer()) if callable(reducer) else dict(value)


def as_dicts(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [d for d in (as_dict(item) for item in items) if d is not None]


def eta_and_expires(opts: Mapping[str, Any], now: dt.datetime) -> tuple[Any, Any]:
    """``eta`` (``countdown`` from now wins) and ``expires`` (seconds from now, or a time),
    ISO strings parsed; anything else is passed on for the producer to drop."""
    eta = opts.get("eta")
    if opts.get("countdown") is not None:
        eta = now + dt.timedelta(seconds=float(opts["countdown"]))
    elif isinstance(eta, str):
        eta = dt.datetime.fromisoformat(eta)
    expires = opts.get("expires")
    if isinstance(expires, (int, float)):
        expires = now + dt.timedelta(seconds=float(expires))
    elif isinstance(expires, str):
        expires = dt.datetime.fromisoformat(expires)
    return eta, expires
