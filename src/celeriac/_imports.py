"""Importing modules and objects named by users (``-A proj``, ``include=[...]``)."""

from __future__ import annotations

import importlib
from typing import Any

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["import_module", "symbol_by_name"]


def import_module(name: str) -> Any:
    """Import ``name``; a failure becomes ImproperlyConfigured naming the module and why."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Cannot import module {name!r}: {exc}") from exc


def symbol_by_name(spec: str) -> Any:
    """``'pkg.mod:attr'`` or ``'pkg.mod.attr'`` -> the object; ``'pkg.mod'`` -> the module."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        module = import_module(module_name)
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise ImproperlyConfigured(
                    f"Module {module_name!r} has no attribute {attr!r} (from {spec!r})"
                ) from exc
        return obj
    try:
        return importlib.import_module(spec)
    except ImportError as first:
        module_name, _, attr = spec.rpartition(".")
        if not module_name:
            raise ImproperlyConfigured(f"Cannot import {spec!r}: {first}") from first
        module = import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ImproperlyConfigured(f"Cannot import {spec!r}: {first}") from exc
