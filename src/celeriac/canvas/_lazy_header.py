"""A chord header given as a generator: its members sent one by one, as they are read.

Celery unrolls such a header lazily (the first member may run before the generator yields
the third). The chord join must never see the header complete early, so the member after
the one being sent is always recorded in the join first: the join is prepared with the first
two members, and each later member is added (``add_chord_member``, as ``Task.add_to_chord``
does) before the one before it is sent. Until the last member is sent, a recorded member
that has not been sent keeps the body waiting; every member counts in the join in header
order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.join import add_chord_member, leaf_ids, prepare_chord
from celeriac.canvas.signature import Signature, maybe_signature
from celeriac.request import current_request
from celeriac.result import GroupResult

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.result import GroupResult

__all__ = ["send_lazily"]


def send_lazily(
    app: AppLike,
    members: Iterator[Any],
    group_id: str,
    body: Signature[Any],
    root_id: str | None,
    partial_args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    options: dict[str, Any],
) -> GroupResult:
    """Send the header's ``members`` as they come; the header's ``GroupResult``."""

    def frozen(item: Any, index: int) -> tuple[Signature[Any], Any]:
        sig: Signature[Any] = maybe_signature(item, app=app).clone()
        result = sig.freeze(group_id=group_id, chord=body, root_id=root_id, group_index=index)
        return sig, result

    first = next(members, None)
    if first is None:  # nothing will ever complete the header: the body runs now
        body.apply_async(([],))
        return GroupResult(group_id, [], app=app)
    current, current_result = frozen(first, 0)
    following = next(members, None)
    upcoming = frozen(following, 1) if following is not None else None
    ids = leaf_ids(current_result.as_tuple())
    prepare_chord(app, group_id, ids + (leaf_ids(upcoming[1].as_tuple()) if upcoming else []))
    add_to_parent = bool(options.pop("add_to_parent", True))
    results = []
    index = 0
    while True:
        current.apply_async(partial_args, kwargs, add_to_parent=False, **options)
        results.append(current_result)
        if upcoming is None:
            break
        current, current_result = upcoming
        index += 1
        following = next(members, None)  # read only now: the member before is on its way
        upcoming = frozen(following, index + 1) if following is not None else None
        if upcoming is not None:
            for task_id in leaf_ids(upcoming[1].as_tuple()):
                add_chord_member(app, group_id, task_id)
    header_result = GroupResult(group_id, results, app=app)
    parent = current_request()
    if add_to_parent and parent is not None and parent.id:
        parent.children.append(header_result.as_tuple())
    return header_result
