"""The built-in tasks every app registers, under Celery's names, so either side's workflows run.

``celery.map``/``celery.starmap``/``celery.chunks`` run ``xmap``/``xstarmap``/``chunks``;
``celery.accumulate`` collects a replaced group's results; ``celery.chord_unlock`` is what a
Celery client sends for a chord when its result backend has no native join (the database
backends): it polls the header every ``result_chord_retry_interval`` seconds by retrying
itself, then sends the body (Celeriac's own chords never send it: canvas.join counts
instead). ``celery.group``, ``celery.chain`` and ``celery.chord`` are kept for the messages
of older clients that sent a whole workflow as one task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.chord import chord as chord_signature
from celeriac.canvas.dispatch import chord_error
from celeriac.canvas.maps import chunks as chunks_signature
from celeriac.canvas.signature import maybe_signature, signature
from celeriac.exceptions import ChordError
from celeriac.result import GroupResult, result_from_tuple
from celeriac.task import Task as PlainTask

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.task import Task

__all__ = ["register_builtins"]

logger = logging.getLogger("celeriac.canvas")


def register_builtins(app: AppLike) -> None:
    """Register Celery's built-in task names with ``app`` (each app gets its own tasks).

    They are plain tasks, not of the app's ``task_cls`` (resolved when the user's first
    task is made, so a ``'module:Class'`` path may import the app).
    """

    def task(**options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        made: Callable[[Callable[..., Any]], Task[Any, Any]] = app.task(base=PlainTask, **options)
        return made

    @task(name="celery.map", shared=False, typing=False)
    def xmap(task: Any, it: Iterable[Any]) -> list[Any]:
        run = signature(task, app=app).type
        return [run(item) for item in it]

    @task(name="celery.starmap", shared=False, typing=False)
    def xstarmap(task: Any, it: Iterable[Sequence[Any]]) -> list[Any]:
        run = signature(task, app=app).type
        return [run(*item) for item in it]

    @task(name="celery.chunks", shared=False, typing=False)
    def chunks(task: Any, it: Iterable[Any], n: int) -> Any:
        return chunks_signature(task, it, n, app=app).apply_async().as_tuple()

    @task(name="celery.accumulate", bind=True, shared=False, typing=False)
    def accumulate(self: Task[Any, Any], /, *args: Any, **kwargs: Any) -> Any:
        index = kwargs.get("index")
        return args[index] if index is not None else args

    @task(name="celery.group", bind=True, shared=False, typing=False)
    def group(
        self: Task[Any, Any],
        /,
        tasks: Any,
        result: Any,
        group_id: str,
        partial_args: Any,
        add_to_parent: bool = True,
    ) -> Any:
        members = [maybe_signature(t, app=app).clone(partial_args) for t in tasks]
        for member in members:
            member.apply_async(group_id=group_id, add_to_parent=False)
        return result

    @task(name="celery.chain", shared=False, typing=False)
    def chain(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("chain is not a real task")

    @task(name="celery.chord", bind=True, shared=False, ignore_result=False, typing=False)
    def chord(
        self: Task[Any, Any],
        /,
        header: Any,
        body: Any,
        partial_args: Any = (),
        interval: Any = None,
        countdown: Any = 1,
        max_retries: Any = None,
        eager: bool = False,
        **kwargs: Any,
    ) -> Any:
        sig = chord_signature(header, body, app=app)
        return sig.apply_async(partial_args, kwargs.get("kwargs") or {})

    _register_chord_unlock(app)
    del xmap, xstarmap, chunks, accumulate, group, chain, chord


def _register_chord_unlock(app: AppLike) -> None:
    @app.task(
        name="celery.chord_unlock",
        bind=True,
        shared=False,
        max_retries=None,
        base=PlainTask,
        default_retry_delay=app.conf.result_chord_retry_interval,
        ignore_result=True,
        typing=False,
    )
    def unlock_chord(
        self: Task[Any, Any],
        /,
        group_id: str,
        callback: Any,
        interval: float | None = None,
        max_retries: int | None = None,
        result: Any = None,
        **kwargs: Any,
    ) -> None:

        members = [result_from_tuple(r, app=app) for r in result or ()]
        header = GroupResult(group_id, [m for m in members if m is not None], app=app)
        body = maybe_signature(callback, app=app)
        if not header.ready():
            delay = self.default_retry_delay if interval is None else interval
            raise self.retry(countdown=delay, max_retries=max_retries)
        try:
            values = header.join(
                timeout=app.conf.result_chord_join_timeout,
                propagate=True,
                disable_sync_subtasks=False,
            )
        except Exception as exc:
            culprit = next((r for r in header.results if r.failed()), None)
            reason = f"Dependency {culprit.id} raised {exc!r}" if culprit else repr(exc)
            logger.error("Chord %s: %s", group_id, reason)
            chord_error(app, body, ChordError(reason))
            return
        try:
            body.apply_async((values,))
        except Exception as exc:
            logger.exception("Chord %s: the body could not be sent", group_id)
            chord_error(app, body, ChordError(f"Callback error: {exc!r}"))
