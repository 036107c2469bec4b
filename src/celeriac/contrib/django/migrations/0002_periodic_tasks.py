"""Periodic tasks and their schedules, in django-celery-beat's tables.

Initial, so ``migrate celeriac --fake-initial`` adopts the tables a project already
has from the app Celeriac replaces (docs/django.md)."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("celeriac", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="IntervalSchedule",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("every", models.IntegerField(help_text="Number of periods between runs")),
                (
                    "period",
                    models.CharField(
                        choices=[
                            ("days", "Days"),
                            ("hours", "Hours"),
                            ("minutes", "Minutes"),
                            ("seconds", "Seconds"),
                            ("microseconds", "Microseconds"),
                        ],
                        max_length=24,
                    ),
                ),
            ],
            options={
                "verbose_name": "interval",
                "db_table": "django_celery_beat_intervalschedule",
                "ordering": ["period", "every"],
            },
        ),
        migrations.CreateModel(
            name="CrontabSchedule",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("minute", models.CharField(default="*", max_length=240)),
                ("hour", models.CharField(default="*", max_length=96)),
                ("day_of_month", models.CharField(default="*", max_length=124)),
                ("month_of_year", models.CharField(default="*", max_length=64)),
                ("day_of_week", models.CharField(default="*", max_length=64)),
                (
                    "timezone",
                    models.CharField(
                        default="UTC", help_text="An IANA timezone name", max_length=63
                    ),
                ),
            ],
            options={
                "verbose_name": "crontab",
                "db_table": "django_celery_beat_crontabschedule",
                "ordering": [
                    "month_of_year",
                    "day_of_month",
                    "day_of_week",
                    "hour",
                    "minute",
                    "timezone",
                ],
            },
        ),
        migrations.CreateModel(
            name="SolarSchedule",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "event",
                    models.CharField(
                        choices=[
                            ("dawn_astronomical", "Dawn astronomical"),
                            ("dawn_civil", "Dawn civil"),
                            ("dawn_nautical", "Dawn nautical"),
                            ("dusk_astronomical", "Dusk astronomical"),
                            ("dusk_civil", "Dusk civil"),
                            ("dusk_nautical", "Dusk nautical"),
                            ("solar_noon", "Solar noon"),
                            ("sunrise", "Sunrise"),
                            ("sunset", "Sunset"),
                        ],
                        max_length=24,
                    ),
                ),
                ("latitude", models.DecimalField(decimal_places=6, max_digits=9)),
                ("longitude", models.DecimalField(decimal_places=6, max_digits=9)),
            ],
            options={
                "verbose_name": "solar event",
                "db_table": "django_celery_beat_solarschedule",
                "ordering": ["event", "latitude", "longitude"],
                "unique_together": {("event", "latitude", "longitude")},
            },
        ),
        migrations.CreateModel(
            name="ClockedSchedule",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("clocked_time", models.DateTimeField()),
            ],
            options={
                "verbose_name": "clocked",
                "db_table": "django_celery_beat_clockedschedule",
                "ordering": ["clocked_time"],
            },
        ),
        migrations.CreateModel(
            name="PeriodicTasks",
            fields=[
                (
                    "ident",
                    models.SmallIntegerField(
                        default=1, primary_key=True, serialize=False, unique=True
                    ),
                ),
                ("last_update", models.DateTimeField()),
            ],
            options={
                "db_table": "django_celery_beat_periodictasks",
            },
        ),
        migrations.CreateModel(
            name="PeriodicTask",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="A unique name for this task", max_length=200, unique=True
                    ),
                ),
                (
                    "task",
                    models.CharField(
                        help_text='The task\'s name, e.g. "proj.tasks.cleanup"', max_length=200
                    ),
                ),
                (
                    "args",
                    models.TextField(
                        blank=True, default="[]", help_text='JSON list, e.g. ["arg1", 2]'
                    ),
                ),
                (
                    "kwargs",
                    models.TextField(
                        blank=True, default="{}", help_text='JSON object, e.g. {"key": 1}'
                    ),
                ),
                ("queue", models.CharField(blank=True, default=None, max_length=200, null=True)),
                ("exchange", models.CharField(blank=True, default=None, max_length=200, null=True)),
                (
                    "routing_key",
                    models.CharField(blank=True, default=None, max_length=200, null=True),
                ),
                (
                    "headers",
                    models.TextField(
                        blank=True, default="{}", help_text="JSON object of message headers"
                    ),
                ),
                (
                    "priority",
                    models.PositiveIntegerField(
                        blank=True,
                        default=None,
                        null=True,
                        validators=[django.core.validators.MaxValueValidator(255)],
                    ),
                ),
                (
                    "expires",
                    models.DateTimeField(
                        blank=True, help_text="Not sent after this time", null=True
                    ),
                ),
                (
                    "expire_seconds",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Each run expires this many seconds after it is sent",
                        null=True,
                    ),
                ),
                ("one_off", models.BooleanField(default=False, help_text="Run once, then disable")),
                (
                    "start_time",
                    models.DateTimeField(
                        blank=True, help_text="Not sent before this time", null=True
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("last_run_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("total_run_count", models.PositiveIntegerField(default=0, editable=False)),
                ("date_changed", models.DateTimeField(auto_now=True)),
                ("description", models.TextField(blank=True)),
                (
                    "clocked",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="celeriac.clockedschedule",
                    ),
                ),
                (
                    "crontab",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="celeriac.crontabschedule",
                    ),
                ),
                (
                    "interval",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="celeriac.intervalschedule",
                    ),
                ),
                (
                    "solar",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="celeriac.solarschedule",
                    ),
                ),
            ],
            options={
                "verbose_name": "periodic task",
                "db_table": "django_celery_beat_periodictask",
            },
        ),
    ]
