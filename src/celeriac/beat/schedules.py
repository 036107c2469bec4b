"""The schedules, under the name they had before they moved below the app: they live in
``celeriac.periodic.schedules`` (docs/design/architecture.md, "Layers")."""

from __future__ import annotations

from celeriac.periodic.schedules import (
    BaseSchedule,
    ParseException,
    app_timezone,
    crontab,
    maybe_schedule,
    schedstate,
    schedule,
    solar,
)

__all__ = [
    "BaseSchedule",
    "ParseException",
    "app_timezone",
    "crontab",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
]
