"""The import hook: ``celery`` and ``celery.<name>`` load as ``celeriac`` and ``celeriac.<name>``.

Celery's integration suite imports ``celery`` everywhere (``from celery import chain``,
``from celery.contrib.testing.manager import Manager``). ``CeleryToCeleriac`` is a meta-path
finder placed first on ``sys.meta_path``: asked for ``celery.x.y`` it imports
``celeriac.x.y`` and hands back that same module object, so ``celery.canvas.signature is
celeriac.canvas.signature``. A name Celeriac does not have (``celery.backends.azureblockblob``)
raises ``ModuleNotFoundError`` naming the ``celery`` module, exactly as a missing module would.
The suite's own helpers (``t.integration.tasks``, ``t.canvas_helpers``) are ordinary modules
of the downloaded files and load through the normal path finder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

SOURCE = "celery"
TARGET = "celeriac"


class _AliasLoader(importlib.abc.Loader):
    """Returns the already imported Celeriac module as the ``celery`` one."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.own_spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run; the import system set ``__spec__`` to the alias's: give it back."""
        module.__spec__ = self.own_spec


class CeleryToCeleriac(importlib.abc.MetaPathFinder):
    """Maps ``celery`` and ``celery.*`` to ``celeriac`` and ``celeriac.*``."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != SOURCE and not fullname.startswith(SOURCE + "."):
            return None
        mapped = TARGET + fullname[len(SOURCE) :]
        if fullname.endswith(".__main__"):
            return _main_spec(fullname, mapped)  # ``python -m celery``: run, not import
        try:
            module = importlib.import_module(mapped)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (exc.name == mapped or mapped.startswith(exc.name + ".")):
                return None  # Celeriac has no such module: a plain "No module named 'celery.x'"
            raise
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=is_package)


def _main_spec(fullname: str, mapped: str) -> importlib.machinery.ModuleSpec | None:
    """A spec that runs Celeriac's ``__main__`` file under the ``celery`` name (for runpy)."""
    found = importlib.util.find_spec(mapped)
    if found is None or found.origin is None:
        return None
    return importlib.util.spec_from_file_location(fullname, found.origin)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once), before anything imports ``celery``."""
    if any(isinstance(finder, CeleryToCeleriac) for finder in sys.meta_path):
        return
    loaded = sorted(name for name in sys.modules if name == SOURCE or name.startswith(SOURCE + "."))
    if loaded:
        raise RuntimeError(f"celery is imported already ({loaded[:3]}); install the hook first")
    sys.meta_path.insert(0, CeleryToCeleriac())
