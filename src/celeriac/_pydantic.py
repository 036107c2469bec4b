"""``@app.task(pydantic=True)``: arguments validated into models, models returned as data.

As in Celery 5.7: each parameter annotated with a pydantic model (or ``Model | None``) is
rebuilt with ``Model.model_validate(value, strict=pydantic_strict, context=...)`` before the
function runs (the context holds ``pydantic_context`` plus ``celery_app`` and
``celery_task_name``); a returned model that is an instance of the return annotation is
sent back as ``model_dump(mode="json", **pydantic_dump_kwargs)``. On the caller's side, a
model given for such a parameter is dumped before it is sent (unless the task's serializer
is pickle), when validating the dump gives an equal model back. pydantic is imported only
by tasks that ask for it (``pip install "celeriac[pydantic]"``).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = ["ModelArguments"]


def _base_model() -> type[Any]:
    try:
        import pydantic
    except ImportError:
        raise ImproperlyConfigured(
            'pydantic=True needs pydantic: pip install "celeriac[pydantic]"'
        ) from None
    model: type[Any] = pydantic.BaseModel
    return model


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return members[0] if len(members) == 1 and len(typing.get_args(annotation)) == 2 else None


class ModelArguments:
    """The models of one task function's parameters and return value, and their rules."""

    def __init__(self, fun: Callable[..., Any], task: Task[Any, Any], options: Mapping[str, Any]):
        self.base = _base_model()
        self.fun = fun
        self.task = task
        self.strict = bool(options.get("pydantic_strict", False))
        self.context = dict(options.get("pydantic_context") or {})
        self.dump_kwargs = {"mode": "json", **dict(options.get("pydantic_dump_kwargs") or {})}
        self.signature = inspect.signature(fun)
        try:
            self.hints: dict[str, Any] = typing.get_type_hints(fun)
        except (NameError, AttributeError, TypeError):  # e.g. a forward reference not found
            self.hints = {}

    def _annotation(self, name: str) -> Any:
        if name in self.hints:
            return self.hints[name]
        if name == "return":
            return self.signature.return_annotation
        return self.signature.parameters[name].annotation

    def model_for(self, name: str, value: Any) -> type[Any] | None:
        """The model parameter ``name`` is validated with (for ``value``), or None."""
        annotation = self._annotation(name)
        inner = _optional_of(annotation)
        if inner is not None and value is not None:
            annotation = inner
        if inspect.isclass(annotation) and issubclass(annotation, self.base):
            return annotation
        return None

    def validate(self, model: type[Any], value: Any) -> Any:
        context = {**self.context, "celery_app": self.task.app, "celery_task_name": self.task.name}
        return model.model_validate(value, strict=self.strict, context=context)

    def wrap(self) -> Callable[..., Any]:
        """The function the task runs: arguments validated in, a model dumped out."""
        fun = self.fun

        @functools.wraps(fun)
        def with_models(*args: Any, **kwargs: Any) -> Any:
            bound = self.signature.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                model = self.model_for(name, value)
                if model is not None:
                    bound.arguments[name] = self.validate(model, value)
            returned: Any = fun(*bound.args, **bound.kwargs)
            annotation = self._annotation("return")
            annotation = _optional_of(annotation) or annotation
            is_model = isinstance(returned, self.base)
            if is_model and inspect.isclass(annotation) and isinstance(returned, annotation):
                dumped: Any = getattr(returned, "model_dump")(**self.dump_kwargs)  # noqa: B009
                return dumped
            return returned

        return with_models

    def dump_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], bound: bool
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The caller's arguments with each model the task rebuilds equal dumped to data."""
        if not any(isinstance(v, self.base) for v in (*args, *kwargs.values())):
            return args, kwargs
        try:
            self.signature.bind(*([None] if bound else []), *args, **kwargs)
        except TypeError:  # refused later, as for any task
            return args, kwargs
        kinds = inspect.Parameter
        params = list(self.signature.parameters.values())[1 if bound else 0 :]
        positional = [
            p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        ]
        keywords = {p.name for p in params if p.kind is not kinds.POSITIONAL_ONLY}
        new_args = tuple(
            self._dump(positional[i] if i < len(positional) else None, value)
            for i, value in enumerate(args)
        )
        new_kwargs = {k: self._dump(k if k in keywords else None, v) for k, v in kwargs.items()}
        return new_args, new_kwargs

    def _dump(self, name: str | None, value: Any) -> Any:
        if name is None or not isinstance(value, self.base) or hasattr(type(value), "__json__"):
            return value
        model = self.model_for(name, value)
        if model is None:
            return value
        try:
            dumped = value.model_dump(**self.dump_kwargs)
            if self.validate(model, dumped) == value:
                return dumped
        except Exception:  # a validator that only works on a worker: send the model as is
            pass
        return value
