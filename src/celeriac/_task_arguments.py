"""How a task's call binds its arguments: the positional range a plain signature takes, and
what a retry that gives only ``args`` or only ``kwargs`` is sent with (Celery 5.7's rule)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["positional_range", "retry_arguments"]


class _Task(Protocol):
    """What ``retry_arguments`` needs of a task: the signature its call binds against."""

    def _call_signature(self) -> inspect.Signature: ...


def positional_range(signature: inspect.Signature) -> tuple[int, int] | None:
    """``(required, total)`` positional parameters when the signature has only plain ones
    (no ``*args``, ``**kwargs`` or keyword-only): a positional call binds iff its length
    is in that range. None otherwise."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = list(signature.parameters.values())
    if any(p.kind not in plain for p in parameters):
        return None
    required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
    return required, len(parameters)


def retry_arguments(
    task: _Task,
    request: Any,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
) -> tuple[Sequence[Any] | None, Mapping[str, Any] | None]:
    """What a retry is sent with when it gives only ``args`` or only ``kwargs`` (Celery 5.7).

    The side not given is kept from the request, less what the new side now passes: new
    ``args`` take over the parameters they fill by position from the request's kwargs; new
    ``kwargs`` take over the request's positional values of the parameters they name (the
    rest keep their positions). ``None`` for a side still means "the request's".
    """
    inherit_kwargs = args is not None and kwargs is None and request.kwargs
    inherit_args = kwargs is not None and args is None and request.args
    if not (inherit_kwargs or inherit_args):
        return args, kwargs
    try:
        signature = task._call_signature()
    except (TypeError, ValueError):
        return args, kwargs  # the call is checked when the retry runs
    by_name = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if args is not None:
        positional = [
            p
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, by_name)
        ]
        taken = {p.name for p in positional[: len(args)] if p.kind is by_name}
        return args, {k: v for k, v in request.kwargs.items() if k not in taken}
    assert kwargs is not None
    try:
        bound = signature.bind_partial(*request.args)
    except TypeError:
        return args, kwargs
    rest = dict(kwargs)
    for name in list(rest):
        if name in bound.arguments and signature.parameters[name].kind is by_name:
            bound.arguments[name] = rest.pop(name)
    return bound.args, {**bound.kwargs, **rest}
