"""Executing one task: a plain function, callable with no threads, processes or broker.

``execute`` runs a decoded task message through the whole life of one execution, in Celery's
order but one: ``task_prerun``, STARTED (``track_started``), ``before_start``, the call, then
by outcome — callbacks and the next chain step built (their ids are the stored children),
SUCCESS stored, *then* they are published (Celery publishes them first, so a store that
fails could follow them with errbacks), the chord part reported, ``on_success``, ``task_success`` (a
result the serializer cannot encode fails the task instead; a store that is down is retried
until it answers, see ``celeriac.app._result_retry``); or the retry decision (``Retry``,
``autoretry_for``): RETRY stored, *then* the
retry sent (so the retry cannot finish before RETRY is stored over its result),
``on_retry``, ``task_retry``; or FAILURE stored, ``on_failure``, ``task_failure``, the chord
part reported, the rest of the chain failed, errbacks (``celeriac.followups``) — then
``after_return`` (not after a retry, ``Ignore`` or ``Reject``) and ``task_postrun``. What is
stored follows Celery: nothing in eager mode unless ``store_eager_result``; with
``ignore_result`` neither results nor STARTED, and errors only with
``store_errors_even_if_ignored`` (a chord member stores its result all the same: the chord
joins it). A handler that
raises is logged (re-raised in eager mode). The worker, its pools, and eager ``apply()``
all call it; ``awaitables_run_by`` lets a pool run ``async def`` bodies on its own loop.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import time
import traceback as tb_module
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac.app.producer import hold_publishes
from celeriac.exceptions import Ignore, OperationalError, Reject, Retry, SerializationError
from celeriac.followups import after_failure, after_success, send_callbacks
from celeriac.protocol.message import TaskMessage
from celeriac.request import Context, executing

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = [
    "ExceptionInfo",
    "Outcome",
    "RetrySpec",
    "awaitables_run_by",
    "context_from_message",
    "execute",
]

logger = logging.getLogger("celeriac.task")


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """What ``Task.retry`` asked for; the execution sends it after storing RETRY."""

    args: Sequence[Any] | None
    kwargs: Mapping[str, Any] | None
    eta: dt.datetime
    options: Mapping[str, Any]


class ExceptionInfo:
    """What handlers receive as ``einfo``: the exception, its type, and its traceback text."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = exc.__traceback__
        self.traceback = "".join(tb_module.format_exception(exc))

    def __str__(self) -> str:
        return self.traceback


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one execution ended."""

    state: str  # SUCCESS, FAILURE, RETRY, IGNORED, REJECTED
    retval: Any = None
    exc: BaseException | None = None
    traceback: str | None = None
    runtime: float = 0.0
    requeue: bool = False


def context_from_message(
    message: TaskMessage,
    *,
    hostname: str | None,
    delivery_info: dict[str, Any] | None = None,
    is_eager: bool = False,
) -> Context:
    """The ``self.request`` a task sees for ``message``."""
    embed = message.embed
    return Context(
        id=message.id,
        task=message.task,
        args=tuple(message.args),
        kwargs=dict(message.kwargs),
        retries=message.retries,
        is_eager=is_eager,
        eta=message.eta,
        expires=message.expires,
        group=message.group,
        group_index=message.group_index,
        chord=embed.chord,
        chain=embed.chain,
        callbacks=embed.callbacks,
        errbacks=embed.errbacks,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        root_id=message.root_id,
        parent_id=message.parent_id,
        origin=message.origin,
        hostname=hostname,
        delivery_info=dict(delivery_info or {}),
        properties={
            **message.extra_properties,
            "correlation_id": message.correlation_id,
            "reply_to": message.reply_to,
            "priority": message.priority,
        },
        headers=dict(message.extra_headers),
        time_limit=message.time_limit,
        soft_time_limit=message.soft_time_limit,
        shadow=message.shadow,
        ignore_result=message.ignore_result,
        replaced_task_nesting=message.replaced_task_nesting,
        stamped_headers=message.stamped_headers,
        stamps=dict(message.stamps),
        called_directly=False,
    )


AwaitableRunner = Callable[[Awaitable[Any]], Any]

# How an ``async def`` task's awaitable is run here: None means ``asyncio.run``.
_awaitable_runner: ContextVar[AwaitableRunner | None] = ContextVar(
    "celeriac_awaitable_runner", default=None
)


@contextmanager
def awaitables_run_by(runner: AwaitableRunner) -> Iterator[None]:
    """Within the block, ``execute`` hands an async task's awaitable to ``runner`` (which
    blocks until it is done and returns its result), e.g. to run it on a pool's event loop."""
    token = _awaitable_runner.set(runner)
    try:
        yield
    finally:
        _awaitable_runner.reset(token)


def _call(task: Task[Any, Any], request: Context) -> Any:
    result = task._call_for_worker(request)  # through a base class's __call__ if it has one
    if inspect.isawaitable(result):
        runner = _awaitable_runner.get()
        if runner is not None:
            return runner(result)
        import asyncio  # only for async tasks: asyncio (and ssl) cost ~10 MB per process

        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass(frozen=True, slots=True)
