"""Task autodiscovery: import ``<package>.<related_name>`` for each package that has one.

``Celery.autodiscover_tasks`` defers to the worker's ``import_default_modules`` unless
forced; both end here. With no packages given, Django's ``INSTALLED_APPS`` are searched.
"""

from __future__ import annotations

import importlib
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


class PackageNotFound(ImproperlyConfigured, ModuleNotFoundError):
    """A module ``autodiscover_tasks`` needs does not exist: ``ImproperlyConfigured``, and
    the ``ModuleNotFoundError`` (with its ``name``) Celery raises there."""


def _import_related(package: str, related_name: str) -> str | None:
    """Import ``package.related_name``, as Celery's autodiscovery finds it; None when the
    package has no such module (ignored, as Celery does).

    A package that does not import is taken one level up (a Django ``INSTALLED_APPS`` entry
    may name a class, ``proj.apps.OrdersConfig``); a top-level package that does not exist,
    or an import error inside the related module, raises ``ImproperlyConfigured``
    (``PackageNotFound``, also a ``ModuleNotFoundError``, for a package that is missing).
    """
    try:
        importlib.import_module(package)
    except ModuleNotFoundError as exc:
        parent = package.rpartition(".")[0]
        if not parent:
            raise PackageNotFound(
                f"autodiscover_tasks: package {package!r} does not exist ({exc}); check the "
                "names given to autodiscover_tasks (or INSTALLED_APPS).",
                name=exc.name,
            ) from exc
        package = parent
    except ImportError as exc:
        raise ImproperlyConfigured(f"Cannot import package {package!r}: {exc}") from exc
    name = f"{package}.{related_name}"
    try:
        import_module(name)
    except ImproperlyConfigured as exc:
        missing = exc.__cause__
        if isinstance(missing, ModuleNotFoundError) and missing.name == name:
            return None
        if isinstance(missing, ModuleNotFoundError):  # e.g. package "a" of "a.b.tasks"
            raise PackageNotFound(str(exc), name=missing.name) from missing
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
