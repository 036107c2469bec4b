"""Celeriac's own tables: counters, beat's run state, fence and leader lease."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("celeriac", "0002_periodic_tasks")]

    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField(default=0)),
                ("expires_at", models.FloatField(null=True)),
            ],
            options={
                "db_table": "celeriac_counter",
            },
        ),
        migrations.CreateModel(
            name="BeatState",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("fingerprint", models.CharField(max_length=64, null=True)),
                ("last_run_at", models.FloatField(null=True)),
                ("total_run_count", models.PositiveIntegerField(default=0)),
                ("run_requested", models.BooleanField(default=False)),
                ("pending_task_id", models.CharField(max_length=255, null=True)),
                ("pending_since", models.FloatField(null=True)),
            ],
            options={
                "db_table": "celeriac_beat_state",
            },
        ),
        migrations.CreateModel(
            name="BeatMeta",
            fields=[
                ("key", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={
                "db_table": "celeriac_beat_meta",
            },
        ),
        migrations.CreateModel(
            name="BeatLease",
            fields=[
                ("name", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("holder", models.CharField(max_length=255, null=True)),
                ("token", models.BigIntegerField(default=0)),
                ("expires_at", models.FloatField(default=0.0)),
            ],
            options={
                "db_table": "celeriac_beat_lease",
            },
        ),
    ]
