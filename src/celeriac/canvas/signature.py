"""``Signature``: one task call (name, partial arguments, options) that can travel and run later.

A signature is a ``dict`` with typed attributes over its keys, as Celery's is: it is
Celery's signature dict (wire.md §1.5), so ``json.dumps(sig)`` works as it stands::

    {"task": "tasks.add", "args": [3], "kwargs": {}, "options": {"task_id": "..."},
     "subtask_type": null, "immutable": false}

``to_dict()`` builds a plain copy of it (and ``__json__`` returns that, which the producer
sends); ``Signature.from_dict(d)`` rebuilds the right class
from ``subtask_type`` (``chain``, ``group``, ``chord``, ``chunks``, ``xmap``, ``xstarmap``
register themselves). Reading the parts, how partial arguments and options merge into a
signature's own, and its list options (``link``, ``link_error``) are in ``_partial``
(``Partial``, the base of ``Signature``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from celeriac import _state
from celeriac.canvas import stamping
from celeriac.canvas._partial import Partial
from celeriac.canvas._partial import as_list as as_list
from celeriac.canvas._partial import new_id as new_id
from celeriac.result import AsyncResult

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.canvas.stamping import StampingVisitor
    from celeriac.result import AsyncResult, EagerResult
    from celeriac.task import Task

__all__ = ["Signature", "maybe_signature", "signature"]

R = TypeVar("R")


def _map_signatures(value: Any, convert: Callable[[Signature[Any]], Any]) -> Any:
    """``value`` with every signature inside converted and its containers copied."""
    if isinstance(value, Signature):
        return convert(value)
    if isinstance(value, list):
        return [_map_signatures(item, convert) for item in value]
    if isinstance(value, tuple):
        return tuple(_map_signatures(item, convert) for item in value)
    if isinstance(value, dict):
        return {key: _map_signatures(item, convert) for key, item in value.items()}
    return value


def to_wire(value: Any) -> Any:
    """``value`` with every signature inside (lists, tuples, dicts) turned into its dict."""
    return _map_signatures(value, lambda sig: sig.to_dict())


def clone_tree(value: Any) -> Any:
    """``value`` with every signature inside cloned and its containers copied."""
    return _map_signatures(value, lambda sig: sig.clone())


class Signature(Partial, Generic[R]):
    """A task call to apply later: ``add.s(2, 2)``, ``signature('tasks.add', (2, 2))``."""

    #: subtask_type -> the class that rebuilds it (see ``register_type``).
    TYPES: ClassVar[dict[str, type[Signature[Any]]]] = {}

    #: What ``a | b`` builds (``canvas.compose.combine``, see ``register_combine``): it
    #: makes chains and chords, which sit above this module, so it is handed in.
    COMBINE: ClassVar[Callable[[Signature[Any], Signature[Any]], Signature[Any]] | None] = None

    def __init__(
        self,
        task: str | Task[Any, R] | Mapping[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        type: Task[Any, R] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: AppLike | None = None,
        **ex: Any,
    ) -> None:
        if isinstance(task, Mapping):
            fields = dict(task)
            task, args, kwargs = fields.get("task"), fields.get("args"), fields.get("kwargs")
            options, subtask_type = fields.get("options"), fields.get("subtask_type")
            immutable = bool(fields.get("immutable", False))
        self._app = app
        self._type: Task[Any, R] | None = type
        if task is not None and not isinstance(task, str):
            self._type = task
            task = task.name
        self.task: str = task or ""
        self.args: tuple[Any, ...] = tuple(args or ())
        self.kwargs: dict[str, Any] = dict(kwargs or {})
        self.options: dict[str, Any] = {**(options or {}), **ex}
        self.subtask_type = subtask_type
        self.immutable = immutable

    # -- the wire form ----------------------------------------------------------------------

    @classmethod
    def register_type(
        cls, name: str | None = None
    ) -> Callable[[type[Signature[Any]]], type[Signature[Any]]]:
        """Class decorator: rebuild dicts whose ``subtask_type`` is ``name`` with the class."""

        def register(subclass: type[Signature[Any]]) -> type[Signature[Any]]:
            cls.TYPES[name or subclass.__name__] = subclass
            return subclass

        return register

    @staticmethod
    def register_combine(
        combine: Callable[[Signature[Any], Signature[Any]], Signature[Any]],
    ) -> None:
        """Set what ``a | b`` returns (``canvas.compose`` does, when ``celeriac.canvas``
        is imported, which importing any of its modules does first)."""
        Signature.COMBINE = combine

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: AppLike | None = None) -> Signature[Any]:
        """The signature a wire dict describes, of the class its ``subtask_type`` names."""
        kind = d.get("subtask_type")
        target = cls.TYPES.get(kind) if kind else None
        if target is not None and target is not Signature:
            return target.from_dict(d, app=app)
        return Signature(d, app=app)

    def to_dict(self) -> dict[str, Any]:
        """Celery's signature dict, every nested signature a dict too."""
        return {
            "task": self.task,
            "args": list(to_wire(self.args)),
            "kwargs": to_wire(self.kwargs),
            "options": to_wire(self.options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }

    def __json__(self) -> dict[str, Any]:
        return self.to_dict()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Signature):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == Signature.from_dict(other).to_dict()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it stands for

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        clone = self.clone()
        clone.options = copy.deepcopy(clone.options, memo)
        return clone

    # -- the parts --------------------------------------------------------------------------

    @property
    def app(self) -> AppLike:
        if self._app is not None:
            return self._app
        if self._type is not None and self._type.bound_app is not None:
            return self._type.bound_app
        return _state.current_app()

    @property
    def type(self) -> Task[Any, R]:
        """The registered task this signature calls (``NotRegistered`` when unknown here)."""
        if self._type is not None:
            return self._type
        task: Task[Any, R] = self.app.tasks[self.task]
        return task

    @property
    def name(self) -> str:
        return self.task

    # -- building ---------------------------------------------------------------------------

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **opts: Any,
    ) -> Self:
        """A copy with partial ``args``/``kwargs``/options merged in; nested signatures copied."""
        new_args, new_kwargs, options = self._merge(args, kwargs, opts)
        d = {
            "task": self.task,
            "args": new_args,
            "kwargs": clone_tree(new_kwargs),
            "options": clone_tree(options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }
        clone = type(self).from_dict(d, app=self._app)
        clone._type = self._type
        return clone  # type: ignore[return-value]

    partial = clone

    def replace(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Self:
        """A copy whose args, kwargs or options (those given) are replaced outright."""
        clone = self.clone()
        if args is not None:
            clone.args = tuple(args)
        if kwargs is not None:
            clone.kwargs = dict(kwargs)
        if options is not None:
            clone.options = dict(options)
        return clone

    def stamp(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> Self:
        """Set stamps (custom headers that travel to the worker) on this signature and its
        callbacks and errbacks; ``visitor`` adds its own (``canvas.stamping``)."""
        stamping.stamp_signature(self, visitor, append_stamps, headers, maybe_signature)
        return self

    def stamp_links(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> None:
        """Stamp only this signature's callbacks and errbacks (``canvas.stamping``)."""
        stamping.stamp_links(self, visitor, append_stamps, headers, maybe_signature)

    def flatten_links(self) -> list[Signature[Any]]:
        """This signature and, recursively, every callback linked to it."""
        found: list[Signature[Any]] = [self]
        for callback in as_list(self.options.get("link")):
            found.extend(maybe_signature(callback, app=self._app).flatten_links())
        return found

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature[Any] | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult[R]:
        """Fix this call's task id (and group, chord, root, parent) now; its future result.

        An id already set is kept. Applying a frozen signature twice sends two messages with
        one task id, so apply it once.
        """
        opts = self.options
        task_id = opts.setdefault("task_id", _id or new_id())
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        if "reply_to" not in opts:
            opts["reply_to"] = self.app.producer.reply_to()
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        return self._result(task_id)

    def _result(self, task_id: str) -> AsyncResult[R]:
        return AsyncResult(task_id, app=self.app, task_name=self.task)

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        """Run the task here and now, as a function call, with the partial arguments merged."""
        args, kwargs, _ = self._merge(args, kwargs, None)
        return self.type(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[R]:
        """``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the call: ``args`` prepended, ``kwargs`` and options merged (None dropped).

        Returns the task's ``AsyncResult`` (a ``GroupResult`` for groups and chunks).
        """
        options = {k: v for k, v in options.items() if v is not None}
        if route_name is not None:
            options["route_name"] = route_name
        merged_args, merged_kwargs, merged = self._merge(args, kwargs, options)
        try:
            task = self.type
        except KeyError:  # NotRegistered here: another worker may know it
            return self.app.send_task(self.task, merged_args, merged_kwargs, **merged)
        return task.apply_async(merged_args, merged_kwargs, **merged)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R] | Any:
        """Run the call in this process, blocking (``Task.apply``)."""
        options = {k: v for k, v in options.items() if v is not None}
        merged_args, merged_kwargs, merged = self._merge(args, kwargs, options)
        return self.type.apply(merged_args, merged_kwargs, **merged)

    def __invert__(self) -> Any:
        return self.apply_async().get()

    def __or__(self, other: Any) -> Signature[Any]:  # type: ignore[override]  # not dict's
        """``a | b``: a chain (a group followed by a task makes a chord)."""
        if not isinstance(other, Signature):
            return NotImplemented
        combine = Signature.COMBINE
        if combine is None:  # only while celeriac.canvas is still being imported
            raise RuntimeError("'|' on signatures needs celeriac.canvas imported in full")
        return combine(self, other)

    def reprcall(self, *args: Any, **kwargs: Any) -> str:
        args, kwargs, _ = self._merge(args, kwargs, {}, force=True)
        parts = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
        return f"{self.task}({', '.join(parts)})"

    def __repr__(self) -> str:
        return self.reprcall()


def _rebuild(d: dict[str, Any]) -> Signature[Any]:
    return Signature.from_dict(d)


def signature(
    varies: str | Task[Any, Any] | Signature[Any] | Mapping[str, Any],
    *args: Any,
    app: AppLike | None = None,
    **kwargs: Any,
) -> Signature[Any]:
    """A signature from a task or its name (and args, kwargs, options), or from a wire dict.

    A signature given is copied; a dict is rebuilt as the class its ``subtask_type`` names.
    """
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app=app)
    sig: Signature[Any] = Signature(varies, *args, **kwargs)
    sig._app = app
    return sig


def maybe_signature(
    d: Signature[Any] | Mapping[str, Any] | Any, app: AppLike | None = None, clone: bool = False
) -> Any:
    """``d`` as a signature: a dict rebuilt, a signature kept (or cloned), None kept."""
    if d is None:
        return None
    if isinstance(d, Signature):
        sig: Signature[Any] = d.clone() if clone else d
    elif isinstance(d, Mapping):
        sig = Signature.from_dict(d, app=app)
    else:
        return d
    if app is not None:
        sig._app = app
    return sig
