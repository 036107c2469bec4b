"""Running a task in this process: ``Task.apply()`` and ``task_always_eager``.

The arguments make the round trip a message would (through the task's serializer), then
``celeriac.execution.execute`` runs the task as a worker would, retrying in place.
"""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.exceptions import Retry
from celeriac.execution import RetrySpec, execute
from celeriac.protocol.serializers import dumps, loads
from celeriac.request import Context, current_request
from celeriac.result import EagerResult

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = ["apply_eagerly"]


def apply_eagerly(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> EagerResult[Any]:
    """Run ``task`` here (``apply()`` / ``task_always_eager``), retrying in place.

    The arguments make a round trip through the task's serializer first, so what cannot be
    sent fails here as it would on ``delay()``.
    """
    app = task.app
    args, kwargs = _round_trip(args, kwargs, options.get("serializer") or task.option("serializer"))
    task_id = options.get("task_id") or str(uuid.uuid4())
    retries = int(options.get("retries") or 0)
    throw = options.get("throw")
    throw = app.conf.task_eager_propagates if throw is None else throw
    parent = current_request()
    while True:
        request = Context(
            id=task_id,
            task=task.name,
            args=args,
            kwargs=kwargs,
            retries=retries,
            is_eager=True,
            root_id=(parent.root_id or parent.id) if parent else task_id,
            parent_id=parent.id if parent else None,
            headers=dict(options.get("headers") or {}),
            called_directly=False,
            hostname=socket.gethostname(),
            ignore_result=options.get("ignore_result"),
            callbacks=_signature_dicts(options.get("link")),
            errbacks=_signature_dicts(options.get("link_error")),
        )
        outcome = execute(task, request)
        if outcome.state != states.RETRY:
            break
        retries += 1
        spec = outcome.exc.sig if isinstance(outcome.exc, Retry) else None
        if isinstance(spec, RetrySpec):  # retry(args=..., kwargs=...) runs with the new ones
            args = tuple(spec.args) if spec.args is not None else args
            kwargs = dict(spec.kwargs) if spec.kwargs is not None else kwargs
    if outcome.state == states.FAILURE and throw and outcome.exc is not None:
        raise outcome.exc
    value = outcome.exc if outcome.state == states.FAILURE else outcome.retval
    return EagerResult(task_id, value, outcome.state, outcome.traceback, task.name, app=app)


def _signature_dicts(value: Any) -> list[dict[str, Any]] | None:
    """``link``/``link_error`` of ``apply()`` as the wire dicts a message would carry."""
    if not value:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [item.__json__() if hasattr(item, "__json__") else dict(item) for item in items]


def _round_trip(
    args: tuple[Any, ...], kwargs: dict[str, Any], serializer: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    body, content_type, encoding = dumps([list(args), kwargs], serializer)
    args_list, kwargs = loads(body, content_type, encoding, accept=[content_type])
    return tuple(args_list), kwargs
