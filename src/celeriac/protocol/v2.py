"""Celery's task message protocol v2: ``TaskMessage`` to wire ``Message`` and back.

Emitted in the 5.3+ form (wire.md §1): every protocol header present, user headers
merged into the same table, body ``[args, kwargs, {callbacks, errbacks, chain, chord}]``,
properties ``correlation_id``, ``reply_to``, ``delivery_mode``, ``priority`` and, with
``expires``, ``expiration`` (milliseconds as a string, RabbitMQ's per-message TTL).

Decoding also accepts protocol v1 (no ``task`` header; the body a dict holding ``task``,
``id``, ``args``, ...) and Celery's hybrid form (v2 headers with a v1 body that carries
``args``), and raises ``InvalidTaskError`` naming
exactly which part of a malformed message is wrong.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Collection, Mapping
from typing import Any

from celeriac._time import system_clock
from celeriac.exceptions import InvalidTaskError
from celeriac.protocol.compression import compress, decompress
from celeriac.protocol.message import Embed, Message, TaskMessage
from celeriac.protocol.serializers import dumps, loads

__all__ = ["MESSAGE_PROPERTIES", "PROTOCOL_HEADERS", "decode_task", "encode_task", "saferepr"]

#: Header names the protocol owns; every other header is the user's (``request.headers``).
PROTOCOL_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "compression",
    }
)

# The fields a protocol v1 body carries at its top level.
_V1_FIELDS = (
    "task",
    "id",
    "eta",
    "expires",
    "retries",
    "timelimit",
    "group",
    "group_index",
    "root_id",
    "parent_id",
    "shadow",
    "argsrepr",
    "kwargsrepr",
    "origin",
)


def saferepr(value: Any, maxlen: int = 1024) -> str:
    """``repr(value)`` that never raises, cut to ``maxlen`` characters (ending in ``...``)."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    if len(text) > maxlen:
        text = text[: max(maxlen - 3, 0)] + "..."
    return text


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()


def _anon_origin() -> str:
    return f"gen{os.getpid()}@{socket.gethostname()}"


# -- encode ----------------------------------------------------------------------------------


def _headers(task: TaskMessage) -> dict[str, Any]:
    return {
        "lang": "py",
        "task": task.task,
        "id": task.id,
        "shadow": task.shadow,
        "eta": _iso(task.eta),
        "expires": _iso(task.expires),
        "group": task.group,
        "group_index": task.group_index,
        "retries": task.retries,
        "timelimit": [task.time_limit, task.soft_time_limit],
        "root_id": task.root_id or task.id,
        "parent_id": task.parent_id,
        "argsrepr": task.argsrepr if task.argsrepr is not None else saferepr(task.args),
        "kwargsrepr": task.kwargsrepr if task.kwargsrepr is not None else saferepr(task.kwargs),
        "origin": task.origin or _anon_origin(),
        "ignore_result": task.ignore_result,
        "replaced_task_nesting": task.replaced_task_nesting,
        "stamped_headers": task.stamped_headers,
        "stamps": dict(task.stamps),
    }


#: Message properties a sender may set beyond the protocol's own (kombu's ``publish``
#: passes them on): they reach the worker's ``request.properties``.
MESSAGE_PROPERTIES = frozenset({"app_id", "user_id", "message_id", "timestamp", "type"})


def _properties(task: TaskMessage, now: dt.datetime | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "correlation_id": task.correlation_id or task.id,
        "reply_to": task.reply_to or "",
        "delivery_mode": task.delivery_mode,
        "priority": task.priority or 0,
    }
    if task.expires is not None:
        if now is None:
            now = dt.datetime.fromtimestamp(system_clock.time(), dt.UTC)
        seconds = max((_aware(task.expires) - _aware(now)).total_seconds(), 0.0)
        properties["expiration"] = str(int(seconds * 1000))
    return {**task.extra_properties, **properties}


def body_of(task: TaskMessage) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The body of ``task`` before serialization: ``(args, kwargs, embed)`` (wire.md), what
    Celery's ``before_task_publish``/``after_task_publish`` handlers receive as ``body``."""
    embed = {
        "callbacks": task.embed.callbacks,
        "errbacks": task.embed.errbacks,
        "chain": task.embed.chain,
        "chord": task.embed.chord,
    }
    return list(task.args), dict(task.kwargs), embed


