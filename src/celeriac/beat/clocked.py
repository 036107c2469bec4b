"""The ``clocked`` schedule, under the name they had before they moved below the app: they live in
``celeriac.periodic.clocked`` (docs/design/architecture.md, "Layers")."""

from __future__ import annotations

from celeriac.periodic.clocked import (
    clocked,
)

__all__ = [
    "clocked",
]
