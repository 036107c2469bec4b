"""``chain``: signatures run one after the other, each result the first argument of the next.

Only the first step is sent. It carries the rest in ``embed.chain``, reversed (the last item
runs next) and frozen with their task ids, so every step's result can be read before it runs
(wire.md §1.6); the worker pops the next step when a step succeeds. Nested chains are
spliced in, and a group followed by another step becomes a chord whose body is that step.
Immutable steps (``.si()``) ignore the previous result. The chain's result is the last
step's, whose ``parent`` leads back through every earlier step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.canvas._tasklist import TaskList
from celeriac.canvas.chord import chord
from celeriac.canvas.group import group, maybe_unroll_group
from celeriac.canvas.join import ensure_chords_allowed
from celeriac.canvas.signature import Signature, as_list, clone_tree, maybe_signature
from celeriac.canvas.stamping import StampingVisitor, stamp_members

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["chain"]


@Signature.register_type("chain")
class chain(TaskList[Any]):
    """``chain(add.s(2, 2), add.s(4), add.s(8))``, the same as ``add.s(2, 2) | add.s(4) | ...``."""

    def __init__(self, *tasks: Any, app: AppLike | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], (Signature, Mapping)):
            only = tasks[0]
            tasks = tuple(only) if isinstance(only, Iterable) else tasks
        members = [maybe_signature(task, app=app) for task in tasks]
        super().__init__(
            "celery.chain", (), {"tasks": members}, options, subtask_type="chain", app=app
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **opts: Any,
    ) -> chain:
        sig = super().clone(args, kwargs, **opts)
        sig.tasks = clone_tree(sig.tasks)
        return sig

    def stamp(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> chain:
        """Stamp every step (``on_chain_start``'s stamps added); see ``canvas.stamping``."""
        started = visitor.on_chain_start(self, **headers) if visitor else None
        stamp_members(self.tasks, visitor, append_stamps, headers, started)
        if visitor is not None:
            visitor.on_chain_end(self, **headers)
        return self

    def unchain_tasks(self) -> list[Signature[Any]]:
        """Copies of the steps, the chain's ``link`` on the last and ``link_error`` on all."""
        tasks = [task.clone() for task in self.tasks]
        for callback in as_list(self.options.get("link")):
            tasks[-1].link(callback)
        for errback in as_list(self.options.get("link_error")):
            for task in tasks:
                task.link_error(errback)
        return tasks

    # -- sending ----------------------------------------------------------------------------

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> Any:
        """Send the first step (the rest travel with it); the last step's result.

        ``args`` and ``kwargs`` go to the first step; so do the other options, except
        ``link`` (on the last step), ``link_error`` (on every step) and the options that
        place the chain in a group or chord (on the last step).
        """
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return self.run(args, kwargs, **self._merged_options(options))

    def run(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        chord: Signature[Any] | Mapping[str, Any] | None = None,
        task_id: str | None = None,
        link: Any = None,
        link_error: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
        **options: Any,
    ) -> Any:
        steps, results = self._prepare(
            self._partial_args(args),
            kwargs,
            root_id=root_id,
            link_error=link_error,
            last_task_id=task_id,
            group_id=group_id,
            chord_body=chord,
            group_index=group_index,
            clone=True,
        )
        if not steps:
            return None
        for callback in as_list(link):
            steps[0].link(callback)
        first = steps.pop()
        if parent_id:
            options["parent_id"] = parent_id
        # A chain applied as a step of an outer chain runs the outer rest after its own.
        options["chain"] = [*as_list(options.get("chain")), *steps]
        sent = first.apply_async(**options)
        return results[0] if steps else sent

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature[Any] | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> Any:
        """Fix every step's task id now; the last step's future result (its parents: the
        earlier steps'). ``group_id``/``chord``/``group_index`` go to the last step."""
        _, results = self._prepare(
            (),
            None,
            root_id=root_id,
            link_error=None,
            last_task_id=_id,
            group_id=group_id,
            chord_body=chord,
            group_index=group_index,
            clone=False,
        )
        return results[0] if results else None

    def _flattened(self, clone: bool) -> list[Signature[Any]]:
        """The steps with nested chains spliced in (copies when ``clone``); empty groups and
        chains are no steps at all (Celery skips them: the next step gets the arguments)."""
        flat: list[Signature[Any]] = []
        for task in self.tasks:
            task = maybe_signature(task, app=self._app)
            if _is_empty_group(task):
                continue
            if isinstance(task, chain):  # its callbacks stay: on its last step, errbacks on all
                inner = task._flattened(clone)
                for callback in as_list(task.options.get("link")) if inner else ():
                    inner[-1].link(callback)
                for errback in as_list(task.options.get("link_error")):
                    for step in inner:
                        step.link_error(errback)
                flat.extend(inner)
            else:
                flat.append(task.clone() if clone else task)
        if not clone:
            self.tasks = flat
        return flat

    def _prepare(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        *,
        root_id: str | None,
        link_error: Any,
        last_task_id: str | None,
        group_id: str | None,
        chord_body: Signature[Any] | Mapping[str, Any] | None,
        group_index: int | None,
        clone: bool,
    ) -> tuple[list[Signature[Any]], list[Any]]:
        """Freeze the steps from the last to the first; the steps reversed, and their results.

        A group followed by a step becomes a chord with that step as body; ``parent`` links
        are set so each step's result leads back to the one before.
        """
        pending = list(self._flattened(clone))
        if clone and _makes_a_chord(pending):  # refused now, not when a worker sends it
            ensure_chords_allowed(self.app)
        steps: list[Signature[Any]] = []
        results: list[Any] = []
        prev_task: Signature[Any] | None = None
        prev_res: Any = None
        while pending:
            task = maybe_unroll_group(pending.pop())
            if not pending and (args or kwargs):  # the first step takes the partial arguments
                if isinstance(task, (group, chord, chain)):
                    task = task.clone()
                    task.args = task._partial_args(args)
                else:
                    task = task.clone(args, kwargs)
            if isinstance(task, group) and prev_task is not None:
                task, prev_res = self._chord_of(task, steps, results, prev_res)
                prev_task = steps[-1] if steps else None
            elif _body_is_a_group(task) and prev_task is not None:
                # chord(h, group(...)) | next: next waits for the whole body group, once (a
                # chord of the body), not once per body member (Celery's issue 5958).
                assert isinstance(task, chord) and isinstance(task.body, group)
                task.body, prev_res = self._chord_of(task.body, steps, results, prev_res)
                prev_task = steps[-1] if steps else None
            if not steps and not results and prev_task is None:
                res = task.freeze(
                    last_task_id,
                    root_id=root_id,
                    group_id=group_id,
                    chord=chord_body,
                    group_index=group_index,
                )
            else:
                res = task.freeze(root_id=root_id)
            if prev_task is not None and prev_res is not None and prev_res.parent is None:
                prev_res.parent = res
            for errback in as_list(link_error):
                task.link_error(errback)
            steps.append(task)
            results.append(res)
            prev_task, prev_res = task, res
            if isinstance(task, chord):  # what comes next hangs on the chord's header
                while prev_res.parent is not None:
                    prev_res = prev_res.parent
        if results:
            self.options["task_id"] = results[0].id
        if not clone:  # keep what was frozen (unrolled groups, chords made of groups)
            self.tasks = steps[::-1]
        return steps, results

    def _chord_of(
        self, header: group, steps: list[Signature[Any]], results: list[Any], prev_res: Any
    ) -> tuple[chord, Any]:
        """``header`` and the step frozen just before it (its successor) as one chord; the
        result the chord's result becomes the parent of (was the body's)."""
        body = steps.pop()
        body_res = results.pop()
        node = results[-1] if results else None
        while node is not None and node.parent is not body_res:
            node = node.parent
        if node is not None:  # what followed the body now follows the chord
            node.parent = None
            prev_res = node
        return chord(header, body=body, app=self._app), prev_res

    # -- running here -----------------------------------------------------------------------

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run every step here, in order, each with the previous result; the last result."""
        options = self._merged_options(options)
        link = options.pop("link", None)
        for key in ("task_id", "chain", "chord", "group_id", "group_index"):
            options.pop(key, None)
        last: Any = None
        tasks = [maybe_signature(task, app=self._app) for task in self.tasks]
        for index, task in enumerate(tasks):
            step = task.clone()
            if link and index == len(tasks) - 1:
                step.extend_list_option("link", link)
            if last is None:
                res = step.apply(self._partial_args(args), kwargs, **options)
            else:
                res = step.apply((last.get(disable_sync_subtasks=False),), **options)
            res.parent = last
            last = res
            if getattr(res, "state", None) in (states.IGNORED, states.REJECTED):
                break
        return last

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks) if self.tasks else "chain(<empty>)"


def _body_is_a_group(task: Signature[Any]) -> bool:
    return isinstance(task, chord) and isinstance(task.body, group) and len(task.body.tasks) > 1


def _is_empty_group(task: Signature[Any]) -> bool:
    """A group with no members (a lazily read header is never taken for empty)."""
    return isinstance(task, group) and isinstance(task.tasks, (list, tuple)) and not task.tasks


def _makes_a_chord(steps: Sequence[Signature[Any]]) -> bool:
    """Whether running ``steps`` sends a chord: one is a chord, or a group has a successor."""
    for index, step in enumerate(steps):
        step = maybe_unroll_group(step)
        if isinstance(step, chord) or (isinstance(step, group) and index < len(steps) - 1):
            return True
    return False
