"""A lazy stand-in for ``current_app`` and ``current_task`` (Celery exposes these as proxies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Proxy"]


class Proxy:
    """Forwards attribute access and calls to whatever ``getter()`` returns at that moment."""

    __slots__ = ("_getter",)

    def __init__(self, getter: Callable[[], Any]) -> None:
        object.__setattr__(self, "_getter", getter)

    def _get_current_object(self) -> Any:
        return self._getter()

    def __getattr__(self, name: str) -> Any:
        target = self._getter()
        if target is None:
            raise AttributeError(f"no current object to get {name!r} from")
        return getattr(target, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._getter()(*args, **kwargs)

    def __bool__(self) -> bool:
        return self._getter() is not None

    def __eq__(self, other: object) -> bool:
        return bool(self._getter() == other)

    def __hash__(self) -> int:
        return hash(self._getter())

    def __repr__(self) -> str:
        return repr(self._getter())
