"""Faster pickling for the slotted dataclasses that cross the prefork pipe every task.

A ``slots=True`` dataclass pickles through a generated ``__getstate__`` that walks
``fields()`` in Python on every call; ``fast_pickle`` makes it pickle as its constructor
call instead (class, field values by C-level ``attrgetter``), which halves the cost of
sending a job to a child and its result back.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

__all__ = ["fast_pickle"]

T = TypeVar("T", bound=type)


def fast_pickle(cls: T) -> T:
    """Pickle instances of dataclass ``cls`` as ``cls(*values)``; every field must be an
    ``__init__`` argument (else its value would be lost)."""
    names = [f.name for f in fields(cls)]
    if any(not f.init for f in fields(cls)):
        raise TypeError(f"{cls.__name__}: fast_pickle needs every field in __init__")
    if len(names) == 1:
        name = names[0]

        def reduce_one(self: Any) -> tuple[Any, tuple[Any, ...]]:
            return cls, (getattr(self, name),)

        cls.__reduce__ = reduce_one  # type: ignore[assignment]
        return cls
    values = attrgetter(*names)

    def reduce(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment]
    return cls
