"""Finding the app named by ``-A``: ``proj``, ``proj.celery``, ``proj:app`` or ``proj.mod:app``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from celeriac.app.base import Celery

__all__ = ["find_app"]


def _app_in(module: Any) -> Celery | None:
    for attr in ("app", "celery"):
        candidate = getattr(module, attr, None)
        if isinstance(candidate, Celery):
            return candidate
    apps = [v for v in vars(module).values() if isinstance(v, Celery)]
    return apps[0] if len(apps) == 1 else None


def find_app(spec: str) -> Celery:
    """Import the app ``spec`` names; a click error says what was tried when it fails."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.UsageError(
                f"Unable to load the app: module {module_name!r} was not found (looked in "
                f"{os.getcwd()} and sys.path). Check -A/--app, or run from the project folder."
            ) from exc
        raise click.UsageError(f"Importing {module_name!r} for -A failed: {exc}") from exc
    except Exception as exc:
        raise click.UsageError(
            f"Importing {module_name!r} for -A raised {type(exc).__name__}: {exc}"
        ) from exc
    if attr:
        found = getattr(module, attr, None)
        if callable(found) and not isinstance(found, Celery):
            found = found()
        if not isinstance(found, Celery):
            raise click.UsageError(
                f"{spec!r}: module {module_name!r} has no Celery app named {attr!r}"
            )
        return found
    app = _app_in(module)
    if app is None:
        try:
            sub = importlib.import_module(f"{module_name}.celery")
        except ImportError:
            sub = None
        app = _app_in(sub) if sub is not None else None
    if app is None:
        raise click.UsageError(
            f"Module {module_name!r} has no Celery app: define `app = Celery(...)` in it, or "
            f"name it with -A {module_name}:<attribute>"
        )
    return app
