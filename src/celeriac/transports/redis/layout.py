"""The Redis broker's options, key names and kombu's message envelope.

Everything here is pure (no I/O): ``BrokerOptions`` reads ``broker_transport_options`` by
Celery's names, ``Keys`` names every key and channel (all behind ``global_keyprefix``), and
``encode_envelope`` / ``decode_envelope`` convert a ``Message`` to and from the JSON envelope
kombu keeps in its lists (wire.md §2.2: base64 body, ``delivery_info``, a publisher-made
``delivery_tag``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from bisect import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac.exceptions import EncodeError, ImproperlyConfigured
from celeriac.protocol.message import Message
from celeriac.transports import positive_option

__all__ = [
    "BrokerOptions",
    "Envelope",
    "Keys",
    "decode_envelope",
    "encode_envelope",
    "topic_pattern",
]

_STRATEGIES = ("round_robin", "priority", "sorted")
# Properties the envelope carries for the transport; a Message's own properties never hold them.
_ENVELOPE_PROPERTIES = ("delivery_info", "body_encoding", "delivery_tag")


def _flag(options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _steps(options: Mapping[str, Any]) -> tuple[int, ...]:
    raw = options.get("priority_steps", (0, 3, 6, 9))
    try:
        steps = tuple(sorted({int(step) for step in raw}))
    except (TypeError, ValueError):
        steps = ()
    if not steps or steps[0] != 0 or steps[-1] > 9:
        raise ImproperlyConfigured(
            f"broker_transport_options['priority_steps'] must be integers from 0 to 9 starting "
            f"with 0 (kombu's default is [0, 3, 6, 9]), not {raw!r}."
        )
    return steps


@dataclass(frozen=True)
class BrokerOptions:
    """The transport options the Redis broker reads (others are ignored)."""

    global_keyprefix: str = ""
    sep: str = "\x06\x16"
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    queue_order_strategy: str = "round_robin"
    visibility_timeout: float = 3600.0
    lease_timeout: float = 30.0
    max_deliveries: int = 10
    delayed_delivery: bool = True
    restore_visible: bool = True
    recover_interval: float = 1.0
    polling_interval: float = 0.1
    fanout_prefix: bool | str = True
    fanout_patterns: bool = True
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> BrokerOptions:
        strategy = str(options.get("queue_order_strategy", "round_robin"))
        if strategy not in _STRATEGIES:
            raise ImproperlyConfigured(
                f"broker_transport_options['queue_order_strategy'] must be one of "
                f"{', '.join(_STRATEGIES)}, not {strategy!r}."
            )
        visibility = positive_option(options, "visibility_timeout", 3600.0)
        fanout_prefix = options.get("fanout_prefix", True)
        return cls(
            global_keyprefix=str(options.get("global_keyprefix") or ""),
            sep=str(options.get("sep") or "\x06\x16"),
            priority_steps=_steps(options),
            queue_order_strategy=strategy,
            visibility_timeout=visibility,
            # A lease never outlives the visibility timeout, or Celery workers sharing the
            # Redis would restore a message whose Celeriac worker is still renewing it.
            lease_timeout=positive_option(options, "lease_timeout", min(30.0, visibility)),
            max_deliveries=int(positive_option(options, "max_deliveries", 10, integer=True)),
            delayed_delivery=_flag(options, "delayed_delivery", True),
            restore_visible=_flag(options, "restore_visible", True),
            recover_interval=positive_option(options, "recover_interval", 1.0),
            polling_interval=positive_option(options, "polling_interval", 0.1),
            fanout_prefix=fanout_prefix if isinstance(fanout_prefix, str) else bool(fanout_prefix),
            fanout_patterns=_flag(options, "fanout_patterns", True),
            unacked_key=str(options.get("unacked_key") or "unacked"),
            unacked_index_key=str(options.get("unacked_index_key") or "unacked_index"),
        )

    def step_of(self, priority: int) -> int:
        """The priority step (list) a message priority lands in, as kombu computes it."""
        steps = self.priority_steps
        return steps[bisect(steps, max(0, min(priority, 9))) - 1]


class Keys:
    """Names of every key and Pub/Sub channel, behind ``global_keyprefix``."""

    def __init__(self, options: BrokerOptions, db: int) -> None:
        prefix = options.global_keyprefix
        self.prefix = prefix
        self.sep = options.sep
        self.steps = options.priority_steps
        self.unacked = prefix + options.unacked_key
        self.unacked_index = prefix + options.unacked_index_key
        self.leases = prefix + "_celeriac.leases"
        self.claims = prefix + "_celeriac.claims"
        self.deliveries = prefix + "_celeriac.deliveries"
        self.dead_letters = prefix + "_celeriac.dead_letters"
        self.exchange_types = prefix + "_celeriac.exchanges"
        fanout = options.fanout_prefix
        if fanout is True:
            fanout = f"/{db}."
        self._fanout = prefix + (fanout or "")
        self._patterns = options.fanout_patterns

    def consumer_keys(self) -> list[str]:
        """The first six KEYS of every consumer script (see ``scripts``)."""
        return [
            self.unacked,
            self.unacked_index,
            self.leases,
            self.claims,
            self.deliveries,
            self.dead_letters,
        ]

    def queue(self, queue: str, step: int = 0) -> str:
        """The list of ``queue`` holding the messages of priority ``step``."""
        return f"{self.prefix}{queue}" if step == 0 else f"{self.prefix}{queue}{self.sep}{step}"

    def delayed(self, queue: str) -> str:
        return f"{self.prefix}_celeriac.delayed.{queue}"

    def binding(self, exchange: str) -> str:
        return f"{self.prefix}_kombu.binding.{exchange}"

    def binding_permanent(self, exchange: str) -> str:
        return f"{self.prefix}_kombu.binding_permanent.{exchange}"

    def fanout_queues(self, exchange: str) -> str:
        return f"{self.prefix}_celeriac.fanout.{exchange}"

    def topic(self, exchange: str, routing_key: str) -> str:
        """kombu's Pub/Sub channel for a fanout message."""
        if routing_key and self._patterns:
            return f"{self._fanout}{exchange}/{routing_key}"
        return f"{self._fanout}{exchange}"

    def binding_member(self, routing_key: str, pattern: str, queue: str) -> str:
        return self.sep.join([routing_key, pattern, queue])


