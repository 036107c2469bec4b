"""Celeriac's own tables: counters (the chord join of ``django-db``) and beat's run state,
fencing and leader lease (``celeriac.contrib.django.schedulers``)."""

from __future__ import annotations

from django.db import models


class Counter(models.Model):
    """An atomic counter with an expiry (``ResultBackend.incr``)."""

    key = models.CharField(max_length=255, primary_key=True)
    value = models.BigIntegerField(default=0)
    expires_at = models.FloatField(null=True)  # Unix time; NULL: never

    class Meta:
        db_table = "celeriac_counter"


class BeatState(models.Model):
    """Beat's state of one periodic task: its clock and its claimed, unconfirmed send."""

    name = models.CharField(max_length=200, primary_key=True)
    fingerprint = models.CharField(max_length=64, null=True)
    last_run_at = models.FloatField(null=True)
    total_run_count = models.PositiveIntegerField(default=0)
    run_requested = models.BooleanField(default=False)
    pending_task_id = models.CharField(max_length=255, null=True)
    pending_since = models.FloatField(null=True)

    class Meta:
        db_table = "celeriac_beat_state"


class BeatMeta(models.Model):
    """Beat's counters: ``fence`` (the newest leader's token), ``version``, ``lock``."""

    key = models.CharField(max_length=32, primary_key=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        db_table = "celeriac_beat_meta"


class BeatLease(models.Model):
    """The leader lease of the beats sharing the schedule (``celeriac.beat.lease``)."""

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=255, null=True)
    token = models.BigIntegerField(default=0)
    expires_at = models.FloatField(default=0.0)

    class Meta:
        db_table = "celeriac_beat_lease"
