"""``group``: signatures applied in parallel, read back together as one ``GroupResult``.

On the wire a group is ``{"task": "celery.group", "kwargs": {"tasks": [sig, ...]},
"subtask_type": "group", ...}``; its id is its ``task_id`` option. Applying it sends every
member with headers ``group`` (the group id) and ``group_index`` (its position); a nested
group's members join the outer group in place. Partial arguments go to every member (except
immutable ones). Nothing is stored for the group itself unless ``GroupResult.save()`` is
called (a chord saves its header's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas._tasklist import TaskList
from celeriac.canvas.signature import Signature, clone_tree, maybe_signature, new_id
from celeriac.canvas.stamping import StampingVisitor, stamp_members
from celeriac.request import current_request
from celeriac.result import GroupResult

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.result import GroupResult

__all__ = ["group", "maybe_unroll_group"]

# The options that tie one signature to its place; a chunks' parts do not inherit them.
_ID_OPTIONS = frozenset({"task_id", "group_id", "group_index", "chord", "parent_id", "root_id"})


def _members(tasks: Any, app: AppLike | None) -> list[Signature[Any]]:
    """The member signatures of ``group(...)``'s arguments (a list, a generator, a group)."""
    if len(tasks) == 1:
        only = tasks[0]
        if isinstance(only, group):
            return list(only.tasks)
        if isinstance(only, Signature):
            return [only.clone()]
        if not isinstance(only, Mapping) and isinstance(only, Iterable):
            tasks = list(only)
    # A task given as a member is its signature with no arguments (``group([tsum, tsum])``):
    # a task is no mapping (a signature is) and makes signatures with ``s``.
    return [
        t.s()
        if not isinstance(t, Mapping) and callable(getattr(t, "s", None))
        else maybe_signature(t, app=app)
        for t in tasks
    ]


