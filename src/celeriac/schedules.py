"""Celery's ``celery.schedules``: ``from celeriac.schedules import crontab`` works as there.

The schedules themselves live in ``celeriac.periodic.schedules``.
"""

from __future__ import annotations

from celeriac.periodic.schedules import (
    BaseSchedule,
    ParseException,
    crontab,
    maybe_schedule,
    schedstate,
    schedule,
    solar,
)

__all__ = [
    "BaseSchedule",
    "ParseException",
    "crontab",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
]
