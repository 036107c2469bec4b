"""Beat: Celery's periodic task scheduler, with persistent state and high availability.

Configure entries in ``beat_schedule`` (or with ``app.add_periodic_task``), run
``celeriac -A proj beat`` (as many as you like: one leads, the others stand by), and edit
the schedule at run time with ``celeriac beat add|remove|enable|disable|run-now``.

- ``schedules``: ``schedule``, ``crontab``, ``solar`` (also ``celeriac.schedules``)
- ``entries``: the entry model, ``beat_schedule`` parsing, ``add_periodic_task``
- ``store``: the schedule store (memory, SQLite; Redis in ``redis_store``); ``lease``: the
  leader lease (memory, SQLite; Redis in ``redis_lease``)
- ``scheduler``: the loop (``Scheduler.tick``); ``service``: ``Beat``, ``EmbeddedBeat``
"""

from __future__ import annotations

from celeriac.beat.lease import LeaderLease, MemoryLease, SQLiteLease
from celeriac.beat.redis_lease import RedisLease
from celeriac.beat.redis_store import RedisScheduleStore
from celeriac.beat.scheduler import Scheduler
from celeriac.beat.service import Beat, EmbeddedBeat, run_embedded_beat
from celeriac.beat.store import MemoryScheduleStore, ScheduleStore, SQLiteScheduleStore
from celeriac.periodic.entries import ScheduleEntry, add_periodic_task, parse_beat_schedule
from celeriac.periodic.schedules import BaseSchedule, crontab, schedule, solar

__all__ = [
    "BaseSchedule",
    "Beat",
    "EmbeddedBeat",
    "LeaderLease",
    "MemoryLease",
    "MemoryScheduleStore",
    "RedisLease",
    "RedisScheduleStore",
    "SQLiteLease",
    "SQLiteScheduleStore",
    "ScheduleEntry",
    "ScheduleStore",
    "Scheduler",
    "add_periodic_task",
    "crontab",
    "parse_beat_schedule",
    "run_embedded_beat",
    "schedule",
    "solar",
]
