"""``ProducerOptions``: what sending a task reads from the settings, built once per settings
generation by ``celeriac.app.producer.Producer`` (or passed in, built at the edge)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProducerOptions"]


@dataclass(frozen=True, slots=True)
class ProducerOptions:
    """What sending reads from the settings, below the call's, task's and route's options."""

    serializer: str = "json"  # task_serializer
    compression: str | None = None  # task_compression
    send_sent_event: bool = False  # task_send_sent_event
    inherit_parent_priority: bool = False  # task_inherit_parent_priority
    default_priority: int | None = None  # task_default_priority
    default_delivery_mode: int | str = 2  # task_default_delivery_mode (2: persistent)
    publish_retry: bool = True  # task_publish_retry
    # task_publish_retry_policy: the settings' own mapping, so a change made in place shows
    publish_retry_policy: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, conf: Mapping[str, Any]) -> ProducerOptions:
        return cls(
            serializer=str(conf["task_serializer"]),
            compression=conf["task_compression"] or None,
            send_sent_event=bool(conf["task_send_sent_event"]),
            inherit_parent_priority=bool(conf["task_inherit_parent_priority"]),
            default_priority=conf["task_default_priority"],
            default_delivery_mode=conf["task_default_delivery_mode"],
            publish_retry=bool(conf["task_publish_retry"]),
            publish_retry_policy=conf["task_publish_retry_policy"] or {},
        )
