"""Exchanges, queues and how a routing key reaches queues (pure; no I/O).

``Exchange`` and ``Queue`` mirror kombu's objects that Celery users import. ``matches`` says
whether a binding delivers a routing key for an exchange type; the transports that emulate
exchanges (memory, sqlite, redis) route with it, AMQP lets the broker do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

__all__ = ["Exchange", "ExchangeType", "Queue", "matches"]

ExchangeType = Literal["direct", "topic", "fanout", "headers"]


@dataclass(frozen=True)
class Exchange:
    """A named exchange; ``Exchange('')`` is the default exchange (routing key = queue name)."""

    name: str = ""
    type: ExchangeType = "direct"
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Queue:
    """A named queue bound to an exchange with a routing (binding) key."""

    name: str
    exchange: Exchange | None = None
    routing_key: str | None = None
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    max_priority: int | None = None
    queue_arguments: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.exchange is None:
            object.__setattr__(self, "exchange", Exchange(self.name))
        if self.routing_key is None:
            object.__setattr__(self, "routing_key", self.name)

    @property
    def bound_exchange(self) -> Exchange:
        assert self.exchange is not None
        return self.exchange

    @property
    def binding_key(self) -> str:
        assert self.routing_key is not None
        return self.routing_key


def _topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _topic_match(rest, words[1:])


@lru_cache(maxsize=4096)
def _topic_matches(binding_key: str, routing_key: str) -> bool:
    return _topic_match(tuple(binding_key.split(".")), tuple(routing_key.split(".")))


def matches(exchange_type: str, binding_key: str, routing_key: str) -> bool:
    """Whether a queue bound with ``binding_key`` receives a message sent with ``routing_key``."""
    if exchange_type == "fanout":
        return True
    if exchange_type == "topic":
        return _topic_matches(binding_key, routing_key)
    return binding_key == routing_key
