"""``UnpickleableExceptionWrapper`` at Celery's import path ``celery.utils.serialization``.

Celery stores an exception it cannot pickle as this wrapper (module, class name, arguments,
text). Celeriac rebuilds a stored exception it cannot import or construct as
``celeriac.exceptions.RemoteError`` instead (its message names the class and arguments);
this class is here so code written for Celery that catches, builds or restores the wrapper
keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UnpickleableExceptionWrapper"]


class UnpickleableExceptionWrapper(Exception):
    """An exception that could not be pickled, kept as its module, class name and arguments."""

    def __init__(
        self, exc_module: str, exc_cls_name: str, exc_args: Any, text: str | None = None
    ) -> None:
        self.exc_module = exc_module
        self.exc_cls_name = exc_cls_name
        self.exc_args = tuple(exc_args)
        self.text = text
        super().__init__(exc_module, exc_cls_name, self.exc_args, text)

    def restore(self) -> Exception:
        """The original exception if its class can be imported and built, else a plain one."""
        import importlib

        try:
            cls = getattr(importlib.import_module(self.exc_module), self.exc_cls_name)
            restored = cls(*self.exc_args)
        except Exception:
            return Exception(self.text or f"{self.exc_cls_name}{self.exc_args!r}")
        return restored if isinstance(restored, Exception) else Exception(repr(restored))

    def __str__(self) -> str:
        return self.text or f"{self.exc_cls_name}{self.exc_args!r}"

    @classmethod
    def from_exception(cls, exc: BaseException) -> UnpickleableExceptionWrapper:
        """The wrapper of ``exc``: its type's module and name, its args and its text."""
        kind = type(exc)
        return cls(kind.__module__, kind.__name__, [repr(arg) for arg in exc.args], str(exc))
