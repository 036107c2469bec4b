"""``Task.replace(sig)``: a running task hands its place (id, chain, chord, callbacks) to ``sig``.

The replacing signature is frozen with the running task's id, so whoever waits on that id
gets the replacement's result. It inherits the task's callbacks and errbacks, its place in
a group or chord (``group_id``, ``group_index``, ``chord``), its ``root_id``, and the rest
of its chain (appended after it); a group becomes a chord whose body
``celery.accumulate`` returns the group's results as one list. The task then ends with
``Ignore``: no state is stored for it and nothing else is sent on its behalf. In eager mode
the replacement runs in place and its result is returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac.canvas.chain import chain
from celeriac.canvas.group import group
from celeriac.canvas.signature import Signature, as_list, maybe_signature
from celeriac.exceptions import Ignore, ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = ["replace_task"]


def replace_task(task: Task[Any, Any], sig: Signature[Any]) -> Any:
    """Send ``sig`` in ``task``'s place and raise ``Ignore`` (eager: run it, return its value)."""
    request = task.request
    if request.called_directly or request.id is None:
        raise ImproperlyConfigured(f"{task.name}: replace() needs a running task (not a call)")
    if "chord" in sig.options:
        raise ImproperlyConfigured("A signature replacing a task must not be part of a chord")
    if isinstance(sig, chain) and not sig.tasks:
        raise ImproperlyConfigured("Cannot replace with an empty chain")  # Celery's words
    app = task.app
    accumulate = app.tasks["celery.accumulate"]
    sig = sig.clone()
    if isinstance(sig, group):
        sig = sig | accumulate.s(index=0)
    if isinstance(sig, chain) and isinstance(sig.tasks[-1], group):
        sig.tasks[-1] = sig.tasks[-1] | accumulate.s(index=0)
    for callback in request.callbacks or ():
        sig.link(callback)
    for errback in request.errbacks or ():
        sig.link_error(errback)
    if isinstance(sig, chain) and "link" in sig.options:  # callbacks fire after the last step
        sig.tasks[-1].extend_list_option("link", as_list(sig.options.pop("link")))
    sig.freeze(request.id)
    nesting = request.replaced_task_nesting + 1
    place: dict[str, Any] = {
        "chord": request.chord,
        "group_id": request.group,
        "group_index": request.group_index,
        "root_id": request.root_id,
    }
    sig.set(replaced_task_nesting=nesting, **{k: v for k, v in place.items() if v is not None})
    if isinstance(sig, chain):
        for step in sig.tasks:
            step.set(replaced_task_nesting=nesting)
    for d in reversed(request.chain or ()):
        step = maybe_signature(d, app=app).clone()
        step.set(replaced_task_nesting=nesting)
        sig = sig | step
    if request.is_eager:
        return sig.apply().get(disable_sync_subtasks=False)
    sig.apply_async()
    raise Ignore("Replaced by new task")
