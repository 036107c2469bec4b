"""Tasks: a function plus its options, callable locally, sendable to workers.

``Task`` is generic over the function's parameters and return type, so ``add.delay("x")`` is
a type error for ``def add(x: int, y: int) -> int`` and ``add.delay(2, 2).get()`` is an int.
Options that are None fall back to the app's settings (``acks_late`` -> ``task_acks_late``)
at the moment they are read, so ``app.conf.update(...)`` after the tasks are defined works.
"""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from celeriac import _state, states
from celeriac._eager import apply_eagerly
from celeriac._pydantic import ModelArguments
from celeriac._task_arguments import positional_range, retry_arguments
from celeriac.aio.mixins import AsyncTaskMixin
from celeriac.canvas import Signature, chunks, xmap, xstarmap
from celeriac.canvas.join import add_chord_member
from celeriac.canvas.replace import replace_task
from celeriac.exceptions import MaxRetriesExceededError, Retry
from celeriac.execution import RetrySpec
from celeriac.request import (
    Context,
    called_directly,
    current_request,
    direct_call,
    taking_worker_call,
    worker_call,
)
from celeriac.result import AsyncResult

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.canvas import chunks as Chunks
    from celeriac.canvas import xmap as XMap
    from celeriac.canvas import xstarmap as XStarMap
    from celeriac.result import EagerResult

__all__ = ["TASK_OPTIONS", "RetrySpec", "Task"]

P = ParamSpec("P")
R = TypeVar("R")

# Option name -> the setting it falls back to when the task leaves it None.
_SETTING_FOR = {
    "ignore_result": "task_ignore_result",
    "store_errors_even_if_ignored": "task_store_errors_even_if_ignored",
    "track_started": "task_track_started",
    "acks_late": "task_acks_late",
    "acks_on_failure_or_timeout": "task_acks_on_failure_or_timeout",
    "reject_on_worker_lost": "task_reject_on_worker_lost",
    "serializer": "task_serializer",
    "compression": "task_compression",
    "time_limit": "task_time_limit",
    "soft_time_limit": "task_soft_time_limit",
    "rate_limit": "task_default_rate_limit",
    "priority": "task_default_priority",
    "store_eager_result": "task_store_eager_result",
}

#: Every option ``@app.task(...)`` knows (Celery's names).
TASK_OPTIONS = frozenset(
    {
        "name",
        "bind",
        "base",
        "typing",
        "max_retries",
        "default_retry_delay",
        "autoretry_for",
        "dont_autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "expires",
        "throws",
        "trail",
        "send_events",
        "resultrepr_maxsize",
        "queue",
        "exchange",
        "routing_key",
        "delivery_mode",
        "shadow",
        "lazy",
        "shared",
        "abstract",
        "pydantic",
        "pydantic_strict",
        "pydantic_context",
        "pydantic_dump_kwargs",
        "serializer",
        "backend",
        "request_stack",
        *_SETTING_FOR,
    }
)


