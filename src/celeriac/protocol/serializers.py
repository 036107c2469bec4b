"""Serializers: values to message bodies and back, by Celery's (kombu's) names and content types.

=========  =================================  ==========  ==============================
name       content type                       encoding    library
=========  =================================  ==========  ==============================
json       application/json                   utf-8       stdlib, kombu's type wrappers
msgpack    application/x-msgpack              binary      ``celeriac[msgpack]``
yaml       application/x-yaml                 utf-8       ``celeriac[yaml]`` (safe only)
pickle     application/x-python-serialize     binary      stdlib (trusted peers only)
auth       application/data                   utf-8       ``celeriac[auth]`` (signing.py)
=========  =================================  ==========  ==============================

JSON carries a few non-JSON types the way kombu 5.3+ does, as ``{"__type__": T, "__value__":
V}``: ``datetime``, ``date``, ``time`` (ISO strings), ``decimal`` (str), ``uuid``
(``{"hex": ...}``), ``bytes`` (utf-8 text) and ``base64`` (other bytes). Objects with a
``__json__()`` method are dumped as what it returns.

Decoding enforces ``accept`` (Celery's ``accept_content``): serializer names or content types.
``accept_setting`` names the setting the list came from, so a refusal says what to change.

``auth`` signs and checks bodies with the ``Signer`` that ``app.setup_security()`` installs
here (``use_signer``), process-wide as Celery's kombu registry does.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import importlib
import json
import pickle
import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple, Protocol

from celeriac.exceptions import (
    ContentDisallowed,
    DecodeError,
    EncodeError,
    ImproperlyConfigured,
    SecurityError,
)

__all__ = ["content_type_of", "dumps", "loads", "normalize_accept", "use_signer"]

# Pickle protocol 4 keeps bodies readable by every Python Celery still supports.
_PICKLE_PROTOCOL = 4


class _Codec(NamedTuple):
    content_type: str
    content_encoding: str
    extra: str | None  # the celeriac extra that installs its library, if any


_CODECS: dict[str, _Codec] = {
    "json": _Codec("application/json", "utf-8", None),
    "msgpack": _Codec("application/x-msgpack", "binary", "msgpack"),
    "yaml": _Codec("application/x-yaml", "utf-8", "yaml"),
    "pickle": _Codec("application/x-python-serialize", "binary", None),
    "auth": _Codec("application/data", "utf-8", "auth"),
}
_NAME_BY_TYPE = {codec.content_type: name for name, codec in _CODECS.items()}


def _codec(serializer: str) -> _Codec:
    try:
        return _CODECS[serializer]
    except KeyError:
        known = ", ".join(sorted(_CODECS))
        raise ImproperlyConfigured(
            f"unknown serializer {serializer!r}; known serializers are: {known}"
        ) from None


def content_type_of(serializer: str) -> str:
    """The content type a serializer's bodies carry (``json`` -> ``application/json``)."""
    return _codec(serializer).content_type


def normalize_accept(accept: Iterable[str]) -> frozenset[str]:
    """Turn serializer names and content types (``accept_content``) into content types."""
    return frozenset(name if "/" in name else content_type_of(name) for name in accept)


class _Sealer(Protocol):
    def seal(self, value: Any) -> bytes: ...
    def open(self, sealed: bytes) -> Any: ...


_signer: _Sealer | None = None


def use_signer(signer: _Sealer | None) -> None:
    """Install (or, with None, remove) the signer the ``auth`` serializer uses."""
    global _signer
    _signer = signer


def _current_signer() -> _Sealer:
    if _signer is None:
        raise ImproperlyConfigured(
            "the auth serializer signs messages with the key set up by app.setup_security(); "
            "set security_key, security_certificate and security_cert_store and call "
            "app.setup_security() before sending or receiving signed messages"
        )
    return _signer


def _import_optional(serializer: str) -> Any:
    extra = _codec(serializer).extra
    module = "yaml" if serializer == "yaml" else serializer
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImproperlyConfigured(
            f"the {serializer} serializer needs the {module!r} library; "
            f'install it with: pip install "celeriac[{extra}]"'
        ) from None


# -- JSON with kombu's type wrappers ---------------------------------------------------------


def _wrap(kind: str, value: Any) -> dict[str, Any]:
    return {"__type__": kind, "__value__": value}


def _json_default(value: Any) -> Any:
    reducer = getattr(value, "__json__", None)
    if callable(reducer):
        return reducer()
    # datetime before date: a datetime is a date too.
    if isinstance(value, dt.datetime):
        return _wrap("datetime", value.isoformat())
    if isinstance(value, dt.date):
        return _wrap("date", value.isoformat())
    if isinstance(value, dt.time):
        return _wrap("time", value.isoformat())
    if isinstance(value, decimal.Decimal):
        return _wrap("decimal", str(value))
    if isinstance(value, uuid.UUID):
        return _wrap("uuid", {"hex": value.hex})
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return _wrap("bytes", raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _wrap("base64", base64.b64encode(raw).decode("ascii"))
    raise _Unencodable(value)


class _Unencodable(TypeError):
    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__qualname__)
        self.value = value