@Signature.register_type("group")
class group(TaskList[list[Any]]):
    """``group(add.s(2, 2), add.s(4, 4))`` or ``group(add.s(i, i) for i in range(10))``."""

    def __init__(self, *tasks: Any, app: AppLike | None = None, **options: Any) -> None:
        super().__init__(
            "celery.group",
            (),
            {"tasks": _members(tasks, app)},
            options,
            subtask_type="group",
            app=app,
        )

    def __len__(self) -> int:
        return len(self.tasks)

    def __call__(self, *args: Any, **options: Any) -> GroupResult:  # type: ignore[override]
        return self.apply_async(args, **options)

    def set_immutable(self, immutable: bool) -> None:
        for task in self.tasks:
            task.set_immutable(immutable)

    def stamp(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> group:
        """Stamp every member (``on_group_start``'s stamps added); see ``canvas.stamping``."""
        started = visitor.on_group_start(self, **headers) if visitor else None
        stamp_members(self.tasks, visitor, append_stamps, headers, started)
        if visitor is not None:
            visitor.on_group_end(self, **headers)
        return self

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Spread the members' ``countdown``: start, start + step, ... (capped at stop)."""
        countdown = start
        for task in self.tasks:
            task.set(countdown=countdown)
            if stop is None or countdown + step <= stop:
                countdown += step
        return self

    def link(self, callback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Link an immutable copy to the first member (a group has no single result)."""
        sig = maybe_signature(callback, app=self._app).clone().set(immutable=True)
        return self.tasks[0].link(sig)

    def link_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Link ``errback`` to every member: any of them may fail."""
        sig = maybe_signature(errback, app=self._app)
        return tuple(task.link_error(sig.clone()) for task in self.tasks)

    # -- freezing ---------------------------------------------------------------------------

    def _unrolled(self) -> Iterator[Signature[Any]]:
        """The members, nested groups (and the groups of ``chunks``) flattened in place."""
        for task in self.tasks:
            if task.subtask_type == "chunks":  # canvas.maps.chunks (which imports this module)
                options = {k: v for k, v in task.options.items() if k not in _ID_OPTIONS}
                parts: list[Signature[Any]] = task.group().tasks  # type: ignore[attr-defined]
                task = group([part.set(**options) for part in parts], app=self._app)
            if isinstance(task, group):
                yield from task._unrolled()
            elif task.subtask_type == "chain" and not task.tasks:  # type: ignore[attr-defined]
                continue  # an empty chain is no member (Celery: a no-op)
            else:
                yield task

    def freeze(  # type: ignore[override]
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature[Any] | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        """Fix the group id and every member's ids now; the future ``GroupResult``.

        ``group_id`` and ``chord`` (set when this group is part of a chord's header) go to
        the members, so they report to that chord; otherwise they belong to this group.
        """
        gid = self.options.setdefault("task_id", _id or new_id())
        root_id = self.options.setdefault("root_id", root_id)
        parent_id = self.options.setdefault("parent_id", parent_id)
        members = list(self._unrolled())
        results = [
            task.freeze(
                group_id=group_id or gid,
                chord=chord,
                root_id=root_id,
                parent_id=parent_id,
                group_index=index,
            )
            for index, task in enumerate(members)
        ]
        self.tasks = members
        return GroupResult(gid, results, app=self.app)

    # -- applying ---------------------------------------------------------------------------

    def apply_async(  # type: ignore[override]
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        add_to_parent: bool = True,
        **options: Any,
    ) -> GroupResult:
        """Send every member now; the ``GroupResult`` of them all, in order.

        ``args`` go before each member's own, ``kwargs`` over each member's; the other
        options go to every member. ``task_id`` is the group id.
        """
        if options.get("link") is not None:
            raise TypeError("Cannot add link to group: use a chord")
        if options.get("link_error") is not None:
            raise TypeError("Cannot add link_error to group: do that on individual tasks")
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        partial_args = self._partial_args(args)
        options = self._merged_options(options)
        # Set on the group (a chord's body carries its chord's calling options): the members
        # never take it as well as the False given below.
        add_to_parent = bool(options.pop("add_to_parent", True)) and add_to_parent
        sending = self.clone()
        sending.options["task_id"] = options.pop("task_id", None) or new_id()
        result = sending.freeze(root_id=options.get("root_id"), chord=options.pop("chord", None))
        for key in ("group_id", "group_index"):
            options.pop(key, None)
        if route_name is not None:
            options["route_name"] = route_name
        for task in sending.tasks:
            task.apply_async(partial_args, kwargs, add_to_parent=False, **options)
        # group(a | group(b, c)), a group of one chain that ends in a group: its result is
        # the inner group's, as in Celery (only that nesting of group results is flattened).
        if len(result.results) == 1 and isinstance(result.results[0], type(result)):
            result = result.results[0]
        parent = current_request()
        if add_to_parent and parent is not None and parent.id:
            parent.children.append(result.as_tuple())
        return result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        """Run every member here, one after the other; a ``GroupResult`` of eager results."""
        partial_args = self._partial_args(args)
        options = self._merged_options(options)
        gid = options.pop("task_id", None) or new_id()
        for key in ("group_id", "group_index", "chord", "chain", "root_id", "parent_id"):
            options.pop(key, None)
        members = list(self.clone()._unrolled())
        results = [task.apply(partial_args, kwargs, **options) for task in members]
        return GroupResult(gid, results, app=self.app)

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **opts: Any,
    ) -> group:
        sig = super().clone(args, kwargs, **opts)
        sig.tasks = clone_tree(sig.tasks)
        return sig

    def __repr__(self) -> str:
        return f"group({self.tasks!r})" if self.tasks else "group(<empty>)"


def maybe_unroll_group(sig: Signature[Any]) -> Signature[Any]:
    """A group of one member is that member (with the group's options); anything else as is."""
    if isinstance(sig, group) and len(sig.tasks) == 1:
        return sig.tasks[0].clone(**sig.options)
    return sig
