"""The parts of a signature, and how partial arguments and options merge into them.

``Partial`` is the base of ``Signature``: a dict holding the parts under the wire dict's
keys (``sig['options']`` is ``sig.options``; ``sig.id`` comes from the options), and the
rules that merge partial ones in. Applying a signature with partial arguments prepends them
to its own args and merges kwargs and options (None values dropped), unless it is immutable
(``.si()``), whose arguments stay as they are; ``group_id`` and stamped headers already set
are never replaced. List options (``link``, ``link_error``) hold one item or a list of them.
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


def new_id() -> str:
    return str(uuid.uuid4())


def as_list(value: Any) -> list[Any]:
    """An option that may hold one item or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Partial(dict[str, Any]):
    """A call's args, kwargs and options, and the rules that merge partial ones into them.

    It is a ``dict`` with the wire dict's keys, as Celery's signature is, so it can be
    JSON-encoded, stored and rebuilt with ``signature(d)``; the attributes read and write
    those keys.
    """

    @property
    def task(self) -> str:
        value: str = self["task"]
        return value

    @task.setter
    def task(self, value: str) -> None:
        self["task"] = value

    @property
    def args(self) -> tuple[Any, ...]:
        value: tuple[Any, ...] = self["args"]
        return value

    @args.setter
    def args(self, value: tuple[Any, ...]) -> None:
        self["args"] = value

    @property
    def kwargs(self) -> dict[str, Any]:
        value: dict[str, Any] = self["kwargs"]
        return value

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self["kwargs"] = value

    @property
    def options(self) -> dict[str, Any]:
        value: dict[str, Any] = self["options"]
        return value

    @options.setter
    def options(self, value: dict[str, Any]) -> None:
        self["options"] = value

    @property
    def subtask_type(self) -> str | None:
        value: str | None = self.get("subtask_type")
        return value

    @subtask_type.setter
    def subtask_type(self, value: str | None) -> None:
        self["subtask_type"] = value

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable", False))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = value

    # -- reading the parts ------------------------------------------------------------------

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