def _uuid_from(value: Any) -> uuid.UUID:
    return uuid.UUID(**value) if isinstance(value, dict) else uuid.UUID(value)


_UNWRAPPERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": lambda v: dt.datetime.fromisoformat(v).date(),
    "time": dt.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": _uuid_from,
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("ascii")),
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() != {"__type__", "__value__"}:
        return obj
    unwrap = _UNWRAPPERS.get(obj["__type__"])
    if unwrap is None:
        raise ValueError(f"unknown JSON type wrapper {obj['__type__']!r}")
    return unwrap(obj["__value__"])


# -- dumps / loads ---------------------------------------------------------------------------


def _encode(value: Any, serializer: str) -> bytes:
    if serializer == "json":
        return json.dumps(value, default=_json_default).encode("utf-8")
    if serializer == "pickle":
        return pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
    if serializer == "auth":
        return _current_signer().seal(value)
    if serializer == "msgpack":
        packed: bytes = _import_optional("msgpack").packb(value, use_bin_type=True)
        return packed
    dumped: str = _import_optional("yaml").safe_dump(value)
    return dumped.encode("utf-8")


def dumps(value: Any, serializer: str) -> tuple[bytes, str, str]:
    """Serialize ``value``; return ``(body, content_type, content_encoding)``.

    Raises ``EncodeError`` for a value the serializer cannot encode, ``ImproperlyConfigured``
    for an unknown serializer or a missing optional library.
    """
    codec = _codec(serializer)
    try:
        body = _encode(value, serializer)
    except (ImproperlyConfigured, SecurityError):
        raise
    except _Unencodable as exc:
        raise EncodeError(
            f"the {serializer} serializer cannot encode a value of type "
            f"{type(exc.value).__qualname__!r}; pass plain JSON types (str, int, float, bool, "
            f"None, list, dict) or datetime/date/time/Decimal/UUID/bytes, give the object a "
            f"__json__() method, or choose another serializer"
        ) from exc
    except Exception as exc:
        raise EncodeError(
            f"the {serializer} serializer cannot encode this value "
            f"({type(exc).__name__}: {exc}); pass types it supports or choose another serializer"
        ) from exc
    return body, codec.content_type, codec.content_encoding


def _text(body: bytes, content_encoding: str) -> str:
    encoding = (content_encoding or "utf-8").lower()
    return body.decode("utf-8" if encoding in ("binary", "ascii-8bit") else encoding)


def _decode(body: bytes, serializer: str, content_encoding: str) -> Any:
    if serializer == "json":
        return json.loads(_text(body, content_encoding), object_hook=_json_object_hook)
    if serializer == "pickle":
        return pickle.loads(body)
    if serializer == "auth":
        return _current_signer().open(body)
    if serializer == "msgpack":
        return _import_optional("msgpack").unpackb(body, raw=False)
    return _import_optional("yaml").safe_load(body)


def loads(
    body: bytes,
    content_type: str,
    content_encoding: str,
    *,
    accept: Collection[str],
    accept_setting: str = "accept_content",
) -> Any:
    """Deserialize a body of ``content_type``, refusing types not in ``accept``.

    Raises ``ContentDisallowed`` (naming ``accept_setting``) when the type is not accepted,
    ``DecodeError`` when the body does not decode or, for signed bodies, when the signature
    check fails (its cause a ``SecurityError``), ``ImproperlyConfigured`` when the
    serializer's library is missing.
    """
    accepted = normalize_accept(accept)
    if not isinstance(content_type, str):  # a malformed message from a raw or foreign sender
        raise DecodeError(f"content type must be text, got {content_type!r:.100}")
    if content_type not in accepted:
        raise ContentDisallowed(
            f"refusing to deserialize content of type {content_type!r}: it is not in the "
            f"accepted content types {sorted(accepted)}; add it to the {accept_setting} "
            f"setting if this sender is trusted"
        )
    serializer = _NAME_BY_TYPE.get(content_type)
    if serializer is None:
        raise DecodeError(
            f"no serializer for content type {content_type!r}; known content types are: "
            f"{', '.join(sorted(_NAME_BY_TYPE))}"
        )
    # Some clients hand text back (Redis with decode_responses); take it as utf-8.
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    try:
        return _decode(raw, serializer, content_encoding)
    except ImproperlyConfigured:
        raise
    except SecurityError as exc:
        raise DecodeError(f"signed message refused: {exc}") from exc
    except Exception as exc:
        raise DecodeError(
            f"body of content type {content_type!r} does not decode ({type(exc).__name__}: {exc})"
        ) from exc
