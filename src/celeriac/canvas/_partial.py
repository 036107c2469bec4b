"""The parts of a signature, and how partial arguments and options merge into them.

``Partial`` is the base of ``Signature``: it reads the parts (``sig['options']`` as in the
wire dict, ``sig.id`` from the options) and merges partial ones in. Applying a signature
with partial arguments prepends them to its own args and merges kwargs and options (None
values dropped), unless it is immutable (``.si()``), whose arguments stay as they are;
``group_id`` and stamped headers already set are never replaced. List options (``link``,
``link_error``) hold one item or a list of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from celeriac.canvas.signature import Signature

__all__ = ["Partial", "as_list", "new_id"]

#: Options that partial options never replace once set (they tie a task to its group).
_IMMUTABLE_OPTIONS = frozenset({"group_id", "stamped_headers"})
#: The keys of the wire dict, which are also the attributes holding the parts.
_FIELDS = ("task", "args", "kwargs", "options", "subtask_type", "immutable")


def new_id() -> str:
    return str(uuid.uuid4())


def as_list(value: Any) -> list[Any]:
    """An option that may hold one item or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Partial:
    """A call's args, kwargs and options, and the rules that merge partial ones into them."""

    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    subtask_type: str | None
    immutable: bool

    # -- reading the parts ------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        """Read access by the wire dict's keys (``sig['options']``), for ported code."""
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @id.setter
    def id(self, value: str) -> None:
        self.options["task_id"] = value

    @property
    def parent_id(self) -> str | None:
        return self.options.get("parent_id")

    @property
    def root_id(self) -> str | None:
        return self.options.get("root_id")

    # -- merging ----------------------------------------------------------------------------

    def _merge(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Partial args prepended, kwargs and options merged (never over ``group_id``)."""
        merged = self._merged_options(options)
        if self.immutable and not force:
            return self.args, dict(self.kwargs), merged
        return (*(args or ()), *self.args), {**self.kwargs, **(kwargs or {})}, merged

    def _merged_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """This signature's options under ``options`` (None values dropped), except that
        ``group_id`` and stamped headers already set stay."""
        merged = dict(self.options)
        if options:
            fixed = _IMMUTABLE_OPTIONS | set(self.options.get("stamped_headers") or ())
            merged.update(
                (k, v)
                for k, v in options.items()
                if v is not None and (k not in fixed or k not in merged)
            )
        return merged

    def _partial_args(self, args: Sequence[Any] | None) -> tuple[Any, ...]:
        """What a composite hands its members: ``args`` before its own, unless immutable."""
        return self.args if self.immutable else (*(args or ()), *self.args)

    # -- setting options --------------------------------------------------------------------

    def set(self, immutable: bool | None = None, **options: Any) -> Self:
        """Set calling options (``countdown``, ``queue``, ...) in place; returns self."""
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def append_to_list_option(self, key: str, value: Any) -> Any:
        items = as_list(self.options.get(key))
        if value not in items:
            items.append(value)
        self.options[key] = items
        return value

    def extend_list_option(self, key: str, value: Any) -> None:
        self.options[key] = [*as_list(self.options.get(key)), *as_list(value)]

    def link(self, callback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Apply ``callback`` with this task's result when it succeeds; returns ``callback``."""
        return self.append_to_list_option("link", callback)

    def link_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Apply ``errback`` when this task fails; returns ``errback``."""
        return self.append_to_list_option("link_error", errback)

    def on_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Self:
        """``link_error`` that returns this signature, for chaining calls."""
        self.link_error(errback)
        return self
