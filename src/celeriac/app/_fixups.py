"""Fixups: integrations an app installs on itself, as Celery's do, by name and lazily.

The one there is, Django's (``celeriac.contrib.django.fixup``), is installed when the app is
made while ``DJANGO_SETTINGS_MODULE`` is set (Celery's guide sets it just before), or when
the app is configured from Django's settings. Nothing of Django is imported otherwise.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["install_fixups"]

_DJANGO_FIXUP = "celeriac.contrib.django.fixup"


def install_fixups(app: AppLike, config_source: Any = None) -> None:
    """Install the Django fixup on ``app`` if this is a Django project (module docstring)."""
    from_django = config_source == "django.conf:settings" or (
        type(config_source).__module__.startswith("django.conf")
    )
    if from_django or os.environ.get("DJANGO_SETTINGS_MODULE"):
        importlib.import_module(_DJANGO_FIXUP).install(app)
