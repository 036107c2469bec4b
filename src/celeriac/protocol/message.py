"""The two shapes a task travels in: the wire unit and the decoded task.

``Message`` is what a transport moves: AMQP-style headers and properties around an encoded
body. ``TaskMessage`` is what a worker reads out of it: protocol v2's headers and body
``[args, kwargs, embed]`` as typed fields. ``protocol.v2`` converts between them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from celeriac._pickling import fast_pickle

__all__ = ["Embed", "Message", "TaskMessage"]


@fast_pickle
@dataclass(frozen=True, slots=True)
class Message:
    """One broker message.

    ``properties`` holds AMQP basic properties by their Celery names: ``correlation_id``,
    ``reply_to``, ``delivery_mode``, ``priority`` and, when set, ``expiration``.
    """

    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def priority(self) -> int:
        value = self.properties.get("priority")
        return int(value) if isinstance(value, int) else 0


@fast_pickle
@dataclass(frozen=True, slots=True)
class Embed:
    """The third item of a v2 body: what runs after the task, as signature dicts."""

    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None


@fast_pickle
@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A decoded protocol v2 task message (see wire.md §1)."""

    task: str
    id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    embed: Embed = field(default_factory=Embed)
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    retries: int = 0
    group: str | None = None
    group_index: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    shadow: str | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    origin: str | None = None
    # None: the header was absent (a Celery 5.0 sender), so the task's own option decides.
    ignore_result: bool | None = None
    replaced_task_nesting: int = 0
    stamped_headers: list[str] | None = None
    stamps: dict[str, Any] = field(default_factory=dict)
    # Headers beyond the protocol's own (``apply_async(headers=...)``), as sent.
    extra_headers: dict[str, Any] = field(default_factory=dict)
    # Properties.
    correlation_id: str | None = None
    reply_to: str | None = None
    priority: int | None = None
    delivery_mode: int = 2
    # Other message properties (``apply_async(app_id=...)``): ``app_id``, ``user_id``, ...
    extra_properties: dict[str, Any] = field(default_factory=dict)
