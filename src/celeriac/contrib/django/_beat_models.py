"""Periodic tasks edited in the Django admin, in django-celery-beat's tables.

A ``PeriodicTask`` names a task, its arguments (JSON), its sending options and exactly one
schedule: an interval, a crontab (in its own timezone), a solar event or a clocked time
(one-off). ``PeriodicTasks`` holds one row whose ``last_update`` changes with every edit of
any of them; beat polls it to pick edits up without a restart
(``celeriac.contrib.django.schedulers``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from celeriac.periodic.schedules import crontab

PERIOD_CHOICES = [
    (p, p.capitalize()) for p in ("days", "hours", "minutes", "seconds", "microseconds")
]
SOLAR_EVENTS = [
    (e, e.replace("_", " ").capitalize())
    for e in (
        "dawn_astronomical",
        "dawn_civil",
        "dawn_nautical",
        "dusk_astronomical",
        "dusk_civil",
        "dusk_nautical",
        "solar_noon",
        "sunrise",
        "sunset",
    )
]


class IntervalSchedule(models.Model):
    """Every ``every`` ``period``s after the last run."""

    every = models.IntegerField(help_text="Number of periods between runs")
    period = models.CharField(max_length=24, choices=PERIOD_CHOICES)

    class Meta:
        db_table = "django_celery_beat_intervalschedule"
        ordering = ["period", "every"]
        verbose_name = "interval"

    @property
    def seconds(self) -> float:
        return dt.timedelta(**{self.period: self.every}).total_seconds()

    def __str__(self) -> str:
        return f"every {self.every} {self.period}"


class CrontabSchedule(models.Model):
    """Cron fields, matched in ``timezone``."""

    minute = models.CharField(max_length=240, default="*")
    hour = models.CharField(max_length=96, default="*")
    day_of_month = models.CharField(max_length=124, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    day_of_week = models.CharField(max_length=64, default="*")
    timezone = models.CharField(max_length=63, default="UTC", help_text="An IANA timezone name")

    class Meta:
        db_table = "django_celery_beat_crontabschedule"
        ordering = ["month_of_year", "day_of_month", "day_of_week", "hour", "minute", "timezone"]
        verbose_name = "crontab"

    def clean(self) -> None:
        try:
            crontab(
                self.minute,
                self.hour,
                self.day_of_week,
                self.day_of_month,
                self.month_of_year,
                tz=self.timezone,
            )
        except (ValueError, LookupError) as exc:
            raise ValidationError(str(exc)) from exc

    def __str__(self) -> str:
        fields = (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        return f"{' '.join(fields)} (m/h/dM/MY/d) {self.timezone}"


class SolarSchedule(models.Model):
    """A solar event at a place."""

    event = models.CharField(max_length=24, choices=SOLAR_EVENTS)
    latitude = models.DecimalField(max_digits=9, decimal_places=6)
    longitude = models.DecimalField(max_digits=9, decimal_places=6)

    class Meta:
        db_table = "django_celery_beat_solarschedule"
        ordering = ["event", "latitude", "longitude"]
        unique_together = [("event", "latitude", "longitude")]
        verbose_name = "solar event"

    def __str__(self) -> str:
        return f"{self.get_event_display()} ({self.latitude}, {self.longitude})"


class ClockedSchedule(models.Model):
    """Once, at ``clocked_time`` (its periodic task must be one-off)."""

    clocked_time = models.DateTimeField()

    class Meta:
        db_table = "django_celery_beat_clockedschedule"
        ordering = ["clocked_time"]
        verbose_name = "clocked"

    def __str__(self) -> str:
        return f"{self.clocked_time}"


class PeriodicTasks(models.Model):
    """One row whose ``last_update`` changes with every schedule edit (beat polls it)."""

    ident = models.SmallIntegerField(default=1, primary_key=True, unique=True)
    last_update = models.DateTimeField(null=False)

    class Meta:
        db_table = "django_celery_beat_periodictasks"

    @classmethod
    def changed(cls, **_: Any) -> None:
        cls.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})

    @classmethod
    def last_change(cls) -> dt.datetime | None:
        row = cls.objects.filter(ident=1).first()
        return None if row is None else row.last_update


class PeriodicTask(models.Model):
    """A task sent on a schedule (the admin's "Periodic tasks")."""

    name = models.CharField(max_length=200, unique=True, help_text="A unique name for this task")
    task = models.CharField(max_length=200, help_text='The task\'s name, e.g. "proj.tasks.cleanup"')
    interval = models.ForeignKey(IntervalSchedule, on_delete=models.CASCADE, null=True, blank=True)
    crontab = models.ForeignKey(CrontabSchedule, on_delete=models.CASCADE, null=True, blank=True)
    solar = models.ForeignKey(SolarSchedule, on_delete=models.CASCADE, null=True, blank=True)
    clocked = models.ForeignKey(ClockedSchedule, on_delete=models.CASCADE, null=True, blank=True)
    args = models.TextField(blank=True, default="[]", help_text='JSON list, e.g. ["arg1", 2]')
    kwargs = models.TextField(blank=True, default="{}", help_text='JSON object, e.g. {"key": 1}')
    queue = models.CharField(max_length=200, blank=True, null=True, default=None)
    exchange = models.CharField(max_length=200, blank=True, null=True, default=None)
    routing_key = models.CharField(max_length=200, blank=True, null=True, default=None)
    headers = models.TextField(blank=True, default="{}", help_text="JSON object of message headers")
    priority = models.PositiveIntegerField(
        default=None, validators=[MaxValueValidator(255)], blank=True, null=True
    )
    expires = models.DateTimeField(blank=True, null=True, help_text="Not sent after this time")
    expire_seconds = models.PositiveIntegerField(
        blank=True, null=True, help_text="Each run expires this many seconds after it is sent"
    )
    one_off = models.BooleanField(default=False, help_text="Run once, then disable")
    start_time = models.DateTimeField(blank=True, null=True, help_text="Not sent before this time")
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(editable=False, blank=True, null=True)
    total_run_count = models.PositiveIntegerField(default=0, editable=False)
    date_changed = models.DateTimeField(auto_now=True)
    description = models.TextField(blank=True)

    class Meta:
        db_table = "django_celery_beat_periodictask"
        verbose_name = "periodic task"

    def clean(self) -> None:
        chosen = [
            kind
            for kind in ("interval", "crontab", "solar", "clocked")
            if getattr(self, f"{kind}_id")
        ]
        if len(chosen) != 1:
            raise ValidationError("Choose exactly one of interval, crontab, solar or clocked.")
        if self.clocked_id and not self.one_off:
            raise ValidationError({"one_off": "A clocked schedule runs once: tick one-off."})
        for field, kind in (("args", list), ("kwargs", dict), ("headers", dict)):
            try:
                value = json.loads(getattr(self, field) or ("[]" if kind is list else "{}"))
            except ValueError as exc:
                raise ValidationError({field: f"not valid JSON: {exc}"}) from exc
            if not isinstance(value, kind):
                raise ValidationError({field: f"must be a JSON {kind.__name__}"})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.exchange = self.exchange or None
        self.routing_key = self.routing_key or None
        self.queue = self.queue or None
        if not self.enabled:
            self.last_run_at = None
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.name}: {self.interval or self.crontab or self.solar or self.clocked}"


_TRACKED = (IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule, PeriodicTask)


def _changed(sender: Any, **_: Any) -> None:
    PeriodicTasks.changed()


def connect_change_tracking() -> None:
    """Bump ``PeriodicTasks.last_update`` whenever a schedule or periodic task is saved or
    deleted, so running beats re-read the schedule."""
    for model in _TRACKED:
        post_save.connect(
            _changed, sender=model, dispatch_uid=f"celeriac-beat-save-{model.__name__}"
        )
        post_delete.connect(
            _changed, sender=model, dispatch_uid=f"celeriac-beat-delete-{model.__name__}"
        )