def encode_task(
    task: TaskMessage,
    *,
    serializer: str = "json",
    compression: str | None = None,
    now: dt.datetime | None = None,
) -> Message:
    """Build the wire message for ``task``.

    ``now`` is the instant ``expiration`` counts from (default: the system clock). Raises
    ``TypeError`` when args are not a list/tuple or kwargs not a mapping, ``EncodeError`` when
    the serializer cannot encode them, ``ImproperlyConfigured`` for an unknown serializer or
    compression method.
    """
    if not isinstance(task.args, (list, tuple)):
        raise TypeError(f"task args must be a list or tuple, got {type(task.args).__name__}")
    if not isinstance(task.kwargs, Mapping):
        raise TypeError(f"task kwargs must be a mapping, got {type(task.kwargs).__name__}")
    headers = _headers(task)
    headers.update(task.extra_headers)
    body, content_type, content_encoding = dumps(list(body_of(task)), serializer)
    if compression:
        body, headers["compression"] = compress(body, compression)
    return Message(
        body=body,
        content_type=content_type,
        content_encoding=content_encoding,
        headers=headers,
        properties=_properties(task, now),
    )


# -- decode ----------------------------------------------------------------------------------


def _field(
    fields: Mapping[str, Any],
    name: str,
    types: tuple[type, ...],
    where: str,
    *,
    default: Any = None,
    required: bool = False,
) -> Any:
    """``fields[name]`` checked against ``types``; None or absent gives ``default``."""
    value = fields.get(name)
    if value.__class__ in types:  # the common case, checked first: one lookup per header
        return value
    if name not in fields and required:
        raise InvalidTaskError(f"{where} {name!r} missing")
    if value is None and not required:
        return default
    if isinstance(value, bytes) and str in types:  # some AMQP clients hand text as bytes
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidTaskError(f"{where} {name!r} is not utf-8 text: {value!r:.100}") from None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        expected = " or ".join(t.__name__ for t in types)
        raise InvalidTaskError(f"{where} {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _datetime(fields: Mapping[str, Any], name: str, where: str) -> dt.datetime | None:
    value = _field(fields, name, (str, dt.datetime), where)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidTaskError(
                f"{where} {name!r} is not an ISO-8601 datetime: {value!r}"
            ) from None
    return None if value is None else _aware(value)


def _timelimit(fields: Mapping[str, Any], where: str) -> tuple[Any, Any]:
    value = _field(fields, "timelimit", (list, tuple), where, default=(None, None))
    numbers = (int, float, type(None))
    if len(value) != 2 or not all(
        isinstance(v, numbers) and not isinstance(v, bool) for v in value
    ):
        raise InvalidTaskError(
            f"{where} 'timelimit' must be [hard, soft] seconds or null, got {value!r}"
        )
    return value[0], value[1]


def _signatures(embed: Mapping[str, Any], name: str) -> list[dict[str, Any]] | None:
    value = embed.get(name)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, dict) for s in value):
        raise InvalidTaskError(
            f"embed {name!r} must be a list of signature dicts or null, got {value!r:.200}"
        )
    return list(value)


def _embed(value: Any) -> Embed:
    if value is None:
        return Embed()
    if not isinstance(value, Mapping):
        raise InvalidTaskError(f"embed must be a dict, got {type(value).__name__}")
    chord = value.get("chord")
    if chord is not None and not isinstance(chord, dict):
        raise InvalidTaskError(f"embed 'chord' must be a signature dict, got {chord!r:.200}")
    return Embed(
        callbacks=_signatures(value, "callbacks"),
        errbacks=_signatures(value, "errbacks"),
        chain=_signatures(value, "chain"),
        chord=chord,
    )