class Task(AsyncTaskMixin[P, R], Generic[P, R]):
    """A registered unit of work. Subclass it (``base=``) to add handlers."""

    name: str = ""
    typing: bool | None = None  # None: the app's ``strict_typing``
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    expires: float | dt.datetime | None = None
    throws: tuple[type[BaseException], ...] = ()
    trail: bool = True
    send_events: bool = True
    resultrepr_maxsize: int = 1024
    queue: str | None = None
    # Options falling back to settings when None (see _SETTING_FOR).
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    track_started: bool | None = None
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    serializer: str | None = None
    compression: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | float | None = None
    priority: int | None = None
    store_eager_result: bool | None = None

    def __init__(
        self,
        fun: Callable[..., R] | None = None,
        *,
        app: AppLike | None = None,
        name: str | None = None,
        bind: bool = False,
        **options: Any,
    ) -> None:
        self._fun = fun
        self._bind = bind
        self._app = app
        self._signature: inspect.Signature | None = None
        self._positional: tuple[int, int] | None = None  # see _task_arguments.positional_range
        if fun is not None:
            self.__doc__ = fun.__doc__
            self.__wrapped__ = fun
            self.__module__ = fun.__module__
        if name:
            self.name = name
        for key, value in options.items():
            setattr(self, key, value)
        self._models: ModelArguments | None = None
        if fun is not None and options.get("pydantic"):
            self._models = ModelArguments(fun, self, options)
            self._fun = self._models.wrap()

    # -- binding ----------------------------------------------------------------------------

    @property
    def app(self) -> AppLike:
        """The app this task is bound to; an unbound (shared) task uses the current app."""
        if self._app is not None:
            return self._app
        return _state.current_app()

    @property
    def bound_app(self) -> AppLike | None:
        """The app this task is bound to, or None for a shared task's original."""
        return self._app

    def bind(self, app: AppLike) -> None:
        self._app = app

    def bound_copy(self, app: AppLike) -> Task[P, R]:
        """A copy of this task bound to ``app`` (each app runs shared tasks as its own)."""
        clone = copy.copy(self)
        clone.bind(app)
        return clone

    def option(self, name: str) -> Any:
        """The task's option ``name``, or its setting when the task leaves it None."""
        value = getattr(self, name)
        if value is None and name in _SETTING_FOR:
            return self.app.conf[_SETTING_FOR[name]]
        return value

    # -- running ----------------------------------------------------------------------------

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The task's body; class-based tasks override it."""
        if self._fun is None:
            raise NotImplementedError(f"Task {self.name!r} defines no run() method")
        if self._bind:
            return self._fun(self, *args, **kwargs)
        return self._fun(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here and now, as a plain function call.

        ``self.request`` then shows this call (``args``, ``kwargs``, ``called_directly``), as
        in Celery. A base class may override ``__call__`` to wrap every run (an app context,
        a tenant); the worker and ``apply()`` run tasks through it, and its
        ``super().__call__`` keeps the worker's request.
        """
        if taking_worker_call(self):
            return self.run(*args, **kwargs)
        with called_directly(self.name, tuple(args), dict(kwargs)):
            return self.run(*args, **kwargs)

    def _call_for_worker(self, request: Context) -> Any:
        """Run for the worker or ``apply()``: straight to ``run`` unless a base class
        overrides ``__call__``, which then wraps the run (as in Celery)."""
        if type(self).__call__ is Task.__call__:
            return self.run(*request.args, **request.kwargs)
        with worker_call(request):
            return self(*request.args, **request.kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError now when the call cannot bind to the function (``typing=True``)."""
        typing = self.app.strict_typing if self.typing is None else self.typing
        if not typing:
            return
        if self._signature is None:
            self._signature = self._call_signature()
            self._positional = positional_range(self._signature)
        # The common call, positional arguments only, is checked by counting them.
        if not kwargs and self._positional is not None:
            least, most = self._positional
            if least <= len(args) <= most:
                return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None

    def _call_signature(self) -> inspect.Signature:
        """The parameters a caller passes: the function's (less ``self`` when bound)."""
        if self._fun is None:
            return inspect.signature(self.run)
        signature = inspect.signature(self._fun)
        if self._bind:
            parameters = list(signature.parameters.values())[1:]
            signature = signature.replace(parameters=parameters)
        return signature

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task to a worker: ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task with calling options (countdown, eta, expires, queue, priority, ...)."""
        args, kwargs = self._dump_models(tuple(args or ()), dict(kwargs or {}), options)
        self.check_arguments(args, kwargs)
        if self.soft_time_limit and self.time_limit and self.soft_time_limit > self.time_limit:
            raise ValueError(  # Celery's words first: callers match on them
                f"soft_time_limit must be less than or equal to time_limit ({self.name}: "
                f"{self.soft_time_limit} > {self.time_limit})"
            )
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return self.app.send_task(self.name, args, kwargs, task=self, **options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """Run the task in this process, blocking, and return an EagerResult."""
        args, kwargs = self._dump_models(tuple(args or ()), dict(kwargs or {}), options)
        return apply_eagerly(self, args, kwargs, options)

    def _dump_models(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], options: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``pydantic=True``: models the task rebuilds go as data (pickle sends them as is)."""
        if (
            self._models is None
            or (options.get("serializer") or self.option("serializer")) == "pickle"
        ):
            return args, kwargs
        return self._models.dump_arguments(args, kwargs, bound=self._bind)

    # -- signatures (celeriac.canvas) -------------------------------------------------------

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> Signature[R]:
        """A signature of this task: ``task.signature((2, 2), countdown=10)``."""
        return Signature(self, args, kwargs, options, app=self._app, **extra)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature with partial arguments: ``add.s(2)`` then ``add.s(2).delay(3)``."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """An immutable signature: a chain or callback does not prepend a result to it."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> XMap:
        """One message that calls this task with each item of ``it`` in a worker."""
        return xmap(self.s(), it, app=self._app)

    def starmap(self, it: Iterable[Sequence[Any]]) -> XStarMap:
        """One message that calls this task with each item of ``it`` as its arguments."""
        return xstarmap(self.s(), it, app=self._app)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> Chunks:
        """``it`` split in parts of ``n`` argument tuples, one message (in a group) each."""
        return chunks(self.s(), it, n, app=self._app)

    def replace(self, sig: Signature[Any]) -> Any:
        """End this task and send ``sig`` in its place, with its id, chain and chord.

        Raises ``Ignore`` (``return self.replace(sig)`` reads best); in eager mode runs
        ``sig`` here and returns its value instead.
        """
        return replace_task(self, sig)

    def add_to_chord(self, sig: Signature[Any], lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this running task is a member of: the body waits for it
        too and gets its result. Sends it (returns its result) unless ``lazy`` (returns the
        signature, frozen: send it with ``delay()``)."""
        request = self.request
        if not request.chord or not request.group:
            raise ValueError("Current task is not member of any chord")
        sig.set(
            group_id=request.group,
            group_index=request.group_index,
            chord=request.chord,
            root_id=request.root_id,
        )
        result = sig.freeze()
        add_chord_member(self.app, request.group, result.id)
        return sig if lazy else sig.delay()

    # -- inside a running task --------------------------------------------------------------

    @property
    def request(self) -> Context:
        """The context of the current execution of this task; of the call when called as a
        function (``args``, ``kwargs``, ``called_directly=True``, no id)."""
        direct = direct_call()
        if direct is not None and direct.task == self.name:
            return direct
        req = current_request()
        if req is not None and req.task == self.name:
            return req
        return Context(task=self.name)

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **kwargs: Any,
    ) -> None:
        """Store a state (e.g. a custom ``PROGRESS``) and its meta for this or another task."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise ValueError("update_state() needs a task_id outside of a running task")
        self.app.results.store(task_id, state or states.PENDING, meta, request=self.request)

    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Retry this task: raise ``Retry``; the worker then sends it again (same id,
        ``retries + 1``) once the RETRY state is stored.

        Raises ``exc`` (or ``MaxRetriesExceededError``) instead once ``max_retries`` is used
        up. With ``throw=False`` the retry is sent now and the ``Retry`` returned.
        """
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            raise exc if exc is not None else Retry("Task can be retried", None)
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}",
                task_args=request.args,
                task_kwargs=request.kwargs,
            )
        when: float | dt.datetime  # as Celery: "Retry in 5s", or "Retry at <eta>" when given
        if eta is None:
            delay = self.default_retry_delay if countdown is None else countdown
            eta = self.app.now() + dt.timedelta(seconds=delay)
            when = delay
        else:
            when = eta
        args, kwargs = retry_arguments(self, request, args, kwargs)
        retry = Retry(exc=exc, when=when)
        retry.sig = RetrySpec(args, kwargs, eta, options)
        if not throw:  # the task goes on: send the retry now, and only now
            if not request.is_eager:
                self.app.producer.resend(self, request, args, kwargs, eta=eta, **options)
            retry.sig = None
            return retry
        raise retry

    def backoff_countdown(self, retries: int) -> float:
        """Countdown for autoretry: exponential with cap and jitter (Celery's formula)."""
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = min(self.retry_backoff_max, factor * (2**retries))
        if self.retry_jitter:
            countdown = random.randrange(int(countdown) + 1)
        return float(countdown)

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:
        return AsyncResult(task_id, app=self.app, task_name=self.name)

    # -- handlers (Celery's signatures) -----------------------------------------------------

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called before the task runs."""

    def on_success(
        self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Called when the task succeeded."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called when the task failed."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called when the task is to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called after the task returned, whatever its state."""

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"
