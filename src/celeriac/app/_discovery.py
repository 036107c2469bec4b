"""Task autodiscovery: import ``<package>.<related_name>`` for each package that has one.

``Celery.autodiscover_tasks`` defers to the worker's ``import_default_modules`` unless
forced; both end here. With no packages given, Django's ``INSTALLED_APPS`` are searched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from celeriac._imports import import_module
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["discover"]


def discover(
    packages: Iterable[str] | Callable[[], Iterable[str]] | None, related_name: str
) -> list[str]:
    """Import ``package.related_name`` of each package (a callable returns them; None means
    Django's ``INSTALLED_APPS``); returns the modules imported."""
    if callable(packages):
        packages = packages()
    if packages is None:
        packages = _django_installed_apps()
    return [name for name in (_import_related(p, related_name) for p in packages) if name]


def _import_related(package: str, related_name: str) -> str | None:
    """Import ``package.related_name``; None when the package has no such module."""
    name = f"{package}.{related_name}"
    try:
        import_module(name)
    except ImproperlyConfigured as exc:
        missing = exc.__cause__
        if isinstance(missing, ModuleNotFoundError) and missing.name in (name, package):
            return None
        raise
    return name


def _django_installed_apps() -> list[str]:
    """The packages of Django's installed apps: their ``AppConfig.name`` once Django is set
    up (an entry may name an ``AppConfig`` class), else ``INSTALLED_APPS`` as written."""
    try:
        from django.apps import apps
        from django.conf import settings
    except ImportError:
        return []
    if apps.ready:
        return [config.name for config in apps.get_app_configs()]
    return list(getattr(settings, "INSTALLED_APPS", []))
