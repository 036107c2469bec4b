"""Admin pages: browse, filter and delete task and group results; edit periodic tasks and
their schedules (beat picks edits up without a restart)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from celeriac.contrib.django.models import (
    ClockedSchedule,
    CrontabSchedule,
    GroupResult,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
    TaskResult,
)


@admin.register(TaskResult)
class TaskResultAdmin(admin.ModelAdmin):
    """Results are written by workers: shown read-only, and deletable."""

    date_hierarchy = "date_done"
    list_display = ("task_id", "periodic_task_name", "task_name", "date_done", "status", "worker")
    list_filter = ("status", "date_done", "periodic_task_name", "task_name", "worker")
    search_fields = ("task_name", "task_id", "status", "task_args", "task_kwargs")
    readonly_fields = (
        "task_id",
        "task_name",
        "periodic_task_name",
        "status",
        "worker",
        "content_type",
        "content_encoding",
        "date_created",
        "date_started",
        "date_done",
        "task_args",
        "task_kwargs",
        "result",
        "traceback",
        "meta",
    )

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(GroupResult)
class GroupResultAdmin(admin.ModelAdmin):
    date_hierarchy = "date_done"
    list_display = ("group_id", "date_done")
    list_filter = ("date_done",)
    search_fields = ("group_id",)
    readonly_fields = (
        "group_id",
        "date_created",
        "date_done",
        "content_type",
        "content_encoding",
        "result",
    )

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(admin.ModelAdmin):
    """Periodic tasks: one schedule each; args and kwargs as JSON."""

    list_display = (
        "name",
        "task",
        "enabled",
        "interval",
        "crontab",
        "solar",
        "clocked",
        "one_off",
        "last_run_at",
        "total_run_count",
    )
    list_filter = ("enabled", "one_off", "task", "start_time", "last_run_at")
    search_fields = ("name", "task", "description")
    actions = ("enable_tasks", "disable_tasks")
    fieldsets = (
        (None, {"fields": ("name", "task", "enabled", "description")}),
        (
            "Schedule",
            {
                "fields": (
                    "interval",
                    "crontab",
                    "solar",
                    "clocked",
                    "start_time",
                    "one_off",
                    "expires",
                    "expire_seconds",
                )
            },
        ),
        ("Arguments", {"fields": ("args", "kwargs")}),
        (
            "Execution options",
            {"fields": ("queue", "exchange", "routing_key", "priority", "headers")},
        ),
    )

    @admin.action(description="Enable selected periodic tasks")
    def enable_tasks(self, request: Any, queryset: Any) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected periodic tasks")
    def disable_tasks(self, request: Any, queryset: Any) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: Any, queryset: Any, enabled: bool) -> None:
        count = 0
        for task in queryset:  # save() each, so beat sees the change (and clocks reset)
            task.enabled = enabled
            task.save()
            count += 1
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"{count} periodic task(s) {state}.", messages.SUCCESS)


for schedule_model in (IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    admin.site.register(schedule_model)
