"""The Django app ``celeriac.contrib.django``: results and periodic tasks in the database."""

from __future__ import annotations

from django.apps import AppConfig


class CeleriacConfig(AppConfig):
    """Add ``"celeriac.contrib.django"`` to ``INSTALLED_APPS``, then ``manage.py migrate``."""

    name = "celeriac.contrib.django"
    label = "celeriac"
    verbose_name = "Celeriac"
    default_auto_field = "django.db.models.AutoField"  # the id columns of the tables it reuses

    def ready(self) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django import _beat_models

        _beat_models.connect_change_tracking()
