"""The ``|`` operator: how two signatures combine, with Celery's upgrade rules.

::

    task  | task      -> chain(task, task)
    task  | chain     -> chain(task, *chain)          chain | chain -> one chain
    group | task      -> chord(group, task)           group | group() -> group
    chord | task      -> the chord, body | task       chain[... group] | task -> chord last
    chain[... chord] | task or group -> that chord's body | it
    group of one member -> that member, wherever a group is combined

The operands are never changed: the result holds copies. ``Signature.__or__`` calls
``combine`` through ``Signature.register_combine`` (done below, when this module is
imported: ``celeriac.canvas`` imports it), so ``signature`` needs no import of this module.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from celeriac.canvas.chain import chain
from celeriac.canvas.chord import chord
from celeriac.canvas.group import group, maybe_unroll_group
from celeriac.canvas.signature import Signature

__all__ = ["combine"]


def _extend_body(sig: chord, other: Signature[Any]) -> chord:
    combined = sig.clone()
    combined.body = other.clone() if combined.body is None else combine(combined.body, other)
    return combined


def combine(left: Signature[Any], right: Signature[Any]) -> Signature[Any]:
    """``left | right``."""
    if isinstance(right, group):
        right = maybe_unroll_group(right)
    if isinstance(left, chord):
        if not isinstance(right, (group, chain)):
            return _extend_body(left, right)
        return chain(left.clone(), right.clone(), app=left._app)
    if isinstance(left, group):
        if isinstance(right, group) and not right.tasks:
            return left.clone()
        return chord(left.clone(), body=right.clone(), app=left._app)
    if isinstance(left, chain):
        return _combine_chain(left, right)
    if isinstance(right, chain):
        return chain(left.clone(), *right.unchain_tasks(), app=left._app)
    return chain(left.clone(), right.clone(), app=left._app)


def _combine_chain(left: chain, right: Signature[Any]) -> Signature[Any]:
    if isinstance(right, chain):
        return reduce(combine, right.unchain_tasks(), left)
    tasks = left.unchain_tasks()
    if not tasks:
        return right.clone()
    last = tasks[-1]
    if isinstance(right, group):
        if isinstance(last, chord):
            tasks[-1] = _extend_body(last, right)
            return chain(*tasks, app=left._app)
        return chain(*tasks, right.clone(), app=left._app)
    if isinstance(last, group):
        tasks[-1] = chord(last, body=right.clone(), app=left._app)
    elif isinstance(last, chord) and not isinstance(right, chord):
        tasks[-1] = _extend_body(last, right)
    else:
        tasks.append(right.clone())
    return chain(*tasks, app=left._app)


Signature.register_combine(combine)