class _Storing:
    """What this execution stores: results, errors, and the STARTED state."""

    results: bool
    errors: bool
    started: bool


def _storing(task: Task[Any, Any], request: Context) -> _Storing:
    """Celery's rules: nothing when eager (unless ``store_eager_result``); with
    ``ignore_result`` only errors, and those only with ``store_errors_even_if_ignored``."""
    enabled = task.app.results.enabled and (
        not request.is_eager or bool(task.option("store_eager_result"))
    )
    # A chord member's result is what the chord joins, so it is stored even when ignored.
    given = request.ignore_result  # the call's option (a header) overrides the task's
    ignored = bool(task.option("ignore_result")) if given is None else given
    ignore = ignored and not request.chord
    errors = enabled and (not ignore or bool(task.option("store_errors_even_if_ignored")))
    started = enabled and not ignore and not request.is_eager
    return _Storing(enabled and not ignore, errors, started and bool(task.option("track_started")))


def execute(task: Task[Any, Any], request: Context) -> Outcome:
    """Run ``task`` for ``request`` to its end; store its state; never raise (but BaseException).

    In eager mode (``request.is_eager``) an exception raised by a handler propagates, as
    in Celery, so tests see it; a worker logs it instead.
    """
    storing = _storing(task, request)
    started = time.monotonic()
    with executing(task, request):
        signals.task_prerun.send(
            sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
        )
        outcome = _run(task, request, storing, started)
        if outcome.state not in _NO_AFTER_RETURN:
            einfo = ExceptionInfo(outcome.exc) if outcome.exc is not None else None
            value = outcome.retval if outcome.exc is None else outcome.exc
            _handler(task, request, "after_return", outcome.state, value, *_ids(request), einfo)
        signals.task_postrun.send(
            sender=task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=outcome.retval,
            state=outcome.state,
        )
    return outcome


# Celery calls ``after_return`` only for these ends.
_NO_AFTER_RETURN = frozenset({states.IGNORED, states.RETRY, states.REJECTED})


def _run(task: Task[Any, Any], request: Context, storing: _Storing, started: float) -> Outcome:
    try:
        if storing.started:
            task.app.results.store(
                str(request.id),
                states.STARTED,
                {"pid": os.getpid(), "hostname": request.hostname},
                request=request,
            )
        task.before_start(str(request.id), request.args, request.kwargs)
        retval = _call(task, request)
    except Exception as exc:
        return _on_exception(task, request, exc, storing, started)
    return _on_success(task, request, retval, storing, started)


def _ids(request: Context) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``(task_id, args, kwargs)`` as handlers receive them."""
    return str(request.id), request.args, request.kwargs


def _handler(task: Task[Any, Any], request: Context, name: str, *args: Any) -> None:
    """Call the task's ``name`` handler; a worker logs what it raises, eager mode raises it."""
    try:
        getattr(task, name)(*args)
    except Exception as exc:
        if request.is_eager:
            raise
        logger.exception("Task %s[%s] %s handler raised: %r", task.name, request.id, name, exc)


def _on_success(
    task: Task[Any, Any], request: Context, retval: Any, storing: _Storing, started: float
) -> Outcome:
    try:
        # Callbacks are built now (their ids become the stored children) but published only
        # once the success is durable: no callback runs for an outcome that is not stored.
        with hold_publishes() as held:
            send_callbacks(task.app, request, retval)
        if storing.results:
            task.app.results.store(str(request.id), states.SUCCESS, retval, request=request)
    except SerializationError as exc:  # e.g. a return value the serializer cannot encode
        return _on_failure(task, request, exc, storing, started)
    except OperationalError as exc:  # the store gave up (result_backend_max_retries)
        logger.error(
            "Task %s[%s] succeeded, but its result could not be stored: %r",
            task.name,
            request.id,
            exc,
        )
    except Exception as exc:  # a callback that cannot be sent (nothing went out)
        return _on_failure(task, request, exc, storing, started)
    _publish_held(task, request, held)
    after_success(task.app, request, retval)
    runtime = time.monotonic() - started
    _handler(task, request, "on_success", retval, *_ids(request))
    signals.task_success.send(sender=task, result=retval, runtime=runtime)
    logger.info(
        "Task %s[%s] succeeded in %.4fs: %r",
        task.name,
        request.id,
        runtime,
        retval,
    )
    return Outcome(states.SUCCESS, retval, runtime=runtime)


def _publish_held(task: Task[Any, Any], request: Context, held: list[Callable[[], None]]) -> None:
    """Publish the callbacks of a success now stored; one that cannot go out is logged (the
    task did succeed, and says so)."""
    for publish in held:
        try:
            publish()
        except Exception as exc:
            if request.is_eager:
                raise
            logger.error(
                "Task %s[%s] succeeded, but a callback could not be sent: %r",
                task.name,
                request.id,
                exc,
            )