def topic_pattern(binding_key: str) -> str:
    """The regex kombu stores for a topic binding (its routing is done with ``matches``)."""
    words = []
    for word in binding_key.split("."):
        if word == "*":
            words.append(r"[^\.]+")
        elif word == "#":
            words.append(r".*?")
        else:
            words.append("".join(c if c.isalnum() or c in "#*" else "\\" + c for c in word))
    return "^" + r"\.".join(words) + "$"


def encode_envelope(message: Message, exchange: str, routing_key: str) -> tuple[str, str]:
    """The kombu envelope of ``message`` as JSON, and its new delivery tag."""
    tag = str(uuid.uuid4())
    properties: dict[str, Any] = {}
    for name, value in message.properties.items():
        if name == "priority":
            properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
        if name not in _ENVELOPE_PROPERTIES:
            properties[name] = value
    properties.setdefault("delivery_info", {"exchange": exchange, "routing_key": routing_key})
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = tag
    envelope = {
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": message.content_encoding,
        "content-type": message.content_type,
        "headers": message.headers,
        "properties": properties,
    }
    try:
        return json.dumps(envelope), tag
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            "The Redis broker keeps messages as kombu's JSON envelope, so headers and "
            f"properties may hold only strings, numbers, booleans, None, lists and dicts: {exc}"
        ) from exc


@dataclass(frozen=True)
class Envelope:
    """A decoded envelope: the message and what the transport keeps beside it."""

    message: Message
    tag: str
    exchange: str
    routing_key: str
    redelivered: bool


def _part(fields: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    """``fields[name]`` when it has type ``kind``; null or absent gives ``default``."""
    value = fields.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise TypeError(f"{name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def decode_envelope(raw: bytes | str) -> Envelope:
    """Read a kombu envelope. Raises ValueError (with the reason) when it is not one.

    Every part is type-checked here, so what comes out has the types ``Message`` promises
    whatever a raw ``LPUSH`` put in the list.
    """
    try:
        envelope = json.loads(raw)
        if not isinstance(envelope, dict):
            raise TypeError(f"the envelope must be a JSON object, got {type(envelope).__name__}")
        properties = dict(envelope["properties"])
        headers = _part(envelope, "headers", dict, {})
        body = _part(envelope, "body", str, "")
        encoding = _part(envelope, "content-encoding", str, "")
        if properties.get("body_encoding") == "base64":
            data = base64.b64decode(body, validate=True)
        else:
            data = body.encode(encoding or "utf-8")
        info = _part(properties, "delivery_info", dict, {})
        message = Message(
            body=data,
            content_type=_part(envelope, "content-type", str, ""),
            content_encoding=encoding,
            headers=dict(headers),
            properties={k: v for k, v in properties.items() if k not in _ENVELOPE_PROPERTIES},
        )
        return Envelope(
            message=message,
            tag=str(properties.get("delivery_tag") or ""),
            exchange=str(info.get("exchange") or ""),
            routing_key=str(info.get("routing_key") or ""),
            redelivered=bool(headers.get("redelivered") or info.get("redelivered")),
        )
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        LookupError,
        binascii.Error,
        RecursionError,
    ) as exc:
        raise ValueError(f"not a kombu message envelope: {exc!r:.300}") from exc
