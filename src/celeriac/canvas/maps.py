"""``xmap``, ``xstarmap`` and ``chunks``: one task over many arguments, in few messages.

``xmap(add.s(), [1, 2])`` (``task.map(it)``) is one message for the built-in task
``celery.map``, which calls the task once per item in the worker, in order, and returns the
list of results; ``xstarmap`` (``task.starmap(it)``, ``celery.starmap``) unpacks each item as
the arguments. ``chunks(task.s(), it, n)`` (``task.chunks(it, n)``) splits ``it`` into parts
of ``n`` and sends a group of ``xstarmap`` messages, one per part: its result is a
``GroupResult`` whose values are lists. On the wire the three are signatures of subtask type
``xmap``/``xstarmap``/``chunks`` whose kwargs hold ``task`` (a signature dict) and ``it``
(and ``n``), as Celery's are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

from celeriac.canvas.group import group
from celeriac.canvas.signature import Signature, maybe_signature

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.result import GroupResult

__all__ = ["chunks", "xmap", "xstarmap"]


class _basemap(Signature[list[Any]]):
    """A task over an iterable, in one message for the built-in task ``_task_name``."""

    _task_name: ClassVar[str]
    _kind: ClassVar[str]

    def __init__(
        self, task: Signature[Any] | Mapping[str, Any], it: Iterable[Any], **options: Any
    ) -> None:
        app = options.pop("app", None)
        sig = maybe_signature(task, app=app)
        super().__init__(
            self._task_name,
            (),
            {"task": sig, "it": list(it)},
            options,
            subtask_type=self._kind,
            immutable=True,
            app=app,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: AppLike | None = None) -> _basemap:
        kwargs = d["kwargs"]
        return cls(kwargs["task"], kwargs["it"], app=app, **dict(d.get("options") or {}))

    @property
    def inner(self) -> Signature[Any]:
        """The signature applied to each item."""
        inner: Signature[Any] = self.kwargs["task"]
        return inner

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> Any:
        """One message for the built-in task, routed as the inner task would be."""
        merged = self._merged_options(options)
        merged.setdefault("route_name", route_name or self.inner.task)
        return self.app.tasks[self._task_name].apply_async((), self._call_kwargs(), **merged)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        merged = self._merged_options(options)
        return self.app.tasks[self._task_name].apply((), self._call_kwargs(), **merged)

    def _call_kwargs(self) -> dict[str, Any]:
        """The built-in task's kwargs, the signature as its dict (any serializer takes it)."""
        return {"task": self.inner.to_dict(), "it": list(self.kwargs["it"])}


@Signature.register_type("xmap")
class xmap(_basemap):
    """``[task(item) for item in it]`` in one worker (not in parallel, unlike a group)."""

    _task_name = "celery.map"
    _kind = "xmap"

    def __repr__(self) -> str:
        return f"[{self.inner.task}(x) for x in {self.kwargs['it']!r:.100}]"


@Signature.register_type("xstarmap")
class xstarmap(_basemap):
    """``[task(*item) for item in it]`` in one worker."""

    _task_name = "celery.starmap"
    _kind = "xstarmap"

    def __repr__(self) -> str:
        return f"[{self.inner.task}(*x) for x in {self.kwargs['it']!r:.100}]"


def _parts(items: Iterable[Any], n: int) -> Iterable[list[Any]]:
    iterator = iter(items)
    while part := list(islice(iterator, n)):
        yield part


@Signature.register_type("chunks")
class chunks(Signature[list[Any]]):
    """``it`` split in parts of ``n``, each part one ``xstarmap`` message, all a group."""

    def __init__(
        self, task: Signature[Any] | Mapping[str, Any], it: Iterable[Any], n: int, **options: Any
    ) -> None:
        if n < 1:
            raise ValueError(f"chunks() needs a chunk size of at least 1, got {n}")
        app = options.pop("app", None)
        sig = maybe_signature(task, app=app)
        super().__init__(
            "celery.chunks",
            (),
            {"task": sig, "it": list(it), "n": n},
            options,
            subtask_type="chunks",
            immutable=True,
            app=app,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: AppLike | None = None) -> chunks:
        kwargs = d["kwargs"]
        return cls(
            kwargs["task"], kwargs["it"], int(kwargs["n"]), app=app, **dict(d.get("options") or {})
        )

    def group(self) -> group:
        """The group of ``xstarmap`` parts this sends."""
        inner: Signature[Any] = self.kwargs["task"]
        parts = _parts(self.kwargs["it"], int(self.kwargs["n"]))
        return group([xstarmap(inner, part, app=self._app) for part in parts], app=self._app)

    def __call__(self, *args: Any, **options: Any) -> GroupResult:  # type: ignore[override]
        return self.apply_async(**options)

    def apply_async(  # type: ignore[override]
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> GroupResult:
        inner: Signature[Any] = self.kwargs["task"]
        merged = self._merged_options(options)
        return self.group().apply_async(route_name=route_name or inner.task, **merged)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        return self.group().apply(**self._merged_options(options))

    def __repr__(self) -> str:
        inner: Signature[Any] = self.kwargs["task"]
        return f"chunks({inner!r}, {self.kwargs['it']!r:.100}, {self.kwargs['n']})"
