"""Task and group results in django-celery-results' tables (``result_backend='django-db'``).

Columns as django-celery-results keeps them: the result, args, kwargs and meta serialized
with the result serializer as text (``content_type``/``content_encoding`` beside them;
binary serializers base64-encoded), ``meta`` holding ``children`` (and group/parent ids).
"""

from __future__ import annotations

from django.db import models

from celeriac import states

_STATES = sorted((state, state) for state in states.ALL_STATES)


class TaskResult(models.Model):
    """One task's state and result."""

    task_id = models.CharField(max_length=255, unique=True, verbose_name="Task ID")
    periodic_task_name = models.CharField(
        max_length=255, null=True, verbose_name="Periodic Task Name"
    )
    task_name = models.CharField(max_length=255, null=True, verbose_name="Task Name")
    task_args = models.TextField(null=True, verbose_name="Task Positional Arguments")
    task_kwargs = models.TextField(null=True, verbose_name="Task Named Arguments")
    status = models.CharField(
        max_length=50, default=states.PENDING, choices=_STATES, verbose_name="Task State"
    )
    worker = models.CharField(max_length=100, default=None, null=True, verbose_name="Worker")
    content_type = models.CharField(max_length=128, verbose_name="Result Content Type")
    content_encoding = models.CharField(max_length=64, verbose_name="Result Encoding")
    result = models.TextField(null=True, default=None, editable=False, verbose_name="Result Data")
    date_created = models.DateTimeField(auto_now_add=True, verbose_name="Created DateTime")
    date_started = models.DateTimeField(null=True, default=None, verbose_name="Started DateTime")
    date_done = models.DateTimeField(auto_now=True, verbose_name="Completed DateTime")
    traceback = models.TextField(blank=True, null=True, verbose_name="Traceback")
    meta = models.TextField(
        null=True, default=None, editable=False, verbose_name="Task Meta Information"
    )

    class Meta:
        db_table = "django_celery_results_taskresult"
        ordering = ["-date_done"]
        verbose_name = "task result"
        verbose_name_plural = "task results"
        indexes = [
            models.Index(fields=["task_name"]),
            models.Index(fields=["status"]),
            models.Index(fields=["worker"]),
            models.Index(fields=["date_created"]),
            models.Index(fields=["date_done"]),
            models.Index(fields=["periodic_task_name"]),
        ]

    def __str__(self) -> str:
        return f"<Task: {self.task_id} ({self.status})>"


class GroupResult(models.Model):
    """A saved group: its members' ids (``GroupResult.save()``)."""

    group_id = models.CharField(max_length=255, unique=True, verbose_name="Group ID")
    date_created = models.DateTimeField(auto_now_add=True, verbose_name="Created DateTime")
    date_done = models.DateTimeField(auto_now=True, verbose_name="Completed DateTime")
    content_type = models.CharField(max_length=128, verbose_name="Result Content Type")
    content_encoding = models.CharField(max_length=64, verbose_name="Result Encoding")
    result = models.TextField(null=True, default=None, verbose_name="Result Data")

    class Meta:
        db_table = "django_celery_results_groupresult"
        ordering = ["-date_done"]
        verbose_name = "group result"
        verbose_name_plural = "group results"
        indexes = [
            models.Index(fields=["date_created"]),
            models.Index(fields=["date_done"]),
        ]

    def __str__(self) -> str:
        return f"<Group: {self.group_id}>"