def _from_v1(body: Mapping[str, Any], headers: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol fields of a v1 (or hybrid) message; protocol headers win over the body."""
    fields = {name: body[name] for name in _V1_FIELDS if name in body}
    if fields.get("group") is None and body.get("taskset") is not None:
        fields["group"] = body["taskset"]
    fields.update((k, v) for k, v in headers.items() if k in PROTOCOL_HEADERS)
    return fields


def _is_v1_body(payload: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """Whether a dict body really is protocol v1 (or Celery's hybrid form), as Celery decides.

    Without a ``task`` header the body must name the task itself (v1). With one (v2 headers)
    only Celery's hybrid form is v1: a body carrying ``args``. Any other dict is not a task
    message, so it is never run with made-up empty arguments.
    """
    if "task" in headers:
        return "args" in payload
    return "task" in payload


def _split_body(payload: Any, headers: Mapping[str, Any]) -> tuple[dict[str, Any], Any, str]:
    """``(protocol fields, [args, kwargs, embed], where fields came from)``."""
    if isinstance(payload, (list, tuple)):
        if len(payload) != 3:
            raise InvalidTaskError(
                f"body must be [args, kwargs, embed], got a list of {len(payload)} items"
            )
        return dict(headers), payload, "header"
    if isinstance(payload, Mapping) and _is_v1_body(payload, headers):
        embed = {k: payload.get(k) for k in ("callbacks", "errbacks", "chord")}
        parts = [payload.get("args", []), payload.get("kwargs", {}), embed]
        return _from_v1(payload, headers), parts, "protocol v1 body field"
    if isinstance(payload, Mapping) and "task" in headers:
        raise InvalidTaskError(
            f"the headers name task {headers['task']!r:.200} (protocol v2), so the body must be "
            "[args, kwargs, embed], got a dict without 'args' (a protocol v1 body carries "
            f"'args'; keys found: {sorted(map(str, payload))!r:.200})"
        )
    raise InvalidTaskError(
        f"body must be [args, kwargs, embed] (or a protocol v1 dict with 'task'), "
        f"got {type(payload).__name__}"
    )


def decode_task(message: Message, *, accept: Collection[str]) -> TaskMessage:
    """Parse a task message (protocol v2, v1 or hybrid) into a ``TaskMessage``.

    Raises ``ContentDisallowed`` when the content type is not in ``accept``, ``DecodeError``
    when the body does not decompress or decode, ``InvalidTaskError`` when it decodes to
    something that is not a task message (the error names the offending part).
    """
    headers = message.headers
    body = message.body
    compression = headers.get("compression")
    if compression:
        body = decompress(body, compression)
    payload = loads(body, message.content_type, message.content_encoding, accept=accept)
    fields, (args, kwargs, embed), where = _split_body(payload, headers)
    if not isinstance(args, (list, tuple)):
        raise InvalidTaskError(f"args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping):
        raise InvalidTaskError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    time_limit, soft_time_limit = _timelimit(fields, where)
    argsrepr = _field(fields, "argsrepr", (str,), where)
    kwargsrepr = _field(fields, "kwargsrepr", (str,), where)
    if where != "header":  # v1 bodies carry no reprs; Celery makes them on receipt
        argsrepr = argsrepr if argsrepr is not None else saferepr(tuple(args))
        kwargsrepr = kwargsrepr if kwargsrepr is not None else saferepr(dict(kwargs))
    properties = message.properties
    return TaskMessage(
        task=_field(fields, "task", (str,), where, required=True),
        id=_field(fields, "id", (str,), where, required=True),
        args=tuple(args),
        kwargs=dict(kwargs),
        embed=_embed(embed),
        eta=_datetime(fields, "eta", where),
        expires=_datetime(fields, "expires", where),
        retries=_field(fields, "retries", (int,), where, default=0),
        group=_field(fields, "group", (str,), where),
        group_index=_field(fields, "group_index", (int,), where),
        root_id=_field(fields, "root_id", (str,), where),
        parent_id=_field(fields, "parent_id", (str,), where),
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        shadow=_field(fields, "shadow", (str,), where),
        argsrepr=argsrepr,
        kwargsrepr=kwargsrepr,
        origin=_field(fields, "origin", (str,), where),
        ignore_result=_field(fields, "ignore_result", (bool,), where),
        replaced_task_nesting=_field(fields, "replaced_task_nesting", (int,), where, default=0),
        stamped_headers=_stamped_headers(fields, where),
        stamps=dict(_field(fields, "stamps", (dict,), where, default={})),
        extra_headers={k: v for k, v in headers.items() if k not in PROTOCOL_HEADERS},
        correlation_id=_field(properties, "correlation_id", (str,), "property"),
        reply_to=_field(properties, "reply_to", (str,), "property"),
        priority=_field(properties, "priority", (int,), "property"),
        delivery_mode=_field(properties, "delivery_mode", (int,), "property", default=2),
        extra_properties={k: v for k, v in properties.items() if k in MESSAGE_PROPERTIES},
    )


def _stamped_headers(fields: Mapping[str, Any], where: str) -> list[str] | None:
    value = _field(fields, "stamped_headers", (list, tuple), where)
    if value is not None and not all(isinstance(name, str) for name in value):
        raise InvalidTaskError(f"{where} 'stamped_headers' must be a list of str, got {value!r}")
    return None if value is None else list(value)
