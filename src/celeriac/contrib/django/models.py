"""The app's models: results (django-celery-results' tables), periodic tasks
(django-celery-beat's tables), and Celeriac's own bookkeeping.

The result and schedule tables keep the names and columns of django-celery-results and
django-celery-beat, so a project moving from them keeps its data
(``manage.py migrate celeriac --fake-initial``; docs/django.md).
"""

from celeriac.contrib.django._beat_models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
    SolarSchedule,
)
from celeriac.contrib.django._own_models import BeatLease, BeatMeta, BeatState, Counter
from celeriac.contrib.django._result_models import GroupResult, TaskResult

__all__ = [
    "BeatLease",
    "BeatMeta",
    "BeatState",
    "ClockedSchedule",
    "Counter",
    "CrontabSchedule",
    "GroupResult",
    "IntervalSchedule",
    "PeriodicTask",
    "PeriodicTasks",
    "SolarSchedule",
    "TaskResult",
]