def _autoretry(task: Task[Any, Any], request: Context, exc: Exception) -> Exception:
    """Turn ``exc`` into a ``Retry`` when ``autoretry_for`` asks; else return what to fail with."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return exc
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return exc
    options = dict(task.retry_kwargs)
    if task.retry_backoff and "countdown" not in options:
        options["countdown"] = task.backoff_countdown(request.retries)
    try:
        task.retry(exc=exc, **options)
    except Exception as raised:
        return raised
    return exc


def _on_exception(
    task: Task[Any, Any], request: Context, exc: Exception, storing: _Storing, started: float
) -> Outcome:
    if not isinstance(exc, (Retry, Ignore, Reject)):
        exc = _autoretry(task, request, exc)
    runtime = time.monotonic() - started
    if isinstance(exc, Ignore):
        logger.info("Task %s[%s] ignored", task.name, request.id)
        return Outcome(states.IGNORED, runtime=runtime)
    if isinstance(exc, Reject):
        logger.info("Task %s[%s] rejected: %r", task.name, request.id, exc.reason)
        if not exc.requeue and not request.is_eager:
            _rejected_for_good(task, request, exc, storing)
        return Outcome(states.REJECTED, exc=exc, runtime=runtime, requeue=exc.requeue)
    if isinstance(exc, Retry):
        return _on_retry(task, request, exc, storing, started)
    return _on_failure(task, request, exc, storing, started)


def _on_retry(
    task: Task[Any, Any], request: Context, retry: Retry, storing: _Storing, started: float
) -> Outcome:
    """Store RETRY, then send the retry (so its run cannot finish before RETRY is stored)."""
    einfo = ExceptionInfo(retry)
    reason = retry.exc if isinstance(retry.exc, BaseException) else retry
    if storing.errors:
        task.app.results.store(
            str(request.id), states.RETRY, reason, request=request, traceback=einfo.traceback
        )
    spec = retry.sig
    if isinstance(spec, RetrySpec) and not request.is_eager:
        try:
            task.app.producer.resend(
                task, request, spec.args, spec.kwargs, eta=spec.eta, **spec.options
            )
        except Exception as exc:
            logger.error("Task %s[%s] could not be sent for its retry", task.name, request.id)
            return _on_failure(task, request, exc, storing, started)
    _handler(task, request, "on_retry", reason, *_ids(request), einfo)
    signals.task_retry.send(sender=task, request=request, reason=retry, einfo=einfo)
    logger.info("Task %s[%s] retry: %s", task.name, request.id, retry)
    runtime = time.monotonic() - started
    return Outcome(states.RETRY, exc=retry, traceback=einfo.traceback, runtime=runtime)


def _rejected_for_good(
    task: Task[Any, Any], request: Context, exc: Reject, storing: _Storing
) -> None:
    """``Reject(requeue=False)``: the task never runs again, so, as Celery 5.7 does, store
    FAILURE (the ``Reject``), send ``task_failure``, and fail what waits on it (chain,
    chord, errbacks); the task's ``on_failure`` is not called."""
    einfo = ExceptionInfo(exc)
    if storing.errors:
        try:
            task.app.results.store(
                str(request.id), states.FAILURE, exc, request=request, traceback=einfo.traceback
            )
        except Exception:
            logger.exception("Task %s[%s]: could not store its rejection", task.name, request.id)
    signals.task_failure.send(
        sender=task,
        task_id=request.id,
        exception=exc,
        args=request.args,
        kwargs=request.kwargs,
        traceback=exc.__traceback__,
        einfo=einfo,
    )
    after_failure(task.app, request, exc, einfo)


def _on_failure(
    task: Task[Any, Any], request: Context, exc: Exception, storing: _Storing, started: float
) -> Outcome:
    einfo = ExceptionInfo(exc)
    if storing.errors:
        try:
            task.app.results.store(
                str(request.id), states.FAILURE, exc, request=request, traceback=einfo.traceback
            )
        except Exception:
            logger.exception("Task %s[%s]: could not store its failure", task.name, request.id)
    _handler(task, request, "on_failure", exc, *_ids(request), einfo)
    signals.task_failure.send(
        sender=task,
        task_id=request.id,
        exception=exc,
        args=request.args,
        kwargs=request.kwargs,
        traceback=exc.__traceback__,
        einfo=einfo,
    )
    after_failure(task.app, request, exc, einfo)
    # The log record gets the exception's repr, not the exception: a handler that keeps
    # records (pytest's capture, a memory handler) must not keep its traceback's frames.
    if task.throws and isinstance(exc, task.throws):
        logger.info("Task %s[%s] raised expected: %s", task.name, request.id, repr(exc))
    else:
        logger.error(
            "Task %s[%s] raised unexpected: %s\n%s",
            task.name,
            request.id,
            repr(exc),
            einfo.traceback,
        )
    runtime = time.monotonic() - started
    return Outcome(states.FAILURE, exc=exc, traceback=einfo.traceback, runtime=runtime)
