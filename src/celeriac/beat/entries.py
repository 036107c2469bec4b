"""The schedule entries, under the name they had before they moved below the app: they live in
``celeriac.periodic.entries`` (docs/design/architecture.md, "Layers")."""

from __future__ import annotations

from celeriac.periodic.entries import (
    MISSED_POLICIES,
    ScheduleEntry,
    add_periodic_task,
    entry_from_config,
    entry_from_definition,
    parse_beat_schedule,
    schedule_from_dict,
)

__all__ = [
    "MISSED_POLICIES",
    "ScheduleEntry",
    "add_periodic_task",
    "entry_from_config",
    "entry_from_definition",
    "parse_beat_schedule",
    "schedule_from_dict",
]
