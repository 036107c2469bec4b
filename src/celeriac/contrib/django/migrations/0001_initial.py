"""Task and group results, in django-celery-results' tables.

Initial, so ``migrate celeriac --fake-initial`` adopts the tables a project already
has from the app Celeriac replaces (docs/django.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="TaskResult",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("task_id", models.CharField(max_length=255, unique=True, verbose_name="Task ID")),
                (
                    "periodic_task_name",
                    models.CharField(max_length=255, null=True, verbose_name="Periodic Task Name"),
                ),
                (
                    "task_name",
                    models.CharField(max_length=255, null=True, verbose_name="Task Name"),
                ),
                (
                    "task_args",
                    models.TextField(null=True, verbose_name="Task Positional Arguments"),
                ),
                ("task_kwargs", models.TextField(null=True, verbose_name="Task Named Arguments")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("FAILURE", "FAILURE"),
                            ("PENDING", "PENDING"),
                            ("RECEIVED", "RECEIVED"),
                            ("RETRY", "RETRY"),
                            ("REVOKED", "REVOKED"),
                            ("STARTED", "STARTED"),
                            ("SUCCESS", "SUCCESS"),
                        ],
                        default="PENDING",
                        max_length=50,
                        verbose_name="Task State",
                    ),
                ),
                (
                    "worker",
                    models.CharField(
                        default=None, max_length=100, null=True, verbose_name="Worker"
                    ),
                ),
                (
                    "content_type",
                    models.CharField(max_length=128, verbose_name="Result Content Type"),
                ),
                (
                    "content_encoding",
                    models.CharField(max_length=64, verbose_name="Result Encoding"),
                ),
                (
                    "result",
                    models.TextField(
                        default=None, editable=False, null=True, verbose_name="Result Data"
                    ),
                ),
                (
                    "date_created",
                    models.DateTimeField(auto_now_add=True, verbose_name="Created DateTime"),
                ),
                (
                    "date_started",
                    models.DateTimeField(default=None, null=True, verbose_name="Started DateTime"),
                ),
                (
                    "date_done",
                    models.DateTimeField(auto_now=True, verbose_name="Completed DateTime"),
                ),
                ("traceback", models.TextField(blank=True, null=True, verbose_name="Traceback")),
                (
                    "meta",
                    models.TextField(
                        default=None,
                        editable=False,
                        null=True,
                        verbose_name="Task Meta Information",
                    ),
                ),
            ],
            options={
                "verbose_name": "task result",
                "verbose_name_plural": "task results",
                "db_table": "django_celery_results_taskresult",
                "ordering": ["-date_done"],
                "indexes": [
                    models.Index(fields=["task_name"], name="django_cele_task_na_08aec9_idx"),
                    models.Index(fields=["status"], name="django_cele_status_9b6201_idx"),
                    models.Index(fields=["worker"], name="django_cele_worker_d54dd8_idx"),
                    models.Index(fields=["date_created"], name="django_cele_date_cr_f04a50_idx"),
                    models.Index(fields=["date_done"], name="django_cele_date_do_f59aad_idx"),
                    models.Index(
                        fields=["periodic_task_name"], name="django_cele_periodi_de3d11_idx"
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="GroupResult",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "group_id",
                    models.CharField(max_length=255, unique=True, verbose_name="Group ID"),
                ),
                (
                    "date_created",
                    models.DateTimeField(auto_now_add=True, verbose_name="Created DateTime"),
                ),
                (
                    "date_done",
                    models.DateTimeField(auto_now=True, verbose_name="Completed DateTime"),
                ),
                (
                    "content_type",
                    models.CharField(max_length=128, verbose_name="Result Content Type"),
                ),
                (
                    "content_encoding",
                    models.CharField(max_length=64, verbose_name="Result Encoding"),
                ),
                ("result", models.TextField(default=None, null=True, verbose_name="Result Data")),
            ],
            options={
                "verbose_name": "group result",
                "verbose_name_plural": "group results",
                "db_table": "django_celery_results_groupresult",
                "ordering": ["-date_done"],
                "indexes": [
                    models.Index(fields=["date_created"], name="django_cele_date_cr_bd6c1d_idx"),
                    models.Index(fields=["date_done"], name="django_cele_date_do_caae0e_idx"),
                ],
            },
        ),
    ]
